"""The telemetry database (TMDB): what every packet and parameter of a spacecraft means.

The model only: frozen dataclasses, free of any file format. A TMDB is loaded from
YAML (:mod:`control_center.telemetry.tmdb_yaml`, one file per spacecraft under
``config/tmdb/``) or imported from ccsdspy's CSV
(:mod:`control_center.telemetry.ccsdspy_csv`). It is the single source of truth: the
decoder, the simulators' encoder, limits and dashboards all read it.

Bit offsets count from the first bit of the packet, primary header included (the
convention of ccsdspy's packet definitions, so its CSV files import unchanged). A
parameter without ``bit_offset`` follows the previous one (the first follows the
headers). See the docs/contracts.md, "Telemetry database", for the full format.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

ParameterType = Literal["unsigned", "signed", "float", "enum", "boolean", "string", "binary",
                        "spare"]
# "spare" (fill) bits are accepted in a definition and skipped: they advance the layout
# but are neither decoded nor stored. "binary" octets are stored as lowercase hex text
# (an XTCE BinaryParameterType: a memory dump, a waveform block).
PARAMETER_TYPES: tuple[str, ...] = ("unsigned", "signed", "float", "enum", "boolean", "string",
                                    "binary", "spare")
# Types whose value is a run of whole octets, shown as text; their size may be dynamic.
OCTET_TYPES: tuple[str, ...] = ("string", "binary")
# "big", "little", or an octet order of digits as ccsdspy writes it ("2143", "3412"):
# see :func:`octet_permutation`.
ByteOrder = str
TimeSource = Literal["cuc", "receive"]

PRIMARY_HEADER_BITS = 48  # CCSDS 133.0-B-2 §4.1.3: 6 octets
CUC_BITS = 48  # secondary header: CUC 4 octets coarse + 2 octets fine (CCSDS 301.0-B-4 §3.2)
CRC_BITS = 16  # packet error control: CRC-16-CCITT over the whole packet (ECSS-E-ST-70-41C)
MAX_PACKET_BYTES = 65542  # 6-octet header + 65536 octets of data field
MAX_NUMBER_BITS = 64
# An array element count: a number, "expand" (as many as fit before the fields after
# it), or the name of an earlier unsigned parameter of the same packet holding the count.
ArraySize = int | str
IDLE_APID = 0x7FF
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class Limits:
    """Yellow (warning) and red (critical) limits; ``None`` means no limit on that side."""

    yellow_low: float | None = None
    yellow_high: float | None = None
    red_low: float | None = None
    red_high: float | None = None

    @property
    def defined(self) -> bool:
        return any(v is not None for v in (self.yellow_low, self.yellow_high,
                                           self.red_low, self.red_high))


@dataclass(frozen=True, slots=True)
class ModeLimits:
    """Limits that replace a parameter's default limits while ``mode`` (an enum
    parameter of the same spacecraft) is in one of ``states`` (raw state values)."""

    mode: str
    states: tuple[int, ...]
    limits: Limits
    state_names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Monitoring:
    """How a parameter is limit-checked and whether its changes are events."""

    limits: Limits = Limits()
    limit_sets: tuple[ModeLimits, ...] = ()
    persistence: int = 1  # samples out before the limit state changes
    deadband: float = 0.0  # how far back inside a limit a value must come to return
    event: bool = False  # a change of this (enum/boolean) parameter is an event

    @property
    def checked(self) -> bool:
        return self.limits.defined or any(s.limits.defined for s in self.limit_sets)


@dataclass(frozen=True, slots=True)
class Calibration:
    """Raw to engineering conversion.

    ``polynomial``: eng = c0 + c1*raw + c2*raw**2 + ...; ``table``: piecewise linear
    interpolation between (raw, eng) points, raw strictly increasing.
    """

    kind: Literal["none", "polynomial", "table"] = "none"
    coefficients: tuple[float, ...] = ()
    table: tuple[tuple[float, float], ...] = ()
    # The engineering value's float size, as XTCE's FloatParameterType sizeInBits:
    # "float32" rounds each calibrated value to the nearest float32 once, at decode,
    # so limits, alarms, tm/param and the archive see the value that is stored, and
    # InfluxDB stores it as its shortest float32 text (a quaternion count of 16000:
    # ``0.48829615``, not ``0.4882961516159551``). A 16-bit count needs no more: float32
    # resolves one part in 16.7 million, the count one in 65,536.
    engineering: Literal["float64", "float32"] = "float64"


@dataclass(frozen=True, slots=True)
class Parameter:
    name: str
    bit_offset: int
    bit_length: int
    type: ParameterType
    byte_order: ByteOrder = "big"
    calibration: Calibration = Calibration()
    states: Mapping[int, str] = field(default_factory=dict)
    unit: str = ""
    limits: Limits = Limits()
    description: str = ""
    overlay: bool = False
    report: bool = False
    monitoring: Monitoring = Monitoring()
    # Enum values given as inclusive ranges (low, high, state name), beside ``states``.
    state_ranges: tuple[tuple[int, int, str], ...] = ()
    # An array in a variable-length packet's layout; fixed arrays are expanded into
    # their elements (``<name>_<i>``) when the TMDB is loaded. On a string or binary
    # parameter (bit_length 8) it is the dynamic size in octets (YAML ``size:``): a
    # concrete layout makes it one value of that many octets, not elements.
    array: ArraySize | None = None
    element_of: str = ""  # the array an element belongs to
    element_index: int = -1

    @property
    def octets_value(self) -> bool:
        """A string or binary value: whole octets, stored as text."""
        return self.type in OCTET_TYPES

    @property
    def is_float_value(self) -> bool:
        """Whether the engineering value is stored as a float (else integer or boolean)."""
        return self.type == "float" or self.calibration.kind != "none"

    @property
    def is_float32(self) -> bool:
        """An engineering value that is exactly a float32 (an uncalibrated IEEE float32,
        or a calibration declared ``engineering: float32``), stored as its shortest
        float32 text (docs/contracts.md, "InfluxDB contract")."""
        if self.calibration.kind != "none":
            return self.calibration.engineering == "float32"
        return self.type == "float" and self.bit_length == 32

    @property
    def is_wide_unsigned(self) -> bool:
        """An uncalibrated unsigned value that can exceed int64 (InfluxDB 1.x has no
        unsigned type): stored as its exact decimal text (docs/contracts.md, "InfluxDB
        contract")."""
        return self.type == "unsigned" and self.bit_length > 63 \
            and self.calibration.kind == "none"

    def state_label(self, value: int) -> str | None:
        """The state name of a raw enum value, or None if no state covers it."""
        label = self.states.get(value)
        if label is not None:
            return label
        for low, high, name in self.state_ranges:
            if low <= value <= high:
                return name
        return None


@dataclass(frozen=True, slots=True)
class DerivedParameter:
    """A value computed on arrival from other parameters of the same packet."""

    name: str
    expression: str
    unit: str = ""
    description: str = ""
    limits: Limits = Limits()
    report: bool = False
    monitoring: Monitoring = Monitoring()


@dataclass(frozen=True, slots=True)
class PacketDef:
    """One packet type.

    A fixed-length packet has ``length`` octets and its ``parameters`` at fixed bit
    offsets. A variable-length packet (``length == 0``) holds an array whose size
    is ``expand`` or read from another parameter: ``layout`` lists its fields in order
    (arrays unexpanded, spares included), and ``parameters`` only those of fixed
    place and size (the ones before the first variable field); the decoder resolves
    each packet's layout into a fixed one (:func:`control_center.telemetry.codec.resolve_layout`).
    """

    name: str
    apid: int
    length: int  # whole packet in octets, primary header included; 0: variable
    parameters: tuple[Parameter, ...]
    description: str = ""
    period: float | None = None  # nominal seconds between packets, for counts and staleness
    time: TimeSource = "cuc"
    error_control: bool = True  # a CRC-16 trailer closes the packet
    derived: tuple[DerivedParameter, ...] = ()
    layout: tuple[Parameter, ...] = ()  # variable-length packets only
    # Polymorphic packets (XTCE containers told apart by values inside the packet):
    # (parameter name, raw values) that must all hold for a packet of this APID to be
    # this type. Several types may share an APID when each has a ``select``; the first
    # whose every condition holds decodes the packet (docs/contracts.md, "Telemetry
    # database").
    select: tuple[tuple[str, tuple[int, ...]], ...] = ()
    # A fixed-length type whose packets may be longer than ``length`` (XTCE describes
    # fields, not lengths): the octets past it are skipped, not counted as wrong_length.
    tail_skipped: bool = False

    @property
    def variable(self) -> bool:
        return self.length == 0

    @property
    def header_bits(self) -> int:
        return PRIMARY_HEADER_BITS + (CUC_BITS if self.time == "cuc" else 0)

    @property
    def trailer_bits(self) -> int:
        return CRC_BITS if self.error_control else 0

    @property
    def fields(self) -> tuple[Parameter, ...]:
        """Every field of the packet's measurement: its parameters, then its derived
        parameters as float parameters (unit, limits, description, monitoring kept)."""
        derived = tuple(Parameter(name=d.name, bit_offset=0, bit_length=64, type="float",
                                  unit=d.unit, limits=d.limits, description=d.description,
                                  report=d.report, monitoring=d.monitoring)
                        for d in self.derived)
        return self.parameters + derived

    def parameter(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(name)


@dataclass(frozen=True, slots=True)
class Tmdb:
    spacecraft: str
    packets: tuple[PacketDef, ...]
    spacecraft_id: int = 0
    mission: str = ""
    agency: str = ""
    description: str = ""
    source: str = ""
    # The CCSDS packet version number (133.0-B-2 §4.1.3.2) this spacecraft's packets
    # carry: 0 as the standard says, unless a partner's files say otherwise.
    packet_version: int = 0

    def by_apid(self) -> dict[int, PacketDef]:
        """One packet type per APID: the first, for APIDs shared by polymorphic packets
        (use :meth:`variants` to see them all)."""
        out: dict[int, PacketDef] = {}
        for p in self.packets:
            out.setdefault(p.apid, p)
        return out

    def variants(self) -> dict[int, tuple[PacketDef, ...]]:
        """Every packet type of each APID, in file order (the order ``select`` is tried)."""
        out: dict[int, list[PacketDef]] = {}
        for p in self.packets:
            out.setdefault(p.apid, []).append(p)
        return {apid: tuple(packets) for apid, packets in out.items()}

    def packet(self, name: str) -> PacketDef:
        for p in self.packets:
            if p.name == name:
                return p
        raise KeyError(name)


# --------------------------------------------------------------------------- loading


def octet_permutation(byte_order: str, octets: int) -> tuple[int, ...] | None:
    """The order in which a field's octets are read to assemble a big-endian value.

    ``big`` reads them as they come, ``little`` backwards. A digit string is ccsdspy's
    custom order (its test data ``byte_order/byte_order_packets.py`` writes it): the
    digits, read from the last to the first, name the value octet that each octet of
    the field holds in packet order, counting from 1 = the least significant. So
    "1234" is big endian, "4321" little endian, "2143" swaps the octets of each 16-bit
    word and "3412" the two words. None if ``byte_order`` is none of these for a field
    of ``octets`` octets.
    """
    if byte_order == "big":
        return tuple(range(octets))
    if byte_order == "little":
        return tuple(reversed(range(octets)))
    if len(byte_order) != octets or sorted(byte_order) != [str(i + 1) for i in range(octets)]:
        return None
    order = [0] * octets
    for k in range(octets):
        least_first = int(byte_order[octets - 1 - k])  # 1 = least significant
        order[octets - least_first] = k  # position in the big-endian value
    return tuple(order)


def expand_array(parameter: Parameter, count: int, bit_offset: int) -> tuple[Parameter, ...]:
    """The elements ``<name>_0 … <name>_<count-1>`` of an array, back to back."""
    return tuple(replace(parameter, name=f"{parameter.name}_{index}",
                         bit_offset=bit_offset + index * parameter.bit_length, array=None,
                         element_of=parameter.name, element_index=index,
                         overlay=parameter.overlay)
                 for index in range(count))
