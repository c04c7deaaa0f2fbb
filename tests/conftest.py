"""Test-wide rules: root-only tests, and no test may leak.

Every test is wrapped by ``no_leaks``: it fails if, after the test, this
process has an fd, a child (zombie or not) or a mount it did not have before.
``gc.collect()`` runs first so that a dropped-but-unclosed object warns
(``ResourceWarning`` is an error here) inside the test that dropped it.
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
from subprocess import PIPE
from typing import Any, Callable, Dict, Iterator, List, Set

import pytest

import pidsafe

from faults import Faults


def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (uid 0): run the suite as root to exercise it")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


def open_fds() -> Dict[int, str]:
    """This process's fds and what they point at."""
    out = {}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:
            continue  # the fd listdir() itself used
    return out


def children() -> Set[int]:
    """Pids of this process's children, zombies included, of every thread."""
    kids: Set[int] = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                kids.update(int(p) for p in f.read().split())
        except FileNotFoundError:
            continue
    return kids


def mounts() -> Set[str]:
    """Mount points (as mountinfo spells them) in our mount namespace."""
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4] for line in f}


def state(pid: int) -> str:
    """The state letter of /proc/PID/stat ('Z' for a zombie), '' if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return ""   # ESRCH: reaped between the open and the read
    return stat[stat.rindex(")") + 2]


def wait_until(pred: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.002)


def started_cat(**kw: Any) -> pidsafe.Process:
    """A `cat` that has provably exec'd and reached its read loop."""
    p = pidsafe.spawn(["cat"], stdin=PIPE, stdout=PIPE, **kw)
    assert p.stdin is not None and p.stdout is not None
    p.stdin.write(b"ping\n")
    p.stdin.flush()
    assert p.stdout.readline() == b"ping\n"
    return p


def spawn_and_wait(args: Any = ("true",)) -> None:
    """One spawn() (which reaps abandoned children first) and its wait()."""
    with pidsafe.spawn(list(args)) as p:
        p.wait()


def _describe_child(pid: int) -> str:
    letter = state(pid)
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return f"pid {pid} (gone)"
    return f"pid {pid} state {letter or '?'} cmd {cmd!r}"


class Snapshot:
    """This process's fds, children and mounts at one moment."""

    def __init__(self, relevant: Callable[[Set[str]], Set[str]] = lambda s: s) -> None:
        self._relevant = relevant
        self.fds = open_fds()
        self.kids = children()
        self.mounts = relevant(mounts())

    def leaks(self, grace: float = 2.0) -> List[str]:
        """What exists now and did not then, as messages; [] if nothing."""
        gc.collect()
        problems = []
        # A child that is being killed may need a moment to become reapable,
        # but a test must reap what it starts: a short grace only for exiting
        # ones.
        deadline = time.monotonic() + grace
        while True:
            new_kids = children() - self.kids
            if not new_kids or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        problems += ["leaked child: " + _describe_child(p) for p in sorted(new_kids)]
        fds_after = open_fds()
        for fd in sorted(set(fds_after) - set(self.fds)):
            problems.append(f"leaked fd {fd} -> {fds_after[fd]}")
        for fd in sorted(set(self.fds) & set(fds_after)):
            if self.fds[fd] != fds_after[fd]:
                problems.append(f"fd {fd} changed: {self.fds[fd]} -> {fds_after[fd]}")
        new_mounts = self._relevant(mounts()) - self.mounts
        problems += [f"leaked mount: {m}" for m in sorted(new_mounts)]
        return problems


@contextlib.contextmanager
def leak_check(what: str) -> Iterator[None]:
    """Fail naming ``what`` if the block leaves an fd, a child or a mount."""
    snap = Snapshot()
    yield
    problems = snap.leaks()
    if problems:
        pytest.fail(f"{what} leaked resources:\n  " + "\n  ".join(problems), pytrace=False)


@pytest.fixture
def faults() -> "Faults":
    """Fail or interrupt the k-th native call of an operation (tests/faults.py)."""
    return Faults()


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # Other xdist workers, and other pytest sessions on the machine, share
    # our mount namespace; their mounts live under their own basetemp inside
    # pytest's per-user temp root (/tmp/pytest-of-USER).  Ignore those and
    # watch everything else, our own basetemp included.
    ours = str(tmp_path_factory.getbasetemp())
    shared_root = next((str(d) for d in tmp_path_factory.getbasetemp().parents
                        if d.name.startswith("pytest-of-")), os.path.dirname(ours))

    def relevant(points: Set[str]) -> Set[str]:
        return {p for p in points
                if not p.startswith(shared_root + "/") or p == ours or p.startswith(ours + "/")}

    snap = Snapshot(relevant)
    yield
    problems = snap.leaks()
    if problems:
        pytest.fail("test leaked resources:\n  " + "\n  ".join(problems), pytrace=False)
