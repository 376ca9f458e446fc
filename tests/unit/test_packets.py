"""Unit tests of telemetry.packets: primary header, CRC-16, CUC time, split_packets."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control_center.telemetry.packets import (
    CCSDS_TO_UNIX_SECONDS,
    IDLE_APID,
    CucTime,
    PrimaryHeader,
    SpacePacket,
    build_packet,
    crc16,
    cuc_to_unix_ns,
    split_packets,
)
from tests.conftest import crc16_reference

FAST = settings(max_examples=150, deadline=None)




def unix(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


# ----------------------------------------------------------------------------- CRC-16


def test_crc16_published_check_value() -> None:
    # CRC-16/CCITT-FALSE (init 0xFFFF, poly 0x1021) check value from the CRC catalogue.
    assert crc16(b"123456789") == 0x29B1


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # Verification sequences of the PUS standard (ECSS-E-70-41A annex A / ECSS-E-ST-70-41C),
        # recomputed by crc16_reference below.
        (bytes.fromhex("0000"), 0x1D0F),
        (bytes.fromhex("000000"), 0xCC9C),
        (bytes.fromhex("ABCDEF01"), 0x04A2),
        (bytes.fromhex("1456F89A0001"), 0x7FD5),
        (b"A", 0xB915),
        (b"", 0xFFFF),
    ],
)
def test_crc16_vectors(data: bytes, expected: int) -> None:
    assert crc16_reference(data) == expected
    assert crc16(data) == expected


@FAST
@given(st.binary(max_size=300))
def test_crc16_matches_bitwise_reference(data: bytes) -> None:
    value = crc16(data)
    assert value == crc16_reference(data)
    # Appending the CRC big-endian gives a remainder of 0: what split_packets checks.
    assert crc16(data + value.to_bytes(2, "big")) == 0


def test_crc16_initial_value_is_honoured() -> None:
    assert crc16(b"123456789", 0) == crc16_reference(b"123456789", 0) == 0x31C3


# ----------------------------------------------------------------------- primary header


def test_primary_header_hand_built_octets() -> None:
    # CCSDS 133.0-B-2 §4.1.3, bit by bit:
    #   version 000 | type 0 | sec. hdr flag 1 | APID 001 0010 0011 (0x123)
    #     -> 0000 1001 0010 0011 = 09 23
    #   sequence flags 11 | sequence count 01 1010 1011 1100 (0x1ABC)
    #     -> 1101 1010 1011 1100 = DA BC
    #   packet data length: 10 octets - 1 = 9 -> 00 09
    octets = bytes([0x09, 0x23, 0xDA, 0xBC, 0x00, 0x09])
    header = PrimaryHeader(apid=0x123, sequence_count=0x1ABC, data_length=10)
    assert header.pack() == octets
    assert PrimaryHeader.unpack(octets) == header
    assert header.packet_length == 16


def test_primary_header_hand_built_telecommand_without_secondary_header() -> None:
    # version 000 | type 1 | flag 0 | APID 111 1111 1111 -> 0001 0111 1111 1111 = 17 FF
    # flags 01 (first segment) | count 00 0000 0000 0001 -> 0100 0000 0000 0001 = 40 01
    # data length 65536 octets -> field 0xFFFF
    octets = bytes([0x17, 0xFF, 0x40, 0x01, 0xFF, 0xFF])
    header = PrimaryHeader.unpack(octets)
    assert header == PrimaryHeader(apid=0x7FF, sequence_count=1, data_length=65536,
                                   version=0, packet_type=1, secondary_header=False,
                                   sequence_flags=0b01)
    assert header.pack() == octets
    assert header.packet_length == 65542


@FAST
@given(
    version=st.integers(0, 7),
    packet_type=st.integers(0, 1),
    secondary=st.booleans(),
    apid=st.integers(0, 0x7FF),
    flags=st.integers(0, 3),
    count=st.integers(0, 0x3FFF),
    data_length=st.integers(1, 65536),
)
def test_primary_header_round_trip(version: int, packet_type: int, secondary: bool, apid: int,
                                   flags: int, count: int, data_length: int) -> None:
    header = PrimaryHeader(apid=apid, sequence_count=count, data_length=data_length,
                           version=version, packet_type=packet_type,
                           secondary_header=secondary, sequence_flags=flags)
    packed = header.pack()
    assert len(packed) == 6
    # The same layout computed as one 48-bit integer, most significant bit first.
    expected = (version << 45) | (packet_type << 44) | (int(secondary) << 43) | (apid << 32) \
        | (flags << 30) | (count << 16) | (data_length - 1)
    assert int.from_bytes(packed, "big") == expected
    assert PrimaryHeader.unpack(packed) == header
    assert PrimaryHeader.unpack(packed + b"\xaa\xbb").packet_length == 6 + data_length


@pytest.mark.parametrize("data_length", [0, 65537, -1])
def test_primary_header_rejects_data_length_outside_range(data_length: int) -> None:
    with pytest.raises(ValueError, match=r"outside 1\.\.65536"):
        PrimaryHeader(apid=1, sequence_count=0, data_length=data_length).pack()


def test_primary_header_unpack_needs_six_octets() -> None:
    with pytest.raises(ValueError, match="6 octets"):
        PrimaryHeader.unpack(b"\x00\x01\x02\x03\x04")


def test_space_packet_unpack_and_short_buffer() -> None:
    packet = build_packet(0x42, 7, b"\x01\x02\x03", time=CucTime(5, 6))
    parsed = SpacePacket.unpack(packet + b"trailing")
    assert parsed.header.apid == 0x42
    assert parsed.header.sequence_count == 7
    assert parsed.header.secondary_header is True
    assert parsed.pack() == packet
    with pytest.raises(ValueError, match="declares 17 octets, only 16 present"):
        SpacePacket.unpack(packet[:-1])


def test_build_packet_layout() -> None:
    packet = build_packet(0x110, 0x3FFF, b"\xde\xad", time=CucTime(0x01020304, 0x0506))
    assert packet[:6] == bytes([0x09, 0x10, 0xFF, 0xFF, 0x00, 0x09])
    assert packet[6:12] == bytes([1, 2, 3, 4, 5, 6])
    assert packet[12:14] == b"\xde\xad"
    assert int.from_bytes(packet[14:], "big") == crc16_reference(packet[:14])
    plain = build_packet(0x110, 1, b"\x00", time=None, error_control=False)
    assert plain == bytes([0x01, 0x10, 0xC0, 0x01, 0x00, 0x00, 0x00])


# ----------------------------------------------------------------------------- CUC time


@FAST
@given(st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFF))
def test_cuc_pack_unpack_round_trip(coarse: int, fine: int) -> None:
    time = CucTime(coarse, fine)
    packed = time.pack()
    assert packed == coarse.to_bytes(4, "big") + fine.to_bytes(2, "big")
    assert CucTime.unpack(packed) == time


# TAI-UTC from IERS Bulletin C, written out independently of the module's table.
LEAP_STEPS = [
    ("1972-01-01T00:00:00", 10),
    ("1999-01-01T00:00:00", 32),
    ("2006-01-01T00:00:00", 33),
    ("2009-01-01T00:00:00", 34),
    ("2012-07-01T00:00:00", 35),
    ("2015-07-01T00:00:00", 36),
    ("2017-01-01T00:00:00", 37),
]


def test_cuc_2017_uses_37_seconds() -> None:
    t = unix("2017-01-01T00:00:00")
    assert t == 1_483_228_800
    assert CucTime.from_unix(t) == CucTime(t + 37 + 378_691_200, 0)
    assert CucTime.from_unix(t).to_unix_ns() == t * 1_000_000_000


def test_cuc_2016_uses_36_seconds() -> None:
    t = unix("2016-08-15T12:34:56")
    assert CucTime.from_unix(t + 0.5) == CucTime(t + 36 + 378_691_200, 32768)
    assert CucTime.from_unix(t + 0.5).to_unix_ns() == t * 1_000_000_000 + 500_000_000


@pytest.mark.parametrize(("when", "offset"), LEAP_STEPS)
def test_cuc_leap_second_boundaries(when: str, offset: int) -> None:
    t = unix(when)
    after = CucTime.from_unix(t)
    assert after.coarse == t + offset + CCSDS_TO_UNIX_SECONDS
    assert after.to_unix_ns() == t * 1_000_000_000
    if offset > 10:  # one second earlier the previous offset applies
        before = CucTime.from_unix(t - 1)
        assert before.coarse == t - 1 + offset - 1 + CCSDS_TO_UNIX_SECONDS
        assert before.to_unix_ns() == (t - 1) * 1_000_000_000
        # The inserted leap second 23:59:60 itself lies between the two on the TAI scale.
        assert after.coarse - before.coarse == 2


def test_cuc_epoch_constant() -> None:
    # 1958-01-01 to 1970-01-01: 12 years with 3 leap days (1960, 1964, 1968).
    assert CCSDS_TO_UNIX_SECONDS == (12 * 365 + 3) * 86400
    assert -unix("1958-01-01T00:00:00") == CCSDS_TO_UNIX_SECONDS


@FAST
@given(st.integers(unix("1972-01-01T00:00:00"), unix("2099-12-31T23:59:59")),
       st.integers(0, 0xFFFF))
def test_cuc_from_unix_to_unix_round_trip(whole: int, fine: int) -> None:
    # whole + fine/65536 is exact in a float64, so the fine count must come back as is.
    seconds = whole + fine / 65536
    time = CucTime.from_unix(seconds)
    assert time.fine == fine
    assert time.coarse - CCSDS_TO_UNIX_SECONDS - whole in range(10, 38)
    assert time.to_unix_ns() == whole * 1_000_000_000 + (fine * 1_000_000_000 >> 16)
    assert abs(time.to_unix_ns() - seconds * 1e9) < 1e9 / 65536


@FAST
@given(st.floats(min_value=63_072_000, max_value=4_000_000_000, allow_nan=False))
def test_cuc_from_unix_arbitrary_float(seconds: float) -> None:
    time = CucTime.from_unix(seconds)
    assert 0 <= time.fine < 65536
    # Rounded to the nearest 1/65536 s, the fine part truncated to whole nanoseconds.
    assert abs(time.to_unix_ns() / 1e9 - seconds) <= 0.5 / 65536 + 1e-6


def test_cuc_from_unix_rounds_up_into_next_second() -> None:
    time = CucTime.from_unix(1_500_000_000 + 0.99999999)
    assert time == CucTime(1_500_000_001 + 37 + CCSDS_TO_UNIX_SECONDS, 0)


def test_cuc_to_unix_ns_vectorised_equals_scalar() -> None:
    coarse = np.array([0, 2_000_000_000, 1_483_228_800 + 37 + CCSDS_TO_UNIX_SECONDS,
                       0xFFFFFFFF], dtype=np.uint32)
    fine = np.array([0, 1, 0x8000, 0xFFFF], dtype=np.uint16)
    vector = cuc_to_unix_ns(coarse, fine)
    assert vector.dtype == np.int64
    assert vector.tolist() == [CucTime(int(c), int(f)).to_unix_ns()
                               for c, f in zip(coarse, fine, strict=True)]
    assert vector[2] == 1_483_228_800_500_000_000


# ----------------------------------------------------------------------- split_packets


def tm(apid: int, count: int, body: bytes = b"\x11\x22\x33\x44") -> bytes:
    return build_packet(apid, count, body, time=CucTime(1_900_000_000 + count, 0))


def idle(size: int = 4) -> bytes:
    return build_packet(IDLE_APID, 0, b"\xff" * size, time=None, error_control=False)


def test_split_back_to_back_several_apids() -> None:
    packets = [tm(0x10, 0), tm(0x20, 0, b"\x00" * 9), tm(0x10, 1), tm(0x30, 0, b"\x01"),
               tm(0x20, 1, b"\x02" * 9)]
    result = split_packets(b"".join(packets))
    assert result.by_apid == {0x10: [packets[0], packets[2]], 0x20: [packets[1], packets[4]],
                              0x30: [packets[3]]}
    assert result.count == 5
    assert not result.errors
    assert result.idle == 0


def test_split_skips_and_counts_idle_packets() -> None:
    a, b = tm(0x10, 0), tm(0x10, 1)
    result = split_packets(idle() + a + idle(20) + idle(1) + b + idle(),
                           lengths={0x10: len(a)}, check_crc=frozenset({0x10}))
    assert result.idle == 4
    assert result.by_apid == {0x10: [a, b]}
    assert not result.errors


def test_split_unknown_apid_counted_neighbours_kept() -> None:
    a, unknown, b = tm(0x10, 0), tm(0x99, 0), tm(0x10, 1)
    result = split_packets(a + unknown + b, lengths={0x10: len(a)})
    assert result.errors == {"unknown_apid": 1}
    assert result.by_apid == {0x10: [a, b]}
    # Without a lengths table every APID is taken.
    assert split_packets(a + unknown + b).by_apid == {0x10: [a, b], 0x99: [unknown]}


def test_split_wrong_length_counted_neighbours_kept() -> None:
    a, long_one, b = tm(0x10, 0), tm(0x10, 1, b"\x00" * 5), tm(0x10, 2)
    result = split_packets(a + long_one + b, lengths={0x10: len(a)})
    assert result.errors == {"wrong_length": 1}
    assert result.by_apid == {0x10: [a, b]}


def test_split_bad_crc_counted_neighbours_kept() -> None:
    a, b, c = tm(0x10, 0), tm(0x10, 1), tm(0x10, 2)
    corrupt = bytearray(b)
    corrupt[13] ^= 0x04
    buffer = a + bytes(corrupt) + c
    result = split_packets(buffer, check_crc=frozenset({0x10}))
    assert result.errors == {"bad_crc": 1}
    assert result.by_apid == {0x10: [a, c]}
    # APIDs not listed in check_crc are not checked.
    assert split_packets(buffer).by_apid == {0x10: [a, bytes(corrupt), c]}


def with_version(packet: bytes, version: int) -> bytes:
    """``packet`` with its 3-bit version field set (its CRC left as it was)."""
    return bytes([(packet[0] & 0x1F) | (version << 5)]) + packet[1:]


@pytest.mark.parametrize("version", range(1, 8))
def test_split_counts_each_bad_version_and_walks_on(version: int) -> None:
    good = [tm(0x10, i) for i in range(9)]
    bad = [with_version(tm(0x10, 20 + i), version) for i in range(3)]
    result = split_packets(b"".join(good[:5] + bad + good[5:]), check_crc=frozenset({0x10}),
                           lengths={0x10: len(good[0])})
    assert result.errors == {"bad_header": 3}  # one per bad packet, not one per buffer
    assert result.by_apid == {0x10: good}
    assert result.count == 9


def test_split_bad_versions_of_other_lengths_and_apids() -> None:
    a, b = tm(0x10, 0), tm(0x20, 0, b"\x00" * 9)
    odd = with_version(tm(0x30, 0, b"\x01" * 30), 4)  # an APID and length seen nowhere else
    idle_v1 = with_version(idle(7), 1)  # a bad header is bad before it is idle
    result = split_packets(odd + a + idle_v1 + b + odd + a, lengths={0x10: len(a)})
    assert result.errors == {"bad_header": 3, "unknown_apid": 1}
    assert result.by_apid == {0x10: [a, a]}
    assert result.idle == 0


def test_split_many_bad_versions_on_the_numpy_path() -> None:
    # Same-length packets, enough of them for the numpy cut: it counts the same.
    good = [tm(0x10, i) for i in range(40)]
    bad = [with_version(tm(0x10, 100 + i), 1 + i % 7) for i in range(30)]
    buffer = b"".join(good[:20] + bad[:20] + good[20:] + bad[20:])
    result = split_packets(buffer, check_crc=frozenset({0x10}), lengths={0x10: len(good[0])})
    assert result.errors == {"bad_header": 30}
    assert result.by_apid == {0x10: good}


def test_split_bad_version_running_past_the_end_is_truncated() -> None:
    a, b = tm(0x10, 0), tm(0x10, 1)
    cut = with_version(tm(0x10, 2), 2)[:-3]
    result = split_packets(a + b + cut)
    assert result.errors == {"truncated": 1}
    assert result.by_apid == {0x10: [a, b]}


def test_split_takes_both_packet_types() -> None:
    # CCSDS 133.0-B-2 §4.1.3.3: the type bit (1 = telecommand) does not make a header
    # bad; files of real missions set it. Only the version must be 0.
    body = b"\x11\x22\x33\x44"
    typed = []
    for count in range(20):
        header = PrimaryHeader(apid=0x42, sequence_count=count, data_length=len(body) + 2,
                               packet_type=count % 2, secondary_header=False)
        packet = header.pack() + body
        typed.append(packet + crc16(packet).to_bytes(2, "big"))
    assert {PrimaryHeader.unpack(p).packet_type for p in typed} == {0, 1}
    for packets in (typed[:3], typed):  # the walk, and the numpy cut (>= 16 packets)
        result = split_packets(b"".join(packets), check_crc=frozenset({0x42}),
                               lengths={0x42: len(typed[0])})
        assert result.by_apid == {0x42: packets}
        assert not result.errors


def test_split_length_zero_takes_any_length() -> None:
    # 0 marks a variable-length packet type: the decoder checks the layout, not the cut.
    packets = [tm(0x10, i, bytes(i)) for i in range(20)]
    fixed = [tm(0x20, i) for i in range(20)]
    result = split_packets(b"".join(packets), lengths={0x10: 0})
    assert result.by_apid == {0x10: packets}
    assert not result.errors
    same = split_packets(b"".join(fixed), lengths={0x20: 0})  # one length: the numpy cut
    assert same.by_apid == {0x20: fixed}
    assert not same.errors
    mixed = split_packets(b"".join(packets[:5] + fixed[:5]),
                          lengths={0x10: 0, 0x20: len(fixed[0]) + 1})
    assert mixed.by_apid == {0x10: packets[:5]}
    assert mixed.errors == {"wrong_length": 5}  # a non-zero length is still checked


def test_split_counts_every_bad_packet_of_a_real_file() -> None:
    """ccsdspy's byte-order test files: their generator added the 12-bit APID 0x8E2 to
    the type and secondary-header bits, so the carry set the version field to 1. They
    are bad packets here (CCSDS 133.0-B-2 §4.1.3.2), every one of them counted."""
    import ccsdspy

    path = Path(ccsdspy.__file__).parent / "tests/data/byte_order/byteorder_1234.bin"
    data = path.read_bytes()
    assert PrimaryHeader.unpack(data).version == 1
    result = split_packets(data, lengths={0x0E2: 6 + 4 * 80})
    assert result.errors == {"bad_header": 10}
    assert result.count == 0


def test_split_truncated_tail() -> None:
    a, b = tm(0x10, 0), tm(0x20, 0)
    result = split_packets(a + b + tm(0x10, 1)[:-1])
    assert result.errors == {"truncated": 1}
    assert result.by_apid == {0x10: [a], 0x20: [b]}
    short = split_packets(a + b[:5])  # not even a whole primary header
    assert short.errors == {"truncated": 1}
    assert short.by_apid == {0x10: [a]}


def test_split_all_error_kinds_in_one_buffer() -> None:
    good = [tm(0x10, i) for i in range(4)]
    corrupt = bytearray(tm(0x10, 9))
    corrupt[-1] ^= 1
    buffer = (good[0] + idle() + tm(0x55, 0) + good[1] + tm(0x10, 7, b"") + bytes(corrupt)
              + good[2] + idle() + good[3] + tm(0x10, 8)[:10])
    result = split_packets(buffer, lengths={0x10: len(good[0])}, check_crc=frozenset({0x10}))
    assert result.by_apid == {0x10: good}
    assert result.idle == 2
    assert result.errors == {"unknown_apid": 1, "wrong_length": 1, "bad_crc": 1,
                             "truncated": 1}


def test_split_empty_buffer() -> None:
    result = split_packets(b"")
    assert result.by_apid == {}
    assert result.count == 0
    assert not result.errors


@FAST
@given(st.lists(st.tuples(st.integers(0, 0x7FF), st.integers(0, 0x3FFF),
                          st.binary(max_size=40)), max_size=12))
def test_split_recovers_any_packet_sequence(specs: list[tuple[int, int, bytes]]) -> None:
    packets = [build_packet(apid, count, body, time=CucTime(count, 0) if apid % 2 else None)
               for apid, count, body in specs]
    result = split_packets(b"".join(packets), check_crc=frozenset(range(0x7FF)))
    expected: dict[int, list[bytes]] = {}
    for (apid, _, _), packet in zip(specs, packets, strict=True):
        if apid != IDLE_APID:
            expected.setdefault(apid, []).append(packet)
    assert result.by_apid == expected
    assert result.idle == sum(1 for apid, _, _ in specs if apid == IDLE_APID)
    assert not result.errors
