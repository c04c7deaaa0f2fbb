"""ProcessIdentity: a pid from disk becomes a pidfd only after open-then-prove."""

from __future__ import annotations

import os
import signal
import time
from typing import Any, Iterator

import pytest

import pidsafe
from pidsafe.process import _identity
from pidsafe.process._identity import ProcessIdentity


@pytest.fixture
def sleeper() -> Iterator[pidsafe.Process]:
    p = pidsafe.spawn(["sleep", "60"])
    yield p
    p.kill()
    p.wait()
    p.close()


def test_a_live_process_round_trips(sleeper: pidsafe.Process) -> None:
    ident = ProcessIdentity.of(sleeper)
    assert ident.pid == sleeper.pid and ident.boot_id == _identity.boot_id()
    assert ProcessIdentity.from_json(ident.to_json()) == ident
    with ident.open() as again:
        assert again.pid == sleeper.pid and again.is_alive()
        again.send_signal(signal.SIGTERM)          # through the new pidfd
    assert sleeper.wait() == -signal.SIGTERM


def test_the_pidfd_inode_is_recorded_where_the_kernel_has_pidfs(sleeper: pidsafe.Process) -> None:
    ident = ProcessIdentity.of(sleeper)
    assert ident.inode == os.fstat(sleeper.fileno()).st_ino   # Linux 6.9+: this machine's
    assert ident.to_json()["pidfdInode"] == ident.inode
    again = ident.open()
    assert os.fstat(again.fileno()).st_ino == ident.inode
    again.close()   # not `with`: its exit waits for the process


def test_a_record_without_an_inode_still_opens(sleeper: pidsafe.Process) -> None:
    """Records written before the inode was stored (or on a kernel without pidfs)."""
    ident = ProcessIdentity.of(sleeper)
    old = {"pid": ident.pid, "startTime": ident.start_time, "bootId": ident.boot_id}
    assert ProcessIdentity.from_json(old).inode is None
    again = ProcessIdentity.from_json(old).open()
    assert again.pid == sleeper.pid
    again.close()


def test_without_pidfs_no_inode_is_recorded(sleeper: pidsafe.Process,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_identity, "_pidfs", None)
    real_fstat = os.fstat
    monkeypatch.setattr(_identity.os, "fstat",   # every pidfd one anonymous inode, as before 6.9
                        lambda fd: os.stat_result((0, 1, *real_fstat(fd)[2:])))
    ident = ProcessIdentity.of(sleeper)
    assert ident.inode is None and "pidfdInode" not in ident.to_json()
    assert _identity._pidfs is False


def test_another_processs_pidfd_inode_is_stale(sleeper: pidsafe.Process) -> None:
    """The pid and start time match, the pidfd's process does not: refused."""
    ident = ProcessIdentity.of(sleeper)
    assert ident.inode is not None
    with pytest.raises(pidsafe.StaleProcessError, match="belongs to another process"):
        ident.replace(inode=ident.inode + 1).open()
    assert sleeper.is_alive()


def test_a_reaped_process_is_stale() -> None:
    p = pidsafe.spawn(["true"])
    ident = ProcessIdentity(p.pid, _identity.start_time(p.pid), _identity.boot_id())
    p.wait()
    p.close()
    with pytest.raises(pidsafe.StaleProcessError) as info:
        ident.open()
    assert isinstance(info.value, ProcessLookupError) and info.value.pid == ident.pid


def test_another_boot_is_stale(sleeper: pidsafe.Process) -> None:
    ident = ProcessIdentity.of(sleeper)
    other = ProcessIdentity(ident.pid, ident.start_time, "0" * 36)
    with pytest.raises(pidsafe.StaleProcessError, match="another boot"):
        other.open()


def test_a_different_start_time_is_stale(sleeper: pidsafe.Process) -> None:
    ident = ProcessIdentity.of(sleeper)
    with pytest.raises(pidsafe.StaleProcessError, match="belongs to a process started"):
        ProcessIdentity(ident.pid, ident.start_time + 1, ident.boot_id).open()


def _kill_and_reap(p: pidsafe.Process) -> None:
    p.kill()
    p.wait()


def test_death_between_pidfd_open_and_the_stat_read(monkeypatch: pytest.MonkeyPatch) -> None:
    p = pidsafe.spawn(["sleep", "60"])
    ident = ProcessIdentity.of(p)
    real = _identity.start_time

    def dies_first(pid: int) -> int:
        _kill_and_reap(p)
        return real(pid)

    monkeypatch.setattr(_identity, "start_time", dies_first)
    with pytest.raises(pidsafe.StaleProcessError):
        ident.open()
    p.close()


def test_death_between_the_stat_read_and_the_proof(monkeypatch: pytest.MonkeyPatch) -> None:
    p = pidsafe.spawn(["sleep", "60"])
    ident = ProcessIdentity.of(p)
    real = _identity.start_time

    def dies_after(pid: int) -> int:
        value = real(pid)
        _kill_and_reap(p)
        return value

    monkeypatch.setattr(_identity, "start_time", dies_after)
    with pytest.raises(pidsafe.StaleProcessError, match="exited"):
        ident.open()
    p.close()


@pytest.mark.parametrize("bad", [None, {}, {"pid": 0, "startTime": 1, "bootId": "x"},
                                 {"pid": 1, "startTime": "1", "bootId": "x"},
                                 {"pid": True, "startTime": 1, "bootId": "x"},
                                 {"pid": 1, "startTime": 1, "bootId": "x", "pidfdInode": "2"},
                                 {"pid": 1, "startTime": 1, "bootId": "x", "pidfdInode": -2},
                                 {"pid": 1, "startTime": 1, "bootId": "x", "pidfdInode": True},
                                 [1, 2, 3]])
def test_malformed_records_are_refused(bad: Any) -> None:
    with pytest.raises(ValueError):
        ProcessIdentity.from_json(bad)


def _spawn_on_pid(pid: int) -> pidsafe.Process:
    """A ``sleep 60`` given ``pid`` through ns_last_pid (root), or the test skipped."""
    for _ in range(200):   # other processes on the machine may take the pid first
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(pid - 1))
        newcomer = pidsafe.spawn(["sleep", "60"])
        if newcomer.pid == pid:
            return newcomer
        _kill_and_reap(newcomer)
        newcomer.close()
    pytest.skip("could not make the pid be reused (a busy machine took it each time)")


@pytest.mark.root
def test_a_recycled_pid_is_never_reached() -> None:
    """Force the recorded pid onto a new process with ns_last_pid: open() refuses it."""
    victim = pidsafe.spawn(["sleep", "60"])
    ident = ProcessIdentity.of(victim)
    _kill_and_reap(victim)
    victim.close()
    ticks = os.sysconf("SC_CLK_TCK")
    # The newcomer must start in a later clock tick than the recorded one.
    while time.clock_gettime(time.CLOCK_BOOTTIME) * ticks < ident.start_time + 2:
        pass
    newcomer = _spawn_on_pid(ident.pid)
    try:
        with pytest.raises(pidsafe.StaleProcessError, match="belongs to a process started"):
            ident.open()
        assert newcomer.is_alive()   # and nothing was signalled
    finally:
        _kill_and_reap(newcomer)
        newcomer.close()


@pytest.mark.root
def test_a_pid_recycled_within_the_same_clock_tick_is_never_reached() -> None:
    """What the start time cannot tell apart, the pidfd inode does.

    The newcomer takes the recorded pid at once; to make the start times
    equal whatever tick it started in, the record is given the newcomer's.
    """
    victim = pidsafe.spawn(["sleep", "60"])
    ident = ProcessIdentity.of(victim)
    _kill_and_reap(victim)
    victim.close()
    assert ident.inode is not None
    newcomer = _spawn_on_pid(ident.pid)
    try:
        same_tick = ident.replace(start_time=_identity.start_time(newcomer.pid))
        with pytest.raises(pidsafe.StaleProcessError, match="belongs to another process"):
            same_tick.open()
        assert newcomer.is_alive()   # and nothing was signalled
    finally:
        _kill_and_reap(newcomer)
        newcomer.close()


def test_an_identity_is_an_immutable_value() -> None:
    import pickle

    a = ProcessIdentity(123, 456, "b" * 36)
    same, other = ProcessIdentity(123, 456, "b" * 36), ProcessIdentity(123, 457, "b" * 36)
    assert a == same and hash(a) == hash(same) and len({a, same, other}) == 2
    assert a != other and a != (123, 456, "b" * 36)
    assert repr(a) == f"ProcessIdentity(pid=123, start_time=456, boot_id='{'b' * 36}', inode=None)"
    assert a != ProcessIdentity(123, 456, "b" * 36, 789)
    with pytest.raises(AttributeError, match="immutable"):
        a.pid = 1   # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable"):
        del a.boot_id
    with pytest.raises(AttributeError):
        a.other = 1   # type: ignore[attr-defined]
    assert pickle.loads(pickle.dumps(a)) == a
