"""Unit tests of drivers.tm_frames: frame header layout, FECF, framer/deframer round trips
and the exact survival rule under line noise (bit flips, slips, insertions, garbage,
vanished frames)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from control_center.telemetry.packets import IDLE_APID, CucTime, PrimaryHeader, build_packet, crc16
from control_center.telemetry.tmdb import Tmdb
from drivers.tm_frames import (
    ASM,
    FHP_IDLE_ONLY,
    FHP_NO_PACKET_START,
    IDLE_VCID,
    FrameHeader,
    PacketTicket,
    TmDeframer,
    TmFramer,
)
from tests.conftest import crc16_reference

FAST = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
SCID = 0x151




def packet_of_length(apid: int, count: int, length: int, rng: random.Random) -> bytes:
    """A packet of exactly ``length`` octets (7 at least), random content."""
    packet = build_packet(apid, count, rng.randbytes(length - 6), time=None,
                          error_control=False)
    assert len(packet) == length
    return packet


def deframe_all(deframer: TmDeframer, stream: bytes, chunk_seed: int | None = None,
                max_chunk: int = 4096) -> list[tuple[int, bytes]]:
    """Feed ``stream`` whole, or in random chunks (1 to max_chunk octets)."""
    if chunk_seed is None:
        return deframer.feed(stream)
    rng = random.Random(chunk_seed)
    out: list[tuple[int, bytes]] = []
    position = 0
    while position < len(stream):
        size = rng.randint(1, max_chunk)
        out += deframer.feed(stream[position:position + size])
        position += size
    return out


def accounted(deframer: TmDeframer) -> int:
    """Every octet fed is in an accepted frame, discarded, or still buffered."""
    stats = deframer.stats
    frames = stats.frames_good + stats.wrong_spacecraft
    return frames * (4 + deframer.frame_length) + stats.octets_discarded + deframer.buffered


# ------------------------------------------------------------------------ CRC-16


def test_crc16_check_value_and_reference() -> None:
    # The catalogued check value of CRC-16/CCITT-FALSE (= the 132.0-B-3 FECF).
    assert crc16(b"123456789") == 0x29B1
    assert crc16_reference(b"123456789") == 0x29B1
    assert crc16(b"") == 0xFFFF


@given(st.binary(max_size=300))
@FAST
def test_crc16_matches_bitwise_reference(data: bytes) -> None:
    assert crc16(data) == crc16_reference(data)
    # A codeword (data + its CRC) checks to 0: what the deframer tests.
    assert crc16(data + crc16(data).to_bytes(2, "big")) == 0


def test_crc16_detects_every_1_to_3_bit_error_in_frames_up_to_32767_bits() -> None:
    """The bound the noise tests rely on. g(x) = x^16 + x^12 + x^5 + 1: an even number
    of terms, so (x + 1) divides g and every odd-weight error is detected; and x has
    order 32767 modulo g, so x^i + x^j = x^i (x^(j-i) + 1) is a multiple of g only
    when j - i >= 32767. Hence 1, 2 and 3 flipped bits are always detected in
    codewords up to 32767 bits; the largest TM frame is 2048 octets = 16384 bits."""
    poly = 0x11021
    assert bin(poly).count("1") % 2 == 0
    value, order = 2, 1  # x^1 mod g
    while value != 1:
        value <<= 1
        if value & 0x10000:
            value ^= poly
        order += 1
    assert order == 32767
    # And by brute force on a short frame: every 1- and 2-bit error caught.
    frame = bytes(range(30))
    codeword = frame + crc16(frame).to_bytes(2, "big")
    bits = len(codeword) * 8
    for i in range(bits):
        single = bytearray(codeword)
        single[i // 8] ^= 0x80 >> (i % 8)
        assert crc16(bytes(single)) != 0
        for j in range(i + 1, bits):
            double = bytearray(single)
            double[j // 8] ^= 0x80 >> (j % 8)
            assert crc16(bytes(double)) != 0


@given(st.lists(st.integers(0, 2048 * 8 - 1), min_size=1, max_size=3, unique=True))
@FAST
def test_crc16_detects_up_to_three_flips_in_a_2048_octet_frame(bits: list[int]) -> None:
    frame = random.Random(7).randbytes(2046)
    codeword = bytearray(frame + crc16(frame).to_bytes(2, "big"))
    for bit in bits:
        codeword[bit // 8] ^= 0x80 >> (bit % 8)
    assert crc16(bytes(codeword)) != 0


# ------------------------------------------------------------------ frame header


@given(scid=st.integers(0, 0x3FF), vcid=st.integers(0, 7), ocf=st.booleans(),
       mc=st.integers(0, 255), vc=st.integers(0, 255), fhp=st.integers(0, 0x7FF),
       version=st.integers(0, 3), secondary=st.booleans(), sync=st.booleans(),
       order=st.booleans(), segment=st.integers(0, 3))
@FAST
def test_frame_header_round_trip(scid: int, vcid: int, ocf: bool, mc: int, vc: int,
                                 fhp: int, version: int, secondary: bool, sync: bool,
                                 order: bool, segment: int) -> None:
    header = FrameHeader(spacecraft_id=scid, vcid=vcid, ocf_flag=ocf, mc_count=mc,
                         vc_count=vc, first_header_pointer=fhp, version=version,
                         secondary_header=secondary, sync_flag=sync, packet_order=order,
                         segment_length_id=segment)
    packed = header.pack()
    assert len(packed) == 6
    assert FrameHeader.unpack(packed) == header


def test_frame_header_rejects_out_of_range_fields() -> None:
    with pytest.raises(ValueError, match="spacecraft_id"):
        FrameHeader(0x400, 0, False, 0, 0, 0).pack()
    with pytest.raises(ValueError, match="first_header_pointer"):
        FrameHeader(1, 0, False, 0, 0, 0x800).pack()
    with pytest.raises(ValueError, match="6 octets"):
        FrameHeader.unpack(b"\x00" * 5)


def test_frame_header_bit_layout_by_hand() -> None:
    """132.0-B-3 §4.1.2, MSB first: 00 | SCID 0x3A5 = 11 1010 0101 | VCID 110 | OCF 1
    -> 0011 1010 0101 1101 = 3A 5D; then MC FE, VC 81; then the data field status
    0 (no sec. header) 0 (sync flag) 0 (order) 11 (segment length id) FHP 111 1111 1111
    -> 0001 1111 1111 1111 = 1F FF."""
    octets = bytes([0x3A, 0x5D, 0xFE, 0x81, 0x1F, 0xFF])
    header = FrameHeader.unpack(octets)
    assert header == FrameHeader(spacecraft_id=0x3A5, vcid=6, ocf_flag=True, mc_count=0xFE,
                                 vc_count=0x81, first_header_pointer=FHP_NO_PACKET_START)
    assert header.pack() == octets


def test_hand_built_frame_matches_framer_and_deframes() -> None:
    packet = build_packet(0x111, 5, b"\x01\x02\x03", time=None, error_control=False)
    assert packet == bytes([0x01, 0x11, 0xC0, 0x05, 0x00, 0x02, 0x01, 0x02, 0x03])
    frame_length = 6 + 20 + 2  # header, a 20-octet data field, FECF
    framer = TmFramer(SCID, frame_length)
    idle_frames = [framer.next_frame(), framer.next_frame()]  # MC 0 and 1, on VCID 7
    framer.add_packets(1, packet)
    header = bytes([
        0x15, 0x12,  # version 00, SCID 0x151 = 01 0101 0001, VCID 001, OCF flag 0
        0x02,        # master channel frame count: the third frame of the link
        0x00,        # virtual channel frame count: VC 1's first frame
        0x18, 0x00,  # no sec. header, sync 0, order 0, segment length id 11, FHP 0
    ])
    idle_packet = bytes([
        0x07, 0xFF,  # packet version 000, type 0, no sec. header, APID 0x7FF (idle)
        0xC0, 0x00,  # sequence flags 11 (unsegmented), idle sequence count 0
        0x00, 0x04,  # packet data length - 1: 11 octets in all fill the frame
    ]) + b"\x55" * 5
    body = header + packet + idle_packet
    assert len(body) == frame_length - 2
    expected = ASM + body + crc16_reference(body).to_bytes(2, "big")
    assert framer.next_frame() == expected

    # The idle frames: VCID 7, FHP 0x7FE, VC 7 counting 0 and 1.
    first_idle = FrameHeader.unpack(idle_frames[1][4:10])
    assert (first_idle.vcid, first_idle.first_header_pointer) == (IDLE_VCID, FHP_IDLE_ONLY)
    assert (first_idle.mc_count, first_idle.vc_count) == (1, 1)

    deframer = TmDeframer(frame_length, spacecraft_id=SCID)
    assert deframer.feed(b"".join(idle_frames) + expected) == [(1, packet)]
    stats = deframer.stats
    assert (stats.frames_good, stats.idle_frames, stats.idle_packets, stats.packets) \
        == (3, 2, 1, 1)
    assert stats.locked and stats.last_frame_ns is not None


def test_framer_rejects_bad_configuration_and_input() -> None:
    with pytest.raises(ValueError):
        TmFramer(SCID, 2049)
    with pytest.raises(ValueError):
        TmFramer(SCID, 14)  # 6 header + 2 FECF leaves 6: not even an idle packet
    with pytest.raises(ValueError):
        TmFramer(0x400, 1115)
    framer = TmFramer(SCID, 64)
    with pytest.raises(ValueError, match="VCID"):
        framer.add_packets(IDLE_VCID, build_packet(1, 0, b"x", time=None))
    with pytest.raises(ValueError, match="declares"):
        framer.add_packets(0, build_packet(1, 0, b"xyz", time=None)[:-1])
    assert framer.pending() == 0


# ---------------------------------------------------------------- framer details


@pytest.mark.parametrize("space", [1, 2, 3, 5, 6, 7, 8])
def test_idle_padding_too_short_for_a_packet_continues_into_the_next_frame(
        space: int) -> None:
    """A VC left with 1..6 octets of room starts a 7-octet idle packet that ends in
    its next frame (header split over frames included); both real packets arrive."""
    rng = random.Random(space)
    framer = TmFramer(SCID, 64)  # 56-octet data field
    first = packet_of_length(0x20, 0, 56 - space, rng)
    second = packet_of_length(0x20, 1, 30, rng)
    framer.add_packets(0, first)
    frames = [framer.next_frame(), framer.next_frame()]  # VC 0, then an idle frame
    framer.add_packets(0, second)
    frames.append(framer.next_frame())
    third = FrameHeader.unpack(frames[2][4:10])
    carried = max(0, 7 - space) if space < 7 else 0
    assert (third.vcid, third.vc_count, third.first_header_pointer) == (0, 1, carried)
    deframer = TmDeframer(64)
    assert deframe_all(deframer, b"".join(frames), chunk_seed=space, max_chunk=9) \
        == [(0, first), (0, second)]
    assert deframer.stats.idle_packets == 2 and deframer.stats.packets_dropped == 0


def test_fhp_no_packet_start_and_spans() -> None:
    rng = random.Random(3)
    framer = TmFramer(SCID, 64)
    big = packet_of_length(0x30, 0, 56 * 3, rng)  # exactly three data fields
    (ticket,) = framer.add_packets(2, big)
    assert framer.spans(ticket) is None
    frames = [framer.next_frame() for _ in range(3)]
    assert framer.pending() == 0
    pointers = [FrameHeader.unpack(f[4:10]).first_header_pointer for f in frames]
    assert pointers == [0, FHP_NO_PACKET_START, FHP_NO_PACKET_START]
    assert framer.spans(ticket) == (0, 2)
    assert framer.survives(ticket, {3}) is True
    assert framer.survives(ticket, {1}) is False
    deframer = TmDeframer(64)
    assert deframer.feed(b"".join(frames)) == [(2, big)]


# -------------------------------------------------------------- round trips


@dataclass
class Link:
    frames: list[bytes]  # ASM included
    vcids: list[int]
    tickets: list[PacketTicket]
    packets: dict[PacketTicket, bytes]
    framer: TmFramer


def build_link(data: st.DataObject, frame_length: int, max_packet: int,
               max_packets: int = 25, vcs: tuple[int, ...] = (0, 1)) -> Link:
    """Bursts of packets on ``vcs`` interleaved with frames (so idle frames and idle
    padding occur mid-stream), then every packet framed and one or two idle frames."""
    framer = TmFramer(SCID, frame_length)
    rng = random.Random(data.draw(st.integers(0, 2**32 - 1), label="content seed"))
    frames: list[bytes] = []
    tickets: list[PacketTicket] = []
    packets: dict[PacketTicket, bytes] = {}
    count = 0
    for _ in range(data.draw(st.integers(1, 4), label="bursts")):
        for _ in range(data.draw(st.integers(1, max_packets), label="packets")):
            vcid = data.draw(st.sampled_from(vcs))
            length = data.draw(st.integers(7, max_packet), label="length")
            packet = packet_of_length(0x100 + vcid, count, length, rng)
            count += 1
            (ticket,) = framer.add_packets(vcid, packet)
            tickets.append(ticket)
            packets[ticket] = packet
        for _ in range(data.draw(st.integers(0, 3), label="frames between")):
            frames.append(framer.next_frame())
    while framer.pending():
        frames.append(framer.next_frame())
    for _ in range(data.draw(st.integers(1, 2), label="idle frames")):
        frames.append(framer.next_frame())
    vcids = [FrameHeader.unpack(f[4:10]).vcid for f in frames]
    return Link(frames, vcids, tickets, packets, framer)


def surviving(link: Link, intact: list[bool]) -> list[tuple[int, bytes]]:
    """The packets the rule says arrive, in the order they are completed: by their
    last frame, then by queue order (two packets ending in a frame share its VC)."""
    kept = []
    for ticket in link.tickets:
        spans = link.framer.spans(ticket)
        assert spans is not None
        first, last = spans
        if all(intact[first:last + 1]):
            kept.append((last, ticket.index, ticket.vcid, link.packets[ticket]))
    return [(vcid, packet) for _, _, vcid, packet in sorted(kept)]


@given(st.data(), st.sampled_from([64, 223, 1115, 2048]), st.booleans())
@FAST
def test_round_trip_any_chunking(data: st.DataObject, frame_length: int,
                                 chunked: bool) -> None:
    link = build_link(data, frame_length, max_packet=3000, max_packets=8)
    stream = b"".join(link.frames)
    deframer = TmDeframer(frame_length, spacecraft_id=SCID)
    seed = data.draw(st.integers(0, 2**32 - 1)) if chunked else None
    out = deframe_all(deframer, stream, seed, max_chunk=2 * frame_length)
    for vcid in (0, 1):
        sent = [link.packets[t] for t in link.tickets if t.vcid == vcid]
        assert [p for v, p in out if v == vcid] == sent
    assert out == surviving(link, [True] * len(link.frames))
    stats = deframer.stats
    assert stats.frames_good == len(link.frames)
    assert stats.idle_frames == link.vcids.count(IDLE_VCID) >= 1
    assert stats.packets == len(link.tickets)
    assert (stats.frames_bad, stats.sync_losses, stats.frames_gap, stats.mc_gaps,
            stats.packets_dropped, stats.octets_discarded) == (0, 0, 0, 0, 0, 0)
    assert stats.octets_in == len(stream) == accounted(deframer)
    assert deframer.buffered == 0


@pytest.mark.parametrize(("ocf", "fecf"), [(True, True), (True, False), (False, False)])
def test_round_trip_with_ocf_and_without_fecf(ocf: bool, fecf: bool) -> None:
    rng = random.Random(11)
    framer = TmFramer(SCID, 223, ocf=ocf, fecf=fecf)
    sent = [packet_of_length(0x40, k, rng.randint(7, 500), rng) for k in range(40)]
    framer.add_packets(3, b"".join(sent))
    frames = []
    while framer.pending():
        frames.append(framer.next_frame())
    frames.append(framer.next_frame())  # without an FECF the ASM after a frame vouches
    assert all(len(f) == 4 + 223 for f in frames)
    assert FrameHeader.unpack(frames[0][4:10]).ocf_flag is ocf
    # Garbage before, between and after: the ASM (and the CRC, when there is one)
    # still find every frame.
    stream = b"\xAA" * 17 + b"".join(frames[:5]) + b"\x1A\xCF\x00" + b"".join(frames[5:])
    deframer = TmDeframer(223, ocf=ocf, fecf=fecf)
    out = deframe_all(deframer, stream, chunk_seed=5, max_chunk=300)
    assert out == [(3, p) for p in sent]
    assert deframer.stats.sync_losses == 1
    assert deframer.stats.packets_dropped == 0


def test_lander_and_orbiter_share_one_link_tagged_by_vc(tmdbs: list[Tmdb]) -> None:
    """The orbiter relays the lander: orbiter packets on VC 0, lander packets on VC 1."""
    by_name = {t.spacecraft: t for t in tmdbs}
    orbiter, lander = by_name["orbiter"], by_name["lander"]
    framer = TmFramer(orbiter.spacecraft_id, 1115)
    expected: dict[int, list[bytes]] = {0: [], 1: []}
    for count in range(30):
        for vcid, tmdb in ((0, orbiter), (1, lander)):
            for definition in tmdb.packets:
                cuc = definition.time == "cuc"
                body = definition.length - 6 - (6 if cuc else 0) \
                    - (2 if definition.error_control else 0)
                packet = build_packet(definition.apid, count, bytes(body),
                                      time=CucTime(2_000_000_000 + count) if cuc else None,
                                      error_control=definition.error_control)
                assert len(packet) == definition.length
                framer.add_packets(vcid, packet)
                expected[vcid].append(packet)
    stream = bytearray()
    while framer.pending():
        stream += framer.next_frame()
    deframer = TmDeframer(1115, spacecraft_id=orbiter.spacecraft_id)
    out = deframer.feed(bytes(stream))
    assert [p for v, p in out if v == 0] == expected[0]
    assert [p for v, p in out if v == 1] == expected[1]
    lander_apids = {d.apid for d in lander.packets}
    orbiter_apids = {d.apid for d in orbiter.packets}
    for vcid, packet in out:
        apid = PrimaryHeader.unpack(packet).apid
        assert apid in (lander_apids if vcid == 1 else orbiter_apids)

    # Another spacecraft's frames on the same line are counted and ignored.
    stranger = TmDeframer(1115, spacecraft_id=lander.spacecraft_id)
    assert stranger.feed(bytes(stream)) == []
    assert stranger.stats.wrong_spacecraft == stranger.stats.octets_in // 1119
    assert stranger.stats.frames_good == 0 and stranger.stats.locked


# -------------------------------------------------------------------- noise


@st.composite
def noise_ops(draw: st.DrawFn, count: int, frame_octets: int,
              allow_vanish: bool) -> list[tuple[str, object]]:
    """One operation per frame: none, or one of the damage kinds; how often varies."""
    quiet = draw(st.integers(1, 12), label="undamaged weight")
    kinds = ["none"] * quiet + ["flip", "delete", "insert", "garbage"]
    if allow_vanish:
        kinds.append("vanish")
    ops: list[tuple[str, object]] = []
    for _ in range(count):
        kind = draw(st.sampled_from(kinds))
        if kind == "flip":  # 1 to 3 bits anywhere in ASM + frame
            ops.append((kind, draw(st.lists(st.integers(0, frame_octets * 8 - 1),
                                            min_size=1, max_size=3, unique=True))))
        elif kind == "delete":  # 1 to 3 consecutive octets
            size = draw(st.integers(1, 3))
            ops.append((kind, (draw(st.integers(0, frame_octets - size - 1)), size)))
        elif kind == "insert":  # 1 to 50 octets strictly inside
            ops.append((kind, (draw(st.integers(1, frame_octets - 1)),
                               draw(st.binary(min_size=1, max_size=50)))))
        elif kind == "garbage":  # 1 to 300 octets before the frame, which stays intact
            ops.append((kind, draw(st.binary(min_size=1, max_size=300))))
        else:
            ops.append((kind, None))
    return ops


def apply_noise(frames: list[bytes], ops: list[tuple[str, object]]
                ) -> tuple[bytes, list[bool], dict[int, int], set[int]]:
    """The noisy stream; which frames are intact; where each intact frame's ASM is;
    where each damaged frame's piece starts."""
    stream = bytearray()
    intact: list[bool] = []
    intact_at: dict[int, int] = {}
    damaged_at: set[int] = set()
    for index, (frame, (kind, arg)) in enumerate(zip(frames, ops, strict=True)):
        piece = bytearray(frame)
        if kind == "flip":
            assert isinstance(arg, list)
            for bit in arg:
                piece[bit // 8] ^= 0x80 >> (bit % 8)
        elif kind == "delete":
            assert isinstance(arg, tuple)
            del piece[arg[0]:arg[0] + arg[1]]
        elif kind == "insert":
            assert isinstance(arg, tuple)
            piece[arg[0]:arg[0]] = arg[1]
        elif kind == "garbage":
            assert isinstance(arg, bytes)
            stream += arg
        if kind == "vanish":
            intact.append(False)
            continue
        ok = kind in ("none", "garbage")
        intact.append(ok)
        if ok:
            intact_at[len(stream)] = index
        else:
            damaged_at.add(len(stream))
        stream += piece
    return bytes(stream), intact, intact_at, damaged_at


def assume_no_false_sync(stream: bytes, frame_length: int, intact_at: dict[int, int],
                         damaged_at: set[int]) -> None:
    """Rule out the examples outside the deframer's guarantee: an ASM that is not a
    frame's own (in garbage, inserted octets, or formed across a seam), or a damaged
    frame that passes its FECF anyway (possible, at 2^-16, only for slips: bit flips
    are always detected, see the CRC tests). Both are rare, so few are rejected."""
    position = stream.find(ASM)
    while position >= 0:
        if position not in intact_at:
            assume(position in damaged_at)
            window = stream[position + 4:position + 4 + frame_length]
            assume(len(window) < frame_length or crc16(window) != 0)
        position = stream.find(ASM, position + 1)


def expected_gaps(vcids: list[int], intact: list[bool]) -> tuple[int, int]:
    """(frames_gap, mc_gaps): lost frames with a received frame of their VC before and
    after them; lost frames between the first and last received frame."""
    received = [i for i, ok in enumerate(intact) if ok]
    if not received:
        return 0, 0
    mc = sum(1 for i in range(received[0], received[-1]) if not intact[i])
    vc = 0
    for index, ok in enumerate(intact):
        if ok:
            continue
        same = [i for i in received if vcids[i] == vcids[index]]
        if any(i < index for i in same) and any(i > index for i in same):
            vc += 1
    return vc, mc


@given(st.data(), st.integers(64, 300), st.booleans())
@FAST
def test_noise_delivers_exactly_the_packets_of_intact_frames(
        data: st.DataObject, frame_length: int, chunked: bool) -> None:
    link = build_link(data, frame_length, max_packet=400)
    ops = data.draw(noise_ops(len(link.frames), 4 + frame_length, allow_vanish=True),
                    label="noise")
    stream, intact, intact_at, damaged_at = apply_noise(link.frames, ops)
    assume_no_false_sync(stream, frame_length, intact_at, damaged_at)
    deframer = TmDeframer(frame_length, spacecraft_id=SCID)
    seed = data.draw(st.integers(0, 2**32 - 1), label="chunking") if chunked else None
    out = deframe_all(deframer, stream, seed, max_chunk=2 * frame_length)

    assert out == surviving(link, intact)
    stats = deframer.stats
    # frames_good counts every intact frame of ours, idle frames included.
    assert stats.frames_good == sum(intact)
    assert (stats.frames_gap, stats.mc_gaps) == expected_gaps(link.vcids, intact)
    assert stats.frames_bad <= len(damaged_at)
    assert stats.wrong_spacecraft == 0
    assert stats.packets == len(out)
    assert stats.octets_in == len(stream) == accounted(deframer)
    received = [i for i, ok in enumerate(intact) if ok]
    if any(kind in ("flip", "delete", "insert") for kind, _ in ops[received[0]:received[-1]]
           ) if received else False:
        # A damaged frame between two received ones shows: where the next frame was due
        # there is no ASM (a sync loss) or one whose frame fails its FECF.
        assert stats.frames_bad + stats.sync_losses > 0


@given(st.data(), st.integers(64, 200))
@FAST
def test_vanished_frames_are_counted_as_gaps(data: st.DataObject, frame_length: int) -> None:
    """Whole frames missing from the stream (no octet left of them) leave the next frame
    exactly where a frame is due: no sync loss, but the frame counts jump."""
    link = build_link(data, frame_length, max_packet=600, vcs=(0, 1, 5))
    keep = [not data.draw(st.booleans(), label=f"drop {i}") for i in range(len(link.frames))]
    # Keep each VC's first and last frame: every dropped frame then has a frame of its
    # VC before and after it, so the VC counts can reveal it.
    for vcid in set(link.vcids):
        indices = [i for i, v in enumerate(link.vcids) if v == vcid]
        keep[indices[0]] = keep[indices[-1]] = True
    dropped = keep.count(False)
    assert expected_gaps(link.vcids, keep) == (dropped, dropped)
    stream = b"".join(f for f, k in zip(link.frames, keep, strict=True) if k)
    deframer = TmDeframer(frame_length)
    out = deframer.feed(stream)
    assert out == surviving(link, keep)
    stats = deframer.stats
    assert stats.frames_gap == dropped == stats.mc_gaps
    assert (stats.sync_losses, stats.frames_bad, stats.octets_discarded) == (0, 0, 0)


def test_slipped_frames_are_recovered_both_ways() -> None:
    """A deleted octet pulls the next frame earlier than due, inserted ones push it
    later; the search restarts right after the last accepted frame and finds both."""
    rng = random.Random(5)
    framer = TmFramer(SCID, 100)
    sent = [packet_of_length(0x50, k, 20, rng) for k in range(40)]
    tickets = framer.add_packets(0, b"".join(sent))
    frames = [framer.next_frame() for _ in range(10)]
    damaged = bytearray(frames[2])
    del damaged[50]
    inserted = frames[5][:60] + b"\x00" * 7 + frames[5][60:]
    stream = b"".join(frames[:2]) + damaged + b"".join(frames[3:5]) + inserted \
        + b"".join(frames[6:])
    deframer = TmDeframer(100)
    out = deframer.feed(stream)
    stats = deframer.stats
    # Frames 2 and 5 sit where due and fail their FECF; 3 comes a octet early, 6 seven
    # octets late: two sync losses, and both are recovered.
    assert (stats.frames_good, stats.frames_bad, stats.sync_losses) == (8, 2, 2)
    assert stats.mc_gaps == 2 and stats.frames_gap == 2
    expected = [(0, p) for p, t in zip(sent, tickets, strict=True)
                if framer.survives(t, {2, 5})]
    assert out == expected and 0 < len(expected) < len(sent)


def test_vc_count_jump_alone_drops_that_vcs_partial() -> None:
    """Frames lost before the master channel numbered them (on board, say): only the
    VC count jumps. The partial packet is dropped, later packets come through."""
    rng = random.Random(4)
    framer = TmFramer(SCID, 64)
    first = packet_of_length(0x21, 0, 100, rng)  # 56 + 44 octets: frames 0 and 1
    second = packet_of_length(0x21, 1, 40, rng)
    framer.add_packets(0, first + second)
    frames = [bytearray(framer.next_frame()) for _ in range(3)]
    for frame in frames[1:]:
        frame[7] = (frame[7] + 4) & 0xFF  # VC count: as if four frames were lost before
        frame[-2:] = crc16(bytes(frame[4:-2])).to_bytes(2, "big")
    deframer = TmDeframer(64)
    assert deframer.feed(b"".join(frames)) == [(0, second)]
    stats = deframer.stats
    assert (stats.frames_gap, stats.mc_gaps, stats.packets_dropped) == (4, 0, 1)


def test_bad_frame_where_one_was_due_drops_every_partial() -> None:
    """The conservative choice: a frame that fails its FECF where the next one was due
    may have carried any VC, so every VC's partial packet goes, even when (as here,
    a sync marker and a frame's worth of junk) no real frame turns out to be missing."""
    rng = random.Random(6)
    framer = TmFramer(SCID, 64)
    spanning = packet_of_length(0x22, 0, 80, rng)  # frames 0 and 1
    framer.add_packets(0, spanning)
    frames = [framer.next_frame() for _ in range(2)]
    junk = ASM + bytes(64)
    deframer = TmDeframer(64)
    assert deframer.feed(frames[0] + junk + frames[1]) == []
    stats = deframer.stats
    assert (stats.frames_bad, stats.mc_gaps, stats.packets_dropped) == (1, 0, 1)
    assert stats.sync_losses == 0  # the junk's length matched the flywheel


def test_garbage_alone_keeps_the_buffer_bounded_and_is_counted() -> None:
    deframer = TmDeframer(1115)
    noise = random.Random(9).randbytes(200_000).replace(ASM, b"\x00" * 4)
    for start in range(0, len(noise), 1000):
        assert deframer.feed(noise[start:start + 1000]) == []
        assert deframer.buffered <= 3
    assert deframer.stats.octets_discarded == len(noise) - deframer.buffered
    assert not deframer.stats.locked and deframer.stats.frames_good == 0


def test_sync_loss_is_noticed_without_a_next_asm_and_reset_drops_partials() -> None:
    rng = random.Random(8)
    framer = TmFramer(SCID, 64)
    big = packet_of_length(0x60, 0, 150, rng)
    framer.add_packets(0, big)
    first = framer.next_frame()
    deframer = TmDeframer(64)
    assert deframer.feed(first) == [] and deframer.stats.locked
    deframer.feed(b"\x00" * 10)  # where the next ASM was due
    assert not deframer.stats.locked and deframer.stats.sync_losses == 1
    deframer.reset()
    assert deframer.stats.packets_dropped == 1 and deframer.buffered == 0
    # After the reset the rest of the packet is not glued onto anything.
    assert deframer.feed(framer.next_frame() + framer.next_frame()) == []
    assert deframer.stats.frames_gap == 0  # counts forgotten, nothing to compare with


def test_idle_apid_packets_queued_by_the_caller_are_not_delivered() -> None:
    framer = TmFramer(SCID, 64)
    idle = build_packet(IDLE_APID, 0, b"\x00" * 10, time=None, error_control=False)
    real = build_packet(0x70, 1, b"\x01" * 10, time=None, error_control=False)
    framer.add_packets(0, idle + real)
    deframer = TmDeframer(64)
    assert deframer.feed(framer.next_frame()) == [(0, real)]
    assert deframer.stats.idle_packets == 2  # the caller's and the padding
