"""pidsafe-runc as containerd's shim runs it: each command a new process, its
orphans ours (a subreaper); and what a failed command may have left behind.

Test modules import the fixtures: ``from runc_cli import Cli, cli, subreaper``.
"""

from __future__ import annotations

import glob
import os
import pathlib
import sys
import tempfile
import uuid
from typing import Any, Dict, Iterator, List, Sequence, Set, Tuple

import pytest

import pidsafe
from conftest import children

ENTRY = "from pidsafe.cli.runc import entry; entry()"


@pytest.fixture
def subreaper() -> Iterator[pidsafe.Reaper]:
    """Orphaned container inits (their creator, the CLI, exits) come to us, as to a shim."""
    with pidsafe.Reaper(subreaper=True) as r:
        yield r


class Cli:
    def __init__(self, reaper: pidsafe.Reaper, root: pathlib.Path) -> None:
        self.reaper = reaper
        self.root = root

    def __call__(self, *args: str, check: bool = True, stdin: Any = pidsafe.DEVNULL,
                 fds: Sequence[str] = ()) -> Tuple[int, str, str]:
        """Run the CLI; ``fds``: files it gets open (read-only) at fds 3, 4, ..."""
        # Files, not pipes: a created container inherits the CLI's stdio and
        # would hold a pipe open until it exits (as with runc).
        entry = "".join(f"import os; f = os.open({path!r}, os.O_RDONLY); "
                        f"f == {3 + i} or (os.dup2(f, {3 + i}), os.close(f)); "
                        for i, path in enumerate(fds)) + ENTRY
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            with self.reaper.spawn([sys.executable, "-c", entry, "--root", str(self.root),
                                    *args], stdout=out, stderr=err,
                                   stdin=stdin) as p:
                code = p.wait(timeout=60)
            out.seek(0)
            err.seek(0)
            o, e = out.read().decode(), err.read().decode()
        if check:
            assert code == 0, (args, code, o, e)
        return code, o, e


@pytest.fixture
def cli(subreaper: pidsafe.Reaper, tmp_path: pathlib.Path) -> Iterator[Cli]:
    c = Cli(subreaper, tmp_path / "root")
    yield c
    for cid in pidsafe.Container.list(str(c.root)):
        c("delete", "--force", cid, check=False)


# --- what a failed command may leave ---------------------------------------------

def own_cgroup(doc: Dict[str, Any]) -> str:
    """Give the bundle ``doc`` a cgroupsPath of its own (returned), so that a
    leftover cgroup can be looked for by name."""
    path = f"/pidsafe-cli-test-{uuid.uuid4().hex[:12]}"
    doc["linux"]["cgroupsPath"] = path
    return path


def cgroup_dir(pid: int, controller: str) -> pathlib.Path:
    """Where ``controller`` of ``pid``'s cgroup is, as pidsafe lays it out here."""
    from pidsafe.container.cgroup import CgroupLayout

    h = CgroupLayout.detect().location(controller)
    assert h is not None, f"no {controller} controller here"
    for line in pathlib.Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, key, path = line.split(":", 2)
        if key == h.key:
            return pathlib.Path(h.directory(path))
    raise AssertionError(f"{pid} is in no {h.key or 'v2'} cgroup")


def cgroup_dirs(path: str) -> List[str]:
    """The directories of the cgroup ``path`` in every hierarchy mounted here."""
    return sorted(d for d in glob.glob(f"/sys/fs/cgroup/*{path}") + glob.glob(
        f"/sys/fs/cgroup/*/*{path}") if os.path.isdir(d) and d.endswith(path))


def state_files(root: pathlib.Path, cid: str) -> List[str]:
    """What the state directory holds of ``cid``: state, lock, FIFO, temp files."""
    if not root.exists():
        return []
    return sorted(n for n in os.listdir(root)
                  if n in (f"{cid}.json", f"{cid}.lock", f"{cid}.fifo")
                  or n.startswith(f".{cid}.json."))


def left_behind(root: pathlib.Path, cid: str, cgroup: str, kids_before: Set[int]) -> List[str]:
    """Everything a failed command on ``cid`` left: state files, a cgroup, a
    process (a child of ours that was not there before: the CLI's orphans
    come to us, the ``subreaper`` fixture).  Empty when it undid what it
    made; mounts are the autouse ``no_leaks`` fixture's."""
    problems = [f"state: {n}" for n in state_files(root, cid)]
    problems += [f"cgroup: {d}" for d in cgroup_dirs(cgroup)]
    problems += [f"process: {p}" for p in sorted(children() - kids_before)]
    return problems
