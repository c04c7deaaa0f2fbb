"""IDMap: parsing the three spellings, the kernel's rules, translation."""

from __future__ import annotations

from typing import Any, List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pidsafe import IDMap, IDMapError, IDRange

MAX = 4294967294


# -- valid maps -------------------------------------------------------------------


def test_parse_single_range() -> None:
    m = IDMap.parse("0:100000:65536")
    assert m.ranges == (IDRange(0, 100000, 65536),)
    assert str(m) == "0:100000:65536"
    assert m.to_kernel() == "0 100000 65536\n"
    assert m.to_oci() == [{"containerID": 0, "hostID": 100000, "size": 65536}]
    assert len(m) == 1 and list(m) == list(m.ranges)


def test_parse_many_ranges_is_order_independent() -> None:
    a = IDMap.parse("65536:0:1,0:100000:65536")
    b = IDMap.parse("0:100000:65536,65536:0:1")
    assert a == b and hash(a) == hash(b)
    assert str(a) == "0:100000:65536,65536:0:1"
    assert a.to_kernel() == "0 100000 65536\n65536 0 1\n"


def test_parse_accepts_leading_zeros_and_surrounding_space() -> None:
    assert IDMap.parse(" 00:0100:01 ") == IDMap.parse("0:100:1")


def test_extremes_are_valid() -> None:
    assert str(IDMap.parse(f"{MAX}:{MAX}:1")) == f"{MAX}:{MAX}:1"
    full = IDMap.parse(f"0:0:{MAX + 1}")  # every id, 0..4294967294
    assert full.to_host(MAX) == MAX
    assert len(IDMap.parse(",".join(f"{i}:{i}:1" for i in range(340)))) == 340


def test_adjacent_ranges_do_not_overlap() -> None:
    IDMap.parse("0:0:10,10:10:10")


def test_from_kernel_arbitrary_whitespace() -> None:
    text = "         0     100000      65536\n\n\t65536 \t 0  1  \n"
    assert IDMap.from_kernel(text) == IDMap.parse("0:100000:65536,65536:0:1")


def test_from_kernel_reads_proc_self_uid_map() -> None:
    with open("/proc/self/uid_map") as f:
        m = IDMap.from_kernel(f.read())
    assert m.to_host(0) == m.ranges[0].host


def test_from_oci() -> None:
    m = IDMap.from_oci([{"containerID": 0, "hostID": 1000, "size": 1},
                        {"containerID": 1, "hostID": 100000, "size": 65536}])
    assert str(m) == "0:1000:1,1:100000:65536"
    assert IDMap.from_oci(m.to_oci()) == m


def test_translation_both_ways() -> None:
    m = IDMap.parse("0:100000:1000,1000:5000:10")
    assert m.to_host(0) == 100000
    assert m.to_host(999) == 100999
    assert m.to_host(1005) == 5005
    assert m.to_container(100500) == 500
    assert m.to_container(5009) == 1009
    with pytest.raises(IDMapError, match="container id 1010 is not mapped by"):
        m.to_host(1010)
    with pytest.raises(IDMapError, match="host id 99999 is not mapped"):
        m.to_container(99999)
    with pytest.raises(IDMapError, match="not an id"):
        m.to_host(-1)
    with pytest.raises(IDMapError, match="not an id"):
        m.to_container(MAX + 1)
    with pytest.raises(IDMapError, match="must be an int"):
        m.to_host("0")  # type: ignore[arg-type]


def test_immutable() -> None:
    m = IDMap.parse("0:1:1")
    with pytest.raises(AttributeError):
        m.ranges = ()  # type: ignore[misc]
    with pytest.raises(AttributeError):
        m.ranges[0].size = 2  # type: ignore[misc]


# -- invalid maps -------------------------------------------------------------------

BAD_TEXT = [
    ("", "empty"),
    ("   ", "empty"),
    ("0:1", "range 0 '0:1': missing field"),
    ("0:1:", "range 0 '0:1:': size is missing"),
    ("0:1:1:1", "range 0 '0:1:1:1': extra field"),
    ("0:1:1,", "range 1 '': missing field"),
    (",0:1:1", "range 0 '': missing field"),
    ("a:1:1", "container id 'a' is not a non-negative integer"),
    ("0:1.5:1", "host id '1.5' is not a non-negative integer"),
    ("0:1:0x10", "size '0x10' is not a non-negative integer"),
    ("0:+1:1", "host id '\\+1' is not a non-negative integer"),
    ("0:1_000:1", "host id '1_000' is not a non-negative integer"),
    ("0:\u0661:1", "is not a non-negative integer"),   # ARABIC-INDIC DIGIT ONE
    ("0:\u00b2:1", "is not a non-negative integer"),   # SUPERSCRIPT TWO
    ("-1:0:1", "container id -1 is negative"),
    ("0:-5:1", "host id -5 is negative"),
    ("0:0:-1", "size -1 is negative"),
    ("0:0:0", "range 0 '0:0:0': size is 0"),
    (f"{MAX + 1}:0:1", "container id 4294967295 is past 4294967294"),
    (f"0:{MAX + 1}:1", "host id 4294967295 is past 4294967294"),
    (f"{MAX}:0:2", "container range ends at 4294967295, past 4294967294"),
    (f"0:{MAX}:2", "host range ends at 4294967295, past 4294967294"),
    (f"0:0:{MAX + 2}", "range ends at 4294967295"),
    ("0:" + "9" * 5000 + ":1", "is past 4294967294"),
    ("0:0:10,5:100:1", "ranges 0:0:10 and 5:100:1 overlap in container ids"),
    ("0:0:10,20:5:1", "ranges 0:0:10 and 20:5:1 overlap in host ids"),
    ("0:0:1,0:0:1", "overlap in container ids"),
    (",".join(f"{i}:{i}:1" for i in range(341)), "341 ranges; the kernel takes at most 340"),
]


@pytest.mark.parametrize("text,message", BAD_TEXT, ids=[t[:24] for t, _ in BAD_TEXT])
def test_parse_rejects(text: str, message: str) -> None:
    with pytest.raises(IDMapError, match=message):
        IDMap.parse(text)


def test_error_is_a_value_error() -> None:
    assert issubclass(IDMapError, ValueError)
    with pytest.raises(ValueError):
        IDMap.parse("x")


def test_parse_rejects_non_str() -> None:
    with pytest.raises(TypeError):
        IDMap.parse(b"0:0:1")  # type: ignore[arg-type]


BAD_KERNEL = [
    ("", "empty"),
    ("\n \n", "empty"),
    ("0 1", "line 1 '0 1': missing field"),
    ("0 1 1\n0 1 1 1", "line 2 '0 1 1 1': extra field"),
    ("0:1:1", "line 1 '0:1:1': missing field"),
    ("0 x 1", "host id 'x' is not a non-negative integer"),
    ("0 0 0", "size is 0"),
    ("0 0 5\n3 100 1", "overlap in container ids"),
]


@pytest.mark.parametrize("text,message", BAD_KERNEL)
def test_from_kernel_rejects(text: str, message: str) -> None:
    with pytest.raises(IDMapError, match=message):
        IDMap.from_kernel(text)


BAD_OCI: List[Any] = [
    ([], "empty"),
    ("0:0:1", "must be a list"),
    ([1], "mapping 0: must be an object"),
    ([{"containerID": 0, "hostID": 0}], "mapping 0 .*missing field 'size'"),
    ([{"containerID": 0, "hostID": 0, "size": 1, "x": 1}], "extra field 'x'"),
    ([{"containerID": "0", "hostID": 0, "size": 1}], "containerID must be an integer"),
    ([{"containerID": True, "hostID": 0, "size": 1}], "containerID must be an integer"),
    ([{"containerID": 0, "hostID": 0.5, "size": 1}], "hostID must be an integer"),
    ([{"containerID": 0, "hostID": -1, "size": 1}], "host -1 is negative"),
    ([{"containerID": 0, "hostID": 0, "size": 0}], "size is 0"),
    ([{"containerID": 0, "hostID": 0, "size": 2},
      {"containerID": 1, "hostID": 10, "size": 1}], "overlap in container ids"),
]


@pytest.mark.parametrize("mappings,message", BAD_OCI)
def test_from_oci_rejects(mappings: Any, message: str) -> None:
    with pytest.raises(IDMapError, match=message):
        IDMap.from_oci(mappings)


def test_constructor_validates_ranges() -> None:
    with pytest.raises(IDMapError, match="range 0 '1:1:0': size is 0"):
        IDMap([IDRange(1, 1, 0)])
    with pytest.raises(IDMapError, match="not an IDRange"):
        IDMap([(0, 0, 1)])  # type: ignore[list-item]
    with pytest.raises(IDMapError, match="empty"):
        IDMap([])


# -- properties -----------------------------------------------------------------------


@st.composite
def idmaps(draw: st.DrawFn) -> IDMap:
    """Valid maps: disjoint container and host ranges, given in random order."""
    n = draw(st.integers(1, 12))
    sizes = draw(st.lists(st.integers(1, 1 << 20), min_size=n, max_size=n))

    def lay_out(order: List[int]) -> List[int]:
        """Start ids for ranges placed in ``order``, with random gaps."""
        starts = [0] * n
        pos = 0
        for i in order:
            pos += draw(st.integers(0, 1 << 28))
            starts[i] = pos
            pos += sizes[i]
        return starts

    containers = lay_out(list(range(n)))
    hosts = lay_out(list(draw(st.permutations(range(n)))))
    ranges = [IDRange(containers[i], hosts[i], sizes[i]) for i in range(n)]
    return IDMap(draw(st.permutations(ranges)))


@settings(max_examples=300, deadline=None)
@given(idmaps())
def test_round_trips(m: IDMap) -> None:
    assert IDMap.parse(str(m)) == m
    assert IDMap.from_kernel(m.to_kernel()) == m
    assert IDMap.from_oci(m.to_oci()) == m
    for r in m.ranges:
        assert m.to_host(r.container) == r.host
        assert m.to_host(r.container_end) == r.host_end
        assert m.to_container(r.host_end) == r.container_end


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_parse_raises_only_idmap_error(text: str) -> None:
    try:
        IDMap.parse(text)
    except IDMapError:
        pass


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from("0123456789:,- \t\n+_x")))
def test_parse_raises_only_idmap_error_near_misses(text: str) -> None:
    try:
        m = IDMap.parse(text)
    except IDMapError:
        return
    assert IDMap.parse(str(m)) == m


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from("0123456789 \t\n-+x\u00b2")))
def test_from_kernel_raises_only_idmap_error(text: str) -> None:
    try:
        m = IDMap.from_kernel(text)
    except IDMapError:
        return
    assert IDMap.from_kernel(m.to_kernel()) == m
