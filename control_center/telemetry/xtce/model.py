"""What the import reads and builds: parameter types as XTCE describes one value, and
packets as laid out from their container chains, field by field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from control_center.telemetry.xtce.reading import Xml
from control_center.telemetry.xtce.systems import System

PRIMARY_HEADER_BITS = 48  # CCSDS 133.0-B-2 §4.1.3
MAX_PACKET_BITS = 65542 * 8

# The CCSDS primary header fields, by (first bit, bits): a field of a packet at one of
# these places is that header field, whatever its name.
HEADER_ROLES = {(0, 3): "version", (3, 1): "type", (4, 1): "secondary_header",
                (5, 11): "apid", (16, 2): "sequence_flags", (18, 14): "sequence_count",
                (32, 16): "packet_length"}


@dataclass(frozen=True, eq=False)
class Size:
    """A size or count read per packet from another parameter (XTCE DynamicValue):
    ``slope * value + intercept``."""

    element: Xml
    system: System
    ref: str
    slope: float
    intercept: float
    calibrated: bool


@dataclass(frozen=True, eq=False)
class ContextAlarm:
    """Limits that apply while an enumerated mode parameter has one of some values."""

    element: Xml
    system: System
    mode: tuple[System, Xml, tuple[str, ...]]  # the mode parameter (system, element, members)
    values: tuple[tuple[str, bool], ...]  # (as written in the XTCE, a calibrated value)
    limits: dict[str, list[float | None]]


@dataclass(frozen=True, eq=False)
class Member:
    """A member of an aggregate type."""

    name: str
    type: ParameterType
    description: str


@dataclass(frozen=True, eq=False)
class ParameterType:
    """What a parameter type says about one value (or an aggregate or array of them)."""

    element: Xml
    system: System
    kind: str  # integer float enum boolean string binary time aggregate array
    ptype: str = ""  # the TMDB type
    bits: int = 0  # fixed size of one value in bits; 0 when given by ``size``
    size: Size | None = None  # dynamic size of a string or binary (bits)
    byte_order: str = "big"
    calibration: dict[str, Any] | None = None
    states: dict[int | str, str] = field(default_factory=dict)
    unit: str = ""
    description: str = ""  # what the type adds to a parameter's description
    limits: dict[str, list[float | None]] = field(default_factory=dict)
    persistence: int = 1
    context_alarms: tuple[ContextAlarm, ...] = ()
    members: tuple[Member, ...] = ()
    element_type: ParameterType | None = None  # arrays
    count: int = 0  # fixed array element count
    count_size: Size | None = None  # dynamic array: the ending index
    start_index: int = 0
    # time types: what decides whether it is our CUC secondary header
    absolute: bool = False
    epoch: str = ""
    scale: float = 1.0
    offset: float = 0.0
    problem: str = ""  # why a packet holding it cannot be imported


class SkipPacket(Exception):
    """A packet cannot be imported: the element that says why, and why. ``listed``: the
    element is a construct not supported (listed on its own line besides the packet),
    not just a reason this one packet cannot be ours (a telecommand...)."""

    def __init__(self, element: Xml, system: System, reason: str, *, listed: bool = True,
                 note_only: bool = False) -> None:
        super().__init__(reason)
        self.element = element
        self.system = system
        self.reason = reason
        self.listed = listed
        self.note_only = note_only  # left out on purpose (a telecommand): a note


@dataclass(eq=False)
class PacketField:
    """One value of a packet as laid out: a parameter (or aggregate member) at a place."""

    key: tuple[str, str, tuple[str, ...]]  # (system path, parameter, members)
    qualified: str  # "/Root/Sub/param.member", for notes
    parameter: Xml
    system: System
    type: ParameterType
    name_hint: str
    description: str
    offset: int | None  # absolute bit of the packet; None: follows a variable field
    bits: int  # one value (8 for a string or binary of dynamic size)
    count: int = 1  # fixed array elements
    grouped: bool = False  # elements our export wrote one by one, an array again
    # Read per packet: "array" (an element count) or "octets" (a string or binary's size),
    # from ``counter``, or to the end of the packet (``expand``) when it is None.
    dynamic: str = ""
    counter: PacketField | None = None
    # A size on the packet length, until the fields after it are known: (size, index of
    # an array's first element).
    on_length: tuple[Size, int] | None = None
    overlay: bool = False
    spare: bool = False
    role: str = ""  # a CCSDS primary header field, or "time" (our CUC secondary header)
    name: str = ""
    ancillary: dict[str, str] = field(default_factory=dict)
    alias: str = ""

    @property
    def span(self) -> int:
        return self.bits * self.count

    @property
    def fixed_size(self) -> bool:
        return not self.dynamic and self.on_length is None

    @property
    def end(self) -> int | None:
        return self.offset + self.span if self.offset is not None and self.fixed_size \
            else None


@dataclass(eq=False)
class PacketLayout:
    """A packet as it is built from its container chain."""

    container: Xml
    system: System
    name: str
    fields: list[PacketField] = field(default_factory=list)
    position: int | None = 0  # where the next previousEntry field starts
    apid: int | None = None
    version: int | None = None
    select: dict[str, tuple[PacketField, frozenset[int]]] = field(default_factory=dict)
    secondary_header: frozenset[int] | None = None


def field_of(packet: PacketLayout, found: tuple[System, Xml, tuple[str, ...]],
             limit: int | None = None) -> PacketField | None:
    """The latest field holding ``found`` (among the first ``limit``)."""
    key = (found[0].path, found[1].get("name"), found[2])
    matches = [f for f in packet.fields[:limit] if f.key == key]
    return matches[-1] if matches else None  # instance 0: the latest one
