"""The numpy cut of same-length packet runs in split_packets agrees with the walk."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from control_center.packets import (
    IDLE_APID,
    SplitResult,
    _split_slow,
    _split_uniform,
    build_packet,
    split_packets,
)

KNOWN = {0x101: 40, 0x102: 40, 0x103: 64}  # APID -> packet length
CHECKED = frozenset({0x101, 0x103})
FAST_HITS: list[int] = []  # buffers the numpy cut accepted, to see it is exercised


def packet(apid: int, length: int, count: int, *, corrupt: bool = False) -> bytes:
    data = build_packet(apid, count, bytes((count + i) & 0xFF for i in range(length - 8)),
                        time=None)
    assert len(data) == length
    if corrupt:
        data = data[:-1] + bytes([data[-1] ^ 0x5A])
    return data


def assert_same(buffer: bytes, check_crc: frozenset[int] = CHECKED,
                lengths: dict[int, int] | None = KNOWN) -> SplitResult:
    fast = split_packets(buffer, check_crc=check_crc, lengths=lengths)
    slow = _split_slow(buffer, check_crc=check_crc, lengths=lengths)
    assert list(fast.by_apid) == list(slow.by_apid)  # same order of APIDs too
    assert fast.by_apid == slow.by_apid
    assert all(type(p) is bytes for v in fast.by_apid.values() for p in v)
    assert +fast.errors == +slow.errors
    assert fast.idle == slow.idle
    # The numpy cut on its own, below the size where split_packets starts using it.
    small = _split_uniform(buffer, check_crc, lengths, minimum=1)
    if small is not None:
        assert list(small.by_apid) == list(slow.by_apid)
        assert small.by_apid == slow.by_apid
        assert +small.errors == +slow.errors
        assert small.idle == slow.idle
        FAST_HITS.append(len(buffer))
    return fast


# One packet of a run: which APID (known, unknown, idle) and whether its CRC is spoiled.
_kinds = st.sampled_from(["0x101", "0x102", "unknown", "idle"])
_run = st.lists(st.tuples(_kinds, st.booleans()), min_size=0, max_size=80)


def _build(items: list[tuple[str, bool]], length: int) -> bytes:
    out = []
    for count, (kind, corrupt) in enumerate(items):
        apid = {"0x101": 0x101, "0x102": 0x102, "unknown": 0x2AA, "idle": IDLE_APID}[kind]
        out.append(packet(apid, length, count, corrupt=corrupt))
    return b"".join(out)


@settings(max_examples=300, deadline=None)
@given(items=_run, length=st.sampled_from([40, 64, 9]),
       lengths=st.sampled_from([KNOWN, None, {0x101: 40}]),
       check=st.sampled_from([CHECKED, frozenset(), frozenset({0x102, 0x2AA, IDLE_APID})]))
def test_same_length_runs(items: list[tuple[str, bool]], length: int,
                          lengths: dict[int, int] | None, check: frozenset[int]) -> None:
    assert_same(_build(items, length), check, lengths)


@settings(max_examples=300, deadline=None)
@given(items=_run, length=st.sampled_from([40, 64]), data=st.data())
def test_spoiled_runs(items: list[tuple[str, bool]], length: int, data: st.DataObject) -> None:
    """Runs with one change: a tail cut, a header spoiled, a length changed, garbage."""
    buffer = bytearray(_build(items, length))
    how = data.draw(st.sampled_from(["cut", "extend", "version", "type", "length", "garbage",
                                     "insert"]))
    if buffer:
        where = data.draw(st.integers(0, len(buffer) // length - 1)) * length
        if how == "cut":
            buffer = buffer[:data.draw(st.integers(0, len(buffer)))]
        elif how == "extend":
            buffer += data.draw(st.binary(min_size=1, max_size=2 * length))
        elif how == "version":
            buffer[where] |= data.draw(st.sampled_from([0x20, 0x40, 0x80, 0xE0]))
        elif how == "type":
            buffer[where] |= 0x10
        elif how == "length":
            buffer[where + 5] ^= data.draw(st.integers(1, 255))
        elif how == "garbage":
            start = data.draw(st.integers(0, len(buffer) - 1))
            chunk = data.draw(st.binary(min_size=1, max_size=16))
            buffer[start:start + len(chunk)] = chunk
        else:
            buffer[where:where] = packet(0x103, 64, 7)
    assert_same(bytes(buffer))


@settings(max_examples=200, deadline=None)
@given(pieces=st.lists(st.tuples(st.sampled_from([0x101, 0x102, 0x103, 0x2AA, IDLE_APID]),
                                 st.sampled_from([40, 64, 12]), st.booleans()),
                       max_size=60),
       tail=st.binary(max_size=20))
def test_mixed_lengths(pieces: list[tuple[int, int, bool]], tail: bytes) -> None:
    buffer = b"".join(packet(apid, length, i, corrupt=corrupt)
                      for i, (apid, length, corrupt) in enumerate(pieces)) + tail
    assert_same(buffer)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=400))
def test_garbage(buffer: bytes) -> None:
    assert_same(buffer)
    assert_same(buffer, frozenset(), None)


def test_large_run_takes_the_fast_path_and_agrees() -> None:
    FAST_HITS.clear()
    rng = random.Random(3)
    apids = [rng.choice([0x101, 0x102, 0x2AA, IDLE_APID]) for _ in range(5000)]
    buffer = b"".join(packet(a, 40, i, corrupt=rng.random() < 0.01)
                      for i, a in enumerate(apids))
    result = assert_same(buffer)
    assert result.errors["bad_crc"] > 0
    assert result.errors["unknown_apid"] == apids.count(0x2AA)
    assert result.idle == apids.count(IDLE_APID)
    assert len(FAST_HITS) == 1  # the numpy cut took this buffer


def test_hypothesis_runs_reach_the_fast_path() -> None:
    FAST_HITS.clear()
    test_same_length_runs()
    assert len(FAST_HITS) > 50


def test_non_bytes_buffer_gives_bytes() -> None:
    buffer = b"".join(packet(0x101, 40, i) for i in range(50))
    result = split_packets(bytearray(buffer), check_crc=CHECKED, lengths=KNOWN)  # type: ignore[arg-type]
    assert result.by_apid == _split_slow(buffer, check_crc=CHECKED, lengths=KNOWN).by_apid
    assert all(type(p) is bytes for p in result.by_apid[0x101])
