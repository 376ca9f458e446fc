"""CCSDS Space Packets (CCSDS 133.0-B-2) with a CUC time secondary header (CCSDS 301.0-B-4).

Layout of every ISLS packet::

    octets 0-5   primary header (§4.1.3): version(3) type(1) sec-hdr flag(1) APID(11)
                 sequence flags(2) sequence count(14) packet data length(16) = data octets - 1
    octets 6-11  secondary header: CUC time, 4 octets coarse seconds + 2 octets fine
                 (1/65536 s), TAI since the CCSDS epoch 1958-01-01 (301.0-B-4 §3.2.2.1.1)
    ...          parameters, laid out by the telemetry database
    last 2       packet error control: CRC-16-CCITT, initial value 0xFFFF, over all
                 preceding octets (ECSS-E-ST-70-41C §7.4.3.1)

The scalar classes here pack and unpack one unit; :func:`split_packets` cuts a buffer
of back-to-back packets for the batch decoder in :mod:`control_center.telemetry.codec`.
"""

from __future__ import annotations

import binascii
import struct
from collections import Counter
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

PRIMARY_HEADER_LENGTH = 6
CUC_LENGTH = 6
CRC_LENGTH = 2
TM_PACKET_TYPE = 0
SEQUENCE_UNSEGMENTED = 0b11
IDLE_APID = 0x7FF
_HEADER = struct.Struct(">HHH")

# Seconds from the CCSDS epoch (1958-01-01 TAI) to the Unix epoch: 4383 days.
CCSDS_TO_UNIX_SECONDS = 378_691_200
FINE_PER_SECOND = 65536

# TAI-UTC from each UTC date on (IERS Bulletin C). 37 s since 2017-01-01; the IERS has
# announced no leap second since, so the table needs a new row only when one does.
_LEAP_SECONDS_UTC: tuple[tuple[int, int], ...] = (
    (63072000, 10), (78796800, 11), (94694400, 12), (126230400, 13), (157766400, 14),
    (189302400, 15), (220924800, 16), (252460800, 17), (283996800, 18), (315532800, 19),
    (362793600, 20), (394329600, 21), (425865600, 22), (489024000, 23), (567993600, 24),
    (631152000, 25), (662688000, 26), (709948800, 27), (741484800, 28), (773020800, 29),
    (820454400, 30), (867715200, 31), (915148800, 32), (1136073600, 33), (1230768000, 34),
    (1341100800, 35), (1435708800, 36), (1483228800, 37),
)
_LEAP_UTC = np.array([u for u, _ in _LEAP_SECONDS_UTC], dtype=np.int64)
_LEAP_OFFSET = np.array([o for _, o in _LEAP_SECONDS_UTC], dtype=np.int64)
_LEAP_TAI = _LEAP_UTC + _LEAP_OFFSET  # the same instants on the TAI scale


def crc16(data: bytes | memoryview, initial: int = 0xFFFF) -> int:
    """CRC-16-CCITT (polynomial 0x1021, not reflected), as CCSDS 132.0-B-3 §4.1.6 and PUS."""
    return binascii.crc_hqx(data, initial)


@dataclass(frozen=True, slots=True)
class PrimaryHeader:
    """CCSDS 133.0-B-2 §4.1.3 packet primary header."""

    apid: int
    sequence_count: int
    data_length: int  # octets in the packet data field (the wire field holds this - 1)
    version: int = 0
    packet_type: int = TM_PACKET_TYPE
    secondary_header: bool = True
    sequence_flags: int = SEQUENCE_UNSEGMENTED

    def pack(self) -> bytes:
        if not 1 <= self.data_length <= 65536:
            raise ValueError(f"data field length {self.data_length} outside 1..65536 octets")
        word1 = ((self.version & 0x7) << 13) | ((self.packet_type & 1) << 12) \
            | (int(self.secondary_header) << 11) | (self.apid & 0x7FF)
        word2 = ((self.sequence_flags & 0x3) << 14) | (self.sequence_count & 0x3FFF)
        return _HEADER.pack(word1, word2, self.data_length - 1)

    @classmethod
    def unpack(cls, data: bytes | memoryview) -> PrimaryHeader:
        if len(data) < PRIMARY_HEADER_LENGTH:
            raise ValueError(f"a primary header needs 6 octets, got {len(data)}")
        word1, word2, length = _HEADER.unpack_from(data)
        return cls(
            version=word1 >> 13, packet_type=(word1 >> 12) & 1,
            secondary_header=bool((word1 >> 11) & 1), apid=word1 & 0x7FF,
            sequence_flags=word2 >> 14, sequence_count=word2 & 0x3FFF,
            data_length=length + 1,
        )

    @property
    def packet_length(self) -> int:
        return PRIMARY_HEADER_LENGTH + self.data_length


@dataclass(frozen=True, slots=True)
class CucTime:
    """CCSDS 301.0-B-4 §3.2 unsegmented time code, 4 octets coarse and 2 octets fine."""

    coarse: int
    fine: int = 0

    def pack(self) -> bytes:
        return struct.pack(">IH", self.coarse, self.fine)

    @classmethod
    def unpack(cls, data: bytes | memoryview) -> CucTime:
        coarse, fine = struct.unpack_from(">IH", data)
        return cls(coarse, fine)

    @classmethod
    def from_unix(cls, unix_seconds: float) -> CucTime:
        """The onboard (TAI) time code of a UTC instant given as Unix seconds."""
        whole = int(unix_seconds // 1)
        fine = round((unix_seconds - whole) * FINE_PER_SECOND)
        if fine == FINE_PER_SECOND:
            whole, fine = whole + 1, 0
        offset = int(_LEAP_OFFSET[max(0, int(np.searchsorted(_LEAP_UTC, whole, "right")) - 1)])
        return cls(whole + offset + CCSDS_TO_UNIX_SECONDS, fine)

    def to_unix_ns(self) -> int:
        return int(cuc_to_unix_ns(np.array([self.coarse], dtype=np.int64),
                                  np.array([self.fine], dtype=np.int64))[0])


def cuc_to_unix_ns(coarse: npt.NDArray[np.integer], fine: npt.NDArray[np.integer]
                   ) -> npt.NDArray[np.int64]:
    """Onboard TAI CUC times to UTC nanoseconds since the Unix epoch, vectorised."""
    tai = coarse.astype(np.int64) - CCSDS_TO_UNIX_SECONDS
    index = np.searchsorted(_LEAP_TAI, tai, side="right") - 1
    offset = _LEAP_OFFSET[np.clip(index, 0, None)]
    fine_ns = (fine.astype(np.int64) * 1_000_000_000) >> 16
    return (tai - offset) * 1_000_000_000 + fine_ns


@dataclass(frozen=True, slots=True)
class SpacePacket:
    """One whole packet: header plus data field (secondary header, parameters, CRC)."""

    header: PrimaryHeader
    data: bytes

    def pack(self) -> bytes:
        return self.header.pack() + self.data

    @classmethod
    def unpack(cls, buffer: bytes | memoryview) -> SpacePacket:
        header = PrimaryHeader.unpack(buffer)
        end = header.packet_length
        if len(buffer) < end:
            raise ValueError(f"packet of APID {header.apid} declares {end} octets, "
                             f"only {len(buffer)} present")
        return cls(header, bytes(buffer[PRIMARY_HEADER_LENGTH:end]))


def build_packet(apid: int, sequence_count: int, body: bytes, *, time: CucTime | None,
                 error_control: bool = True) -> bytes:
    """A whole packet around ``body`` (the parameter octets), with CUC time and CRC."""
    data = (time.pack() if time is not None else b"") + body
    header = PrimaryHeader(apid=apid, sequence_count=sequence_count,
                           data_length=len(data) + (CRC_LENGTH if error_control else 0),
                           secondary_header=time is not None)
    packet = header.pack() + data
    if error_control:
        packet += crc16(packet).to_bytes(2, "big")
    return packet


Octets = npt.NDArray[np.uint8]


class SplitResult:
    """Packets found in a buffer, by APID, and what could not be used.

    When the numpy cut took the buffer, ``matrices`` holds each APID's packets as one
    ``(n, length)`` octet matrix (a view of the buffer when every packet was kept), in
    the order the APIDs first appear; the batch decoder reads those directly, with no
    ``bytes`` object per packet. ``by_apid`` (one ``bytes`` per packet) is then built from
    them on first use, for the callers that want packets one by one. Either way the two
    hold the same packets, and two results compare equal when their packets, errors and
    idle counts are equal, whichever path cut them.
    """

    __slots__ = ("_by_apid", "errors", "idle", "matrices")

    def __init__(self, by_apid: dict[int, list[bytes]] | None, errors: Counter[str],
                 idle: int = 0, *, matrices: dict[int, Octets] | None = None) -> None:
        if by_apid is None and matrices is None:
            raise ValueError("a split result needs its packets as bytes or as matrices")
        self._by_apid = by_apid
        self.errors = errors
        self.idle = idle
        self.matrices = matrices

    @property
    def by_apid(self) -> dict[int, list[bytes]]:
        if self._by_apid is None:
            assert self.matrices is not None  # __init__ holds one of them
            self._by_apid = {apid: rows_as_bytes(matrix)
                             for apid, matrix in self.matrices.items()}
        return self._by_apid

    def octets(self, apid: int) -> Octets | None:
        """The packets of ``apid`` as one ``(n, length)`` octet matrix, or None when it
        has none here or packets of several lengths (a variable-length type)."""
        if self.matrices is not None:
            return self.matrices.get(apid)
        packets = self.by_apid.get(apid)
        if not packets or len({len(p) for p in packets}) != 1:
            return None
        return np.frombuffer(b"".join(packets), dtype=np.uint8).reshape(
            len(packets), len(packets[0]))

    @property
    def count(self) -> int:
        if self.matrices is not None:
            return sum(m.shape[0] for m in self.matrices.values())
        return sum(len(v) for v in self.by_apid.values())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SplitResult):
            return NotImplemented
        return (self.by_apid, self.errors, self.idle) == (other.by_apid, other.errors,
                                                           other.idle)

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dataclass it replaces

    def __repr__(self) -> str:
        return f"SplitResult(by_apid={self.by_apid!r}, errors={self.errors!r}, " \
            f"idle={self.idle!r})"


def rows_as_bytes(matrix: Octets) -> list[bytes]:
    """One ``bytes`` per row of an octet matrix."""
    length = matrix.shape[1]  # at least 7: a primary header and one data octet
    data = matrix.tobytes()
    return [data[s:s + length] for s in range(0, len(data), length)]


def header_words(buffer: bytes, size: int, count: int) -> npt.NDArray[np.uint16]:
    """The three primary header words (packet identification, sequence control, data
    length: big-endian uint16) of ``count`` packets of ``size`` octets each from the
    start of ``buffer``, read in place (no copy)."""
    return np.ndarray((count, 3), dtype=">u2", buffer=buffer, strides=(size, 2))


def same_length_run(buffer: bytes) -> tuple[int, npt.NDArray[np.uint16]]:
    """The whole packets at the start of ``buffer`` that all have the first one's length,
    as (their size in octets, their :func:`header_words`): the part of a buffer numpy can
    step over at once, the header walk taking over after it."""
    if len(buffer) < PRIMARY_HEADER_LENGTH:
        return 0, np.empty((0, 3), dtype=">u2")
    size = PRIMARY_HEADER_LENGTH + int.from_bytes(buffer[4:6], "big") + 1
    words = header_words(buffer, size, len(buffer) // size)
    other = words[:, 2] != words[0, 2] if len(words) else np.zeros(0, dtype=bool)
    return size, words[:int(other.argmax())] if other.any() else words


def split_packets(buffer: bytes, *, check_crc: frozenset[int] = frozenset(),
                  lengths: dict[int, int] | None = None, version: int = 0) -> SplitResult:
    """Cut back-to-back packets out of ``buffer``.

    ``lengths`` maps the APIDs the telemetry database knows to their packet length in
    octets; a packet of a known APID with another length is counted as ``wrong_length``.
    A length of 0 marks a variable-length packet type: any length is taken here, and
    the decoder checks the layout. APIDs in ``check_crc`` must close with a valid
    CRC-16 (``bad_crc`` otherwise).

    Only the 3-bit version must be ``version``: 0, as CCSDS 133.0-B-2 §4.1.3.2 says,
    unless the telemetry database names another (``packet_version``); both packet types
    (§4.1.3.3) are taken, since real telemetry files often set the type bit. A packet
    whose version is not 0 is counted as ``bad_header`` and stepped over by its
    declared length, so every such packet is counted once and the walk goes on. A
    length running past the end of the buffer is counted once as ``truncated`` and
    ends the walk; the good packets before it are kept.

    A buffer made only of packets of one length (one APID per message, a file of
    fixed-length packets) is cut with numpy as an ``(n, length)`` octet matrix;
    anything else takes the packet-by-packet walk. Both give the same result.
    """
    fast = _split_uniform(buffer, check_crc, lengths, version=version)
    if fast is not None:
        return fast
    return _split_slow(buffer, check_crc=check_crc, lengths=lengths, version=version)


# Below this many packets the numpy set-up costs more than the walk saves.
_FAST_MIN_PACKETS = 16
_CRC_TABLE = np.array([crc16(bytes([i]), 0) for i in range(256)], dtype=np.uint16)


def _crc_word_table() -> npt.NDArray[np.uint16]:
    """The CRC of every 16-bit word from a zero register: two octets in one lookup. The
    register is as wide as the word, so ``crc(register, word) == table[register ^ word]``
    (the CRC is linear and the whole register is shifted out)."""
    word = np.arange(1 << 16, dtype=np.uint32)
    first = _CRC_TABLE[word >> 8].astype(np.uint32)
    second = _CRC_TABLE[((first >> 8) ^ (word & 0xFF))].astype(np.uint32)
    table: npt.NDArray[np.uint16] = (((first << 8) ^ second) & 0xFFFF).astype(np.uint16)
    return table


_CRC_WORD_TABLE = _crc_word_table()
_CRC_BLOCK_ROWS = 16384


def _crc_rows(octets: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint16]:
    """CRC-16-CCITT (initial 0xFFFF) of every row, table-driven over the columns two
    octets at a time (two numpy calls per word: the calls' fixed cost, not the
    arithmetic, is most of the time for a live message of a hundred packets), a block of
    rows at a time (its columns, and the work arrays, stay in the CPU cache)."""
    n, width = octets.shape
    words = width // 2
    out = np.empty(n, dtype=np.uint16)
    index = np.empty(min(n, _CRC_BLOCK_ROWS), dtype=np.uint16)
    for start in range(0, n, _CRC_BLOCK_ROWS):
        block = octets[start:start + _CRC_BLOCK_ROWS]
        rows = block.shape[0]
        # The big-endian words of every row, one column per word, in native order.
        columns = np.ascontiguousarray(block[:, :2 * words]).view(">u2").T.astype(np.uint16)
        crc = np.full(rows, 0xFFFF, dtype=np.uint16)
        work = index[:rows]
        for column in columns:
            np.bitwise_xor(crc, column, out=work)
            np.take(_CRC_WORD_TABLE, work, out=crc)
        if width % 2:  # an odd last octet: one step of the octet table
            np.right_shift(crc, 8, out=work)
            np.bitwise_xor(work, block[:, -1], out=work)
            np.left_shift(crc, 8, out=crc)
            np.bitwise_xor(crc, _CRC_TABLE[work], out=crc)
        out[start:start + rows] = crc
    return out


def _split_uniform(buffer: bytes, check_crc: frozenset[int], lengths: dict[int, int] | None,
                   minimum: int = _FAST_MIN_PACKETS, version: int = 0) -> SplitResult | None:
    """The numpy cut of a buffer of at least ``minimum`` same-length packets, or None
    if it is not one. Its packets stay in octet matrices (``SplitResult.matrices``)."""
    end = len(buffer)
    if end < PRIMARY_HEADER_LENGTH:
        return None
    length_field = _HEADER.unpack_from(buffer, 0)[2]
    total = PRIMARY_HEADER_LENGTH + length_field + 1
    n, rest = divmod(end, total)
    if rest or n < max(minimum, 1):
        return None
    if not isinstance(buffer, bytes):  # the matrices must not follow later changes
        buffer = bytes(buffer)
    matrix = np.frombuffer(buffer, dtype=np.uint8).reshape(n, total)
    # The three header words of every packet, read in place (no copy of the column).
    words = header_words(buffer, total, n)
    # Every header must declare the same length; else the walk decides where the
    # trouble starts and what is kept before it.
    if np.any(words[:, 2] != length_field):
        return None
    first_word = words[:, 0].astype(np.uint16)
    apids = first_word & IDLE_APID
    errors: Counter[str] = Counter()
    # A version other than 0 (CCSDS 133.0-B-2 §4.1.3.2) spoils that packet only: its
    # length still says where the next one starts. Either packet type is taken.
    version_ok = (first_word >> 13) == version
    good_headers = int(np.count_nonzero(version_ok))
    if good_headers != n:
        errors["bad_header"] = n - good_headers
    keep = version_ok & (apids != IDLE_APID)
    kept_count = int(np.count_nonzero(keep))
    idle = good_headers - kept_count
    one_apid = bool((apids == apids[0]).all())  # one APID per message, a file of one type
    if one_apid:
        present = [int(apids[0])] if kept_count else []
    else:
        present = np.unique(apids[keep]).tolist()
    if lengths is not None:
        for apid in present:
            expected = lengths.get(apid)
            if expected is None or expected not in (0, total):  # 0: variable length
                selected = keep & (apids == apid)
                dropped = int(np.count_nonzero(selected))
                errors["unknown_apid" if expected is None else "wrong_length"] += dropped
                keep &= ~selected
                kept_count -= dropped
    checked = [apid for apid in present if apid in check_crc and keep[apids == apid].any()]
    if checked:
        rows = keep & np.isin(apids, checked)
        if rows.all():  # the usual case: no copy of the rows to check
            bad = np.flatnonzero(_crc_rows(matrix))
        else:
            index = np.flatnonzero(rows)
            bad = index[_crc_rows(matrix[index]) != 0]
        if bad.size:
            errors["bad_crc"] += int(bad.size)
            keep[bad] = False
            kept_count -= int(bad.size)
    matrices: dict[int, Octets] = {}
    if one_apid and kept_count == n:  # every packet kept: the buffer itself, no copy
        matrices[int(apids[0])] = matrix
    elif one_apid:
        if kept_count:
            matrices[int(apids[0])] = matrix[keep]
    else:
        kept = apids[keep]
        if kept.size:
            # Stable order of first appearance, as the walk fills its dict.
            order = np.unique(kept, return_index=True)
            rows_kept = np.flatnonzero(keep)
            for apid in order[0][np.argsort(order[1])].tolist():
                matrices[apid] = matrix[rows_kept[kept == apid]]
    return SplitResult(None, errors, idle, matrices=matrices)


def _split_slow(buffer: bytes, *, check_crc: frozenset[int] = frozenset(),
                lengths: dict[int, int] | None = None, version: int = 0) -> SplitResult:
    """The packet-by-packet walk: the reference the numpy cut must agree with."""
    by_apid: dict[int, list[bytes]] = {}
    errors: Counter[str] = Counter()
    idle = 0
    position = 0
    end = len(buffer)
    view = memoryview(buffer)
    while position < end:
        if end - position < PRIMARY_HEADER_LENGTH:
            errors["truncated"] += 1
            break
        word1, _word2, length_field = _HEADER.unpack_from(buffer, position)
        apid = word1 & 0x7FF
        total = PRIMARY_HEADER_LENGTH + length_field + 1
        if position + total > end:
            errors["truncated"] += 1
            break
        packet = view[position:position + total]
        position += total
        if word1 >> 13 != version:
            # Version 0 only (CCSDS 133.0-B-2 §4.1.3.2); either packet type (§4.1.3.3).
            # The declared length steps over the bad packet to the next one.
            errors["bad_header"] += 1
            continue
        if apid == IDLE_APID:
            idle += 1
            continue
        if lengths is not None:
            expected = lengths.get(apid)
            if expected is None:
                errors["unknown_apid"] += 1
                continue
            if expected not in (0, total):  # 0: a variable-length packet type
                errors["wrong_length"] += 1
                continue
        if apid in check_crc and crc16(packet) != 0:
            # Running the CRC over data plus its own CRC gives 0 when intact.
            errors["bad_crc"] += 1
            continue
        by_apid.setdefault(apid, []).append(bytes(packet))
    return SplitResult(by_apid, errors, idle)
