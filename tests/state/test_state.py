"""StateFile: invariant 7, state is never torn."""

from __future__ import annotations

import fcntl
import json
import os
import re
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Any, List

import pytest
from hypothesis import given
from hypothesis import strategies as st

import pidsafe
from pidsafe import StateError, StateFile
from pidsafe.state import _statefile

from conftest import wait_until


def test_save_load_list_destroy(tmp_path: Path) -> None:
    st = StateFile(tmp_path, "c1")
    assert not st.exists()
    with st.locked():
        st.save({"status": "created", "pid": 42})
    assert st.load() == {"status": "created", "pid": 42}
    assert StateFile.list(tmp_path) == ["c1"]
    with st.locked():
        st.save({"status": "running"})
        assert st.load() == {"status": "running"}  # while holding the lock
        st.destroy()
    assert not st.exists()
    with pytest.raises(FileNotFoundError):
        st.load()
    assert os.listdir(tmp_path) == []


def test_a_value_given_as_json_is_saved_as_if_encoded_here(tmp_path: Path) -> None:
    state = {"status": "created", "config": {"b": [1, {"y": None, "x": 2}], "a": "\u00e9"},
             "pid": 42, "annotations": {}}
    one, two = StateFile(tmp_path, "one"), StateFile(tmp_path, "two")
    with one.locked(), two.locked():
        one.save(state)
        two.save(state, encoded={"config": json.dumps(state["config"], sort_keys=True,
                                                      separators=(",", ":"))})
    assert (tmp_path / "two.json").read_bytes() == (tmp_path / "one.json").read_bytes()
    assert two.load() == state


def test_save_and_destroy_need_the_lock(tmp_path: Path) -> None:
    st = StateFile(tmp_path, "c1")
    with pytest.raises(StateError, match="needs the lock"):
        st.save({})
    with pytest.raises(StateError, match="needs the lock"):
        st.destroy()
    with pytest.raises(StateError, match="not locked"):
        st.unlock()
    with st.locked():
        with pytest.raises(StateError, match="already locked"):
            st.lock()


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden", "-x", "x" * 129, "é", 7])
def test_bad_id_is_rejected_by_name(tmp_path: Path, bad: Any) -> None:
    with pytest.raises(StateError) as info:
        StateFile(tmp_path, bad)
    assert repr(bad) in str(info.value)
    assert isinstance(info.value, ValueError)
    assert os.listdir(tmp_path) == []


def test_unserialisable_state_writes_nothing(tmp_path: Path) -> None:
    st = StateFile(tmp_path, "c1")
    with st.locked():
        st.save({"v": 1})
        with pytest.raises(TypeError):
            st.save({"v": object()})
    assert st.load() == {"v": 1}
    assert sorted(os.listdir(tmp_path)) == ["c1.json", "c1.lock"]


def test_failed_fsync_keeps_old_state_and_no_temp(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    st = StateFile(tmp_path, "c1")
    with st.locked():
        st.save({"v": 1})

        def broken_fsync(fd: int) -> None:
            raise OSError(5, "injected EIO")

        monkeypatch.setattr(_statefile.os, "fsync", broken_fsync)
        with pytest.raises(OSError, match="injected"):
            st.save({"v": 2})
        monkeypatch.undo()
    assert st.load() == {"v": 1}
    assert sorted(os.listdir(tmp_path)) == ["c1.json", "c1.lock"]


def test_write_fsync_rename_then_directory_fsync(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The durable-replace protocol, in order."""
    events: List[str] = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd: int) -> None:
        events.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def rename(a: str, b: str) -> None:
        events.append("rename")
        real_rename(a, b)

    st = StateFile(tmp_path, "c1")
    with st.locked():
        monkeypatch.setattr(_statefile.os, "fsync", fsync)
        monkeypatch.setattr(_statefile.os, "rename", rename)
        st.save({"v": 1})
    assert events == ["fsync file", "rename", "fsync dir"]


WRITER = r"""
import sys, pidsafe
root, wid = sys.argv[1], sys.argv[2]
st = pidsafe.StateFile(root, "c1")
seq = 0
while True:
    with st.locked():
        st.save({"writer": wid, "seq": seq, "payload": wid * 200000})
    seq += 1
"""


def _check(value: Any) -> None:
    assert set(value) == {"writer", "seq", "payload"}
    assert value["payload"] == value["writer"] * 200000


def test_never_torn_under_concurrent_writers_and_sigkill(tmp_path: Path) -> None:
    """Writers in other processes save ~200 KB states in a loop and are then
    SIGKILLed mid-write; a reader that takes no lock at all must only ever
    see complete states."""
    st = StateFile(tmp_path, "c1")
    with st.locked():
        st.save({"writer": "0", "seq": -1, "payload": "0" * 200000})
    writers = [pidsafe.spawn([sys.executable, "-c", WRITER, str(tmp_path), w])
               for w in "ab"]
    try:
        # Read until both writers have been seen several times over (their
        # interpreters may take a while to start on a loaded machine).
        seen = {"a": 0, "b": 0}
        deadline = time.monotonic() + 60
        while min(seen.values()) < 5:
            assert time.monotonic() < deadline, f"writers made no progress: {seen}"
            with open(st.path, "rb") as f:   # no lock: rename must be atomic
                _check(json.loads(f.read()))
            value = st.load()                # shared lock
            _check(value)
            if value["writer"] in seen:
                seen[value["writer"]] += 1
    finally:
        for w in writers:
            w.kill()
            w.wait()
            w.close()
    _check(st.load())
    with st.locked():
        st.destroy()   # also removes temp files of the killed writers
    assert os.listdir(tmp_path) == []


def _waiters_on(path: str) -> int:
    """How many flock requests are blocked on the file at ``path`` now
    (/proc/locks lists each as ``N: -> FLOCK ... MAJ:MIN:INODE ...``)."""
    ino = os.stat(path).st_ino
    with open("/proc/locks") as f:
        return sum(1 for line in f
                   if " -> " in line and int(line.split()[6].rsplit(":", 1)[1]) == ino)


def _blocks(st: StateFile) -> threading.Thread:
    """Start st.lock() in a thread; return once it is blocked in flock()."""
    before = _waiters_on(st.lock_path)
    t = threading.Thread(target=st.lock, daemon=True)
    t.start()
    wait_until(lambda: _waiters_on(st.lock_path) > before or not t.is_alive(),
               "lock() to wait on the lock file")
    assert t.is_alive() and not st.is_locked, "lock() did not block"
    return t


def test_lock_excludes_other_holders(tmp_path: Path) -> None:
    a, b = StateFile(tmp_path, "c1"), StateFile(tmp_path, "c1")
    a.lock()
    t = _blocks(b)
    a.unlock()
    t.join()
    assert not t.is_alive() and b.is_locked
    b.unlock()


def test_destroy_while_waiting_never_gives_two_holders(tmp_path: Path) -> None:
    """A waits on the lock file that the holder unlinks in destroy(); when it
    gets that flock it must notice the file is gone and lock the live one, or
    a third locker would get a lock of its own at the same time."""
    holder, waiter, third = (StateFile(tmp_path, "c1") for _ in range(3))
    holder.lock()
    holder.save({"v": 1})
    t = _blocks(waiter)
    holder.destroy()
    holder.unlock()
    t.join()
    assert not t.is_alive() and waiter.is_locked
    # The waiter holds the lock of the file that now exists at the path.
    held = os.fstat(waiter._lock_fd)
    now = os.stat(waiter.lock_path)
    assert (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)
    t3 = _blocks(third)
    waiter.unlock()
    t3.join()
    assert not t3.is_alive() and third.is_locked
    third.unlock()


def test_dropping_a_locked_state_warns_and_releases(tmp_path: Path) -> None:
    st = StateFile(tmp_path, "c1")
    st.lock()
    with pytest.warns(ResourceWarning, match="dropped while locked"):
        del st
        import gc
        gc.collect()
    other = StateFile(tmp_path, "c1")
    with other.locked():
        pass


# -- names on disk are identities; destroy keeps the lock; read-only load ---


def test_leftover_temp_of_a_crashed_writer_with_our_pid_does_not_block_saves(
        tmp_path: Path) -> None:
    """A crashed writer's temp name made of pid and thread id is exactly what
    a later writer with the reused pid would make: every save failed."""
    st = StateFile(tmp_path, "c1")
    leftover = tmp_path / f".c1.json.{os.getpid()}.{threading.get_ident()}.tmp"
    leftover.write_text("half a state")
    with st.locked():
        st.save({"v": 1})
        st.save({"v": 2})
    assert st.load() == {"v": 2}
    assert leftover.read_text() == "half a state"  # never opened, never clobbered
    with st.locked():
        st.destroy()          # the old-style leftover of this id goes too
    assert os.listdir(tmp_path) == []


def test_a_taken_temp_name_is_never_reused(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """O_EXCL plus a fresh random name on EEXIST: another writer's (or a
    planted) temp file is never written to or renamed over the state."""
    planted = tmp_path / (".c1.json." + "00" * 8 + ".tmp")
    planted.write_text("not ours")
    draws: List[bytes] = [b"\0" * 8, b"\0" * 8, b"\1" * 8]
    real = os.urandom
    monkeypatch.setattr(_statefile.os, "urandom",
                        lambda n: draws.pop(0) if draws else real(n))
    st = StateFile(tmp_path, "c1")
    with st.locked():
        st.save({"v": 1})
    monkeypatch.undo()
    assert draws == []
    assert planted.read_text() == "not ours"
    assert st.load() == {"v": 1}
    assert sorted(os.listdir(tmp_path)) == sorted(["c1.json", "c1.lock", planted.name])
    with st.locked():
        st.destroy()


def test_destroy_removes_only_its_own_ids_temp_files(tmp_path: Path) -> None:
    """destroy() of 'x' matched '.x.json.*.tmp': the temp files of 'x.json'
    (a writer may be in the middle of a save) went with it."""
    token = "0123456789abcdef"
    ours = [f".x.json.{token}.tmp", ".x.json.123.456.tmp"]
    others = [f".x.json.json.{token}.tmp", ".x.json.json.123.456.tmp",
              f".x.json.{token}.json.{token}.tmp", f".x.json.7.json.{token}.tmp",
              f".x.jsonx.{token}.tmp", f".xx.json.{token}.tmp"]
    for name in ours + others:
        (tmp_path / name).write_text("")
    st = StateFile(tmp_path, "x")
    with st.locked():
        st.save({"v": 1})
        st.destroy()
    assert sorted(os.listdir(tmp_path)) == sorted(others)


def _locked_by_someone(path: str) -> bool:
    """What a new locker finds at ``path``: True if the file there is locked."""
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_a_new_locker_cannot_get_in_while_the_destroyer_holds_the_lock(tmp_path: Path) -> None:
    """destroy() unlinked the lock file while still holding it: a new locker
    created a fresh one and held a lock of its own next to the destroyer's."""
    holder = StateFile(tmp_path, "c1")
    other = StateFile(tmp_path, "c1")
    holder.lock()
    holder.save({"v": 1})
    holder.destroy()
    assert holder.is_locked and not holder.exists()
    assert _locked_by_someone(holder.lock_path)
    assert other.lock(blocking=False) is False
    assert not other.is_locked
    holder.unlock()
    assert os.listdir(tmp_path) == []            # the lock file went at unlock
    assert other.lock(blocking=False) is True
    other.unlock()


def test_destroy_then_save_again_under_the_same_lock(tmp_path: Path) -> None:
    st = StateFile(tmp_path, "c1")
    with st.locked():
        st.save({"v": 1})
        st.destroy()
        st.save({"v": 2})
    assert st.load() == {"v": 2}
    with st.locked():
        st.destroy()
    assert os.listdir(tmp_path) == []


LOADER = r"""
import sys, pidsafe
from pidsafe import _sys
caps = _sys.capget()
drop = sum(1 << _sys.CAPABILITIES.index(c) for c in ("DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER"))
_sys.capset(caps.replace(effective=caps.effective & ~drop))   # not root: nothing to drop
print(pidsafe.StateFile(sys.argv[1], "c1").load())
"""


def test_load_needs_only_read_permission(tmp_path: Path) -> None:
    """load() opened the lock file O_RDWR: a reader without write
    permission (read-only files, a read-only mount) got EACCES/EROFS."""
    root = tmp_path / "ro"
    st = StateFile(root, "c1")
    with st.locked():
        st.save({"v": 1})
    for p in (st.path, st.lock_path):
        os.chmod(p, 0o400)
    os.chmod(root, 0o500)
    try:
        with pidsafe.spawn([sys.executable, "-c", LOADER, str(root)],
                           stdout=pidsafe.PIPE, stderr=pidsafe.PIPE) as p:
            out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        assert out == b"{'v': 1}\n"
    finally:
        os.chmod(root, 0o700)


def test_the_lock_fd_is_read_only(tmp_path: Path) -> None:
    st = StateFile(tmp_path, "c1")
    with st.locked():
        assert fcntl.fcntl(st._lock_fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY


@given(st.one_of(st.text(alphabet="aZ09_.-/\né \x00", max_size=130),
                 st.text(max_size=8), st.sampled_from(["x" * 128, "x" * 129, "x\n"])))
def test_id_rule_is_exactly_the_documented_pattern(name: str) -> None:
    expected = re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", name) is not None
    assert _statefile._valid_id(name) is expected
