"""Batch decoding and encoding of one packet type with numpy.

All packets of one APID in a batch are stacked into an ``(n, length)`` octet matrix
and each parameter is extracted for the whole column at once, as ccsdspy does: no
Python loop per packet or per value. The same plan encodes engineering values back
into packets for the simulators, so decode(encode(x)) == x is testable.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt

from control_center.telemetry.packets import (
    CRC_LENGTH,
    PRIMARY_HEADER_LENGTH,
    SEQUENCE_UNSEGMENTED,
    crc16,
    cuc_to_unix_ns,
)
from control_center.telemetry.records import DecodedBatch
from control_center.telemetry.tmdb import PacketDef, Parameter, expand_array, octet_permutation

Array = npt.NDArray[np.generic]
_CRC_TABLE = np.array([crc16(bytes([i]), 0) for i in range(256)], dtype=np.uint16)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def render_text(octets: bytes) -> str:
    """A string parameter's octets as printable text, losslessly: UTF-8 as it is, a
    backslash doubled, a control character (line feed included: line protocol cannot
    carry one) or an octet that is not UTF-8 as ``\\xNN``. numpy's S dtype has
    already dropped trailing NUL padding, as ccsdspy shows it."""
    text = octets.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


@dataclass(frozen=True, slots=True)
class _Field:
    """Where a parameter's bits sit, worked out once per packet type."""

    parameter: Parameter
    first: int  # first octet
    octets: int  # octets spanned
    shift: int  # right shift after assembling the big-endian octets
    mask: int
    view_dtype: np.dtype[np.generic] | None  # direct view when octet-aligned and sized
    # Octets in the order that assembles the big-endian value, when not simply big
    # (little endian, ccsdspy's custom orders such as "3412").
    order: tuple[int, ...] | None = None


def _plan(parameter: Parameter) -> _Field:
    first = parameter.bit_offset // 8
    last = (parameter.bit_offset + parameter.bit_length - 1) // 8
    octets = last - first + 1
    shift = octets * 8 - parameter.bit_offset % 8 - parameter.bit_length
    mask = (1 << min(parameter.bit_length, 64)) - 1
    view_dtype: np.dtype[np.generic] | None = None
    order: tuple[int, ...] | None = None
    if parameter.type == "string":
        return _Field(parameter, first, octets, 0, 0, np.dtype(f"S{octets}"))
    if parameter.type == "binary":
        # V, not S: a binary block keeps its trailing zero octets.
        return _Field(parameter, first, octets, 0, 0, np.dtype(f"V{octets}"))
    if parameter.byte_order not in ("big", "little"):
        order = octet_permutation(parameter.byte_order, octets)
    elif parameter.byte_order == "little" and parameter.bit_length not in (8, 16, 32, 64):
        order = tuple(reversed(range(octets)))
    if order is not None and parameter.type == "float":
        # Reordered into big endian first, then viewed as the float.
        view_dtype = np.dtype(f">f{octets}")
    elif order is None and parameter.bit_offset % 8 == 0 \
            and parameter.bit_length in (8, 16, 32, 64):
        order_char = ">" if parameter.byte_order == "big" else "<"
        if parameter.type == "float":
            kind = "f"
        elif parameter.type == "signed":
            kind = "i"
        else:
            kind = "u"
        view_dtype = np.dtype(f"{order_char}{kind}{parameter.bit_length // 8}")
    return _Field(parameter, first, octets, shift, mask, view_dtype, order)


def _inverse_polynomial(coefficients: tuple[float, ...], bit_length: int, signed: bool
                        ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Sample a monotonic calibration curve so engineering values can be inverted."""
    low, high = (-(1 << (bit_length - 1)), (1 << (bit_length - 1)) - 1) if signed \
        else (0, (1 << bit_length) - 1)
    raw = np.linspace(low, high, num=min(high - low + 1, 65537))
    eng = np.asarray(np.polynomial.polynomial.polyval(raw, coefficients), dtype=np.float64)
    if eng[-1] < eng[0]:
        raw, eng = raw[::-1], eng[::-1]
    return eng, raw


# Packets of one APID: one ``bytes`` each, or an ``(n, length)`` octet matrix of
# packets of one length (the numpy cut of split_packets keeps them so).
Packets = list[bytes] | npt.NDArray[np.uint8]


def _sizes(packets: Packets) -> npt.NDArray[np.int64]:
    """The length in octets of every packet."""
    if isinstance(packets, np.ndarray):
        return np.full(packets.shape[0], packets.shape[1], dtype=np.int64)
    return np.fromiter((len(p) for p in packets), dtype=np.int64, count=len(packets))


def _take(packets: Packets, rows: npt.NDArray[np.intp]) -> Packets:
    """The packets at ``rows``, kept in the form they came in."""
    if isinstance(packets, np.ndarray):
        return packets[rows]
    return [packets[i] for i in rows.tolist()]


def _stack(packets: Packets, rows: npt.NDArray[np.intp], length: int
           ) -> npt.NDArray[np.uint8]:
    """The first ``length`` octets of the packets at ``rows`` (each that long at least)
    as a ``(len(rows), length)`` octet matrix."""
    if isinstance(packets, np.ndarray):
        if rows.size == packets.shape[0]:  # all of them, in order: a view
            return packets[:, :length]
        return packets[rows, :length]
    return np.frombuffer(b"".join(packets[i][:length] for i in rows.tolist()),
                         dtype=np.uint8).reshape(rows.size, length)


def _column_view(column: npt.NDArray[np.uint8], dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """The ``(n, octets)`` octets of a field seen as ``n`` values of ``dtype`` (of
    ``octets`` octets), without a copy when each row's octets are contiguous."""
    if column.shape[1] > 1 and column.strides[1] != 1:
        column = np.ascontiguousarray(column)
    return column.view(dtype)[:, 0]


# Reads one column (a value per packet) from an ``(n, length)`` octet matrix.
_Reader = Callable[[npt.NDArray[np.uint8]], npt.NDArray[Any]]


def _sequence_counts(octets: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint16]:
    """The 14-bit packet sequence count (CCSDS 133.0-B-2 §4.1.3.4.2.2)."""
    return (_column_view(octets[:, 2:4], np.dtype(">u2")) & 0x3FFF).astype(np.uint16)


def _cuc_coarse(octets: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint32]:
    return _column_view(octets[:, 6:10], np.dtype(">u4")).astype(np.uint32)


def _cuc_fine(octets: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint16]:
    return _column_view(octets[:, 10:12], np.dtype(">u2")).astype(np.uint16)


# Rows of octets read for every column in turn while they sit in the CPU cache (about
# 1 MB of 64-octet packets): reading each column through a large matrix would stream
# the whole matrix from memory once per column.
BLOCK_ROWS = 16384


def _read_columns(octets: npt.NDArray[np.uint8], readers: list[_Reader]
                  ) -> list[npt.NDArray[Any]]:
    """Every reader's column for all the rows of ``octets``, read ``BLOCK_ROWS`` rows at
    a time into columns the size of the whole (each reader works row by row, so the
    columns are those it would give at once)."""
    n = octets.shape[0]
    if n <= BLOCK_ROWS:
        return [read(octets) for read in readers]
    columns: list[npt.NDArray[Any]] = []
    for read in readers:
        part = read(octets[:BLOCK_ROWS])
        column = np.empty(n, dtype=part.dtype)
        column[:BLOCK_ROWS] = part
        columns.append(column)
    for start in range(BLOCK_ROWS, n, BLOCK_ROWS):
        block = octets[start:start + BLOCK_ROWS]
        end = start + block.shape[0]
        for column, read in zip(columns, readers, strict=True):
            column[start:end] = read(block)
    return columns


# The unsigned word read in place for a bit field spanning 1, 2, 4 or 8 octets.
_WORDS: dict[int, np.dtype[Any]] = {1: np.dtype(np.uint8), 2: np.dtype(">u2"),
                                    4: np.dtype(">u4"), 8: np.dtype(">u8")}


def _assemble(column: npt.NDArray[np.uint8]) -> npt.NDArray[Any] | None:
    """The big-endian value of each row's octets in the smallest native unsigned word
    that holds them (up to 8 octets; None for more)."""
    octets = column.shape[1]
    word = _WORDS.get(octets)
    if word is not None:
        view = _column_view(column, word)
        return view.astype(word.newbyteorder("=")) if octets > 1 else view
    if octets > 8:
        return None
    kind = np.dtype(np.uint32 if octets == 3 else np.uint64)
    acc: npt.NDArray[Any] = column[:, 0].astype(kind)
    for k in range(1, octets):
        acc <<= 8
        acc |= column[:, k]
    return acc


def _finish_bits(value: npt.NDArray[np.uint64], field: _Field) -> Array:
    """A bit field's unsigned bits as its type: unsigned, two's complement, float32."""
    if field.parameter.type == "signed":
        if field.parameter.bit_length == 64:
            # Its sign bit, 2**63, is no int64: the bits are the two's complement value
            # (a 64-bit signed field in a digit byte order, "78563412", never decoded).
            return value.view(np.int64)
        signed = value.astype(np.int64)
        sign = np.int64(1 << (field.parameter.bit_length - 1))
        # sign - sign, not 2 * sign: 2**63 overflows int64 for a 63-bit field.
        return np.where(signed >= sign, signed - sign - sign, signed)
    if field.parameter.type == "float":
        # A float32 off the octet grid (XTCE allows it; CTIM has one at bit 629):
        # its 32 bits assembled as an integer, then read as the IEEE value.
        return value.astype(np.uint32).view(np.float32)
    return value


def _polynomial(raw: Array, coefficients: tuple[float, ...]) -> Array:
    """``numpy.polynomial.polynomial.polyval`` on the raw counts, bit for bit, with
    Horner's scheme in place when that gives the same floats: integer counts (finite)
    and finite coefficients with a non-zero leading one. polyval starts from
    ``c[-1] + x * 0``, which is then exactly ``c[-1]``; each step is ``c[k] + y * x``,
    done here as the same two IEEE operations (a product and a sum commute exactly)."""
    c = np.array(coefficients, ndmin=1)
    if c.dtype.kind in "biu":
        c = c + 0.0
    x = raw.astype(np.float64)
    if raw.dtype.kind not in "biu" or c.dtype != np.float64 or c.shape[0] < 2 \
            or c[-1] == 0 or not np.isfinite(c).all():
        curve: Array = np.asarray(np.polynomial.polynomial.polyval(x, c))
        return curve
    if c.shape[0] == 2:  # linear: x itself is the work array
        np.multiply(x, c[1], out=x)
        np.add(x, c[0], out=x)
        return x
    y: npt.NDArray[np.float64] = np.multiply(x, c[-1])
    for k in range(c.shape[0] - 2, -1, -1):
        np.add(y, c[k], out=y)
        if k:
            np.multiply(y, x, out=y)
    return y


class PacketCodec:
    """Decode and encode batches of one packet type of one spacecraft."""

    def __init__(self, spacecraft: str, packet: PacketDef) -> None:
        from control_center.telemetry.expressions import Expression

        self.spacecraft = spacecraft
        self.packet = packet
        self.name = packet.name
        self._fields = [] if packet.variable else [_plan(p) for p in packet.parameters]
        # What decode reads from every packet: its sequence count, its CUC time if it
        # has one, then every field's raw value.
        self._readers: list[_Reader] = [_sequence_counts]
        if packet.time == "cuc":
            self._readers += [_cuc_coarse, _cuc_fine]
        self._readers += [partial(self._extract_raw, field=f) for f in self._fields]
        self._layouts: dict[tuple[int, tuple[int, ...]], PacketCodec] = {}
        known = [p.name for p in packet.parameters]
        self._derived: list[tuple[str, Expression]] = []
        for derived in packet.derived:
            self._derived.append((derived.name, Expression.parse(
                derived.expression, parameter=derived.name, known=known)))
            known.append(derived.name)

    # ------------------------------------------------------------------ decode

    @staticmethod
    def _extract_raw(octets: npt.NDArray[np.uint8], field: _Field) -> Array:
        column = octets[:, field.first:field.first + field.octets]
        if field.order is not None:  # whole octets, validated by the TMDB
            column = column[:, list(field.order)]
        if field.view_dtype is not None:
            # Read in place through the rows' stride; the one copy is the result's.
            values = _column_view(column, field.view_dtype)
            if field.view_dtype.kind in "SV":
                return values.copy()
            return values.astype(field.view_dtype.newbyteorder("="))
        word = _assemble(column)
        if word is None:
            return PacketCodec._extract_bits_wide(column, field)
        # Shift and mask in the field's own word size, widened once at the end: the
        # result is the uint64 column it has always been.
        value = ((word >> field.shift) & field.mask).astype(np.uint64)
        return _finish_bits(value, field)

    @staticmethod
    def _extract_bits_wide(column: npt.NDArray[np.uint8], field: _Field) -> Array:
        """A bit field over more than 8 octets: assembled in a uint64 octet by octet."""
        acc = np.zeros(column.shape[0], dtype=np.uint64)
        for k in range(field.octets):
            acc = (acc << np.uint64(8)) | column[:, k].astype(np.uint64)
        value = (acc >> np.uint64(field.shift)) & np.uint64(field.mask)
        return _finish_bits(value, field)

    def _calibrate(self, parameter: Parameter, raw: Array) -> Array:
        calibration = parameter.calibration
        if parameter.type == "string":
            return np.array([render_text(v) for v in raw.tolist()], dtype=object)
        if parameter.type == "binary":
            return np.array([bytes(v).hex() for v in raw.tolist()], dtype=object)
        if parameter.type == "boolean":
            return np.asarray(raw != 0)
        if calibration.kind != "none":
            if calibration.kind == "polynomial":
                value = _polynomial(raw, calibration.coefficients)
            else:
                xs = np.array([x for x, _ in calibration.table])
                ys = np.array([y for _, y in calibration.table])
                value = np.asarray(np.interp(raw.astype(np.float64), xs, ys))
            if calibration.engineering == "float32":
                # Rounded once, here: every later stage sees the value that is stored.
                # Out of float32's range is inf, as it would be on board.
                with np.errstate(over="ignore"):
                    return value.astype(np.float32).astype(np.float64)
            return value
        if parameter.type == "float":
            return raw.astype(np.float64)
        if parameter.is_wide_unsigned:
            return raw.astype(np.uint64)  # exact: int64 would wrap at 2**63
        return raw.astype(np.int64)

    def decode(self, octets: npt.NDArray[np.uint8],
               receive_ns: npt.NDArray[np.int64] | None = None) -> DecodedBatch:
        """Decode an ``(n, length)`` octet matrix of whole packets of this type.

        ``receive_ns`` gives the point time of packets whose definition carries no
        onboard time (``time: receive``).
        """
        if octets.ndim != 2 or octets.shape[1] != self.packet.length:
            raise ValueError(f"{self.packet.name}: expected (n, {self.packet.length}) octets, "
                             f"got {octets.shape}")
        n = octets.shape[0]
        raw: dict[str, Array] = {}
        values: dict[str, Array] = {}
        # A signalling NaN in a float32 field is quiet once widened: numpy's "invalid"
        # warning says nothing about the telemetry, so it is not raised per batch.
        with np.errstate(invalid="ignore"):
            columns = _read_columns(octets, self._readers)
            sequence_counts: npt.NDArray[np.uint16] = columns[0]
            if self.packet.time == "cuc":
                times_ns = cuc_to_unix_ns(columns[1], columns[2])
            elif receive_ns is not None:
                times_ns = receive_ns.astype(np.int64)
            else:
                times_ns = np.zeros(n, dtype=np.int64)
            first_field = len(self._readers) - len(self._fields)
            for field, column in zip(self._fields, columns[first_field:], strict=True):
                raw[field.parameter.name] = column
                values[field.parameter.name] = self._calibrate(field.parameter, column)
        # Derived parameters, in order: each may use the ones before it.
        for name, expression in self._derived:
            values[name] = expression.evaluate(values)
        return DecodedBatch(self.spacecraft, self.packet, times_ns, sequence_counts,
                            values, raw)

    def decode_packets(self, packets: Packets,
                       receive_ns: npt.NDArray[np.int64] | None = None) -> DecodedBatch:
        """Decode whole packets of this type: one ``bytes`` each, or already an ``(n,
        length)`` octet matrix (``SplitResult.octets``), decoded where it lies."""
        if isinstance(packets, np.ndarray):
            # The same shape: a view, no copy. Another width fails as the join would.
            octets = packets.reshape(packets.shape[0], self.packet.length)
        else:
            octets = np.frombuffer(b"".join(packets), dtype=np.uint8).reshape(
                len(packets), self.packet.length)
        return self.decode(octets, receive_ns)

    def decode_groups(self, packets: Packets, receive_ns: npt.NDArray[np.int64]
                      ) -> tuple[list[tuple[DecodedBatch, npt.NDArray[np.intp]]], int]:
        """Decode packets of this type, fixed or variable in length.

        ``packets`` is one ``bytes`` per packet, or an ``(n, length)`` octet matrix of
        packets of one length (as the numpy cut of ``split_packets`` gives them): the
        batches are the same. Returns one batch per concrete layout with the indices of
        its packets in ``packets``, and how many packets fit no layout (``bad_layout``).
        A fixed packet type gives one batch of all of them.
        """
        if not self.packet.variable and not self.packet.tail_skipped:
            return [(self.decode_packets(packets, receive_ns), np.arange(len(packets)))], 0
        sizes = _sizes(packets)
        if not self.packet.variable:
            # Packets may run past the described fields: those at least ``length`` long
            # are decoded from their first ``length`` octets, shorter ones are misfits.
            length = self.packet.length
            rows = np.flatnonzero(sizes >= length)
            if not rows.size:
                return [], len(packets)
            batch = self.decode(_stack(packets, rows, length), receive_ns[rows])
            return [(batch, rows)], len(packets) - int(rows.size)
        out: list[tuple[DecodedBatch, npt.NDArray[np.intp]]] = []
        bad = 0
        for length in np.unique(sizes).tolist():
            rows = np.flatnonzero(sizes == length)
            octets = _stack(packets, rows, length)
            groups, misfits = resolve_layouts(self.packet, octets)
            bad += int(misfits.size)
            for counts, members in groups:
                codec = self._layouts.get((length, counts))
                if codec is None:
                    if len(self._layouts) >= 4096:  # hostile input: bound the cache
                        self._layouts.clear()
                    codec = self._layouts[(length, counts)] = PacketCodec(
                        self.spacecraft, concrete_layout(self.packet, length, counts))
                out.append((codec.decode(octets[members], receive_ns[rows[members]]),
                            rows[members]))
        return out, bad

    # ------------------------------------------------------------------ encode

    def to_raw(self, parameter: Parameter, values: npt.ArrayLike) -> Array:
        """Engineering values to raw counts: the inverse calibration, rounded and clipped."""
        eng = np.asarray(values)
        calibration = parameter.calibration
        if parameter.octets_value:
            return eng  # text (string) or hex text (binary), packed by _insert
        if parameter.type == "float":
            return eng.astype(np.float64)
        if parameter.type == "boolean":
            return eng.astype(bool).astype(np.uint64)
        signed = parameter.type == "signed"
        if calibration.kind == "polynomial" and len(calibration.coefficients) == 2 \
                and calibration.coefficients[1] != 0:
            c0, c1 = calibration.coefficients
            counts = (eng.astype(np.float64) - c0) / c1
        elif calibration.kind == "polynomial":
            xs, ys = _inverse_polynomial(calibration.coefficients, parameter.bit_length, signed)
            counts = np.interp(eng.astype(np.float64), xs, ys)
        elif calibration.kind == "table":
            raws = np.array([x for x, _ in calibration.table])
            engs = np.array([y for _, y in calibration.table])
            if engs[-1] < engs[0]:
                raws, engs = raws[::-1], engs[::-1]
            counts = np.interp(eng.astype(np.float64), engs, raws)
        else:
            counts = eng.astype(np.float64)
        low, high = (-(1 << (parameter.bit_length - 1)), (1 << (parameter.bit_length - 1)) - 1) \
            if signed else (0, (1 << parameter.bit_length) - 1)
        rounded: Array
        if calibration.kind == "none" and np.issubdtype(eng.dtype, np.integer):
            # Whole counts stay integers: through a float64 those above 2**53 would round.
            rounded = np.clip(eng, low, high)
        else:
            # float(high) rounds up to 2**bit_length above 53 bits, which the bit mask
            # would wrap to 0: clip to the largest float not above the top count instead.
            top = float(high) if float(high) <= high else float(np.nextafter(float(high), 0.0))
            rounded = np.clip(np.rint(counts), low, top)
        if parameter.bit_length == 64 and not signed:
            return rounded.astype(np.uint64)
        return rounded.astype(np.int64)

    def encode(self, values: Mapping[str, npt.ArrayLike], *, coarse: npt.ArrayLike,
               fine: npt.ArrayLike, sequence_counts: npt.ArrayLike,
               raw: bool = False) -> bytes:
        """Build ``n`` whole packets (headers, CUC time, parameters, CRC) in one go.

        ``values`` holds engineering values (or raw counts with ``raw=True``) for every
        non-overlay parameter; overlay parameters read bits others already write.
        """
        counts = np.asarray(sequence_counts, dtype=np.int64)
        n = counts.shape[0]
        length = self.packet.length
        octets = np.zeros((n, length), dtype=np.uint8)
        word1 = (int(self.packet.time == "cuc") << 11) | self.packet.apid
        word2 = (SEQUENCE_UNSEGMENTED << 14) | (counts & 0x3FFF)
        octets[:, 0] = word1 >> 8
        octets[:, 1] = word1 & 0xFF
        octets[:, 2] = word2 >> 8
        octets[:, 3] = word2 & 0xFF
        data_length = length - PRIMARY_HEADER_LENGTH - 1
        octets[:, 4] = data_length >> 8
        octets[:, 5] = data_length & 0xFF
        if self.packet.time == "cuc":
            octets[:, 6:10] = np.asarray(coarse, dtype=">u4").reshape(n, 1).view(np.uint8)
            octets[:, 10:12] = np.asarray(fine, dtype=">u2").reshape(n, 1).view(np.uint8)
        chosen = dict(self.packet.select)
        for field in self._fields:
            parameter = field.parameter
            if parameter.overlay:
                continue
            if parameter.name not in values and parameter.name in chosen:
                # A polymorphic packet's type field: its first selecting raw value.
                self._insert(octets, field, np.full(n, chosen[parameter.name][0]))
                continue
            if parameter.name not in values:
                raise KeyError(f"{self.packet.name}: no value for parameter {parameter.name!r}")
            column = np.asarray(values[parameter.name])
            counts_or_values = column if raw else self.to_raw(parameter, column)
            self._insert(octets, field, np.broadcast_to(counts_or_values, (n,)))
        if self.packet.error_control:
            crc = self._crc(octets[:, :length - CRC_LENGTH])
            octets[:, -2] = crc >> 8
            octets[:, -1] = crc & 0xFF
        return octets.tobytes()

    @staticmethod
    def _crc(octets: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint16]:
        """CRC-16-CCITT of every row at once, table-driven over the columns."""
        if octets.shape[0] < 64:
            # A column loop costs a few numpy calls per octet whatever the row count:
            # for the simulators' handful of packets per tick, C per row is cheaper.
            return np.array([crc16(row.tobytes()) for row in octets], dtype=np.uint16)
        crc = np.full(octets.shape[0], 0xFFFF, dtype=np.uint16)
        for k in range(octets.shape[1]):
            index = ((crc >> 8) ^ octets[:, k]) & 0xFF
            crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[index]
        return crc

    def _insert(self, octets: npt.NDArray[np.uint8], field: _Field, column: Array) -> None:
        n = octets.shape[0]
        if field.view_dtype is not None and field.view_dtype.kind in "SV":
            text = np.array([bytes.fromhex(str(v)).ljust(field.octets, b"\0")
                             if field.view_dtype.kind == "V" else str(v).encode()
                             for v in column.tolist()], dtype=f"S{field.octets}")
            packed = np.ascontiguousarray(text).view(np.uint8)
            octets[:, field.first:field.first + field.octets] = packed.reshape(n, field.octets)
            return
        if field.view_dtype is not None:
            packed = np.ascontiguousarray(column.astype(field.view_dtype)).view(np.uint8)
            span = packed.reshape(n, field.octets)
        else:
            if field.parameter.type == "float":  # float32 off the octet grid: its bits
                column = np.asarray(column, dtype=np.float32).view(np.uint32)
            bits = column.astype(np.int64).astype(np.uint64) & np.uint64(field.mask)
            acc = bits << np.uint64(field.shift)
            span = np.zeros((n, field.octets), dtype=np.uint8)
            for k in range(field.octets):
                span[:, field.octets - 1 - k] = (acc >> np.uint64(8 * k)) & np.uint64(0xFF)
        if field.order is not None:
            # span is big endian; octet j of the value goes to field octet order[j].
            placed = np.empty_like(span)
            placed[:, list(field.order)] = span
            span = placed
        region = octets[:, field.first:field.first + field.octets]
        region |= span


class SelectCodec:
    """The packet types sharing one APID (polymorphic packets), told apart by ``select``.

    Each packet is given to the first type whose every select condition holds on its raw
    values (read for the whole batch at once from the packets' first octets) and whose
    length fits; a packet no type takes is counted as a misfit, never guessed.
    """

    def __init__(self, spacecraft: str, packets: tuple[PacketDef, ...]) -> None:
        self.codecs = [PacketCodec(spacecraft, p) for p in packets]
        self.name = "/".join(p.name for p in packets)
        self._conditions: list[list[tuple[_Field, npt.NDArray[np.int64]]]] = []
        for packet in packets:
            by_name = {p.name: p for p in packet.parameters}
            self._conditions.append([(_plan(by_name[name]), np.array(values, dtype=np.int64))
                                     for name, values in packet.select])
        self._head = max((f.first + f.octets for conditions in self._conditions
                          for f, _ in conditions), default=PRIMARY_HEADER_LENGTH)

    def decode_groups(self, packets: Packets, receive_ns: npt.NDArray[np.int64]
                      ) -> tuple[list[tuple[DecodedBatch, npt.NDArray[np.intp]]], int]:
        """As :meth:`PacketCodec.decode_groups`, each packet decoded by its type."""
        n = len(packets)
        sizes = _sizes(packets)
        long_enough = np.flatnonzero(sizes >= self._head)
        head = np.zeros((n, self._head), dtype=np.uint8)
        if long_enough.size:
            head[long_enough] = _stack(packets, long_enough, self._head)
        choice = np.full(n, -1, dtype=np.int64)
        for index, (codec, conditions) in enumerate(zip(self.codecs, self._conditions,
                                                        strict=True)):
            match = (choice < 0) & (sizes >= self._head)
            if codec.packet.tail_skipped:
                match &= sizes >= codec.packet.length
            elif not codec.packet.variable:
                match &= sizes == codec.packet.length
            for field, values in conditions:
                match &= np.isin(PacketCodec._extract_raw(head, field).astype(np.int64), values)
            choice[match] = index
        out: list[tuple[DecodedBatch, npt.NDArray[np.intp]]] = []
        bad = int((choice < 0).sum())
        for index, codec in enumerate(self.codecs):
            rows = np.flatnonzero(choice == index)
            if not rows.size:
                continue
            groups, misfits = codec.decode_groups(_take(packets, rows), receive_ns[rows])
            bad += misfits
            out.extend((batch, rows[members]) for batch, members in groups)
        return out, bad


# ------------------------------------------------------------- variable-length packets


def concrete_layout(packet: PacketDef, length: int, counts: tuple[int, ...]) -> PacketDef:
    """The fixed-length definition of one variable packet: ``length`` octets, and
    ``counts`` elements in each variable-size array of its layout, in order."""
    parameters: list[Parameter] = []
    sizes = iter(counts)
    offset = packet.header_bits
    for item in packet.layout:
        start = item.bit_offset if item.bit_offset >= 0 else offset
        count = 1 if item.array is None else item.array if isinstance(item.array, int) \
            else next(sizes)
        if item.octets_value and item.array is not None:
            # A string or binary of dynamic size: one value of ``count`` octets.
            # An empty one (count 0) has no value in this packet.
            if count:
                parameters.append(replace(item, bit_offset=start, bit_length=8 * count,
                                          array=None))
        elif item.type != "spare":
            if item.array is None:
                parameters.append(replace(item, bit_offset=start))
            else:
                parameters.extend(expand_array(item, count, start))
        offset = max(offset, start + item.bit_length * count)
    return replace(packet, length=length, parameters=tuple(parameters), layout=())


def _read_unsigned(octets: npt.NDArray[np.uint8], parameter: Parameter, bit_offset: int
                   ) -> npt.NDArray[np.int64]:
    field = _plan(replace(parameter, bit_offset=bit_offset))
    return np.asarray(PacketCodec._extract_raw(octets, field)).astype(np.int64)


def resolve_layouts(packet: PacketDef, octets: npt.NDArray[np.uint8]
                    ) -> tuple[list[tuple[tuple[int, ...], npt.NDArray[np.intp]]],
                               npt.NDArray[np.intp]]:
    """Group ``n`` packets of one variable type and one length (an ``(n, length)``
    matrix) by the element counts of their variable-size arrays.

    Returns ``[(counts, rows), ...]`` and the rows whose fields do not fit the packet
    (an expand array that does not divide the room left, or arrays running past the
    end): those are counted as ``bad_layout`` by the decoder.
    """
    n, length = octets.shape
    end_bits = length * 8 - packet.trailer_bits
    # (rows, counts so far, current bit position, positions of scalars for counters)
    groups: list[tuple[npt.NDArray[np.intp], tuple[int, ...], int, dict[str, int]]] = [
        (np.arange(n), (), packet.header_bits, {})]
    bad: list[npt.NDArray[np.intp]] = []
    items = packet.layout
    for position, item in enumerate(items):
        next_groups = []
        # Text, float64s and reordered octets must start on an octet; after a variable
        # field of odd-sized elements that holds for some packets only (a field at a
        # fixed place was checked when the TMDB loaded).
        octet_aligned = item.bit_offset < 0 and (
            item.octets_value or (item.type == "float" and item.bit_length == 64)
            or item.byte_order != "big")
        for rows, counts, offset, places in groups:
            start = item.bit_offset if item.bit_offset >= 0 else offset
            if octet_aligned and start % 8:
                bad.append(rows)
                continue
            if item.array is None or isinstance(item.array, int):
                count = 1 if item.array is None else item.array
                if item.array is None:
                    places = {**places, item.name: start}
                next_groups.append((rows, counts, max(offset, start + item.bit_length * count),
                                    places))
            elif item.array == "expand":
                after = sum(q.bit_length * (q.array if isinstance(q.array, int) else 1)
                            for q in items[position + 1:])
                room = end_bits - start - after
                if room < 0 or room % item.bit_length:
                    bad.append(rows)
                    continue
                count = room // item.bit_length
                next_groups.append((rows, (*counts, count), start + room, places))
            else:
                counter = next(q for q in items[:position] if q.name == item.array)
                if places[counter.name] + counter.bit_length > length * 8:
                    # The packet ends before its size counter: a misfit, not a reason
                    # to fail the whole batch (it once raised IndexError, and every
                    # packet of the APID went to the dead letters).
                    bad.append(rows)
                    continue
                values = _read_unsigned(octets[rows], counter, places[counter.name])
                for value in np.unique(values).tolist():
                    subset = rows[values == value]
                    next_groups.append((subset, (*counts, int(value)),
                                        start + item.bit_length * int(value), places))
        groups = next_groups
    resolved: list[tuple[tuple[int, ...], npt.NDArray[np.intp]]] = []
    for rows, counts, offset, _ in groups:
        if offset > end_bits:
            bad.append(rows)
        else:
            resolved.append((counts, rows))
    bad_rows = np.sort(np.concatenate(bad)) if bad else np.zeros(0, dtype=np.intp)
    return resolved, bad_rows
