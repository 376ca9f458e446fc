"""Batch decoding and encoding of one packet type with numpy.

All packets of one APID in a batch are stacked into an ``(n, length)`` octet matrix
and each parameter is extracted for the whole column at once, as ccsdspy does: no
Python loop per packet or per value. The same plan encodes engineering values back
into packets for the simulators, so decode(encode(x)) == x is testable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from control_center.packets import (
    CRC_LENGTH,
    PRIMARY_HEADER_LENGTH,
    SEQUENCE_UNSEGMENTED,
    crc16,
    cuc_to_unix_ns,
)
from control_center.tmdb import PacketDef, Parameter

Array = npt.NDArray[np.generic]
_CRC_TABLE = np.array([crc16(bytes([i]), 0) for i in range(256)], dtype=np.uint16)


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    """Engineering values of ``n`` packets of one type, columns by parameter name."""

    spacecraft: str
    packet: PacketDef
    times_ns: npt.NDArray[np.int64]  # UTC nanoseconds since 1970 (onboard or receive time)
    sequence_counts: npt.NDArray[np.uint16]
    values: Mapping[str, Array]
    raw: Mapping[str, Array]
    source: str = "live"  # live, replay or import
    pass_id: str = ""  # the replayed pass, if any

    def __len__(self) -> int:
        return int(self.times_ns.shape[0])

    def take(self, rows: npt.NDArray[np.intp]) -> DecodedBatch:
        """The same batch restricted to ``rows`` (indices, in order)."""
        return replace(self, times_ns=self.times_ns[rows],
                       sequence_counts=self.sequence_counts[rows],
                       values={k: np.asarray(v)[rows] for k, v in self.values.items()},
                       raw={k: np.asarray(v)[rows] for k, v in self.raw.items()})


@dataclass(frozen=True, slots=True)
class _Field:
    """Where a parameter's bits sit, worked out once per packet type."""

    parameter: Parameter
    first: int  # first octet
    octets: int  # octets spanned
    shift: int  # right shift after assembling the big-endian octets
    mask: int
    view_dtype: np.dtype[np.generic] | None  # direct view when octet-aligned and sized


def _plan(parameter: Parameter) -> _Field:
    first = parameter.bit_offset // 8
    last = (parameter.bit_offset + parameter.bit_length - 1) // 8
    octets = last - first + 1
    shift = octets * 8 - parameter.bit_offset % 8 - parameter.bit_length
    mask = (1 << parameter.bit_length) - 1
    view_dtype: np.dtype[np.generic] | None = None
    if parameter.bit_offset % 8 == 0 and parameter.bit_length in (8, 16, 32, 64):
        order = ">" if parameter.byte_order == "big" else "<"
        if parameter.type == "float":
            kind = "f"
        elif parameter.type == "signed":
            kind = "i"
        else:
            kind = "u"
        view_dtype = np.dtype(f"{order}{kind}{parameter.bit_length // 8}")
    return _Field(parameter, first, octets, shift, mask, view_dtype)


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


class PacketCodec:
    """Decode and encode batches of one packet type of one spacecraft."""

    def __init__(self, spacecraft: str, packet: PacketDef) -> None:
        from control_center.expressions import Expression

        self.spacecraft = spacecraft
        self.packet = packet
        self._fields = [_plan(p) for p in packet.parameters]
        known = [p.name for p in packet.parameters]
        self._derived: list[tuple[str, Expression]] = []
        for derived in packet.derived:
            self._derived.append((derived.name, Expression.parse(
                derived.expression, parameter=derived.name, known=known)))
            known.append(derived.name)

    # ------------------------------------------------------------------ decode

    def _extract_raw(self, octets: npt.NDArray[np.uint8], field: _Field) -> Array:
        column = octets[:, field.first:field.first + field.octets]
        if field.view_dtype is not None:
            return np.ascontiguousarray(column).view(field.view_dtype)[:, 0].astype(
                field.view_dtype.newbyteorder("="))
        if field.parameter.byte_order == "little":  # whole octets, validated by the TMDB
            column = column[:, ::-1]
        acc = np.zeros(octets.shape[0], dtype=np.uint64)
        for k in range(field.octets):
            acc = (acc << np.uint64(8)) | column[:, k].astype(np.uint64)
        value = (acc >> np.uint64(field.shift)) & np.uint64(field.mask)
        if field.parameter.type == "signed":
            signed = value.astype(np.int64)
            sign = np.int64(1 << (field.parameter.bit_length - 1))
            # sign - sign, not 2 * sign: 2**63 overflows int64 for a 63-bit field.
            return np.where(signed >= sign, signed - sign - sign, signed)
        return value

    def _calibrate(self, parameter: Parameter, raw: Array) -> Array:
        calibration = parameter.calibration
        if parameter.type == "boolean":
            return np.asarray(raw != 0)
        if calibration.kind == "polynomial":
            return np.asarray(np.polynomial.polynomial.polyval(raw.astype(np.float64),
                                                               calibration.coefficients))
        if calibration.kind == "table":
            xs = np.array([x for x, _ in calibration.table])
            ys = np.array([y for _, y in calibration.table])
            return np.asarray(np.interp(raw.astype(np.float64), xs, ys))
        if parameter.type == "float":
            return raw.astype(np.float64)
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
        if self.packet.time == "cuc":
            time_octets = np.ascontiguousarray(octets[:, 6:12])
            coarse = time_octets[:, :4].copy().view(">u4")[:, 0]
            fine = time_octets[:, 4:6].copy().view(">u2")[:, 0]
            times_ns = cuc_to_unix_ns(coarse, fine)
        elif receive_ns is not None:
            times_ns = receive_ns.astype(np.int64)
        else:
            times_ns = np.zeros(n, dtype=np.int64)
        sequence_counts = (np.ascontiguousarray(octets[:, 2:4]).view(">u2")[:, 0]
                           & 0x3FFF).astype(np.uint16)
        raw: dict[str, Array] = {}
        values: dict[str, Array] = {}
        for field in self._fields:
            column = self._extract_raw(octets, field)
            raw[field.parameter.name] = column
            values[field.parameter.name] = self._calibrate(field.parameter, column)
        # Derived parameters, in order: each may use the ones before it.
        for name, expression in self._derived:
            values[name] = expression.evaluate(values)
        return DecodedBatch(self.spacecraft, self.packet, times_ns, sequence_counts,
                            values, raw)

    def decode_packets(self, packets: list[bytes],
                       receive_ns: npt.NDArray[np.int64] | None = None) -> DecodedBatch:
        octets = np.frombuffer(b"".join(packets), dtype=np.uint8).reshape(
            len(packets), self.packet.length)
        return self.decode(octets, receive_ns)

    # ------------------------------------------------------------------ encode

    def to_raw(self, parameter: Parameter, values: npt.ArrayLike) -> Array:
        """Engineering values to raw counts: the inverse calibration, rounded and clipped."""
        eng = np.asarray(values)
        calibration = parameter.calibration
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
        for field in self._fields:
            parameter = field.parameter
            if parameter.overlay:
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
        if field.view_dtype is not None:
            packed = np.ascontiguousarray(column.astype(field.view_dtype)).view(np.uint8)
            octets[:, field.first:field.first + field.octets] = packed.reshape(n, field.octets)
            return
        bits = column.astype(np.int64).astype(np.uint64) & np.uint64(field.mask)
        acc = bits << np.uint64(field.shift)
        span = np.zeros((n, field.octets), dtype=np.uint8)
        for k in range(field.octets):
            span[:, field.octets - 1 - k] = (acc >> np.uint64(8 * k)) & np.uint64(0xFF)
        if field.parameter.byte_order == "little":
            span = span[:, ::-1]
        region = octets[:, field.first:field.first + field.octets]
        region |= span
