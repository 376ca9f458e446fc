"""The numpy cut of same-length packet runs in split_packets agrees with the walk."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control_center.telemetry import packets as packets_module
from control_center.telemetry.packets import (
    IDLE_APID,
    SplitResult,
    _crc_rows,
    _split_slow,
    _split_uniform,
    build_packet,
    crc16,
    split_packets,
)

KNOWN = {0x101: 40, 0x102: 40, 0x103: 64}  # APID -> packet length
CHECKED = frozenset({0x101, 0x103})
FAST_HITS: list[int] = []  # buffers the numpy cut accepted, to see it is exercised


def packet(apid: int, length: int, count: int, *, corrupt: bool = False,
           first_bits: int = 0) -> bytes:
    """``first_bits`` sets the version (3 bits) and type (1 bit) of the header."""
    data = build_packet(apid, count, bytes((count + i) & 0xFF for i in range(length - 8)),
                        time=None)
    assert len(data) == length
    if first_bits:  # the CRC made again over the new header: only `corrupt` spoils it
        data = bytes([(data[0] & 0x0F) | (first_bits << 4)]) + data[1:-2]
        data += crc16(data).to_bytes(2, "big")
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


# One packet of a run: which APID (known, unknown, idle), whether its CRC is spoiled,
# and its version and type bits (type 1 is good, a version other than 0 is bad).
_kinds = st.sampled_from(["0x101", "0x102", "unknown", "idle"])
_first_bits = st.sampled_from([0, 0, 0, 0, 1, 2, 3, 0xE, 0xF])
_run = st.lists(st.tuples(_kinds, st.booleans(), _first_bits), min_size=0, max_size=80)
# 0: a variable-length packet type, any length taken.
VARIABLE = {0x101: 0, 0x102: 40, 0x103: 0}


def _build(items: list[tuple[str, bool, int]], length: int) -> bytes:
    out = []
    for count, (kind, corrupt, first_bits) in enumerate(items):
        apid = {"0x101": 0x101, "0x102": 0x102, "unknown": 0x2AA, "idle": IDLE_APID}[kind]
        out.append(packet(apid, length, count, corrupt=corrupt, first_bits=first_bits))
    return b"".join(out)


@settings(max_examples=300, deadline=None)
@given(items=_run, length=st.sampled_from([40, 64, 9]),
       lengths=st.sampled_from([KNOWN, None, {0x101: 40}, VARIABLE]),
       check=st.sampled_from([CHECKED, frozenset(), frozenset({0x102, 0x2AA, IDLE_APID})]))
def test_same_length_runs(items: list[tuple[str, bool, int]], length: int,
                          lengths: dict[int, int] | None, check: frozenset[int]) -> None:
    assert_same(_build(items, length), check, lengths)


@settings(max_examples=300, deadline=None)
@given(items=_run, length=st.sampled_from([40, 64]), data=st.data())
def test_spoiled_runs(items: list[tuple[str, bool, int]], length: int,
                      data: st.DataObject) -> None:
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
    assert_same(bytes(buffer), lengths=VARIABLE)


@settings(max_examples=200, deadline=None)
@given(pieces=st.lists(st.tuples(st.sampled_from([0x101, 0x102, 0x103, 0x2AA, IDLE_APID]),
                                 st.sampled_from([40, 64, 12]), st.booleans(), _first_bits),
                       max_size=60),
       tail=st.binary(max_size=20))
def test_mixed_lengths(pieces: list[tuple[int, int, bool, int]], tail: bytes) -> None:
    buffer = b"".join(packet(apid, length, i, corrupt=corrupt, first_bits=first_bits)
                      for i, (apid, length, corrupt, first_bits) in enumerate(pieces)) + tail
    assert_same(buffer)
    assert_same(buffer, lengths=VARIABLE)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=400))
def test_garbage(buffer: bytes) -> None:
    assert_same(buffer)
    assert_same(buffer, frozenset(), None)
    assert_same(buffer, lengths=VARIABLE)


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


def test_large_run_with_bad_versions_and_type_1_takes_the_fast_path() -> None:
    FAST_HITS.clear()
    rng = random.Random(5)
    bits = [rng.choice([0, 0, 0, 1, 2, 0xF]) for _ in range(3000)]
    buffer = b"".join(packet(0x101, 40, i, first_bits=b) for i, b in enumerate(bits))
    result = assert_same(buffer)
    assert result.errors == {"bad_header": sum(1 for b in bits if b >> 1)}
    assert result.count == sum(1 for b in bits if b in (0, 1))  # type 1 is taken
    assert len(FAST_HITS) == 1
    FAST_HITS.clear()
    assert_same(buffer, lengths=VARIABLE)
    assert len(FAST_HITS) == 1


def test_hypothesis_runs_reach_the_fast_path() -> None:
    FAST_HITS.clear()
    test_same_length_runs()
    assert len(FAST_HITS) > 50


def test_non_bytes_buffer_gives_bytes() -> None:
    buffer = b"".join(packet(0x101, 40, i) for i in range(50))
    result = split_packets(bytearray(buffer), check_crc=CHECKED, lengths=KNOWN)  # type: ignore[arg-type]
    assert result.by_apid == _split_slow(buffer, check_crc=CHECKED, lengths=KNOWN).by_apid
    assert all(type(p) is bytes for p in result.by_apid[0x101])


def test_crc_checked_a_block_of_rows_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The numpy CRC runs over blocks of rows: every row's CRC is its own, whatever
    block it falls in (blocks of 7 rows here, the last one short)."""
    monkeypatch.setattr(packets_module, "_CRC_BLOCK_ROWS", 7)
    rng = random.Random(9)
    corrupt = [rng.random() < 0.2 for _ in range(100)]
    buffer = b"".join(packet(0x101, 40, i, corrupt=c) for i, c in enumerate(corrupt))
    FAST_HITS.clear()
    result = assert_same(buffer)
    assert len(FAST_HITS) == 1
    assert result.errors == {"bad_crc": sum(corrupt)}
    rows = np.frombuffer(buffer, dtype=np.uint8).reshape(100, 40)
    assert _crc_rows(rows[:, :-2]).tolist() == [crc16(bytes(r[:-2])) for r in rows]


@pytest.mark.parametrize("width", [1, 2, 3, 41, 42, 255])
def test_the_numpy_crc_two_octets_a_step_equals_crc_hqx(width: int) -> None:
    """Odd widths end with one octet step; a column slice (not contiguous) is read as is."""
    rng = np.random.default_rng(width)
    rows = rng.integers(0, 256, (300, width + 2), dtype=np.uint8)[:, 1:-1]
    assert _crc_rows(rows).tolist() == [crc16(bytes(r)) for r in rows]
