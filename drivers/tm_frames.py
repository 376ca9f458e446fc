"""CCSDS TM transfer frames: a framer for the simulators and a deframer for the links.

Standards
---------
- CCSDS 131.0-B (TM Synchronization and Channel Coding) §9: every frame is preceded
  by the 32-bit attached sync marker ``ASM = 1ACFFC1D``. Channel coding proper
  (Reed-Solomon, convolutional, randomisation) is not applied: these frames go over
  serial lines and bench cables, where the FECF below is the only protection.
- CCSDS 132.0-B-3 (TM Space Data Link Protocol), §4.1. A frame is, back to back:
  the primary header (6 octets, §4.1.2), the data field (§4.1.4) carrying whole and
  split CCSDS space packets, the optional operational control field (OCF, 4 octets,
  §4.1.5) and the optional frame error control field (FECF, 2 octets, §4.1.6): the
  CRC-16-CCITT (initial value 0xFFFF) of every preceding octet of the frame.
  No frame secondary header is produced (§4.1.3); the deframer skips one if present.

Primary header (§4.1.2), most significant bit first::

    version(2)=00 | spacecraft id(10) | VCID(3) | OCF flag(1)     §4.1.2.2-4.1.2.4
    master channel frame count(8)                                  §4.1.2.5
    virtual channel frame count(8)                                 §4.1.2.6
    data field status(16): secondary header flag(1) sync flag(1)   §4.1.2.7
        packet order flag(1) segment length id(2)=11 first header pointer(11)

The first header pointer (FHP, §4.1.2.7.6) is the offset in the data field of the
first packet header that starts in this frame; ``0x7FF`` when no packet starts in it,
``0x7FE`` when the data field holds only idle data. Packets may run over frame
boundaries of their virtual channel (VC); the FHP lets a receiver find the next
packet start after a lost frame.

Framer choices
--------------
- Round-robin between the virtual channels with data waiting. When a VC has less than
  a frame's worth, the frame is filled with an idle packet (APID 0x7FF, CCSDS
  133.0-B-2 §4.1.3.3.4); an idle packet is at least 7 octets, so when fewer remain
  it continues into that VC's next frame (legal: packets span frames).
- With no data on any VC an "only idle data" frame goes out on VCID 7 with FHP 0x7FE
  (§4.1.2.7.6, §4.1.4), so the line is never silent and the receiver stays locked.
- Every packet queued gets a :class:`PacketTicket`; :meth:`TmFramer.spans` then says
  which frames (by emission sequence number) it occupies, first to last. A packet is
  delivered by :class:`TmDeframer` iff every frame in ``range(first, last + 1)`` arrives
  intact (see "Which packets survive" below).

Deframer: frame synchronisation
-------------------------------
The ASM is searched with ``bytes.find``. A candidate is accepted when the CRC-16 over
the frame including its FECF is 0; without an FECF, when the ASM recurs right after
it or when we are locked and it sits exactly where the next frame is due. A rejected
candidate resumes the search at candidate + 1, never candidate + frame length, so an
intact frame right after a damaged one (slipped earlier by a deleted octet, or later
by inserted ones) is always found: every frame whose ASM and octets arrive intact is
recovered, whatever surrounds it.

The bound relied on: CRC-16-CCITT, x^16 + x^12 + x^5 + 1 = (x + 1)·p(x) with p
primitive of degree 15 (period 32767). The (x + 1) factor catches every odd number of
flipped bits; two flipped bits are caught when they are less than 32767 bits apart.
So every pattern of 1 to 3 flipped bits is detected in codewords up to 32767 bits
(data up to 32751 bits), far above the 2048-octet (16384-bit) maximum frame. Other
damage (octets inserted or deleted, so the frame is checked over shifted octets) is
missed with probability 2^-16 per damaged frame: that is the limit of this link
layer, and why every ISLS packet also carries its own CRC.

Deframer: which packets survive
-------------------------------
The receiver cannot know which virtual channel a damaged frame belonged to. So on
any evidence that a frame was lost - a frame failing its FECF where the next one was
due (``frames_bad``), a master channel frame count that jumps, or a VC frame count
that jumps - the partial packets being reassembled are thrown away, of every VC for
the first two (conservative: the lost frame may have carried any of them) and of
that VC for the third. Each VC then waits for its next FHP.

A sync loss alone does *not* drop partials: garbage between two intact frames costs
no frame, and the master channel count of the next frame proves it (it follows on).
An 8-bit counter cannot tell 256 lost frames from none, so when the octets skipped
before the next frame could have held 128 frames or more the partials are dropped
too; after a reconnection, where whole frames vanish without leaving octets, the
owner should call :meth:`TmDeframer.reset`.

The resulting rule, which the simulators and tests use: a packet is delivered iff
every frame emitted from its first frame to its last (other VCs' frames included)
arrived intact. Exceptions: the 2^-16 CRC misses above, a false ASM in the data
exactly where a frame is due, and 256·k frames lost with no trace in the octets.
"""

from __future__ import annotations

import binascii
import struct
import time
from array import array
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Container
from dataclasses import dataclass

from control_center.telemetry.packets import IDLE_APID, PRIMARY_HEADER_LENGTH, PrimaryHeader, crc16

ASM = bytes.fromhex("1ACFFC1D")
ASM_LENGTH = len(ASM)
IDLE_VCID = 7
FHP_NO_PACKET_START = 0x7FF
FHP_IDLE_ONLY = 0x7FE
FRAME_HEADER_LENGTH = 6
OCF_LENGTH = 4
FECF_LENGTH = 2
# The FHP has 11 bits and 0x7FE/0x7FF are reserved, so the data field (and with the
# 6-octet header, the frame) is at most 2048 octets in practice (§4.1.2.7.6).
MAX_FRAME_LENGTH = 2048
# An idle packet is at least a primary header and one octet (133.0-B-2 §4.1.3.5, §4.1.4).
MIN_IDLE_PACKET = PRIMARY_HEADER_LENGTH + 1
# Octets of idle data: the pattern is mission-specified (132.0-B-3 §4.1.4).
IDLE_FILL = 0x55
# When the octets skipped before a frame could have held this many frames, an 8-bit
# master channel count cannot prove that none was lost (see the module docstring).
SKIP_LIMIT_FRAMES = 128

_FRAME_HEADER = struct.Struct(">HBBH")
_PACKET_HEADER = struct.Struct(">HHH")
_VC_COUNT = 8


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """The TM transfer frame primary header, CCSDS 132.0-B-3 §4.1.2."""

    spacecraft_id: int  # 10 bits, §4.1.2.2.3
    vcid: int  # 3 bits, §4.1.2.3
    ocf_flag: bool  # §4.1.2.4
    mc_count: int  # 8 bits, §4.1.2.5
    vc_count: int  # 8 bits, §4.1.2.6
    first_header_pointer: int  # 11 bits, §4.1.2.7.6
    version: int = 0  # 2 bits, 00 for TM frames, §4.1.2.2.2
    secondary_header: bool = False  # §4.1.2.7.2
    sync_flag: bool = False  # False: the data field holds packets, §4.1.2.7.3
    packet_order: bool = False  # §4.1.2.7.4
    segment_length_id: int = 0b11  # 2 bits, 11 when the sync flag is 0, §4.1.2.7.5

    def pack(self) -> bytes:
        for name, value, bits in (("version", self.version, 2),
                                  ("spacecraft_id", self.spacecraft_id, 10),
                                  ("vcid", self.vcid, 3), ("mc_count", self.mc_count, 8),
                                  ("vc_count", self.vc_count, 8),
                                  ("first_header_pointer", self.first_header_pointer, 11),
                                  ("segment_length_id", self.segment_length_id, 2)):
            if not 0 <= value < 1 << bits:
                raise ValueError(f"{name} {value} does not fit in {bits} bits")
        word0 = (self.version << 14) | (self.spacecraft_id << 4) | (self.vcid << 1) \
            | int(self.ocf_flag)
        status = (int(self.secondary_header) << 15) | (int(self.sync_flag) << 14) \
            | (int(self.packet_order) << 13) | (self.segment_length_id << 11) \
            | self.first_header_pointer
        return _FRAME_HEADER.pack(word0, self.mc_count, self.vc_count, status)

    @classmethod
    def unpack(cls, data: bytes | bytearray | memoryview) -> FrameHeader:
        if len(data) < FRAME_HEADER_LENGTH:
            raise ValueError(f"a frame header needs 6 octets, got {len(data)}")
        word0, mc_count, vc_count, status = _FRAME_HEADER.unpack_from(data)
        return cls(spacecraft_id=(word0 >> 4) & 0x3FF, vcid=(word0 >> 1) & 0x7,
                   ocf_flag=bool(word0 & 1), mc_count=mc_count, vc_count=vc_count,
                   first_header_pointer=status & 0x7FF, version=word0 >> 14,
                   secondary_header=bool(status >> 15), sync_flag=bool((status >> 14) & 1),
                   packet_order=bool((status >> 13) & 1),
                   segment_length_id=(status >> 11) & 0b11)


def _data_field_length(frame_length: int, ocf: bool, fecf: bool) -> int:
    """Octets of packet data per frame; ValueError for a frame length we cannot use."""
    trailer = (OCF_LENGTH if ocf else 0) + (FECF_LENGTH if fecf else 0)
    data = frame_length - FRAME_HEADER_LENGTH - trailer
    if frame_length > MAX_FRAME_LENGTH or data < MIN_IDLE_PACKET:
        raise ValueError(f"frame length {frame_length}: must be at most {MAX_FRAME_LENGTH} "
                         f"octets and leave at least {MIN_IDLE_PACKET} for the data field")
    return data


# ---------------------------------------------------------------------------- framer


@dataclass(frozen=True, slots=True)
class PacketTicket:
    """A packet queued on a virtual channel, to ask :meth:`TmFramer.spans` about."""

    vcid: int
    index: int  # packets queued on this VC before it
    start_offset: int  # offset of its first octet in the VC's stream of packet octets
    length: int


class _Channel:
    """One virtual channel's queue and history in the framer."""

    __slots__ = ("added", "count", "ends", "framed", "head", "packets", "queue",
                 "remainder", "seqs", "starts")

    def __init__(self) -> None:
        self.queue = bytearray()  # packet octets waiting, from ``head`` on
        self.head = 0
        self.added = 0  # packet octets ever queued
        self.framed = 0  # packet octets ever put in frames
        self.packets = 0  # packets ever queued
        self.starts: deque[int] = deque()  # offsets of packet starts not yet framed
        self.remainder = b""  # the tail of an idle packet that continues into the next frame
        self.count = 0  # VC frame count of the next frame
        # For every frame of this VC: the packet offset it ended at, and its sequence
        # number. 16 octets a frame, kept for spans(): about 6 MB a day at 115200 baud.
        self.ends = array("q")
        self.seqs = array("q")


class TmFramer:
    """Packets in, TM transfer frames (with ASM) out, one at a time."""

    def __init__(self, spacecraft_id: int, frame_length: int, *, ocf: bool = False,
                 fecf: bool = True) -> None:
        if not 0 <= spacecraft_id <= 0x3FF:
            raise ValueError(f"spacecraft id {spacecraft_id} does not fit in 10 bits")
        self.spacecraft_id = spacecraft_id
        self.frame_length = frame_length
        self.ocf = ocf
        self.fecf = fecf
        self.data_field_length = _data_field_length(frame_length, ocf, fecf)
        self.frames_emitted = 0  # the sequence number the next frame will get
        self._mc_count = 0
        self._idle_count = 0  # VC frame count of VCID 7
        self._idle_sequence = 0  # sequence count of idle packets (APID 0x7FF)
        self._channels: dict[int, _Channel] = {}
        self._next_vc = 0
        self._word0 = spacecraft_id << 4 | int(ocf)
        self._trailer_ocf = bytes(OCF_LENGTH) if ocf else b""  # no CLCW to report: zeros
        self._idle_data = bytes([IDLE_FILL]) * self.data_field_length

    def add_packets(self, vcid: int, packets: bytes) -> list[PacketTicket]:
        """Queue whole packets, back to back, on virtual channel ``vcid`` (0 to 6)."""
        if not 0 <= vcid < IDLE_VCID:
            raise ValueError(f"VCID {vcid}: packets go on 0..6, 7 carries idle frames")
        channel = self._channels.get(vcid)
        if channel is None:
            channel = self._channels[vcid] = _Channel()
        offsets: list[tuple[int, int]] = []
        position, end = 0, len(packets)
        while position < end:
            if end - position < PRIMARY_HEADER_LENGTH:
                raise ValueError(f"{end - position} octets after the last whole packet")
            (length_field,) = struct.unpack_from(">H", packets, position + 4)
            total = PRIMARY_HEADER_LENGTH + length_field + 1
            if position + total > end:
                raise ValueError(f"packet at octet {position} declares {total} octets, "
                                 f"only {end - position} present")
            offsets.append((position, total))
            position += total
        tickets = []
        for position, total in offsets:
            start = channel.added + position
            tickets.append(PacketTicket(vcid, channel.packets, start, total))
            channel.starts.append(start)
            channel.packets += 1
        channel.queue += packets
        channel.added += end
        return tickets

    def pending(self) -> int:
        """Packet octets queued and not yet framed (idle fill not counted)."""
        return sum(c.added - c.framed for c in self._channels.values())

    def next_frame(self) -> bytes:
        """ASM plus the next frame of ``frame_length`` octets (an idle one if no data)."""
        vcid = self._pick()
        if vcid is None:
            vc_count = self._idle_count
            self._idle_count = (vc_count + 1) & 0xFF
            word0 = self._word0 | IDLE_VCID << 1
            status = 0b11 << 11 | FHP_IDLE_ONLY
            data = self._idle_data
        else:
            channel = self._channels[vcid]
            vc_count = channel.count
            channel.count = (vc_count + 1) & 0xFF
            word0 = self._word0 | vcid << 1
            fhp, data = self._fill(channel)
            status = 0b11 << 11 | fhp
        frame = _FRAME_HEADER.pack(word0, self._mc_count, vc_count, status) + data \
            + self._trailer_ocf
        if self.fecf:
            frame += crc16(frame).to_bytes(2, "big")
        self._mc_count = (self._mc_count + 1) & 0xFF
        self.frames_emitted += 1
        return ASM + frame

    def spans(self, ticket: PacketTicket) -> tuple[int, int] | None:
        """Sequence numbers of the first and last frame holding part of the packet,
        or None while some of it is still waiting to be framed."""
        channel = self._channels.get(ticket.vcid)
        end = ticket.start_offset + ticket.length
        if channel is None or not channel.ends or channel.ends[-1] < end:
            return None
        # Frame j holds the packet octets [ends[j-1], ends[j]).
        first = bisect_right(channel.ends, ticket.start_offset)
        last = bisect_left(channel.ends, end)
        return channel.seqs[first], channel.seqs[last]

    def survives(self, ticket: PacketTicket, destroyed: Container[int]) -> bool | None:
        """Whether the deframer delivers the packet when the frames whose sequence
        numbers are in ``destroyed`` did not arrive intact; None if not framed yet."""
        spans = self.spans(ticket)
        if spans is None:
            return None
        return not any(s in destroyed for s in range(spans[0], spans[1] + 1))

    # ------------------------------------------------------------------ internals

    def _pick(self) -> int | None:
        """Round-robin over the VCs with packet octets waiting."""
        for step in range(IDLE_VCID):
            vcid = (self._next_vc + step) % IDLE_VCID
            channel = self._channels.get(vcid)
            if channel is not None and channel.added > channel.framed:
                self._next_vc = (vcid + 1) % IDLE_VCID
                return vcid
        return None

    def _fill(self, channel: _Channel) -> tuple[int, bytes]:
        """The FHP and data field of the channel's next frame."""
        size = self.data_field_length
        parts: list[bytes | bytearray] = [channel.remainder]
        used = len(channel.remainder)
        channel.remainder = b""
        begin = channel.framed
        take = min(size - used, channel.added - begin)
        end = begin + take
        parts.append(channel.queue[channel.head:channel.head + take])
        channel.head += take
        channel.framed = end
        if channel.head > 65536 and channel.head * 2 > len(channel.queue):
            del channel.queue[:channel.head]  # amortised: a read index, compacted now and then
            channel.head = 0
        fhp = FHP_NO_PACKET_START
        starts = channel.starts
        if starts and starts[0] < end:
            fhp = used + starts[0] - begin
            while starts and starts[0] < end:
                starts.popleft()
        used += take
        channel.ends.append(end)
        channel.seqs.append(self.frames_emitted)
        space = size - used
        if space:
            if fhp == FHP_NO_PACKET_START:
                fhp = used
            if space >= MIN_IDLE_PACKET:
                parts.append(self._idle_packet(space))
            else:
                # Too little room for a whole idle packet: start one of the minimum size
                # and let it continue into this VC's next frame.
                idle = self._idle_packet(MIN_IDLE_PACKET)
                parts.append(idle[:space])
                channel.remainder = idle[space:]
        return fhp, b"".join(parts)

    def _idle_packet(self, length: int) -> bytes:
        header = PrimaryHeader(apid=IDLE_APID, sequence_count=self._idle_sequence,
                               data_length=length - PRIMARY_HEADER_LENGTH,
                               secondary_header=False)
        self._idle_sequence = (self._idle_sequence + 1) & 0x3FFF
        return header.pack() + bytes([IDLE_FILL]) * (length - PRIMARY_HEADER_LENGTH)


# -------------------------------------------------------------------------- deframer


@dataclass(slots=True)
class LinkStats:
    """What a :class:`TmDeframer` has seen. Frames are counted once accepted (ASM found,
    FECF good); ``frames_good`` counts ours (right spacecraft), idle frames included."""

    frames_good: int = 0
    frames_bad: int = 0  # an ASM where the next frame was due, but the FECF failed
    sync_losses: int = 0  # locked, and the next ASM was not where it was due
    frames_gap: int = 0  # frames missing by VC frame count jumps, summed
    mc_gaps: int = 0  # frames missing by master channel frame count jumps, summed
    octets_in: int = 0
    octets_discarded: int = 0  # octets not part of an accepted frame
    packets: int = 0  # delivered, idle packets excluded
    idle_packets: int = 0
    packets_dropped: int = 0  # partial packets thrown away (gap, bad frame, inconsistency)
    wrong_spacecraft: int = 0  # frames of another spacecraft id (or version): ignored
    idle_frames: int = 0  # VCID 7 or FHP 0x7FE
    frames_not_packets: int = 0  # sync flag set: not packet data, ignored
    locked: bool = False
    last_frame_ns: int | None = None  # wall clock (time.time_ns) of the last good frame


class TmDeframer:
    """A byte stream in (any chunking), the packets of every good frame out."""

    def __init__(self, frame_length: int, *, spacecraft_id: int | None = None,
                 ocf: bool = False, fecf: bool = True) -> None:
        self.frame_length = frame_length
        self.spacecraft_id = spacecraft_id
        self.ocf = ocf
        self.fecf = fecf
        _data_field_length(frame_length, ocf, fecf)
        self.stats = LinkStats()
        self._step = ASM_LENGTH + frame_length  # octets from one ASM to the next
        self._data_end = frame_length - (OCF_LENGTH if ocf else 0) \
            - (FECF_LENGTH if fecf else 0)  # end of the data field, from the header
        self._skip_limit = SKIP_LIMIT_FRAMES * self._step
        self._tail = b""  # octets not yet accounted for
        self._base = 0  # stream offset of _tail[0]
        self._pos = 0  # where the ASM search resumes, in _tail
        self._expected = 0  # stream offset of the next ASM when locked
        self._last_end = 0  # stream offset just past the last accepted frame
        self._mc: int | None = None
        self._vc_counts = [-1] * _VC_COUNT
        # Per VC: None = not in sync (waiting for an FHP); else the octets of the packet
        # being reassembled (empty: the VC's next octet starts a packet).
        self._partials: list[bytearray | None] = [None] * _VC_COUNT

    @property
    def buffered(self) -> int:
        """Octets held until more arrive (at most a frame and 8, or 3 octets)."""
        return len(self._tail)

    def reset(self) -> None:
        """Forget the stream: after the device was reopened, say, when frames vanished
        without leaving octets and the 8-bit frame counts could alias."""
        self.stats.octets_discarded += len(self._tail)
        self._base += len(self._tail)
        self._tail = b""
        self._pos = 0
        self.stats.locked = False
        self._mc = None
        self._vc_counts = [-1] * _VC_COUNT
        self._drop_all()

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[int, bytes]]:
        """Octets in; the complete packets they finish out, as (vcid, packet)."""
        stats = self.stats
        stats.octets_in += len(data)
        buf = self._tail + bytes(data) if self._tail else bytes(data)
        n = len(buf)
        base = self._base
        step = self._step
        fecf = self.fecf
        locked = stats.locked
        expected = self._expected - base
        pos = self._pos
        mark = 0  # octets before it are accounted for (frame or discarded)
        cut = -1  # where to keep octets from: a candidate still waiting for its octets
        out: list[tuple[int, bytes]] = []
        accepted = False
        crc = binascii.crc_hqx
        view = memoryview(buf)
        while True:
            i = buf.find(ASM, pos)
            if i < 0:
                if locked and n - expected >= ASM_LENGTH:
                    # The octets where the next ASM was due are here, and it is not.
                    locked = False
                    stats.sync_losses += 1
                break
            if locked and i != expected:
                locked = False
                stats.sync_losses += 1
            if i + step > n:
                cut = i
                break
            if fecf:
                good = crc(view[i + ASM_LENGTH:i + step], 0xFFFF) == 0
            elif locked:
                good = True
            elif i + step + ASM_LENGTH > n:
                cut = i
                break
            else:
                good = buf.startswith(ASM, i + step)
            if good:
                stats.octets_discarded += i - mark
                self._frame(buf, i + ASM_LENGTH, base + i - self._last_end, out)
                pos = mark = expected = i + step
                self._last_end = base + pos
                locked = accepted = True
            else:
                if locked:
                    # The frame was due here: it is lost, and nobody can tell which VC
                    # it carried. Flywheel: the next one is due a frame further on.
                    stats.frames_bad += 1
                    expected = i + step
                    self._drop_all()
                pos = i + 1
        if cut < 0:
            # No candidate left: keep 3 octets, the most of an ASM split by the chunking.
            cut = max(pos, n - (ASM_LENGTH - 1))
        view.release()
        stats.octets_discarded += cut - mark
        self._tail = buf[cut:]
        self._base = base + cut
        self._pos = pos - cut if pos > cut else 0
        self._expected = base + expected
        stats.locked = locked
        if accepted:
            stats.last_frame_ns = time.time_ns()
        return out

    # ------------------------------------------------------------------ internals

    def _frame(self, buf: bytes, start: int, skipped: int, out: list[tuple[int, bytes]]
               ) -> None:
        """One accepted frame, its header at ``buf[start]``; ``skipped`` octets came
        between the previous accepted frame and this one's ASM."""
        stats = self.stats
        word0, mc, vc_count, status = _FRAME_HEADER.unpack_from(buf, start)
        if word0 >> 14 or (self.spacecraft_id is not None
                           and (word0 >> 4) & 0x3FF != self.spacecraft_id):
            stats.wrong_spacecraft += 1
            return
        stats.frames_good += 1
        last_mc = self._mc
        self._mc = mc
        if last_mc is not None:
            missing = (mc - last_mc - 1) & 0xFF
            if missing:
                stats.mc_gaps += missing
                self._drop_all()
            elif skipped >= self._skip_limit:
                self._drop_all()  # the count may have wrapped: see the module docstring
        vcid = (word0 >> 1) & 0x7
        last_vc = self._vc_counts[vcid]
        self._vc_counts[vcid] = vc_count
        if last_vc >= 0:
            missing = (vc_count - last_vc - 1) & 0xFF
            if missing:
                stats.frames_gap += missing
                self._drop(vcid)
        fhp = status & 0x7FF
        if vcid == IDLE_VCID or fhp == FHP_IDLE_ONLY:
            stats.idle_frames += 1
            self._drop(vcid)  # no packet continues through idle data
            return
        if status & 0x4000:
            stats.frames_not_packets += 1
            self._drop(vcid)
            return
        first = start + FRAME_HEADER_LENGTH
        if status & 0x8000:
            # §4.1.3.2.3: the secondary header's length field is its length minus one.
            first += (buf[first] & 0x3F) + 1
        end = start + self._data_end
        partial = self._partials[vcid]
        if fhp == FHP_NO_PACKET_START:
            if not partial:
                # Out of sync, or a packet was due to start here and the frame says none
                # does: either way wait for the next FHP.
                self._partials[vcid] = None
                return
            partial += buf[first:end]
            if len(partial) >= PRIMARY_HEADER_LENGTH:
                total = _total_length(partial)
                if total == len(partial):
                    self._deliver(vcid, bytes(partial), out)
                    self._partials[vcid] = bytearray()
                elif total < len(partial):  # longer than its header says, or not a packet
                    self._drop(vcid)
            return
        if first + fhp >= end:
            self._drop(vcid)  # an FHP outside the data field: do not trust this VC
            return
        if partial:
            # The octets before the FHP must finish the packet exactly.
            partial += buf[first:first + fhp]
            if len(partial) >= PRIMARY_HEADER_LENGTH and _total_length(partial) == len(partial):
                self._deliver(vcid, bytes(partial), out)
                self._partials[vcid] = None
            else:
                self._drop(vcid)
        # Whole packets from the FHP on; the last one may continue in the next frame.
        position = first + fhp
        unpack = _PACKET_HEADER.unpack_from
        packets = 0
        while True:
            remaining = end - position
            if remaining < PRIMARY_HEADER_LENGTH:
                break  # also a header split over two frames
            word1, _, length_field = unpack(buf, position)
            if word1 >> 13:
                # Not a version-0 packet header in a frame that passed its FECF: the
                # sender is inconsistent; resynchronise at the next FHP.
                stats.packets += packets
                stats.packets_dropped += 1
                self._partials[vcid] = None
                return
            total = length_field + PRIMARY_HEADER_LENGTH + 1
            if total > remaining:
                break
            if word1 & 0x7FF == IDLE_APID:
                stats.idle_packets += 1
            else:
                out.append((vcid, buf[position:position + total]))
                packets += 1
            position += total
        stats.packets += packets
        self._partials[vcid] = bytearray(buf[position:end])

    def _deliver(self, vcid: int, packet: bytes, out: list[tuple[int, bytes]]) -> None:
        if (packet[0] << 8 | packet[1]) & 0x7FF == IDLE_APID:
            self.stats.idle_packets += 1
        else:
            out.append((vcid, packet))
            self.stats.packets += 1

    def _drop(self, vcid: int) -> None:
        """Throw away the VC's partial packet; count it unless it was idle fill."""
        partial = self._partials[vcid]
        self._partials[vcid] = None
        if not partial:
            return
        if len(partial) < 2 or (partial[0] << 8 | partial[1]) & 0x7FF != IDLE_APID:
            self.stats.packets_dropped += 1

    def _drop_all(self) -> None:
        for vcid in range(_VC_COUNT):
            if self._partials[vcid] is not None:
                self._drop(vcid)


def _total_length(header: bytes | bytearray) -> int:
    """Octets of the packet whose primary header starts ``header``; -1 if that is not
    a version-0 packet header (so it never matches a length)."""
    word1, _, length_field = _PACKET_HEADER.unpack_from(header)
    if word1 >> 13:
        return -1
    return int(length_field) + PRIMARY_HEADER_LENGTH + 1
