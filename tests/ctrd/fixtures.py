"""The containerd and CRI fixtures (registered in tests/conftest.py).

Tests that use them are marked ``@pytest.mark.root`` and
``@pytest.mark.containerd``; they skip where Debian's containerd or runc is
not installed (scripts/bootstrap.sh installs both as root).

``containerd_daemon`` (session: one per xdist worker, started on first use)
    A started :class:`~ctrd.daemon.Containerd` with the busybox image in its
    namespace.  At the end of the session it is stopped, and the session
    fails if anything was left (see ``Containerd.close``).
``containerd``
    The same daemon for one test, which fails if the test leaves a container,
    an active snapshot, a shim, a mount or a container cgroup behind (and
    cleans it up).  A failing test's report shows the daemon's log meanwhile.
``shim_runtime``
    Parametrised over :data:`RUNTIMES`: the test runs once per runtime;
    ``shim_runtime.ctr_args(containerd)`` selects it in ``ctr run``.
``cri_daemon`` (session)
    The worker's containerd, with the CRI sandbox image (pause.c, built with
    gcc here, named as ``sandbox_image`` says) and busybox in ``k8s.io``.
``cri``
    A :class:`~ctrd.cri.CriClient` for one test, which must remove its pods.
``cri_handler``
    Parametrised over :data:`HANDLERS`, the CRI runtime handlers (config.py).

The session's own processes and fds (the supervisor, ``ctr events``, gRPC's)
are registered in tests/session_owned.py, so ``no_leaks`` does not count
them against the test during which they appeared.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator, List, Tuple

import pytest

import session_owned

from .daemon import (BUSYBOX_IMAGE, CRI_NAMESPACE, PAUSE_IMAGE, PIDSAFE, RUNC, Containerd,
                     Runtime,
                     skip_reason)

#: The runtimes the ``shim_runtime`` tests drive: runc through containerd's runc shim, the
#: baseline, and pidsafe's shim; or any ``Runtime("name", "/abs/path/to/containerd-shim-x-v1")``;
#: one whose binary is missing skips.
RUNTIMES: List[Runtime] = [RUNC, PIDSAFE]
#: The CRI runtime handlers the ``cri_handler`` tests use (config.py has "runc" and "pidsafe").
HANDLERS: List[str] = ["runc", "pidsafe"]

HERE = Path(__file__).resolve().parent
_LOG_START = pytest.StashKey[Tuple[Containerd, int]]()


@pytest.fixture(scope="session")
def containerd_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    """This worker's private containerd (see the module docstring)."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    if os.geteuid() != 0:
        pytest.skip("needs root (uid 0)")
    daemon = Containerd(tmp_path_factory.getbasetemp())
    try:
        daemon.start()
        daemon.import_busybox()
        yield daemon
    finally:
        problems = daemon.close()
    if problems:
        pytest.fail("the test containerd left:\n  " + "\n  ".join(problems), pytrace=False)


@pytest.fixture
def containerd(containerd_daemon: Containerd, request: pytest.FixtureRequest
               ) -> Iterator[Containerd]:
    """The worker's containerd for one test, which must leave nothing in it."""
    daemon = containerd_daemon
    request.node.stash[_LOG_START] = (daemon, daemon.log_offset())
    if daemon.pid is None:   # an earlier test stopped it and failed before restarting it
        daemon.restart()
    yield daemon
    left = daemon.leftovers()
    if left:
        daemon.clean()
    left += daemon.wait_settled()
    if left:
        pytest.fail("the test left in containerd:\n  " + "\n  ".join(left), pytrace=False)


@pytest.fixture(params=RUNTIMES, ids=[r.name for r in RUNTIMES])
def shim_runtime(request: pytest.FixtureRequest) -> Runtime:
    runtime: Runtime = request.param
    reason = runtime.skip_reason()
    if reason:
        pytest.skip(reason)
    return runtime


def build_pause(out: Path) -> Path:
    """A rootfs whose only file is the static pause program, /pause."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("needs gcc (and libc6-dev's libc.a) to build the pause program")
    out.mkdir()
    subprocess.run([gcc, "-static", "-O2", "-Wall", "-Werror", "-o", str(out / "pause"),
                    str(HERE / "pause.c")], check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def cri_daemon(containerd_daemon: Containerd) -> Containerd:
    """The worker's containerd with the pause and busybox images in ``k8s.io``."""
    from .cri import CriClient   # gRPC: imported by the CRI tests only

    daemon = containerd_daemon
    rootfs = build_pause(daemon.dir / "pause-rootfs")
    tar = daemon.build_image(rootfs, PAUSE_IMAGE, entrypoint=["/pause"], cmd=[])
    shutil.rmtree(rootfs)
    daemon.import_image(tar, CRI_NAMESPACE)
    daemon.import_busybox(CRI_NAMESPACE)
    # gRPC's core keeps fds of its own for the life of the process once a
    # channel has been used: make them now, as the session's.
    before = session_owned.fd_numbers()
    with CriClient(daemon.address, cgroup_parent=daemon.cgroup_parent,
                   image=BUSYBOX_IMAGE) as client:
        client.version()
    session_owned.own_fds(session_owned.fd_numbers() - before)
    return daemon


@pytest.fixture
def cri(cri_daemon: Containerd, containerd: Containerd) -> Iterator[Any]:
    """A CRI client (:class:`~ctrd.cri.CriClient`) to the worker's containerd."""
    import grpc

    from .cri import CriClient

    with CriClient(containerd.address, cgroup_parent=containerd.cgroup_parent,
                   image=BUSYBOX_IMAGE) as client:
        yield client
        left = client.pods()
        errors = []
        for pod in left:
            try:
                client.stop_pod(pod.id)
                client.remove_pod(pod.id)
            except grpc.RpcError as e:   # the containerd fixture then cleans up behind CRI
                errors.append(f"removing pod {pod.metadata.name}: {e}")
    if left:
        pytest.fail("the test left pods: " + ", ".join(p.metadata.name for p in left)
                    + "".join("\n  " + e for e in errors), pytrace=False)


@pytest.fixture(params=HANDLERS)
def cri_handler(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Iterator[None]:
    """A failing containerd test's report gets the daemon's log during the test."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    start = item.stash.get(_LOG_START, None)
    if start is not None and report.failed:
        daemon, offset = start
        lines = daemon.log_since(offset).splitlines()
        cut = f"({len(lines) - 400} earlier lines left out)\n" if len(lines) > 400 else ""
        report.sections.append((f"containerd log ({daemon.log_path})",
                                cut + "\n".join(lines[-400:])))
