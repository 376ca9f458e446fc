"""COBS framing of CCSDS packets, for low-cost bench boards without TM transfer frames.

Wire format: one CCSDS space packet per frame::

    cobs_encode(packet + crc16(packet).to_bytes(2, "big")) + b"\\x00"

where ``crc16`` is :func:`control_center.telemetry.packets.crc16` (CRC-16-CCITT, initial value
0xFFFF) over the whole packet, and COBS is Consistent Overhead Byte Stuffing
(Cheshire and Baker, IEEE/ACM Transactions on Networking 7(2), 1999): the encoded
octets contain no 0x00, so 0x00 delimits frames. The receiver decodes each delimited
chunk, checks the CRC and that the content is exactly one packet (its primary header
length matches), and drops and counts anything else.

Why COBS rather than KISS/SLIP escaping: COBS costs one octet per started run of 254
(at most ``ceil(n / 254)``, about 0.4 %, whatever the data), while KISS doubles every
FEND/FESC octet (up to 100 % for unlucky data). With a fixed baud rate the pacing of
the simulators and the link budget stay predictable. Both resynchronise at the next
delimiter, so a damaged frame costs only itself.

Encoding variant: a run of 254 non-zero octets is the group ``FF`` + 254 octets; at
the very end of the data no empty group follows it, so 254 non-zero octets encode to
``FF`` + data (255 octets), as in the examples of the Wikipedia article. The paper's
reference C code appends a final ``01`` group there; :func:`cobs_decode` accepts both.

Resynchronisation: a sender may put an extra 0x00 before a frame (empty chunks are
ignored). Noise octets that arrive just before a frame, with no 0x00 between, would
otherwise cost that intact frame: when a chunk fails, the deframer looks for a
suffix of it that is a whole valid frame (a per-octet walk, on failed chunks only).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from control_center.telemetry.packets import CRC_LENGTH, PRIMARY_HEADER_LENGTH, crc16

DELIMITER = b"\x00"
MAX_PACKET_LENGTH = PRIMARY_HEADER_LENGTH + 65536  # CCSDS 133.0-B-2 §4.1.3.5
_MAX_CONTENT = MAX_PACKET_LENGTH + CRC_LENGTH
# The longest encoded frame: one overhead octet per started 254 octets.
MAX_ENCODED_LENGTH = _MAX_CONTENT + _MAX_CONTENT // 254 + 1
_MIN_CONTENT = PRIMARY_HEADER_LENGTH + 1 + CRC_LENGTH


def cobs_encode(data: bytes | bytearray | memoryview) -> bytes:
    """COBS-encode ``data``: the result holds no 0x00 and is 1 + len/254 octets longer."""
    out = bytearray()
    pieces = bytes(data).split(DELIMITER)
    last = len(pieces) - 1
    for index, piece in enumerate(pieces):
        size = len(piece)
        at = 0
        while size - at >= 254:
            out.append(0xFF)  # 254 non-zero octets, no zero after them
            out += piece[at:at + 254]
            at += 254
        if index == last and at and at == size:
            break  # the data ends right after a full group: no empty group needed
        out.append(size - at + 1)  # the group's octets, then (implied) a zero
        out += piece[at:]
    return bytes(out)


def cobs_decode(data: bytes | bytearray | memoryview) -> bytes:
    """Undo :func:`cobs_encode`; ValueError if ``data`` is not a COBS encoding."""
    data = bytes(data)
    size = len(data)
    if not size:
        raise ValueError("empty input: every COBS encoding has at least one octet")
    if DELIMITER in data:
        raise ValueError(f"0x00 at octet {data.index(DELIMITER)} of COBS-encoded data")
    out = bytearray()
    at = 0
    while at < size:
        code = data[at]
        following = at + code
        if following > size:
            raise ValueError(f"group at octet {at} declares {code - 1} octets, "
                             f"only {size - at - 1} follow")
        out += data[at + 1:following]
        at = following
        if code != 0xFF and at < size:
            out.append(0)  # the zero the group stands for (not after the last group)
    return bytes(out)


def cobs_frame(packet: bytes) -> bytes:
    """One packet as it goes on the wire: encoded with its CRC, then the delimiter."""
    if len(packet) < PRIMARY_HEADER_LENGTH + 1 or _packet_length(packet) != len(packet):
        raise ValueError("cobs_frame takes exactly one whole CCSDS packet")
    return cobs_encode(packet + crc16(packet).to_bytes(CRC_LENGTH, "big")) + DELIMITER


def _packet_length(content: bytes | bytearray) -> int:
    (length_field,) = struct.unpack_from(">H", content, 4)
    return int(length_field) + PRIMARY_HEADER_LENGTH + 1


def _unframe(chunk: bytes | bytearray) -> bytes | None:
    """The packet in one delimited chunk, or None if the chunk is not a valid frame."""
    try:
        content = cobs_decode(chunk)
    except ValueError:
        return None
    if len(content) < _MIN_CONTENT or crc16(content) != 0:
        return None
    if content[0] >> 5 or _packet_length(content) != len(content) - CRC_LENGTH:
        return None  # not a version-0 packet, or not exactly one packet
    return content[:-CRC_LENGTH]


def _recover(chunk: bytes | bytearray) -> tuple[int, bytes] | None:
    """A valid frame that is a proper suffix of ``chunk`` (noise glued in front of it),
    as (offset, packet); the longest such suffix, None if there is none."""
    size = len(chunk)
    # reach[i]: following the group codes from octet i lands exactly at the end, which
    # any valid encoding starting at i must do. One pass from the end finds them all.
    reach = bytearray(size + 1)
    reach[size] = 1
    for at in range(size - 1, 0, -1):
        following = at + chunk[at]
        if following <= size and reach[following]:
            reach[at] = 1
    for at in range(1, size - _MIN_CONTENT):
        if reach[at]:
            packet = _unframe(chunk[at:])
            if packet is not None:
                return at, packet
    return None


@dataclass(slots=True)
class CobsStats:
    frames_good: int = 0
    frames_bad: int = 0  # delimited chunks that yielded no packet (noise included)
    octets_discarded: int = 0  # octets not part of a good frame, delimiters included


class CobsDeframer:
    """A byte stream in (any chunking), the packets of every valid frame out."""

    def __init__(self, *, max_frame_octets: int = MAX_ENCODED_LENGTH) -> None:
        self.max_frame_octets = max_frame_octets
        self.stats = CobsStats()
        self._tail = bytearray()  # octets since the last delimiter

    @property
    def buffered(self) -> int:
        return len(self._tail)

    def reset(self) -> None:
        """Forget a partial frame (after the device was reopened, say)."""
        self.stats.octets_discarded += len(self._tail)
        self._tail = bytearray()

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Octets in; the packets of the frames they complete out."""
        stats = self.stats
        out: list[bytes] = []
        if not isinstance(data, bytes | bytearray):
            data = bytes(data)  # `in` on a memoryview compares octets, not substrings
        self._tail += data
        if DELIMITER in data:
            chunks = self._tail.split(DELIMITER)
            self._tail = chunks.pop()
            for chunk in chunks:
                if not chunk:
                    stats.octets_discarded += 1  # a spare delimiter
                    continue
                packet = _unframe(chunk)
                skipped = 0
                if packet is None:
                    found = _recover(chunk)
                    if found is None:
                        stats.frames_bad += 1
                        stats.octets_discarded += len(chunk) + 1
                        continue
                    skipped, packet = found
                stats.frames_good += 1
                stats.octets_discarded += skipped
                out.append(packet)
        excess = len(self._tail) - self.max_frame_octets
        if excess > 0:
            # No delimiter for longer than any frame: the oldest octets are noise. Keep
            # the newest, which may be the start of a good frame.
            stats.octets_discarded += excess
            del self._tail[:excess]
        return out
