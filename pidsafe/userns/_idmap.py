"""IDMap: a user namespace's uid or gid map, parsed and validated once.

Three spellings of the same thing:

* containerd's mount option form ``uidmap=0:100000:65536,65536:0:1``
  (:meth:`IDMap.parse`, and ``str()``),
* OCI's ``[{"containerID": 0, "hostID": 100000, "size": 65536}]``
  (:meth:`IDMap.from_oci`, :meth:`IDMap.to_oci`),
* the kernel's ``/proc/PID/uid_map`` text, one ``"container host size"``
  line per range (:meth:`IDMap.from_kernel`, :meth:`IDMap.to_kernel`).

The kernel's rules (user_namespaces(7), ``map_write()`` in
kernel/user_namespace.c) are checked here, so a bad map is rejected with a
message naming the range and the reason instead of a bare ``EINVAL`` from a
write to ``/proc``: ids are 32-bit but ``4294967295`` (``(uid_t)-1``) is not
an id, so no range may reach past ``4294967294``; container ranges may not
overlap, nor may host ranges; at most 340 ranges (``UID_GID_MAP_MAX_EXTENTS``
since Linux 4.15).

Ranges are kept sorted by container id, so equal maps compare (and hash)
equal whatever order they were written in, and ``str()`` is canonical.  The
kernel gives ranges no order either.
"""

from __future__ import annotations


from .._value import Frozen, Record
from ..errors import IDMapError

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Sequence, Tuple

#: The largest valid id: 2**32 - 2.  ``(uid_t)-1`` means "no id" to the kernel.
MAX_ID = 4294967294
#: The kernel's limit on ranges per map (Linux 4.15+).
MAX_RANGES = 340
_MAX_DIGITS = len(str(MAX_ID))
_OCI_KEYS = ("containerID", "hostID", "size")


class IDRange(Record):
    """One range of a map: ``size`` ids from ``container`` map to ``host``."""

    container: int
    host: int
    size: int

    @property
    def container_end(self) -> int:
        """The last container id of the range (inclusive)."""
        return self.container + self.size - 1

    @property
    def host_end(self) -> int:
        """The last host id of the range (inclusive)."""
        return self.host + self.size - 1

    def __str__(self) -> str:
        return f"{self.container}:{self.host}:{self.size}"


def _check_range(r: IDRange, where: str) -> None:
    for name in ("container", "host", "size"):
        v = getattr(r, name)
        if not isinstance(v, int) or isinstance(v, bool):
            raise IDMapError(f"{where}: {name} must be an int, not {type(v).__name__}: {v!r}")
        if v < 0:
            raise IDMapError(f"{where}: {name} {v} is negative")
    if r.size == 0:
        raise IDMapError(f"{where}: size is 0 (a range maps at least one id)")
    if r.container > MAX_ID:
        raise IDMapError(f"{where}: container id {r.container} is past {MAX_ID}")
    if r.host > MAX_ID:
        raise IDMapError(f"{where}: host id {r.host} is past {MAX_ID}")
    if r.container_end > MAX_ID:
        raise IDMapError(f"{where}: container range ends at {r.container_end}, past {MAX_ID}")
    if r.host_end > MAX_ID:
        raise IDMapError(f"{where}: host range ends at {r.host_end}, past {MAX_ID}")


class IDMap(Frozen):
    """An immutable, validated uid or gid map of a user namespace.

    Build one with :meth:`parse`, :meth:`from_oci`, :meth:`from_kernel`, or
    directly from :class:`IDRange` objects.  Hashable, so it can key a cache.

    Raises:
        IDMapError: (from every constructor) the map is empty, a field is
            missing, extra, not an integer or negative, a size is 0, an id or
            range end is past 4294967294, container or host ranges overlap,
            or there are more than 340 ranges.
    """

    # Only ``ranges`` is a field (equality, hash, pickling); the others are
    # caches derived from it.
    __slots__ = ("ranges", "_by_host", "_kernel")
    _fields = ("ranges",)

    ranges: Tuple[IDRange, ...]
    _by_host: Tuple[IDRange, ...]
    #: to_kernel(), encoded once: what get_userns_fd() writes.
    _kernel: bytes

    def __init__(self, ranges: Iterable[IDRange]) -> None:
        items = list(ranges)
        if not items:
            raise IDMapError("the map is empty: give at least one range")
        if len(items) > MAX_RANGES:
            raise IDMapError(f"the map has {len(items)} ranges; the kernel takes at most "
                             f"{MAX_RANGES}")
        for i, r in enumerate(items):
            if not isinstance(r, IDRange):
                raise IDMapError(f"range {i}: not an IDRange: {r!r}")
            _check_range(r, f"range {i} {str(r)!r}")
        by_container = tuple(sorted(items, key=lambda r: (r.container, r.host, r.size)))
        by_host = tuple(sorted(items, key=lambda r: (r.host, r.container, r.size)))
        _check_overlap(by_container, "container", lambda r: (r.container, r.container_end))
        _check_overlap(by_host, "host", lambda r: (r.host, r.host_end))
        object.__setattr__(self, "ranges", by_container)
        object.__setattr__(self, "_by_host", by_host)
        object.__setattr__(self, "_kernel", "".join(
            f"{r.container} {r.host} {r.size}\n" for r in by_container).encode("ascii"))

    # -- constructors -------------------------------------------------------

    @classmethod
    def parse(cls, text: str) -> "IDMap":
        """Parse containerd's form: ``"c:h:s[,c:h:s...]"``.

        Example: ``IDMap.parse("0:100000:65536")`` maps container ids
        0..65535 to host ids 100000..165535.
        """
        if not isinstance(text, str):
            raise TypeError(f"IDMap.parse() takes a str, not {type(text).__name__}")
        if not text.strip():
            raise IDMapError("the map is empty: expected 'container:host:size[,...]'")
        parts = text.split(",")
        if len(parts) > MAX_RANGES:
            raise IDMapError(f"the map has {len(parts)} ranges; the kernel takes at most "
                             f"{MAX_RANGES}")
        out = []
        for i, part in enumerate(parts):
            where = f"range {i} {_short(part.strip())!r}"
            out.append(_range(part.strip().split(":"), where, "container:host:size"))
        return cls(out)

    @classmethod
    def from_oci(cls, mappings: Sequence[Mapping[str, Any]]) -> "IDMap":
        """From OCI's ``[{"containerID": c, "hostID": h, "size": s}, ...]``."""
        from collections import abc   # here: typing's aliases of these, at run time

        if isinstance(mappings, (str, bytes)) or not isinstance(mappings, abc.Sequence):
            raise IDMapError(f"OCI mappings must be a list of objects, not "
                             f"{type(mappings).__name__}")
        out = []
        for i, m in enumerate(mappings):
            where = f"mapping {i}"
            if not isinstance(m, abc.Mapping):
                raise IDMapError(f"{where}: must be an object with containerID, hostID, "
                                 f"size, not {type(m).__name__}: {m!r}")
            missing = [k for k in _OCI_KEYS if k not in m]
            if missing:
                raise IDMapError(f"{where} {_short(repr(dict(m)))}: missing field {missing[0]!r}")
            extra = sorted(str(k) for k in m if k not in _OCI_KEYS)
            if extra:
                raise IDMapError(f"{where} {_short(repr(dict(m)))}: extra field {extra[0]!r}")
            vals = []
            for k in _OCI_KEYS:
                v = m[k]
                if not isinstance(v, int) or isinstance(v, bool):
                    raise IDMapError(f"{where}: {k} must be an integer, not "
                                     f"{type(v).__name__}: {v!r}")
                vals.append(v)
            out.append(IDRange(vals[0], vals[1], vals[2]))
        return cls(out)

    @classmethod
    def from_kernel(cls, text: str) -> "IDMap":
        """From the text of ``/proc/PID/uid_map`` (or ``gid_map``).

        One ``container host size`` range per line; any whitespace between
        fields, blank lines ignored.
        """
        if not isinstance(text, str):
            raise TypeError(f"IDMap.from_kernel() takes a str, not {type(text).__name__}")
        lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        if not lines:
            raise IDMapError("the map is empty: expected 'container host size' lines")
        if len(lines) > MAX_RANGES:
            raise IDMapError(f"the map has {len(lines)} ranges; the kernel takes at most "
                             f"{MAX_RANGES}")
        out = []
        for n, line in lines:
            where = f"line {n} {_short(line.strip())!r}"
            out.append(_range(line.split(), where, "'container host size'"))
        return cls(out)

    # -- output -------------------------------------------------------------

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.ranges)

    def __repr__(self) -> str:
        return f"IDMap.parse({str(self)!r})"

    def to_kernel(self) -> str:
        """The text to write to ``/proc/PID/uid_map`` (in one ``write()``)."""
        return self._kernel.decode("ascii")

    def to_oci(self) -> List[Dict[str, int]]:
        """OCI's list-of-objects form."""
        return [{"containerID": r.container, "hostID": r.host, "size": r.size}
                for r in self.ranges]

    def __iter__(self) -> Iterator[IDRange]:
        return iter(self.ranges)

    def __len__(self) -> int:
        return len(self.ranges)

    # -- translation --------------------------------------------------------

    def to_host(self, container_id: int) -> int:
        """The host id that ``container_id`` maps to.

        Raises:
            IDMapError: the id is not an id, or the map does not map it.
        """
        return self._translate(container_id, "container")

    def to_container(self, host_id: int) -> int:
        """The container id that ``host_id`` appears as.

        Raises:
            IDMapError: the id is not an id, or the map does not map it.
        """
        return self._translate(host_id, "host")

    def _translate(self, id_: int, side: str) -> int:
        """``id_`` of one side of the map (``"container"`` or ``"host"``) as the other."""
        _check_id(id_, f"{side} id")
        ranges = self.ranges if side == "container" else self._by_host
        starts: List[int] = [getattr(r, side) for r in ranges]   # sorted by that side
        import bisect   # here: most callers never look an id up

        i = bisect.bisect_right(starts, id_) - 1
        if i < 0 or id_ >= starts[i] + ranges[i].size:
            raise IDMapError(f"{side} id {id_} is not mapped by {self}")
        r = ranges[i]
        return (r.host if side == "container" else r.container) + (id_ - starts[i])


def _range(fields_: List[str], where: str, expected: str) -> IDRange:
    """One range from the text of its three fields (``expected`` says how they are written)."""
    if len(fields_) != 3:
        what = "missing" if len(fields_) < 3 else "extra"
        raise IDMapError(f"{where}: {what} field: expected {expected}, "
                         f"got {len(fields_)} field{'s' if len(fields_) != 1 else ''}")
    c, h, s = (_number(f, name, where) for f, name in
               zip(fields_, ("container id", "host id", "size")))
    return IDRange(c, h, s)


def _number(text: str, name: str, where: str) -> int:
    """A decimal id or size; only ASCII digits (no sign, space, '_' or '²')."""
    t = text.strip()
    if not t:
        raise IDMapError(f"{where}: {name} is missing")
    neg = t.startswith("-")
    digits = t[1:] if neg else t
    if not (digits.isascii() and digits.isdigit()):
        raise IDMapError(f"{where}: {name} {t!r} is not a non-negative integer")
    if neg:
        raise IDMapError(f"{where}: {name} {t} is negative")
    # Refuse huge strings before int(): no quadratic conversion, no
    # int-max-str-digits ValueError.
    if len(digits.lstrip("0")) > _MAX_DIGITS:
        raise IDMapError(f"{where}: {name} {_short(t)} is past {MAX_ID}")
    return int(digits)


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _check_id(value: int, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise IDMapError(f"{what} must be an int, not {type(value).__name__}: {value!r}")
    if not 0 <= value <= MAX_ID:
        raise IDMapError(f"{what} {value} is not an id (0..{MAX_ID})")


def _check_overlap(ranges: Sequence[IDRange], side: str,
                   span: Callable[[IDRange], Tuple[int, int]]) -> None:
    prev = None
    for r in ranges:
        if prev is not None:
            start, _ = span(r)
            _, prev_end = span(prev)
            if start <= prev_end:
                raise IDMapError(f"ranges {prev} and {r} overlap in {side} ids "
                                 f"({start}..{min(prev_end, span(r)[1])})")
        prev = r
