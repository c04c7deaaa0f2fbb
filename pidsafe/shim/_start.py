"""The ``start`` action: a socket, the ``address`` file, and the daemon, forked.

containerd runs ``start`` with the bundle as its working directory and
reads its stdout and stderr together, whole, as the shim's address
(``cmd.CombinedOutput()``, then ``TrimSpace``), so this
prints the ``unix://`` address and nothing else, and the daemon it leaves
behind holds neither pipe.  Steps, as the runc shim's ``manager.Start``:

1. The grouping key: config.json's annotation ``io.kubernetes.cri.sandbox-id``
   (a pod), else ``io.containerd.runc.v2.group``, else the container id.
   Every container of a group is served by one daemon.
2. The socket ``/run/containerd/s/<hex sha256(address/namespace/group)>``:
   bound here and made 0600.  If it is in use, another container of the
   group may have a daemon: asked to wait for this container's Create
   (``Join``, under a lock on the directory that a daemon also takes to
   decide to close), it serves us: write ``address`` and return it.  If
   nobody answers, or the daemon is closing, the socket is removed and
   bound again for a daemon of our own.
3. ``<bundle>/address`` written atomically (the daemon removes the socket
   it names when it exits; containerd reads it after a restart).
4. The daemon is forked, not exec'd (no second interpreter start): this
   process is still single-threaded.  The child makes its own session,
   puts /dev/null on 0, 1 and 2 and serves the socket (``_daemon``).
5. stdin holds the runtime options (a ``google.protobuf.Any``); with the
   runc shim's ``containerd.runc.v1.Options`` and a ``shim_cgroup``, the
   daemon is moved into that cgroup.  Its ``oom_score_adj`` becomes
   containerd's + 1 (refusals tolerated, as the Go shim tolerates them).

Only ``os``, ``sys`` and the C modules ``_socket`` and ``_sha256`` (or
``_sha2``) are imported here (``json`` only for a config that names a
group): the daemon's own imports happen in the child, while containerd
reads this address and dials it.
"""

from __future__ import annotations

import _socket
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Optional

    from ._cli import Flags

    Socket = _socket.socket

SOCKET_DIR = "/run/containerd/s"   # defaults.DefaultStateDir + "/s", whatever containerd's state
GROUP_LABELS = ("io.kubernetes.cri.sandbox-id", "io.containerd.runc.v2.group")
RUNC_OPTIONS = "containerd.runc.v1.Options"
OOM_SCORE_MAX = 1000
#: pidsafe's ttrpc method by which ``start`` joins a group's daemon (``_binding``).
JOIN = (b"pidsafe.shim.v1.Group", b"Join")
#: How long ``start`` waits for a daemon's answer to ``Join``.
JOIN_TIMEOUT = 10.0


def go_clean(path: str) -> str:
    """Go's ``path/filepath.Clean`` (lexical), for the bytes the address hash covers."""
    rooted = path.startswith("/")
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    text = "/".join(out)
    return ("/" + text) if rooted else (text or ".")


def _sha256_hex(data: bytes) -> str:
    """sha256 from the interpreter's own C module (hashlib would load OpenSSL)."""
    for name in ("_sha2", "_sha256"):    # 3.12+, up to 3.11
        try:
            return str(__import__(name).sha256(data).hexdigest())
        except ImportError:
            continue
    import hashlib   # pragma: no cover - an interpreter without either

    return hashlib.sha256(data).hexdigest()


def socket_address(address: str, namespace: str, group: str) -> str:
    """``unix:///run/containerd/s/<sha256 hex>``, as the Go shim's ``SocketAddress``."""
    joined = go_clean("/".join(p for p in (address, namespace, group) if p))
    return f"unix://{SOCKET_DIR}/{_sha256_hex(joined.encode())}"


def read_group(data: bytes, cid: str) -> str:
    """The grouping key of a config.json's bytes; parsed only if it names a group."""
    if not any(label.encode() in data for label in GROUP_LABELS):
        return cid
    import json

    try:
        return grouping(json.loads(data), cid)
    except ValueError as exc:
        raise OSError(f"read config.json: {exc}") from None


def grouping(config: Any, cid: str) -> str:
    annotations = config.get("annotations") if isinstance(config, dict) else None
    if isinstance(annotations, dict):
        for label in GROUP_LABELS:
            value = annotations.get(label)
            if isinstance(value, str) and value:
                return value
    return cid


def _path(address: str) -> str:
    return address[len("unix://"):] if address.startswith("unix://") else address


def _unix_socket() -> Socket:
    return _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)


def _ld(number: int, data: bytes) -> bytes:
    """A length-delimited protobuf field."""
    n, size = len(data), b""
    while n > 0x7F:
        size += bytes([n & 0x7F | 0x80])
        n >>= 7
    return bytes([number << 3 | 2]) + size + bytes([n]) + data


def _recv(s: Socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise ConnectionResetError(104, "the shim daemon closed the connection")
        out += chunk
    return out


def _status_code(status: bytes) -> int:
    """``google.rpc.Status.code`` (field 1, a varint); 0 if absent."""
    i = 0
    while i < len(status):
        key, i = _varint(status, i)
        if key == 0x08:
            return _varint(status, i)[0]
        if key & 7 == 0:
            _, i = _varint(status, i)
        elif key & 7 == 2:
            n, i = _varint(status, i)
            i += n
        else:
            break
    return 0


def join(path: str, cid: str) -> bool:
    """Ask the daemon at ``path`` to wait for container ``cid``'s Create (``Join``).

    False if no daemon will: nobody answers, or it is closing.  A daemon
    that takes longer than :data:`JOIN_TIMEOUT` (a busy one) or has no
    ``Join`` (an older one) is taken to serve, as before ``Join`` existed.
    One ttrpc request, written out here (``start`` loads no message classes).
    """
    req = _ld(1, JOIN[0]) + _ld(2, JOIN[1]) + _ld(3, _ld(1, cid.encode()))
    frame = len(req).to_bytes(4, "big") + (1).to_bytes(4, "big") + b"\x01\x00" + req
    s = _unix_socket()
    try:
        s.settimeout(JOIN_TIMEOUT)
        try:
            s.connect(path)
        except OSError:
            return False             # dead: its daemon went without removing it
        try:
            s.sendall(frame)
            head = _recv(s, 10)
            body = _recv(s, int.from_bytes(head[:4], "big"))
        except TimeoutError:
            return True
        except OSError:
            return False             # it closed on us: it is exiting
    finally:
        s.close()
    code = _status_code(_fields(body).get(1, b""))
    return code in (0, 12)           # OK, or UNIMPLEMENTED: a daemon without Join


def new_socket(path: str, cid: str = "") -> Optional[Socket]:
    """A listening socket at ``path`` (0600), or None if a live daemon serves it and
    has agreed to wait for container ``cid`` (:func:`join`).

    Under the socket directory's lock (``_dirlock``): a daemon never decides to close between our
    finding it and its answer, so a joined daemon stays for our Create; one
    that is closing has removed its socket first, so we bind a new one.

    Raises:
        OSError: the directory or the socket could not be made.
    """
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o600, exist_ok=True)
    from ._dirlock import lock_dir

    lock = lock_dir(directory)
    try:
        for attempt in (1, 2):
            s = _unix_socket()
            try:
                s.bind(path)
            except OSError as exc:
                s.close()
                if exc.errno != 98 or attempt == 2:   # EADDRINUSE
                    raise
                if join(path, cid):
                    return None     # another container of the group: its daemon serves
                os.unlink(path)     # stale, or its daemon is exiting
                continue
            try:
                os.chmod(path, 0o600)
                s.listen(128)
            except BaseException:
                s.close()
                os.unlink(path)
                raise
            return s
    finally:
        os.close(lock)
    raise AssertionError("unreachable")   # pragma: no cover


def write_address(bundle: str, address: str) -> None:
    """``<bundle>/address``, atomically (``.address`` then rename), as the Go shim."""
    tmp = os.path.join(bundle, ".address")
    with open(tmp, "w") as f:
        f.write(address)
    os.rename(tmp, os.path.join(bundle, "address"))


def shim_cgroup(data: bytes) -> str:
    """``Options.shim_cgroup`` from a ``google.protobuf.Any`` of runc's Options; "" if none.

    Read with a few lines of protobuf wire format (fields 1 and 2 of Any,
    field 3 of Options) rather than the message classes, which ``start``
    need not load; tests check it against them.
    """
    fields = _fields(data)
    if fields.get(1, b"").decode("utf-8", "replace").rpartition("/")[2] != RUNC_OPTIONS:
        return ""
    return _fields(fields.get(2, b"")).get(3, b"").decode("utf-8", "replace")


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, i


def _fields(data: bytes) -> Dict[int, bytes]:
    """The length-delimited fields of a message (last one wins); others skipped."""
    out: Dict[int, bytes] = {}
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, i = _varint(data, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            n, i = _varint(data, i)
            out[number] = data[i:i + n]
            i += n
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return out


def move_to_cgroup(pid: int, path: str) -> None:
    """Put ``pid`` into cgroup ``path``: on v2 only (/sys/fs/cgroup is cgroup2), else in
    every v1 hierarchy that has it (the Go shim's ``cgroups.Load(V1, StaticPath)``).

    Raises:
        OSError: no hierarchy has it, or a write failed.
    """
    rel = path.strip("/")
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        dirs = [os.path.join("/sys/fs/cgroup", rel)]
    else:
        from ..mount import mountinfo   # the one parser: mount points unescaped
        dirs = [d for d in (os.path.join(m.mountpoint, rel) for m in mountinfo()
                            if m.fstype == "cgroup") if os.path.isdir(d)]
    if not dirs:
        raise FileNotFoundError(2, "no cgroup hierarchy has the shim cgroup", path)
    for d in dirs:
        with open(os.path.join(d, "cgroup.procs"), "w") as f:
            f.write(str(pid))


def adjust_oom_score(pid: int) -> None:
    """The daemon's ``oom_score_adj``: containerd's (our parent's) + 1, at most 1000."""
    try:
        with open(f"/proc/{os.getppid()}/oom_score_adj") as f:
            score = int(f.read().strip() or 0)
        with open(f"/proc/{pid}/oom_score_adj", "w") as f:
            f.write(str(min(score + 1, OOM_SCORE_MAX)))
    except PermissionError:
        pass    # lowering needs CAP_SYS_RESOURCE; the Go shim lets it be too


def start(flags: Flags) -> int:
    """The action; prints the address (no newline) and returns 0."""
    bundle = flags.bundle or os.getcwd()
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            data = f.read()
    except OSError as exc:
        raise OSError(f"read config.json: {exc}") from None
    address = socket_address(flags.address, flags.namespace, read_group(data, flags.id))
    path = _path(address)
    sock = new_socket(path, flags.id)
    if sock is None:
        write_address(bundle, address)
        sys.stdout.write(address)
        return 0
    try:
        write_address(bundle, address)
        pid = _fork_daemon(flags, sock, bundle)
    except BaseException:
        sock.close()
        os.unlink(path)
        raise
    sock.close()
    try:
        cgroup = shim_cgroup(sys.stdin.buffer.read())
        if cgroup:
            move_to_cgroup(pid, cgroup)
        adjust_oom_score(pid)
    except BaseException:
        import signal

        # Our child, not reaped yet: the pidfd is of the daemon we forked.
        pidfd = os.pidfd_open(pid)
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        finally:
            os.close(pidfd)
        raise
    sys.stdout.write(address)
    return 0


def _fork_daemon(flags: Flags, sock: Socket, bundle: str) -> int:
    """Fork the daemon serving ``sock``; its pid.  The child never returns."""
    pid = os.fork()
    if pid:
        return pid
    status = 1
    try:
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        if null > 2:
            os.close(null)
        import socket

        from ._daemon import serve

        flags.bundle = bundle
        status = serve(flags, socket.socket(fileno=sock.detach()))
    finally:
        os._exit(status)
