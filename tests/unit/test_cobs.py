"""Unit tests of drivers.cobs: the COBS code itself, the one-packet-per-frame wire
format, and resynchronisation after noise."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from control_center.telemetry.packets import build_packet, crc16
from drivers.cobs import CobsDeframer, cobs_decode, cobs_encode, cobs_frame

FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

RUN_254 = bytes(range(1, 255))  # 01 02 .. FE: 254 non-zero octets

# Wikipedia, "Consistent Overhead Byte Stuffing", encoding examples (delimiter left
# out: cobs_encode returns the encoded octets only).
VECTORS = [
    (b"", b"\x01"),
    (b"\x00", b"\x01\x01"),
    (b"\x00\x00", b"\x01\x01\x01"),
    (b"\x00\x11\x00", b"\x01\x02\x11\x01"),
    (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
    (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
    (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
    # 254 non-zero octets: one full group, and no empty group after it at the end.
    (RUN_254, b"\xff" + RUN_254),
    (b"\x00" + RUN_254, b"\x01\xff" + RUN_254),
    (RUN_254 + b"\xff", b"\xff" + RUN_254 + b"\x02\xff"),
    (RUN_254[1:] + b"\xff\x00", b"\xff" + RUN_254[1:] + b"\xff\x01\x01"),
    (RUN_254[2:] + b"\xff\x00\x01", b"\xfe" + RUN_254[2:] + b"\xff\x02\x01"),
]


@pytest.mark.parametrize(("raw", "encoded"), VECTORS)
def test_known_vectors(raw: bytes, encoded: bytes) -> None:
    assert cobs_encode(raw) == encoded
    assert cobs_decode(encoded) == raw


def test_decoder_accepts_the_papers_trailing_empty_group() -> None:
    # Cheshire and Baker's reference code ends a final full group with an 01 group.
    assert cobs_decode(b"\xff" + RUN_254 + b"\x01") == RUN_254


@pytest.mark.parametrize("bad", [b"", b"\x03\x11\x00", b"\x05\x11\x22", b"\x00"])
def test_invalid_encodings_raise(bad: bytes) -> None:
    with pytest.raises(ValueError):
        cobs_decode(bad)


segments = st.one_of(
    st.binary(max_size=40),
    st.just(b"\x00"),
    st.integers(250, 260).map(lambda n: b"\x5a" * n),  # runs around the 254 boundary
    st.integers(1, 3).map(lambda n: b"\x00" * n),
)


@given(st.one_of(st.binary(max_size=2000), st.lists(segments, max_size=12).map(b"".join)))
@FAST
def test_round_trip_and_bounded_overhead(raw: bytes) -> None:
    encoded = cobs_encode(raw)
    assert b"\x00" not in encoded
    # At least one octet, at most one per started 254 (plus one for empty data).
    assert len(raw) + 1 <= len(encoded) <= len(raw) + len(raw) // 254 + 1
    assert cobs_decode(encoded) == raw


# ------------------------------------------------------------------ wire format


def make_packets(seed: int, count: int, max_length: int = 200) -> list[bytes]:
    rng = random.Random(seed)
    return [build_packet(0x123, k, rng.randbytes(rng.randint(1, max_length - 6)),
                         time=None, error_control=False) for k in range(count)]


def test_frame_layout() -> None:
    packet = build_packet(0x123, 1, b"\x00\x00\x07", time=None, error_control=False)
    frame = cobs_frame(packet)
    assert frame.endswith(b"\x00") and b"\x00" not in frame[:-1]
    content = cobs_decode(frame[:-1])
    assert content == packet + crc16(packet).to_bytes(2, "big")
    with pytest.raises(ValueError):
        cobs_frame(packet + b"\x00")  # not exactly one packet


@given(st.integers(0, 2**32 - 1), st.integers(1, 40))
@FAST
def test_deframer_round_trip_any_chunking(seed: int, count: int) -> None:
    packets = make_packets(seed, count)
    stream = b"\x00" + b"".join(cobs_frame(p) for p in packets)  # a leading delimiter
    rng = random.Random(seed)
    deframer = CobsDeframer()
    out: list[bytes] = []
    position = 0
    while position < len(stream):
        size = rng.randint(1, 300)
        out += deframer.feed(memoryview(stream)[position:position + size])
        position += size
    assert out == packets
    assert (deframer.stats.frames_good, deframer.stats.frames_bad) == (count, 0)
    assert deframer.stats.octets_discarded == 1 and deframer.buffered == 0


def test_a_corrupted_frame_is_dropped_and_the_next_recovered() -> None:
    packets = make_packets(1, 3)
    frames = [bytearray(cobs_frame(p)) for p in packets]
    frames[1][5] ^= 0x04 if frames[1][5] != 0x04 else 0x08  # one flipped bit, not to 0
    deframer = CobsDeframer()
    assert deframer.feed(b"".join(frames)) == [packets[0], packets[2]]
    assert (deframer.stats.frames_good, deframer.stats.frames_bad) == (2, 1)
    assert deframer.stats.octets_discarded == len(frames[1])


def test_wrong_length_or_crc_is_rejected() -> None:
    packet = build_packet(0x10, 0, b"abc", time=None, error_control=False)
    two = packet + packet  # a valid CRC over two packets: not one packet
    frames = cobs_encode(two + crc16(two).to_bytes(2, "big")) + b"\x00" \
        + cobs_encode(packet + b"\x00\x00") + b"\x00"  # one packet, wrong CRC
    deframer = CobsDeframer()
    assert deframer.feed(frames) == []
    assert deframer.stats.frames_bad == 2


def test_noise_glued_before_a_frame_does_not_cost_it() -> None:
    """Line noise just before a frame, with no delimiter between: the frame is found as
    the valid tail of the chunk (the simulators' "garbage before an intact frame")."""
    packets = make_packets(2, 3)
    noise = bytes(random.Random(3).randbytes(120)).replace(b"\x00", b"\x01")
    stream = cobs_frame(packets[0]) + noise + cobs_frame(packets[1]) + cobs_frame(packets[2])
    deframer = CobsDeframer()
    assert deframer.feed(stream) == packets
    assert deframer.stats.frames_bad == 0
    assert deframer.stats.octets_discarded == len(noise)


def test_endless_noise_keeps_the_buffer_bounded() -> None:
    deframer = CobsDeframer(max_frame_octets=1000)
    noise = random.Random(4).randbytes(50_000).replace(b"\x00", b"\x02")
    for start in range(0, len(noise), 777):
        assert deframer.feed(noise[start:start + 777]) == []
        assert deframer.buffered <= 1000
    packet = make_packets(5, 1)[0]
    assert deframer.feed(cobs_frame(packet)) == [packet]  # right after it, a good frame


def valid_suffix(chunk: bytes) -> bytes | None:
    """Brute force, independent of the deframer's walk: the packet of the longest
    suffix of ``chunk`` that is a valid frame (COBS, CRC, one whole packet)."""
    for start in range(len(chunk)):
        try:
            content = cobs_decode(chunk[start:])
        except ValueError:
            continue
        if len(content) >= 9 and crc16(content) == 0 \
                and int.from_bytes(content[4:6], "big") + 7 == len(content) - 2:
            return content[:-2]
    return None


@given(st.data(), st.integers(0, 2**32 - 1), st.integers(2, 25), st.booleans())
@FAST
def test_noise_delivers_exactly_the_intact_frames(data: st.DataObject, seed: int,
                                                  count: int, chunked: bool) -> None:
    packets = make_packets(seed, count, max_length=120)
    stream = bytearray()
    intact: list[bool] = []
    for packet in packets:
        frame = bytearray(cobs_frame(packet))
        kind = data.draw(st.sampled_from(["none", "none", "flip", "delete", "insert",
                                          "garbage"]))
        if kind == "flip":  # anywhere, the delimiter included
            for bit in data.draw(st.lists(st.integers(0, len(frame) * 8 - 1), min_size=1,
                                          max_size=3, unique=True)):
                frame[bit // 8] ^= 0x80 >> (bit % 8)
        elif kind == "delete":
            at = data.draw(st.integers(0, len(frame) - 1))
            del frame[at:at + data.draw(st.integers(1, 3))]
        elif kind == "insert":
            at = data.draw(st.integers(1, len(frame) - 1))
            frame[at:at] = data.draw(st.binary(min_size=1, max_size=20))
        elif kind == "garbage":  # before the frame, zeros possible
            stream += data.draw(st.binary(min_size=1, max_size=50))
        intact.append(kind in ("none", "garbage"))
        stream += frame
    expected = [p for p, ok in zip(packets, intact, strict=True) if ok]
    # Outside the guarantee (2^-16-rare): a chunk whose longest valid tail is not the
    # intact frame that ends it, e.g. a damaged frame that still checks.
    chunks = bytes(stream).split(b"\x00")[:-1]
    found = [p for p in (valid_suffix(c) for c in chunks if c) if p is not None]
    assume(found == expected)

    deframer = CobsDeframer()
    out: list[bytes] = []
    if chunked:
        rng = random.Random(seed)
        position = 0
        while position < len(stream):
            size = rng.randint(1, 64)
            out += deframer.feed(bytes(stream[position:position + size]))
            position += size
    else:
        out = deframer.feed(bytes(stream))
    assert out == expected
    assert deframer.stats.frames_good == len(expected)
    if not all(intact[:-1]):
        # A damaged frame before the last either fails on its own or merges (its
        # delimiter hit) with the next chunk, whose valid tail is then recovered.
        assert deframer.stats.frames_bad + deframer.stats.octets_discarded > 0
