"""pidsafe-runc commands on a saved container: exact ids, CLI words (root, real containers)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runc_cli import Cli, cli, subreaper  # noqa: F401 - fixtures

pytestmark = pytest.mark.root


def test_every_command_takes_the_exact_id_only(cli: Cli, make_bundle: Any) -> None:
    """Every command matched ids by prefix: `delete --force web`, once web was
    gone, deleted web2."""
    cli("run", "--detach", "--bundle", str(make_bundle(["sleep", "1000"])), "web2")
    before = json.loads(cli("state", "web2")[1])
    for cid, args in (("web", ["state"]), ("web", ["start"]), ("web", ["kill", "{}", "KILL"]),
                      ("web", ["kill", "--all", "{}", "KILL"]), ("web", ["ps"]),
                      ("web", ["pause"]), ("web", ["resume"]),
                      ("web", ["update", "--pids-limit", "5"]), ("web", ["exec", "{}", "true"]),
                      ("web", ["exec", "--detach", "{}", "sleep", "1"]), ("web", ["delete"]),
                      ("we", ["state"]), ("web2x", ["state"]), ("eb2", ["state"])):
        argv = [a.format(cid) for a in args] if "{}" in args else args + [cid]
        code, out, err = cli(*argv, check=False)
        assert code == 1 and f"no container '{cid}'" in err and "web2" not in out, \
            (argv, out, err)
    # runc: `delete --force` of a container that is not there succeeds.
    assert cli("delete", "--force", "web", check=False)[0] == 0
    assert json.loads(cli("state", "web2")[1]) == before   # untouched: running, same pid
    assert json.loads(cli("ps", "--format", "json", "web2")[1]) == [before["pid"]]


def test_delete_without_force_speaks_the_clis_words(cli: Cli, make_bundle: Any) -> None:
    """The message told a command-line user to "use force=True"."""
    cli("run", "--detach", "--bundle", str(make_bundle(["sleep", "1000"])), "f1")
    code, _, err = cli("delete", "f1", check=False)
    assert code == 1 and "--force" in err and "force=True" not in err, err
    assert "running" in err
    cli("delete", "--force", "f1")


def test_flags_after_the_id_and_after_a_double_dash(cli: Cli, make_bundle: Any) -> None:
    """As runc: flags may follow the id; `--` ends them."""
    cli("run", "--detach", "--bundle", str(make_bundle(["sleep", "1000"])), "g1")
    assert json.loads(cli("ps", "g1", "--format", "json")[1]) != []
    assert cli("ps", "--", "g1")[1].startswith("PID\n")
    code, _, err = cli("delete", "g1", "--frobnicate", check=False)
    assert code == 1 and "flag provided but not defined: --frobnicate" in err
    cli("delete", "g1", "--force")
    assert cli("list", "-q")[1] == ""


def test_global_rootless_takes_a_value(cli: Cli) -> None:
    """`--rootless false list` ran the command "false" (No help topic)."""
    assert cli("--rootless", "false", "list", "-q") == (0, "", "")
    assert cli("--rootless=auto", "list", "-q") == (0, "", "")
    code, _, err = cli("--rootless", "maybe", "list", check=False)
    assert code == 1 and "--rootless" in err
    assert cli("--systemd-cgroup=false", "list", "-q")[0] == 0
    assert cli("--systemd-cgroup", "list", check=False)[0] == 1
