"""Mounts under faults: every call failed, every call interrupted, random alarms.

For ``idmapped_bind``, ``mount_all`` (binds, idmapped binds, tmpfs, overlays
with and without ``uidmap=``) and ``unmount_all`` (by identity and by path),
the k-th call into the native layer (or a resource-making ``os`` call) is
made to fail, or is followed at once by a SIGINT whose handler raises (once,
or after every later call too), for every k; and a SIGINT arrives inside
each critical section, raising at its end.  After each: the fault fired,
the typed error (or the interrupt) came out, nothing left mounted, no fd,
no child, nothing left in the temp dir; and an ``unmount_all`` that
returned normally left nothing mounted.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional

import pytest

import pidsafe
from conftest import Alarm, RandomAlarms, leak_check
from faults import Faults, Interrupt

from mounthelp import (IDMAP_OPTS, disk, layers, mountpoints_under, private_tmp, rootfs, umount,
                       userns)

__all__ = ["disk", "private_tmp", "rootfs", "userns"]  # fixtures, used by name

pytestmark = pytest.mark.root


def _check_error(exc: BaseException, faults: Faults) -> None:
    """The error an injected failure gives is typed, with a step and a path."""
    assert isinstance(exc, pidsafe.MountError), f"{faults.fired}: {exc!r}"
    assert exc.step and exc.path, f"{faults.fired}: {exc!r}"
    assert exc.errno == errno.EIO, f"{faults.fired}: {exc!r}"


#: The ways a sweep disturbs the k-th call (or, "section end", the k-th
#: outermost critical section's end).
MODES = ("fail", "interrupt", "interrupt before", "interrupt again and again", "section end")


#: Where a failed call is absorbed by design: the fast path of resolve(),
#: whose failure sends the walk to meet (and report) the same problem.
ABSORBED = {"_resolve_existing"}


def _sweep(faults: Faults, op: Callable[[], Any], undo: Callable[[Any], None],
           clean: Callable[[], None], what: str, under: Path) -> int:
    """Fail each call of ``op``, then interrupt right after it, right before
    it, and after it and every later call (Ctrl-C held down: the rollback
    too); then interrupt at the end of each critical section; ``undo`` what
    a success made.

    Each fault must fire and have its effect: a failed call gives the typed
    error, an interrupt its ``KeyboardInterrupt`` (a fault the operation
    swallowed fails the sweep).  ``clean()`` asserts that nothing is left
    (and may tidy up what a partial operation is allowed to leave, e.g.
    mounts an interrupted ``unmount_all`` had not reached yet).
    """
    made: List[Any] = []
    n = faults.count(lambda: made.append(op()))
    ends = len(faults.section_ends)
    undo(made.pop())
    assert n > 0
    for mode in MODES:
        for k in range(1, (ends if mode == "section end" else n) + 1):
            with leak_check(f"{what}: {mode} at k={k}", mounts_under=str(under)):
                out: List[Any] = []
                try:
                    if mode == "fail":
                        with faults.fail_at(k, errno.EIO):
                            out.append(op())
                    elif mode == "section end":
                        with faults.interrupt_at_end(k):
                            out.append(op())
                    else:
                        with faults.interrupt_at(k, before=mode == "interrupt before",
                                                 repeat=mode == "interrupt again and again"):
                            out.append(op())
                except Interrupt:
                    assert mode != "fail"
                except Exception as exc:  # noqa: BLE001 - checked right here
                    assert mode == "fail", f"{faults.fired}: {exc!r}"
                    _check_error(exc, faults)
                assert faults.fired is not None, f"{what}: {mode} at k={k} never fired"
                if out:
                    assert mode == "fail" and ABSORBED & set(faults.fired_in or ()), (
                        f"{what}: {mode} at {faults.fired} in {faults.fired_in} was swallowed")
                    undo(out.pop())
                clean()
    return n


def _nothing_under(rootfs: Path, private_tmp: Path) -> Callable[[], None]:
    def clean() -> None:
        assert mountpoints_under(rootfs) == []
        assert os.listdir(private_tmp) == []
    return clean


def test_idmapped_bind_under_faults(disk: Path, userns: pidsafe.OwnedFd, faults: Faults,
                                   private_tmp: Path) -> None:
    src, dst = disk / "src", disk / "dst"
    src.mkdir()
    dst.mkdir()

    def clean() -> None:
        assert mountpoints_under(dst) == []

    n = _sweep(faults, lambda: pidsafe.idmapped_bind(src, dst, userns),
               lambda _: umount(dst), clean, "idmapped_bind", disk)
    assert n == 1  # the fused C call


def _mount_lists(disk: Path) -> dict[str, List[pidsafe.Mount]]:
    data = disk / "data"
    (data / "sub").mkdir(parents=True)
    (disk / "file").write_text("x")
    opts = layers(disk)
    return {
        "binds": [pidsafe.Mount("bind", str(data), "/b", ["rbind", "ro"]),
                  pidsafe.Mount("none", str(disk / "file"), "/etc/hostname", ["bind"])],
        "idmapped binds": [pidsafe.Mount("bind", str(data), "/i", ["rbind", "ridmap"]),
                           pidsafe.Mount("bind", str(data), "/j", ["bind", "idmap", "ro"])],
        "tmpfs": [pidsafe.Mount("tmpfs", "tmpfs", "/t", ["size=1m", "nosuid"]),
                  pidsafe.Mount("tmpfs", "tmpfs", "/t/deep/sub", ["rprivate"])],
        "overlay": [pidsafe.Mount("overlay", "overlay", "/o", opts)],
        "overlay uidmap": [pidsafe.Mount("overlay", "overlay", "/o", [*opts, *IDMAP_OPTS])],
    }


CASES = ["binds", "idmapped binds", "tmpfs", "overlay", "overlay uidmap"]


@pytest.fixture
def userns_pool(userns: pidsafe.OwnedFd,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[List[pidsafe.OwnedFd]]:
    """``get_userns_fd`` hands out ready-made fds (dups of ``userns``).

    Its own faults (a helper child) are the user-namespace tests' to sweep;
    here every k is a call of the mount code itself.
    """
    import pidsafe.userns as _userns   # mount_all looks get_userns_fd up there

    pool: List[pidsafe.OwnedFd] = []

    def fake(uidmap: object, gidmap: object) -> pidsafe.OwnedFd:
        return pool.pop()

    monkeypatch.setattr(_userns, "get_userns_fd", fake)
    pool.extend(userns.dup() for _ in range(8))
    try:
        yield pool
    finally:
        for fd in pool:
            fd.close()


def _fill(pool: List[pidsafe.OwnedFd], userns: pidsafe.OwnedFd, n: int) -> None:
    pool.extend(userns.dup() for _ in range(n))


@pytest.mark.parametrize("case", CASES)
def test_mount_all_under_faults(disk: Path, rootfs: Path, userns: pidsafe.OwnedFd,
                                userns_pool: List[pidsafe.OwnedFd], private_tmp: Path,
                                faults: Faults, case: str) -> None:
    mounts = _mount_lists(disk)[case]
    _fill(userns_pool, userns, 4 * 200)
    pidsafe.unmount_all(pidsafe.mount_all(mounts, rootfs, userns=userns))  # warm the caches
    _sweep(faults, lambda: pidsafe.mount_all(mounts, rootfs, userns=userns),
           pidsafe.unmount_all, _nothing_under(rootfs, private_tmp), f"mount_all {case}", disk)
    assert (disk / "layers/l1/etc/passwd").exists() if case.startswith("overlay") else True


@pytest.mark.parametrize("by", ["identity", "path"])
@pytest.mark.parametrize("case", ["binds", "tmpfs", "overlay uidmap"])
def test_unmount_all_under_faults(disk: Path, rootfs: Path, userns: pidsafe.OwnedFd,
                                  userns_pool: List[pidsafe.OwnedFd], private_tmp: Path,
                                  faults: Faults, case: str, by: str) -> None:
    mounts = _mount_lists(disk)[case]
    _fill(userns_pool, userns, 4 * 200)
    mounted: List[pidsafe.Mounted] = []

    def op() -> None:
        if by == "identity":
            pidsafe.unmount_all(mounted[0])
        else:
            pidsafe.unmount_all(mounts, rootfs)
        # Returned normally: then nothing may be left mounted.
        assert mountpoints_under(rootfs) == [], faults.fired

    def remount() -> None:
        mounted[:] = [pidsafe.mount_all(mounts, rootfs, userns=userns)]

    remount()

    def clean() -> None:
        # An unmount_all that failed or was interrupted left some mounts:
        # the same call, again, finds and unmounts them; then mount again
        # for the next round.
        pidsafe.unmount_all(mounted[0])
        assert mountpoints_under(rootfs) == []
        remount()

    _sweep(faults, op, lambda _: remount(), clean, f"unmount_all by {by}, {case}", disk)
    pidsafe.unmount_all(mounted[0])


def test_mount_all_unmount_all_under_random_alarms(disk: Path, rootfs: Path,
                                                   userns: pidsafe.OwnedFd,
                                                   random_alarms: RandomAlarms) -> None:
    """A SIGALRM handler raising at random points of mount_all/unmount_all.

    It raises only inside pidsafe's code: an alarm landing in this test
    between mount_all() returning and its result being assigned would lose
    the record by the test's own doing (once in a few hundred runs, when
    this test had its own handler), not pidsafe's.
    """
    data = disk / "data"
    (data / "inner").mkdir(parents=True)  # host root cannot mkdir through the idmap
    mounts = [pidsafe.Mount("tmpfs", "tmpfs", "/t", ["size=1m"]),
              pidsafe.Mount("bind", str(data), "/b", ["rbind", "idmap"]),
              pidsafe.Mount("tmpfs", "tmpfs", "/b/inner", [])]

    # How long one round takes here, to spread the alarms over all of it.
    t0 = time.monotonic()
    pidsafe.unmount_all(pidsafe.mount_all(mounts, rootfs, userns=userns))
    span = max(time.monotonic() - t0, 1e-4)
    rounds = 0
    deadline = time.monotonic() + 4  # a bound on the test's length, not an assertion
    while rounds < 400 and time.monotonic() < deadline:
        rounds += 1
        mounted: Optional[pidsafe.Mounted] = None
        try:
            try:
                random_alarms.arm(span * 1.2)
                mounted = pidsafe.mount_all(mounts, rootfs, userns=userns)
                pidsafe.unmount_all(mounted)
                mounted = None
            finally:
                random_alarms.disarm()
        except Alarm:
            pass
        if mounted is not None:  # the alarm hit unmount_all: finish it
            pidsafe.unmount_all(mounted)
        assert mountpoints_under(rootfs) == [], f"round {rounds}"
    assert random_alarms.raised > 0, (rounds, span, random_alarms.missed)
