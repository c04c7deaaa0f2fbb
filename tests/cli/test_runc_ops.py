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


def test_format_is_table_or_json_and_list_takes_no_arguments(cli: Cli,
                                                             make_bundle: Any) -> None:
    """`list --format yaml` and `ps --format yaml ID` printed a table; `list ID`
    ignored the id."""
    cli("run", "--detach", "--bundle", str(make_bundle(["sleep", "1000"])), "t1")
    for args in (["list", "--format", "yaml"], ["ps", "--format", "yaml", "t1"],
                 ["list", "t1"]):
        code, out, err = cli(*args, check=False)
        assert (code, out) == (1, ""), (args, out, err)
        assert ("--format 'yaml'" in err) if "yaml" in args else "list: takes no" in err, err
    assert cli("list", "--format", "table")[1].startswith("ID")
    assert cli("ps", "-f", "table", "t1")[1].startswith("PID\n")


def test_list_names_a_container_it_cannot_load(cli: Cli, make_bundle: Any) -> None:
    """A state it could not load was left out of `list` without a word."""
    cli("run", "--detach", "--bundle", str(make_bundle(["sleep", "1000"])), "good")
    (cli.root / "bad.json").write_text("{not json")
    code, out, err = cli("list", "-q", check=False)
    assert (code, out) == (0, "good\n"), err
    assert "warning: container 'bad' cannot be loaded" in err and "not valid JSON" in err, err
    (cli.root / "bad.json").unlink()
