"""Cgroup: a container's cgroup in every hierarchy, from creation to removal.

One :class:`Cgroup` is one ``cgroupsPath`` made real: a directory in each v1
hierarchy a container needs and in the v2 hierarchy when one is mounted
(so, on a hybrid machine, both).  Limits go to whichever hierarchy holds
their controller (:mod:`._resources`).  Processes are signalled
through pidfds only; removal is idempotent; a failed creation removes what
it made.  :meth:`Cgroup.to_dict` / :meth:`Cgroup.load` carry it between
processes through container state.

How a container uses it::

    cg = Cgroup.create(id, spec.linux.cgroups_path, spec.linux.resources)
    fd = cg.open_v2_fd()          # None without v2; else clone3(CLONE_INTO_CGROUP)
    tasks = cg.open_tasks_fds()   # v1: the child joins each itself before it execs
    ...                           # create init into fd and tasks (ChildSpec)
    cg.add(exec, v2=fd is None)   # or: add a process that exists (an exec)
    state["cgroup"] = cg.to_dict()
    ...
    Cgroup.load(state["cgroup"]).kill(_lite.SIGKILL)    # kill(all=True)
    ...                           # wait for init
    cg.delete()
"""

from __future__ import annotations

import errno
import os
import posixpath
import time

from ... import _lite, _log
from ...errors import StateError, cgroup_error
from . import _freezer as freezer
from ._files import CgroupDir, procs, put_back, rmdir_busy, subtree, write_file
from ._layout import CgroupLayout
from ._signal import cgroups_of, signal_all

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

    from ..._fd import OwnedFd
    from ...errors import CgroupError
    from ._join import SupportsFileno

# Limits (and the config types they come in) only for create and update:
# load, kill and delete, all that pidsafe-runc's delete needs, do without.
if TYPE_CHECKING:
    from ._files import Previous
    from ._stats import CgroupStats
    from ..config import Resources


class Cgroup:
    """A container's cgroup: create, add, list, signal, freeze, remove.

    Build one with :meth:`create` (or :meth:`load` from :meth:`to_dict`).
    """

    def __init__(self, v1: Mapping[str, CgroupDir], v2: Optional[CgroupDir],
                 remove: List[str], parents: List[str]) -> None:
        self._v1 = dict(v1)
        self._v2 = v2
        self._remove = list(remove)      # directories delete() removes
        self._parents = list(parents)    # ancestors we made, top-down per hierarchy
        self._join_paths: Optional[Tuple[str, ...]] = None   # open_join_fds's, once made

    # -- creation ------------------------------------------------------------------

    @classmethod
    def create(cls, container_id: str, cgroups_path: Optional[str] = None,
               resources: Optional[Resources] = None, *, shared: bool = False,
               layout: Optional[CgroupLayout] = None,
               default_parent: str = "/pidsafe") -> "Cgroup":
        """Make the cgroup in every relevant hierarchy and apply ``resources`` (default: none).

        Directories are made in the v1 hierarchies that hold memory, pids,
        cpu, cpuacct, devices, freezer (and cpuset when cpus/mems are set),
        where mounted, and in v2 when mounted.  ``cgroups_path`` as in
        :func:`check_cgroups_path` (``None``: ``<default_parent>/<id>``).
        On any failure, whatever was made is removed before raising.

        Args:
            shared: allow an existing cgroup that already holds processes
                (it is then joined, and left in place by :meth:`delete`).

        Raises:
            ConfigError: a bad ``linux.cgroupsPath`` or conflicting limits.
            UnsupportedConfigError: a limit this machine cannot apply.
            CgroupError: a directory or a control file failed (names it and
                the value); ``errno`` ``EBUSY`` for a cgroup that already
                holds processes without ``shared``.
        """
        from ._make import make_cgroup

        return make_cgroup(cls, container_id, cgroups_path, resources, shared=shared,
                           layout=layout, default_parent=default_parent)

    # -- state -----------------------------------------------------------------------

    @property
    def v1_paths(self) -> Dict[str, str]:
        """The directory in each v1 hierarchy, by hierarchy (``"memory"`` ...)."""
        return {k: d.path for k, d in self._v1.items()}

    @property
    def v2_path(self) -> Optional[str]:
        """The v2 directory, or ``None`` without a v2 hierarchy."""
        return None if self._v2 is None else self._v2.path

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-able description for container state (see :meth:`load`)."""
        def one(d: CgroupDir) -> Dict[str, str]:
            return {"path": d.path, "cgroup": d.cgroup}
        return {"v1": {k: one(d) for k, d in self._v1.items()},
                "v2": None if self._v2 is None else one(self._v2),
                "remove": list(self._remove), "parents": list(self._parents)}

    @classmethod
    def of_process(cls, process: Union[int, SupportsFileno], *,
                   layout: Optional[CgroupLayout] = None) -> "Cgroup":
        """The cgroups a running process is in (given by its pidfd), to :meth:`add`
        others to; :meth:`delete` of it removes nothing.

        Raises:
            CgroupError: ``/proc/PID/cgroup`` cannot be read, or ``ESRCH``:
                the process has exited.
        """
        layout = CgroupLayout.detect() if layout is None else layout
        v1, v2 = cgroups_of(process if isinstance(process, int) else process.fileno(), layout)
        return cls(v1, v2, [], [])

    @classmethod
    def load(cls, data: Mapping[str, Any], *, layout: Optional[CgroupLayout] = None
             ) -> "Cgroup":
        """The cgroup :meth:`to_dict` described (in this or another process).

        Raises:
            StateError: the description is malformed, or names a directory
                outside every cgroup mount of this machine.
        """
        layout = CgroupLayout.detect() if layout is None else layout
        mounts = tuple(h.mountpoint.rstrip("/") + "/" for h in (*layout.v1, layout.v2) if h)

        def path(p: Any) -> str:
            if (not isinstance(p, str) or posixpath.normpath(p) != p
                    or not p.startswith(mounts)):   # (any of them)
                raise StateError(f"cgroup state: {p!r} is not a directory in a cgroup mount")
            return p

        def one(key: str, o: Any) -> CgroupDir:
            if not isinstance(o, dict) or not isinstance(o.get("cgroup"), str):
                raise StateError(f"cgroup state: bad entry for {key or 'v2'!r}: {o!r}")
            return CgroupDir(key, path(o.get("path")), o["cgroup"])
        try:
            v1 = {k: one(k, o) for k, o in data["v1"].items()}
            v2 = None if data["v2"] is None else one("", data["v2"])
            return cls(v1, v2, [path(p) for p in data["remove"]],
                       [path(p) for p in data["parents"]])
        except (KeyError, TypeError, AttributeError) as exc:
            raise StateError(f"cgroup state is malformed: {exc!r}") from None

    # -- processes -----------------------------------------------------------------

    def open_v2_fd(self) -> Optional[OwnedFd]:
        """The v2 directory for clone3's ``CLONE_INTO_CGROUP`` (Linux 5.7).

        ``None`` without a v2 hierarchy.  Close-on-exec.

        Raises:
            CgroupError: the directory cannot be opened.
        """
        from ._join import open_v2_fd

        return open_v2_fd(self._v2)

    def open_tasks_fds(self) -> List[OwnedFd]:
        """The ``tasks`` file of every v1 directory, open for writing, for a
        child to join with (:attr:`pidsafe._sys.ChildSpec.tasks_fds`).

        A thread that writes ``0`` there moves itself, and the kernel moves
        a single thread without its global threadgroup lock; :meth:`add`
        writes a pid to ``cgroup.procs``, which takes that lock for writing
        and so waits for an RCU grace period (milliseconds).  The kernel
        checks the credentials the file was opened with, so a child that
        has changed its own may still write.  Close-on-exec.

        Raises:
            CgroupError: a file cannot be opened (what was opened is closed).
        """
        from ._join import open_tasks_fds

        return open_tasks_fds(self._v1)

    def open_join_fds(self) -> List[Tuple[OwnedFd, str]]:
        """What a process joins the whole cgroup with by writing ``0`` to
        each (pidsafe-init's ``OP_CGROUP_JOIN``, an exec): every v1
        ``tasks`` file (see :meth:`open_tasks_fds`) and the v2
        ``cgroup.procs``, with their paths.  Close-on-exec.

        Raises:
            CgroupError: a file cannot be opened (what was opened is closed).
        """
        from ._join import join_paths, open_join_fds

        paths = self._join_paths
        if paths is None:   # made once: each exec of a container opens them (a hot path)
            paths = self._join_paths = join_paths(self._v1, self._v2)
        return open_join_fds(paths)

    def join_error(self, err: int) -> "CgroupError":
        """The error for a child that failed to join through :meth:`open_tasks_fds`."""
        from ._join import join_error

        return join_error(self._v1, err)

    def add(self, process: Union[int, SupportsFileno], *, v2: bool = True) -> None:
        """Move a process, given by its pidfd, into the cgroup everywhere.

        Writes its pid to ``cgroup.procs`` of every hierarchy (v2 too unless
        ``v2=False``, e.g. after ``CLONE_INTO_CGROUP``), then proves the
        pidfd's process alive: had it exited and its pid been reused
        meanwhile, this raises.  A child that is not yet reaped (any
        pidsafe child until ``wait``) keeps its pid, so for it the pid
        written is always its own.

        Raises:
            CgroupError: a write failed; ``errno`` ``ESRCH`` (also a
                ``ProcessLookupError``) if the process has exited.
        """
        from ._join import add

        add(self._v1, self._v2 if v2 else None, process)

    def _partly_removed(self) -> bool:
        """Whether a directory of the cgroup is gone (a delete that stopped half-way).

        The kernel removes only an empty cgroup, and on v1 each process is
        in every hierarchy at once: one directory gone means the cgroup has
        no process left anywhere, so there is nothing to signal (and no
        freezer to freeze it with).
        """
        dirs = [*self._v1.values(), *([self._v2] if self._v2 is not None else [])]
        return any(not os.path.isdir(d.path) for d in dirs)

    def _main(self) -> Optional[CgroupDir]:
        """Where processes are listed: v2, else the v1 freezer or pids hierarchy."""
        if self._v2 is not None:
            return self._v2
        return self._v1.get("freezer") or self._v1.get("pids") or next(
            iter(self._v1.values()), None)

    def pids(self) -> List[int]:
        """The processes in the cgroup and in every cgroup below it (sorted).

        Raises:
            CgroupError: a ``cgroup.procs`` file cannot be read.
        """
        d = self._main()
        return [] if d is None else procs(d.path)

    def kill(self, sig: int = _lite.SIGKILL) -> None:
        """Send ``sig`` to every process in the cgroup, through pidfds.

        SIGKILL on v2 uses ``cgroup.kill`` (Linux 5.14: the kernel kills
        all, forks included).  Otherwise the cgroup is frozen where a freezer exists,
        so that no process forks while the list is signalled, and thawed
        after (frozen processes take their signal when thawed); without a
        freezer the list is re-read until it shows nobody new.  An empty
        cgroup is left as it is (no freeze).  Each pid is
        opened with ``pidfd_open``, proven to be in the cgroup, and signalled
        through its pidfd: a pid that vanished or was reused is skipped.

        Raises:
            CgroupError: a cgroup file failed, or processes kept appearing.
        """
        d = self._main()
        if d is None:
            return
        if sig == _lite.SIGKILL and d is self._v2 and os.path.exists(d.file("cgroup.kill")):
            if not self._partly_removed():
                write_file(d.file("cgroup.kill"), "1")
            return
        if not procs(d.path):
            # Nobody in it (delete's usual case: init is gone, and with it
            # its pid namespace): nobody to fork, so nothing to freeze.
            # (A directory of it gone lists nobody too.)
            return
        if self._partly_removed():
            return
        froze = False
        try:
            if freezer.can_freeze(self._v1, self._v2) and not self.frozen:
                froze = True    # first: thawing what is not frozen is harmless
                try:
                    self.freeze(timeout=5.0)
                except TimeoutError:
                    froze = False   # thawed again: signal the moving target
            signal_all(d, sig, rounds=3 if froze else 100)
        finally:
            if froze:
                self.thaw()

    # -- freezer ----------------------------------------------------------------------

    @property
    def frozen(self) -> bool:
        """Whether the cgroup is frozen (``False`` without a freezer)."""
        return freezer.is_frozen(self._v1, self._v2)

    def freeze(self, timeout: float = 10.0) -> None:
        """Freeze every process (v2 ``cgroup.freeze``, else v1 ``freezer.state``).

        Returns once the kernel reports the cgroup frozen.  On timeout the
        cgroup is thawed again.

        Raises:
            CgroupError: no freezer (``EOPNOTSUPP``), a write failed, or
                ``ETIMEDOUT`` (also a ``TimeoutError``).
        """
        freezer.freeze(self._v1, self._v2, timeout)

    def thaw(self) -> None:
        """Let the processes run again.

        Raises:
            CgroupError: no freezer, or the write failed.
        """
        freezer.thaw(self._v1, self._v2)

    # -- limits and usage -----------------------------------------------------------

    def update(self, resources: Resources, *, layout: Optional[CgroupLayout] = None
               ) -> List[Previous]:
        """Apply ``resources`` to the existing cgroup (``runc update``).

        All or nothing: if a write fails (or a signal handler raises), the
        files already written are put back as they were.

        Returns:
            The writes that put every changed file back
            (:meth:`put_back`), for a caller whose own next step
            fails.

        Raises:
            ConfigError, UnsupportedConfigError: as for :meth:`create`.
            CgroupError: a write failed; nothing is left changed.
        """
        from ._update import update_limits

        return update_limits(self._v1, self._v2, resources,
                             CgroupLayout.detect() if layout is None else layout)

    def put_back(self, previous: List[Previous], exc: BaseException) -> None:
        """Undo an :meth:`update` (its return value) whose caller's own next
        step failed with ``exc``; a write that fails is noted on ``exc``."""
        put_back(previous, exc)

    def stats(self) -> CgroupStats:
        """Memory, OOM kills, pids and CPU time, from v1 or v2 files.

        Raises:
            CgroupError: a file exists but cannot be read.
        """
        from ._stats import read_stats

        return read_stats(self._v1, self._v2)

    # -- removal ---------------------------------------------------------------------

    def delete(self, timeout: float = 1.0) -> None:
        """Remove the cgroup in every hierarchy.  Idempotent; kills nothing.

        Cgroups nested inside are removed first.  ``EBUSY`` (tasks still
        exiting) is retried with a short backoff for up to ``timeout``
        seconds.  Parents that :meth:`create` made are removed too when
        empty; a cgroup joined with ``shared=True`` is left in place.

        Raises:
            CgroupError: a cgroup still holds processes after ``timeout``
                (``EBUSY``; names the directory), or rmdir failed otherwise.
        """
        deadline = time.monotonic() + timeout
        _log.debug("cgroup", "removing cgroup %s", self._remove)
        for d in reversed(self._remove):
            # Usually empty, nothing nested: one rmdir.  A nested cgroup or a
            # task still exiting makes it fail (EBUSY): then the walk below.
            try:
                os.rmdir(d)
                continue
            except FileNotFoundError:
                continue
            except OSError:
                pass
            for sub in subtree(d):
                rmdir_busy(sub, deadline)
        for p in reversed(self._parents):
            try:
                os.rmdir(p)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.EBUSY, errno.ENOTEMPTY):
                    continue    # gone, or another container's parent too
                raise cgroup_error(exc.errno or errno.EIO, f"unable to remove cgroup {p}",
                                   p) from None

    def __repr__(self) -> str:
        where = self.v2_path or next(iter(self.v1_paths.values()), "?")
        return f"<Cgroup {where} ({len(self._v1)} v1 hierarchies, v2: {bool(self._v2)})>"
