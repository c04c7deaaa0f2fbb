"""Container.create under fault injection: every native/os call failed or interrupted."""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import signal
from typing import Any, Callable, Iterator, List

import pytest

import pidsafe
from conftest import leak_check
from cgroup_states import half_deleted
from faults import Faults, Interrupt, interrupt_randomly
from pidsafe._sigsafe import critical

pytestmark = pytest.mark.root


def _cgroup_dirs(cgroups_path: str) -> List[str]:
    """The directories of ``cgroups_path`` in every hierarchy that exist now."""
    roots = ["/sys/fs/cgroup/unified", *(os.path.join("/sys/fs/cgroup", n)
                                         for n in os.listdir("/sys/fs/cgroup"))]
    return sorted(p for p in {os.path.join(r, cgroups_path.lstrip("/")) for r in roots}
                  if os.path.isdir(p))


#: Where create absorbs a failed call by design, as (the pidsafe function
#: making it, the call or None for any): resolve()'s fast path, whose failure
#: sends the walk to meet the same problem; os.makedirs(exist_ok=True) of the
#: state directory, which takes a failed mkdir of a directory that exists.
ABSORBED = {("_resolve_existing", None), ("_acquire", "os.mkdir")}


def _cgroup_bundle(make_bundle: Any, args: List[str], cgroups_path: str) -> Any:
    """A bundle running ``args`` in the cgroup ``cgroups_path`` (so that the
    sweeps' leak checks see its cgroups)."""
    def edit(doc: Any) -> None:
        doc["linux"]["cgroupsPath"] = cgroups_path

    return make_bundle(args, edit)


def _state_left(state_dir: pathlib.Path, cid: str) -> List[str]:
    """What is left in ``state_dir``, once a lone lock file of ``cid`` is
    found free and removed: a lock() that failed (or was interrupted)
    before it held the lock leaves that (empty) file, never a state, never
    a held lock."""
    left = sorted(os.listdir(state_dir))
    if left == [f"{cid}.lock"]:
        st = pidsafe.StateFile(str(state_dir), cid)
        assert st.lock(blocking=False), f"{cid}'s lock is still held"
        st.destroy()
        st.unlock()
        left = sorted(os.listdir(state_dir))
    return left


def _absorbed(faults: Faults) -> bool:
    call = (faults.fired or "").split(": ", 1)[-1]
    return any(fn in (faults.fired_in or ()) and what in (None, call)
               for fn, what in ABSORBED)


def _sweep(faults: Faults, make_bundle: Any, state_dir: pathlib.Path, interrupt: bool,
           edit: Any = lambda doc: None) -> None:
    """Fail (or interrupt) each call of a create, in turn.  Each fault must
    fire and have its effect: an interrupt comes out of create, a failed
    call makes it raise unless it is one create absorbs by design
    (:data:`ABSORBED`).  After each: no state, no cgroup in any hierarchy
    (the bundle sets ``cgroupsPath``), no process, fd or mount."""
    cgroups_path = f"/pidsafe-test/create-{os.getpid()}-{int(interrupt)}"

    def with_cgroup(doc: Any) -> None:
        edit(doc)
        doc["linux"]["cgroupsPath"] = cgroups_path

    bundle = make_bundle(["true"], with_cgroup)

    def create() -> pidsafe.Container:
        # Pipes for stdio: a failure must close our ends too.
        return pidsafe.Container.create("f", bundle, state_dir=str(state_dir),
                                        stdout=pidsafe.PIPE, stderr=pidsafe.PIPE)

    # A create's calls vary a little (the wait for init, retries): every k
    # up to the fewest of three runs comes.
    made = []
    counts = []
    for _ in range(3):
        counts.append(faults.count(lambda: made.append(create())))
        assert _cgroup_dirs(cgroups_path)
        made.pop().delete(force=True)
    n = min(counts)
    calls = list(faults.calls)
    assert n > 20, calls
    for k in range(1, n + 1):
        what = f"create with call {k} of {n} ({calls[k - 1]}) " + (
            "interrupted" if interrupt else "failed")
        with leak_check(what):
            c = None
            ctx = faults.interrupt_at(k) if interrupt else faults.fail_at(k, errno.EIO)
            try:
                with ctx:
                    c = create()
            except Interrupt:
                assert interrupt
            except (OSError, pidsafe.Error) as exc:
                assert not interrupt, f"call {k} ({faults.fired}): {exc!r}"
            if faults.fired is None:
                # This run made fewer calls than the fewest of the three
                # counted (a wait that found init ready at once), and worked.
                assert c is not None and len(faults.calls) < k, f"{what}: never fired"
                c.delete(force=True)
            elif c is not None:
                assert not interrupt and _absorbed(faults), (
                    f"{what}: swallowed, in {faults.fired_in}")
                c.delete(force=True)
            left = sorted(os.listdir(state_dir))
            if left == ["f.lock"]:
                # A lock() that failed before it held the lock leaves the
                # (empty) lock file: never a state, never a held lock.
                st = pidsafe.StateFile(str(state_dir), "f")
                assert st.lock(blocking=False), f"call {k} ({faults.fired}): lock still held"
                st.destroy()
                st.unlock()
                left = sorted(os.listdir(state_dir))
            assert left == [], f"call {k} ({faults.fired}) left {left}"
            assert _cgroup_dirs(cgroups_path) == [], what


def test_create_with_each_call_failing(faults: Faults, make_bundle: Any,
                                       state_dir: pathlib.Path) -> None:
    _sweep(faults, make_bundle, state_dir, interrupt=False)


def test_create_with_each_call_interrupted(faults: Faults, make_bundle: Any,
                                           state_dir: pathlib.Path) -> None:
    _sweep(faults, make_bundle, state_dir, interrupt=True)


@pytest.mark.parametrize("interrupt", [False, True], ids=["failing", "interrupted"])
def test_create_joining_a_pid_namespace_with_each_call(faults: Faults, make_bundle: Any,
                                                      state_dir: pathlib.Path,
                                                      tmp_path: pathlib.Path,
                                                      interrupt: bool) -> None:
    """The namespace file opened and checked, our thread in and out of it."""
    holder_state = tmp_path / "holder-state"
    holder = pidsafe.Container.create("holder", make_bundle(["sleep", "1000"]),
                                      state_dir=str(holder_state))
    try:
        holder.start()

        def edit(doc: Any) -> None:
            for ns in doc["linux"]["namespaces"]:
                if ns["type"] == "pid":
                    ns["path"] = f"/proc/{holder.pid}/ns/pid"

        own = os.readlink("/proc/thread-self/ns/pid_for_children")
        _sweep(faults, make_bundle, state_dir, interrupt, edit)
        assert os.readlink("/proc/thread-self/ns/pid_for_children") == own
    finally:
        holder.delete(force=True)
    assert pidsafe.Container.list(str(holder_state)) == []


@pytest.mark.parametrize("interrupt", [False, True], ids=["failing", "interrupted"])
def test_create_without_a_mount_namespace_with_each_call(faults: Faults, make_bundle: Any,
                                                        state_dir: pathlib.Path,
                                                        interrupt: bool) -> None:
    """init mounts in our namespace: every failure leaves none of them (the
    leak check compares our mounts)."""
    def edit(doc: Any) -> None:
        doc["linux"]["namespaces"] = []
        doc.pop("hostname", None)
        doc["root"]["readonly"] = False

    _sweep(faults, make_bundle, state_dir, interrupt, edit)


@pytest.mark.parametrize("mode", ["section end", "again and again"])
def test_create_interrupted_at_each_section_end_or_again_and_again(
        faults: Faults, make_bundle: Any, state_dir: pathlib.Path, mode: str) -> None:
    """SIGINT arriving inside each outermost critical section of a create
    (its handler raises as the section ends: create is one section, whose
    end comes after the container is whole and before the caller has it),
    or after a call and every call after it (Ctrl-C held down, through the
    roll-back): create raises, and no state, cgroup, process, fd or mount
    is left."""
    cgroups_path = f"/pidsafe-test/create-end-{os.getpid()}-{mode[0]}"

    bundle = _cgroup_bundle(make_bundle, ["true"], cgroups_path)

    def create() -> pidsafe.Container:
        return pidsafe.Container.create("f", bundle, state_dir=str(state_dir),
                                        stdout=pidsafe.PIPE, stderr=pidsafe.PIPE)

    made: List[pidsafe.Container] = []
    n = faults.count(lambda: made.append(create()))
    ends = list(faults.section_ends)
    made.pop().delete(force=True)
    assert n > 20 and ends[-1].startswith("container/_create.py:create_container"), ends
    for k in range(1, (len(ends) if mode == "section end" else n) + 1):
        what = (f"create, SIGINT at the end of section {k} ({ends[k - 1]})"
                if mode == "section end" else f"create, SIGINT from call {k} on")
        with leak_check(what):
            c = None
            ctx = (faults.interrupt_at_end(k) if mode == "section end"
                   else faults.interrupt_at(k, repeat=True))
            try:
                with ctx:
                    c = create()
            except Interrupt:
                pass
            if faults.fired is None:
                # This run made fewer (a wait that found init ready at once).
                made_now = len(faults.section_ends if mode == "section end" else faults.calls)
                assert c is not None and made_now < k, f"{what}: never fired"
                c.delete(force=True)
            else:
                assert c is None, f"{what}: swallowed"
            left = _state_left(state_dir, "f")
            assert left == [], f"{what}: left {left}"
            assert _cgroup_dirs(cgroups_path) == [], what


#: The double-interrupt sweeps run in this many parts (xdist spreads them).
TWICE_PARTS = 4


def _twice(faults: Faults, op: Callable[[], Any], undo_made: Callable[[Any], None],
           left: Callable[[], List[str]], what: str, part: int) -> int:
    """SIGINT after each call of ``op`` and again at each live point after
    it (tests/faults.py ``interrupt_twice``): a second Ctrl-C wherever it
    could run a handler while the first one's failure is undone.  Each
    time both must fire, ``op`` raise, and nothing be left (``left()``, the
    leak check).  Only the calls k with ``k % TWICE_PARTS == part``.
    Returns how many runs were made."""
    made: List[Any] = []
    n = faults.count(lambda: made.append(op()))
    undo_made(made.pop())
    runs = 0
    for k in range(1, n + 1):
        if k % TWICE_PARTS != part:
            continue
        with leak_check(f"{what}, SIGINT after call {k}, counting"):
            got = None
            try:
                with faults.interrupt_twice(k, 0):
                    got = op()
            except Interrupt:
                pass
            if faults.fired is None:   # this run made fewer calls
                assert got is not None
                undo_made(got)
                continue
            assert got is None, f"{what}, call {k}: swallowed"
            assert left() == [], f"{what}, SIGINT after call {k}: left {left()}"
        m = faults.points
        for j in range(1, m + 1):
            here = f"{what}, SIGINT after call {k} ({faults.fired}) and at live point {j}"
            with leak_check(here):
                got = None
                try:
                    with faults.interrupt_twice(k, j):
                        got = op()
                except Interrupt:
                    pass
                runs += 1
                if faults.fired is None or faults.fired_again is None:
                    # A run that made fewer calls or points: nothing to undo twice.
                    if got is not None:
                        undo_made(got)
                    continue
                assert got is None, f"{here} ({faults.fired_again}): swallowed"
                assert left() == [], f"{here} ({faults.fired_again}): left {left()}"
    return runs


@pytest.mark.parametrize("part", range(TWICE_PARTS))
def test_create_interrupted_twice_leaves_nothing(faults: Faults, make_bundle: Any,
                                                  state_dir: pathlib.Path, part: int) -> None:
    """A Ctrl-C after each call of a create and a second one at each later
    point where its handler could run (while the first one's failure is
    undone): create raises and leaves no state, cgroup, process, fd or
    mount.  No handler may run between a failure and its roll-back."""
    cgroups_path = f"/pidsafe-test/create-twice-{os.getpid()}-{part}"

    bundle = _cgroup_bundle(make_bundle, ["true"], cgroups_path)

    def create() -> pidsafe.Container:
        return pidsafe.Container.create("t", bundle, state_dir=str(state_dir),
                                        stdout=pidsafe.PIPE, stderr=pidsafe.PIPE)

    def delete(c: pidsafe.Container) -> None:
        c.delete(force=True)
        c.close()

    def left() -> List[str]:
        return _state_left(state_dir, "t") + _cgroup_dirs(cgroups_path)

    runs = _twice(faults, create, delete, left, "create", part)
    assert runs > 0


def test_create_undone_when_a_handler_raises_as_its_section_s_exit_returns(
        make_bundle: Any, state_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CPython checks for signals once more as a ``with``'s ``__exit__``
    returns (see _sigsafe.undoing): a handler raising there, after create's
    section has closed and before the caller has the container, must undo
    the whole create.  (It left a created container, its init and its state;
    the random-interrupt test below found it under load.)"""
    from pidsafe.container import _create

    cgroups_path = f"/pidsafe-test/create-exit-{os.getpid()}"
    bundle = _cgroup_bundle(make_bundle, ["true"], cgroups_path)
    real = _create.undoing

    class late(real):   # type: ignore[misc,valid-type]
        def __exit__(self, *exc: Any) -> None:
            real.__exit__(self, *exc)
            if exc[0] is None:
                raise Interrupt("a handler, as __exit__ returned")

    monkeypatch.setattr(_create, "undoing", late)
    with pytest.raises(Interrupt):
        pidsafe.Container.create("x", bundle, state_dir=str(state_dir))
    monkeypatch.undo()
    assert _state_left(state_dir, "x") == []
    assert _cgroup_dirs(cgroups_path) == []
    c = pidsafe.Container.create("x", bundle, state_dir=str(state_dir))   # the id is free
    c.delete(force=True)
    c.close()


def test_create_under_random_interrupts_leaves_nothing(make_bundle: Any,
                                                       state_dir: pathlib.Path) -> None:
    """A handler raising at random bytecodes of create's pidsafe code: each
    interrupted create leaves no state, cgroup, process, fd or mount."""
    cgroups_path = f"/pidsafe-test/create-random-{os.getpid()}"

    bundle = _cgroup_bundle(make_bundle, ["true"], cgroups_path)

    def create_once() -> None:
        c = pidsafe.Container.create("r", bundle, state_dir=str(state_dir))
        with critical:   # not delete's interrupts: a signal now lands after it
            c.delete(force=True)
            c.close()

    with leak_check("create under random interrupts"):
        hits = interrupt_randomly(create_once, 100, interval=0.0001, only_in_pidsafe=True)
        left = _state_left(state_dir, "r")
        assert left == [], left
    assert hits > 0
    assert _cgroup_dirs(cgroups_path) == []


@contextlib.contextmanager
def _running_with_execs(make_bundle: Any, state_dir: pathlib.Path,
                        cid: str) -> Iterator[Callable[[], None]]:
    """A started container ``cid`` and a function that runs one exec of
    ``true`` in it to its end (each with a new exec id); deleted after."""
    c = pidsafe.Container.create(cid, make_bundle(["sleep", "1000"]), state_dir=str(state_dir))
    try:
        c.start()
        count = [0]

        def exec_once() -> None:
            count[0] += 1
            with c.exec(["true"], exec_id=f"x{count[0]}") as p:
                p.wait(timeout=60)

        yield exec_once
    finally:
        c.delete(force=True)


def test_exec_under_random_interrupts_leaves_no_process(make_bundle: Any,
                                                       state_dir: pathlib.Path) -> None:
    """A handler raising at random bytecodes of exec's pidsafe code (through
    the end of every critical section and the handover to the caller): each
    interrupted exec leaves no process, no fd; the container stays whole
    and delete(force=True) works after."""
    with _running_with_execs(make_bundle, state_dir, "rx") as exec_once:
        with leak_check("exec under random interrupts"):
            hits = interrupt_randomly(exec_once, 200, interval=0.00005,
                                      only_in_pidsafe=True)
        assert hits > 0
        exec_once()   # the container is whole
    assert os.listdir(state_dir) == []


@pytest.mark.parametrize("mode", ["section end", "again and again"])
def test_exec_interrupted_at_each_section_end_or_again_and_again(
        faults: Faults, make_bundle: Any, state_dir: pathlib.Path, mode: str) -> None:
    """SIGINT arriving inside each critical section of an exec (its handler
    raises as the section ends: after the process exists, before the
    caller has it), or after a call and every call after it (Ctrl-C held
    down, through the undo): the exec raises, no process and no fd is
    left, and the container goes on."""
    with _running_with_execs(make_bundle, state_dir, "ex") as exec_once:
        n = faults.count(exec_once)
        ends = list(faults.section_ends)
        assert n > 10 and any(e.startswith("container/_container_exec.py:start")
                              for e in ends), ends
        for k in range(1, (len(ends) if mode == "section end" else n) + 1):
            what = (f"exec, SIGINT at the end of section {k} ({ends[k - 1]})"
                    if mode == "section end" else f"exec, SIGINT from call {k} on")
            with leak_check(what):
                ctx = (faults.interrupt_at_end(k) if mode == "section end"
                       else faults.interrupt_at(k, repeat=True))
                raised = False
                try:
                    with ctx:
                        exec_once()
                except Interrupt:
                    raised = True
                if faults.fired is None:
                    # This run made fewer: a wait that found its process gone
                    # at once takes a section and a call less.  Nothing was
                    # interrupted, and the exec worked.
                    made = len(faults.section_ends if mode == "section end" else faults.calls)
                    assert not raised and made < k, f"{what}: never fired ({made} made)"
                else:
                    assert raised, f"{what}: swallowed"
        exec_once()   # the container is whole


@pytest.mark.parametrize("interrupt", [False, True], ids=["failing", "interrupted"])
def test_a_delete_stopped_at_any_call_is_finished_by_the_next(
        faults: Faults, make_bundle: Any, state_dir: pathlib.Path, interrupt: bool) -> None:
    """delete(force=True) of a running container whose k-th call fails (or
    is interrupted), for every k: it raises (or, if it absorbed the fault,
    finished), and a delete(force=True) from a fresh handle then finishes:
    no state, no cgroup in any hierarchy, no process, fd or mount left."""
    cgroups_path = f"/pidsafe-test/delete-{os.getpid()}-{int(interrupt)}"

    bundle = _cgroup_bundle(make_bundle, ["sleep", "1000"], cgroups_path)

    def running() -> pidsafe.Container:
        c = pidsafe.Container.create("del", bundle, state_dir=str(state_dir))
        c.start()
        return c

    # A delete's calls vary a little (EBUSY retries while init dies): every
    # k up to the fewest of three runs comes.
    counts = []
    for _ in range(3):
        c = running()
        assert _cgroup_dirs(cgroups_path)
        counts.append(faults.count(lambda: c.delete(force=True)))
        c.close()
    n = min(counts)
    calls = list(faults.calls)
    assert n > 5 and _cgroup_dirs(cgroups_path) == [] and os.listdir(state_dir) == []
    for k in range(1, n + 1):
        what = f"delete with call {k} of {n} ({calls[k - 1]}) " + (
            "interrupted" if interrupt else "failed")
        with leak_check(what):
            c = running()
            ctx = faults.interrupt_at(k) if interrupt else faults.fail_at(k, errno.EIO)
            raised = True
            try:
                with ctx:
                    c.delete(force=True)
                raised = False
            except Interrupt:
                assert interrupt, what
            except (OSError, pidsafe.Error) as exc:
                assert not interrupt, f"{what}: {exc!r}"
            # A run may make fewer calls than the fewest counted (a wait
            # that found init gone at once): then nothing was stopped.
            assert faults.fired is not None or (not raised and len(faults.calls) < k), \
                f"{what}: never fired"
            if not raised:   # absorbed: then the delete must have finished
                assert pidsafe.Container.list(str(state_dir)) == [], f"{what}: absorbed"
            if pidsafe.Container.list(str(state_dir)):
                again = pidsafe.Container.load(str(state_dir), "del")   # as another process
                again.delete(force=True)
            c.close()   # reaps init, our child, which the other handle killed
            if os.listdir(state_dir) == ["del.lock"]:
                # The lock file goes last, at unlock: one whose unlink failed
                # is never a state, never a held lock (as in create's sweep).
                st = pidsafe.StateFile(str(state_dir), "del")
                assert st.lock(blocking=False), f"{what}: lock still held"
                st.destroy()
                st.unlock()
            assert os.listdir(state_dir) == [], what
            assert _cgroup_dirs(cgroups_path) == [], what


@pytest.mark.parametrize("op", ["start", "kill"])
@pytest.mark.parametrize("interrupt", [False, True], ids=["failing", "interrupted"])
def test_start_and_kill_with_each_call(faults: Faults, make_bundle: Any,
                                       state_dir: pathlib.Path, op: str,
                                       interrupt: bool) -> None:
    """start() of a created container, kill() of a running one, each call
    failed or interrupted in turn: the fault fires and comes out (the
    typed error, or the interrupt), no fd or process is left, and the
    container can still be deleted: no state, no cgroup left."""
    cgroups_path = f"/pidsafe-test/{op}-{os.getpid()}-{int(interrupt)}"

    bundle = _cgroup_bundle(make_bundle, ["sleep", "1000"], cgroups_path)

    def ready() -> pidsafe.Container:
        c = pidsafe.Container.create("sk", bundle, state_dir=str(state_dir))
        if op == "kill":
            c.start()
        return c

    def act(c: pidsafe.Container) -> None:
        if op == "start":
            c.start()
        else:
            c.kill(signal.SIGKILL, all=True)

    counts = []
    for _ in range(3):
        c = ready()
        counts.append(faults.count(lambda: act(c)))
        c.delete(force=True)
    n = min(counts)
    calls = list(faults.calls)
    assert n > 0, calls
    for k in range(1, n + 1):
        what = f"{op} with call {k} of {n} ({calls[k - 1]}) " + (
            "interrupted" if interrupt else "failed")
        with leak_check(what):
            c = ready()
            try:
                ctx = faults.interrupt_at(k) if interrupt else faults.fail_at(k, errno.EIO)
                try:
                    with ctx:
                        act(c)
                except Interrupt:
                    assert interrupt, what
                except (OSError, pidsafe.Error) as exc:
                    assert not interrupt, f"{what}: {exc!r}"
                else:
                    assert not interrupt and _absorbed(faults), (
                        f"{what}: swallowed, in {faults.fired_in}")
                assert faults.fired is not None, f"{what}: never fired"
            finally:
                c.delete(force=True)
            assert os.listdir(state_dir) == [], what
            assert _cgroup_dirs(cgroups_path) == [], what


@pytest.mark.parametrize("part", range(TWICE_PARTS))
@pytest.mark.parametrize("handover", ["prompt", "slow"])
def test_exec_interrupted_twice_leaves_nothing(faults: Faults, make_bundle: Any,
                                               state_dir: pathlib.Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               handover: str, part: int) -> None:
    """A Ctrl-C after each call of an exec and a second one at each later
    point where its handler could run (while the first one's failure is
    undone): the exec raises, no process, fd or pipe is left, its id is
    free again, and the container goes on.  No handler may run between a
    failure and its undo.

    "slow": the undo's own bound for pidsafe-init's hand-over is nothing,
    as on a loaded machine where pidsafe-init takes longer than that to
    fork and send its child.  The undo must wait for the hand-over (up to
    the exec's deadline): pidsafe-init killed between its fork and its
    send left the child, ours, a zombie without a pidfd for good, and the
    container's init then could not finish its exit."""
    if handover == "slow":
        from pidsafe.container.init import _forked

        monkeypatch.setattr(_forked, "_UNDO_WAIT", 0.0)
    c = pidsafe.Container.create(f"tx{part}", make_bundle(["sleep", "1000"]),
                                 state_dir=str(state_dir))
    try:
        c.start()
        ids = iter(range(1, 1 << 30))
        last: List[str] = []

        def exec_once() -> pidsafe.Process:
            last[:] = [f"x{next(ids)}"]
            return c.exec(["true"], exec_id=last[0], stdout=pidsafe.PIPE,
                          stderr=pidsafe.PIPE)

        def reap(p: pidsafe.Process) -> None:
            with p:
                p.wait(timeout=60)

        def left() -> List[str]:
            # The id of an exec that raised is free again.
            try:
                reap(c.exec(["true"], exec_id=last[0]))
            except pidsafe.ContainerStateError as exc:
                return [f"exec id {last[0]}: {exc}"]
            return []

        runs = _twice(faults, exec_once, reap, left, "exec", part)
        assert runs > 0
        reap(c.exec(["true"], exec_id="whole"))   # the container is whole
    finally:
        c.delete(force=True)
    assert os.listdir(state_dir) == []



@pytest.mark.parametrize("part", range(TWICE_PARTS))
@pytest.mark.parametrize("op", ["start", "delete"])
def test_start_and_delete_interrupted_twice_leave_nothing(
        faults: Faults, make_bundle: Any, state_dir: pathlib.Path, op: str,
        part: int) -> None:
    """A Ctrl-C after each call of a start (of a created container) or a
    delete (of a running one), and a second one at each later point where
    its handler could run: it raises, no fd or process is left, and a
    delete from a fresh handle then leaves no state, cgroup or process."""
    cgroups_path = f"/pidsafe-test/{op}-twice-{os.getpid()}-{part}"

    bundle = _cgroup_bundle(make_bundle, ["sleep", "1000"], cgroups_path)
    made: List[pidsafe.Container] = []

    def act() -> pidsafe.Container:
        with faults.paused():
            c = pidsafe.Container.create("sd", bundle, state_dir=str(state_dir))
            made.append(c)
            if op == "delete":
                c.start()
        if op == "start":
            c.start()
        else:
            c.delete(force=True)
        return c

    def finish(c: Any = None) -> None:
        while made:
            c = made.pop()
            if pidsafe.Container.list(str(state_dir)):
                again = pidsafe.Container.load(str(state_dir), "sd")   # as another process
                again.delete(force=True)
                again.close()
            c.close()   # reaps init, our child, which the other handle killed

    def left() -> List[str]:
        finish()
        return _state_left(state_dir, "sd") + _cgroup_dirs(cgroups_path)

    runs = _twice(faults, act, finish, left, op, part)
    assert runs > 0


def test_a_delete_killed_with_the_freezer_gone_and_pids_not_is_finished(
        make_bundle: Any, state_dir: pathlib.Path) -> None:
    """The state a delete killed half-way left (init gone, its cgroup's v1
    freezer directory removed, the pids one not): delete(force=True) from a
    fresh handle finishes it, no state and no cgroup in any hierarchy left.
    Its kill of the cgroup once froze it through the missing freezer.state,
    and every later delete failed."""
    cgroups_path = f"/pidsafe-test/half-deleted-{os.getpid()}"

    c = pidsafe.Container.create("hd", _cgroup_bundle(make_bundle, ["sleep", "1000"],
                                                       cgroups_path),
                                 state_dir=str(state_dir))
    try:
        c.start()
        cg = c.cgroup()
        assert cg is not None
        c.kill(signal.SIGKILL)
        c.wait(timeout=30)
        assert half_deleted(cg)
        again = pidsafe.Container.load(str(state_dir), "hd")   # as another process
        again.delete(force=True)
        again.close()
    finally:
        if pidsafe.Container.list(str(state_dir)):
            c.delete(force=True)
        c.close()
    assert os.listdir(state_dir) == []
    assert _cgroup_dirs(cgroups_path) == []
