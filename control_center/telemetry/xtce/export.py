"""Export a telemetry database as an XTCE 1.2 document (OMG XML Telemetric and Command
Exchange, namespace http://www.omg.org/spec/XTCE/20180204), and validate XTCE documents
against the official schema shipped in ``schemas/SpaceSystem.xsd``.

The document follows the ISLS XTCE profile, which the importer reads back, so that a
TMDB exported and imported again is the same database:

* everything sits flat in the root SpaceSystem and each packet is one concrete
  SequenceContainer read sequentially after the abstract ``ccsds_packet`` header
  container (space-packet-parser reads only that much of XTCE);
* polymorphic packets (types of one APID told apart by ``select``, or a lone type
  with a select): XTCE tests a container's restriction before it reads the container's
  own entries, so an abstract container of the APID (``apid_<APID>``), restricted on
  the header, reads what the types share up to the fields their selects test; each
  type's container inherits from it, restricted on its select values only;
* one ParameterType per parameter (``<xtce name>_type``), each parameter aliased with
  its TMDB name in the ``isls`` name space (XTCE names must be unique in a SpaceSystem:
  a name two packets share becomes ``<packet>__<name>``);
* the onboard time (``<packet>__obt``, a 48-bit CUC), gap fillers
  (``<packet>__spare_<bit>``) and the CRC (``<packet>__crc``) are entries of their own,
  so sequential decoders stay aligned; values XTCE has no element for travel as
  ``isls.*`` AncillaryData, which other tools ignore.

What XTCE (in this profile) cannot say is never dropped silently: :func:`export_xtce`
raises :class:`~control_center.errors.TmdbError` listing every such problem.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

from lxml import etree
from lxml.builder import ElementMaker

from control_center.errors import TmdbError
from control_center.telemetry.tmdb import (
    CRC_BITS,
    CUC_BITS,
    MAX_PACKET_BYTES,
    PRIMARY_HEADER_BITS,
    Calibration,
    DerivedParameter,
    Limits,
    ModeLimits,
    Monitoring,
    PacketDef,
    Parameter,
    Tmdb,
    expand_array,
    octet_permutation,
)

XTCE_NAMESPACE = "http://www.omg.org/spec/XTCE/20180204"
XSI_NAMESPACE = "http://www.w3.org/2001/XMLSchema-instance"
SCHEMA_LOCATION = f"{XTCE_NAMESPACE} https://www.omg.org/spec/XTCE/20180204/SpaceSystem.xsd"
ALIAS_NAMESPACE = "isls"

HEADER_CONTAINER = "ccsds_packet"
# The CCSDS primary header (133.0-B-2 §4.1.3), field by field.
HEADER_FIELDS: tuple[tuple[str, int], ...] = (
    ("ccsds_version", 3), ("ccsds_type", 1), ("ccsds_secondary_header", 1), ("ccsds_apid", 11),
    ("ccsds_sequence_flags", 2), ("ccsds_sequence_count", 14), ("ccsds_packet_length", 16))
PACKET_LENGTH_FIELD = "ccsds_packet_length"
# The packet length field holds the whole packet's octets minus 7 (6 header octets + 1):
# a packet has 8 * field + 56 bits.
PACKET_LENGTH_BITS_OFFSET = 56
CUC_TYPE = "cuc_time"
CUC_SCALE = 1 / 65536  # s per count of the 48-bit CUC (4 octets coarse, 2 fine)
FILLER_MAX_INTEGER_BITS = 64  # wider gaps are filled with a BinaryParameterType

Element = Any  # lxml.etree._Element (lxml ships no type hints)

# XML 1.0 cannot carry these characters, not even escaped.
_NOT_XML = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

X = ElementMaker(namespace=XTCE_NAMESPACE, nsmap={"xtce": XTCE_NAMESPACE, "xsi": XSI_NAMESPACE})


# --------------------------------------------------------------------------- schema


def schema_path() -> Path:
    """The official XTCE 1.2 schema shipped with the control center."""
    # An installed (or editable) package on disk: the resource is a plain file.
    return Path(str(files("control_center.telemetry").joinpath("schemas/SpaceSystem.xsd")))


@functools.cache
def _schema() -> Any:
    """The XTCE schema, built once (it takes most of a second)."""
    import xmlschema

    return xmlschema.XMLSchema(str(schema_path()))


def validate_xtce(document: bytes | Path) -> list[str]:
    """Every error of an XTCE document against the XTCE 1.2 schema, as
    ``"LINE: message (path)"``; ``[]`` for a valid document. A document that is not
    well-formed XML gives its one syntax error."""
    # No entities, DTDs or network: the document may be a partner's file.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             remove_comments=False)
    try:
        if isinstance(document, Path):
            tree = etree.parse(str(document), parser)
        else:
            tree = etree.fromstring(document, parser).getroottree()
    except OSError as exc:
        raise TmdbError([f"{document!s}: cannot read: {exc}"]) from None
    except etree.XMLSyntaxError as exc:
        return [f"{exc.lineno}: not well-formed XML: {exc.msg}"]
    errors: list[str] = []
    for error in _schema().iter_errors(tree):
        line = error.sourceline if error.sourceline is not None else 0
        reason = error.reason or error.message
        errors.append(f"{line}: {reason} ({error.path})")
    return errors


# --------------------------------------------------------------------------- helpers


def _double(value: float) -> str:
    """A float exactly (its shortest repr round-trips), as xs:double accepts it."""
    return repr(float(value))


def _plain(value: float) -> str:
    """A slope or intercept: a whole number without ``.0``, else the exact float."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _ancillary(items: Sequence[tuple[str, str]]) -> list[Element]:
    if not items:
        return []
    return [X.AncillaryDataSet(*(X.AncillaryData(value, {"name": key}) for key, value in items))]


def _location(bit_offset: int) -> Element:
    """An entry placed at an absolute bit of the packet (the profile's containerStart)."""
    return X.LocationInContainerInBits({"referenceLocation": "containerStart"},
                                       X.FixedValue(str(bit_offset)))


def _raw_ref(name: str) -> Element:
    return X.ParameterInstanceRef({"parameterRef": name, "useCalibratedValue": "false"})


def _condition(name: str, value: int) -> Element:
    """``name == value`` on the raw value, as a BooleanExpression Condition."""
    return X.Condition(_raw_ref(name), X.ComparisonOperator("=="), X.Value(str(value)))


def _dynamic(name: str, slope: float, intercept: float) -> Element:
    """A size or index read from a parameter's raw value: ``slope * value + intercept``."""
    return X.DynamicValue(_raw_ref(name), X.LinearAdjustment(
        {"slope": _plain(slope), "intercept": _plain(intercept)}))


def _calibrator(calibration: Calibration) -> list[Element]:
    if calibration.kind == "polynomial":
        return [X.DefaultCalibrator(X.PolynomialCalibrator(*(
            X.Term({"coefficient": _double(c), "exponent": str(i)})
            for i, c in enumerate(calibration.coefficients))))]
    if calibration.kind == "table":
        # Linear between the points, as the decoder's np.interp.
        return [X.DefaultCalibrator(X.SplineCalibrator(
            {"order": "1", "extrapolate": "false"},
            *(X.SplinePoint({"raw": _double(raw), "calibrated": _double(eng)})
              for raw, eng in calibration.table)))]
    return []


def _engineering_bits(parameter: Parameter) -> str:
    """A calibrated value's FloatParameterType sizeInBits: its engineering float size
    (the importer reads an absent one as XTCE's default, 32)."""
    return "32" if parameter.calibration.engineering == "float32" else "64"


def _alarm_ranges(limits: Limits) -> list[Element]:
    """Yellow as WarningRange, red as CriticalRange. The ranges are the values in
    limits (rangeForm "outside", XTCE's default): limits.py counts a value equal to a
    limit as in limits, hence inclusive bounds."""
    ranges = []
    for tag, low, high in (("WarningRange", limits.yellow_low, limits.yellow_high),
                           ("CriticalRange", limits.red_low, limits.red_high)):
        attributes = {}
        if low is not None:
            attributes["minInclusive"] = _double(low)
        if high is not None:
            attributes["maxInclusive"] = _double(high)
        if attributes:
            ranges.append(getattr(X, tag)(attributes))
    return [X.StaticAlarmRanges(*ranges)] if ranges else []


def _field_names(packet: PacketDef) -> list[str]:
    """The TMDB names of a packet's fields: fixed arrays as their elements, the items of
    a variable packet's layout (spares included), then the derived parameters."""
    if packet.variable:
        names: list[str] = []
        for item in packet.layout:
            if isinstance(item.array, int):
                names.extend(f"{item.name}_{i}" for i in range(item.array))
            else:
                names.append(item.name)
    else:
        names = [p.name for p in packet.parameters]
    return names + [d.name for d in packet.derived]


def _select_key(parameter: Parameter) -> tuple[int, int, bool, str]:
    """What a select condition reads: the same bits, read the same way."""
    return (parameter.bit_offset, parameter.bit_length, parameter.type == "signed",
            parameter.byte_order)


def _selects_apart(first: PacketDef, second: PacketDef) -> bool:
    """Whether no packet can satisfy both packets' selects: some bits both read must
    hold values from disjoint sets."""
    def conditions(packet: PacketDef) -> dict[tuple[int, int, bool, str], set[int]]:
        out: dict[tuple[int, int, bool, str], set[int]] = {}
        by_name = {p.name: p for p in packet.parameters}
        for name, values in packet.select:
            if name not in by_name:
                continue  # reported with the packet's restriction
            key = _select_key(by_name[name])
            out[key] = out[key] & set(values) if key in out else set(values)
        return out

    a, b = conditions(first), conditions(second)
    return any(not a[key] & b[key] for key in a.keys() & b.keys())


# --------------------------------------------------------------------------- export


@dataclass(slots=True)
class _Place:
    """Where a sequential reader of a packet's entries stands."""

    end: int | None  # where the previous entry ends (None: not at a fixed place)
    reach: int  # the furthest bit a non-overlay entry covers


_SlotKind = Literal["time", "field", "filler", "sized", "crc"]


@dataclass(frozen=True, slots=True)
class _Slot:
    """One entry of a packet's containers, planned before it is written (the types of
    an APID share their first slots, so their plans are compared first)."""

    # time: the CUC; field: a parameter of fixed size; filler: a gap; sized: a field of
    # variable size (an array, a string or binary of dynamic size); crc: the trailer
    kind: _SlotKind
    bit_offset: int  # its first bit in the packet; -1: after a variable-size field
    bits: int  # -1: variable
    location: int | None = None  # containerStart bit (None: after the previous entry)
    parameter: Parameter | None = None  # field and sized
    position: int = -1  # sized: its index in the packet's layout


@dataclass(frozen=True, slots=True)
class _Group:
    """The packet types of one APID told apart by ``select`` (or a lone type with a
    select): an abstract container of the APID holds their first slots, up to the
    fields the selects test, and each type's container inherits from it."""

    name: str  # the APID's container
    apid: int
    packets: tuple[PacketDef, ...]
    shared: int  # how many of each type's first slots the APID's container holds


def _slot_text(slot: _Slot | None, other: _Slot | None = None) -> str:
    """A slot for a flight controller; beside ``other`` (the same field read another
    way), what differs."""
    if slot is None:
        return "no more fields"
    where = f"at bit {slot.bit_offset}" if slot.bit_offset >= 0 \
        else "after a variable-size field"
    if slot.kind == "time":
        return f"the CUC time {where}"
    if slot.kind == "filler":
        return f"{slot.bits} unused bits {where}"
    if slot.kind == "crc":
        return f"the CRC {where}"
    p = slot.parameter
    assert p is not None
    q = other.parameter if other is not None else None
    if q is not None and (q.name, q.bit_offset, q.bit_length, q.type) == \
            (p.name, p.bit_offset, p.bit_length, p.type):
        differs = [f.name for f in fields(Parameter) if getattr(p, f.name) != getattr(q, f.name)]
        return f"{p.name!r} {where} defined otherwise ({', '.join(differs) or 'placement'})"
    size = "variable size" if slot.kind == "sized" else f"{p.bit_length} bits"
    return f"{p.name!r} {where} ({p.type}, {size})"


class _Export:
    """One TMDB's XTCE elements, built in the order the schema wants them."""

    def __init__(self, tmdb: Tmdb) -> None:
        self.tmdb = tmdb
        self.problems: list[str] = []
        self.types: list[Element] = []
        self.parameters: list[Element] = []
        self.containers: list[Element] = []
        self._parameter_owner: dict[str, str] = {}
        self._type_owner: dict[str, str] = {}
        self._clashed: set[str] = set()
        self.plans = {packet.name: self.plan(packet) for packet in tmdb.packets}
        self.groups = self._groups()
        self.names = self._xtce_names()
        # A limit set's mode is an enum parameter of the spacecraft, looked up by name
        # as tmdb_yaml does (the last packet's wins).
        self.modes = {p.name: self.names[(packet.name, p.name)] for packet in tmdb.packets
                      for p in packet.parameters if p.type == "enum"}

    # ------------------------------------------------------------------ bookkeeping

    def problem(self, where: str, reason: str) -> None:
        prefix = f"{self.tmdb.source}: " if self.tmdb.source else ""
        self.problems.append(f"{prefix}{where}: {reason}")

    def text(self, value: str, where: str, what: str) -> str:
        if _NOT_XML.search(value):
            self.problem(where, f"{what} holds control characters XML cannot carry: "
                                f"{value!r}")
            return _NOT_XML.sub("?", value)
        return value

    def _xtce_names(self) -> dict[tuple[str, str], str]:
        """(packet, TMDB name) -> XTCE name: the name itself unless another container
        has a field of that name too (or it is a header field's), then
        ``container__name``. A field the types of an APID share in its container is that
        container's, one parameter for all of them."""
        owners: dict[tuple[str, str], str] = {}
        for packet in self.tmdb.packets:
            group = self.groups.get(packet.name)
            shared: set[str] = set()
            if group is not None:
                shared = {slot.parameter.name for slot in self.plans[packet.name][:group.shared]
                          if slot.parameter is not None}
            for name in _field_names(packet):
                owners[(packet.name, name)] = group.name if group is not None \
                    and name in shared else packet.name
        containers_of: dict[str, set[str]] = {}
        for (_, name), owner in owners.items():
            containers_of.setdefault(name, set()).add(owner)
        reserved = {name for name, _ in HEADER_FIELDS}
        return {(packet, name): name if len(containers_of[name]) == 1 and name not in reserved
                else f"{owner}__{name}" for (packet, name), owner in owners.items()}

    def claim(self, name: str, where: str) -> None:
        """Take an XTCE parameter name (before its type: a clash is reported once)."""
        if name in self._parameter_owner:
            self.problem(where, f"its XTCE name {name!r} is also the name of "
                                f"{self._parameter_owner[name]}; rename one")
            self._clashed.add(where)
        self._parameter_owner[name] = where

    def add_type(self, element: Element, where: str) -> None:
        name = element.get("name")
        if name in self._type_owner and where not in self._clashed:
            self.problem(where, f"its XTCE type name {name!r} is also the type of "
                                f"{self._type_owner[name]}; rename one")
        self._type_owner[name] = where
        self.types.append(element)

    def add_parameter(self, name: str, type_name: str, where: str, *, alias: str = "",
                      description: str = "", extras: Sequence[tuple[str, str]] = (),
                      derived: bool = False) -> None:
        """A Parameter whose name was claimed (:meth:`claim`)."""
        children: list[Element] = []
        if description:
            children.append(X.LongDescription(self.text(description, where, "description")))
        if alias:
            children.append(X.AliasSet(X.Alias({"nameSpace": ALIAS_NAMESPACE, "alias": alias})))
        children.extend(_ancillary([(k, self.text(v, where, k)) for k, v in extras]))
        if derived:
            children.append(X.ParameterProperties({"dataSource": "derived"}))
        self.parameters.append(X.Parameter({"name": name, "parameterTypeRef": type_name},
                                           *children))

    # ------------------------------------------------------------------ encodings

    def byte_order(self, parameter: Parameter, where: str) -> dict[str, str]:
        if parameter.byte_order == "big":
            return {}
        if parameter.byte_order == "little":
            return {"byteOrder": "leastSignificantByteFirst"}
        octets = max(1, parameter.bit_length // 8)
        permutation = octet_permutation(parameter.byte_order, octets)
        hint = ""
        if permutation == tuple(range(octets)):
            hint = " (it is plain big endian: write byte_order: big)"
        elif permutation == tuple(reversed(range(octets))):
            hint = " (it is plain little endian: write byte_order: little)"
        self.problem(where, f"byte_order {parameter.byte_order!r} (a ccsdspy octet order) "
                            f"cannot be exported: the ISLS XTCE profile has big and little "
                            f"endian only{hint}")
        return {}

    def integer_encoding(self, parameter: Parameter, where: str, *, signed: bool = False,
                         calibrated: bool = True) -> Element:
        attributes = {"sizeInBits": str(parameter.bit_length),
                      "encoding": "twosComplement" if signed else "unsigned",
                      **self.byte_order(parameter, where)}
        calibrator = _calibrator(parameter.calibration) if calibrated else []
        return X.IntegerDataEncoding(attributes, *calibrator)

    # ------------------------------------------------------------------ alarms

    def context_match(self, mode_limits: ModeLimits, where: str) -> Element:
        mode = self.modes.get(mode_limits.mode)
        if mode is None:
            self.problem(where, f"limit set on mode {mode_limits.mode!r}, which is no enum "
                                f"parameter of this spacecraft")
            mode = mode_limits.mode
        states = mode_limits.states
        if not states:
            self.problem(where, f"a limit set on {mode_limits.mode!r} names no state")
            states = (0,)
        if len(states) == 1:
            return X.ContextMatch(X.Comparison({"parameterRef": mode, "useCalibratedValue": "false",
                                                "value": str(states[0])}))
        return X.ContextMatch(X.BooleanExpression(X.ORedConditions(
            *(_condition(mode, state) for state in states))))

    def alarms(self, limits: Limits, monitoring: Monitoring, numeric: bool,
               where: str) -> list[Element]:
        """DefaultAlarm (limits, persistence) and ContextAlarmList (limit sets)."""
        persistence = ({"minViolations": str(monitoring.persistence)}
                       if monitoring.persistence > 1 else {})
        out: list[Element] = []
        ranges = _alarm_ranges(limits)
        if ranges and not numeric:
            self.problem(where, "limits on a parameter that is not a number: XTCE alarm "
                                "ranges are for numbers")
            ranges = []
        if ranges or persistence:
            out.append(X.DefaultAlarm(persistence, *ranges))
        if not monitoring.limit_sets:
            return out
        if not numeric:
            self.problem(where, "limit_sets on a parameter that is not a number: XTCE "
                                "context alarm ranges are for numbers")
            return out
        out.append(X.ContextAlarmList(*(
            X.ContextAlarm(persistence, *_alarm_ranges(s.limits), self.context_match(s, where))
            for s in monitoring.limit_sets)))
        return out

    # ------------------------------------------------------------------ types

    def unit(self, unit: str, where: str) -> list[Element]:
        return [X.UnitSet(X.Unit(self.text(unit, where, "unit")))] if unit else []

    def parameter_type(self, parameter: Parameter, type_name: str, where: str,
                       size: Element | None = None) -> Element:
        """The ParameterType of one value of ``parameter`` (``size``: the SizeInBits or
        Variable element of a string or binary of dynamic size)."""
        p = parameter
        unit = self.unit(p.unit, where)
        calibrated = p.calibration.kind != "none"
        numeric = p.type in ("unsigned", "signed", "float")
        alarms = self.alarms(p.limits, p.monitoring, numeric, where)
        if p.limits != p.monitoring.limits:
            self.problem(where, "limits and monitoring.limits differ: XTCE has one "
                                "DefaultAlarm")
        name = {"name": type_name}
        if p.type in ("unsigned", "signed"):
            encoding = self.integer_encoding(p, where, signed=p.type == "signed")
            if calibrated:
                return X.FloatParameterType({**name, "sizeInBits": _engineering_bits(p)},
                                            *unit, encoding, *alarms)
            return X.IntegerParameterType(
                {**name, "signed": "true" if p.type == "signed" else "false",
                 "sizeInBits": str(p.bit_length)}, *unit, encoding, *alarms)
        if p.type == "float":
            encoding = X.FloatDataEncoding(
                {"sizeInBits": str(p.bit_length), "encoding": "IEEE754_1985",
                 **self.byte_order(p, where)}, *_calibrator(p.calibration))
            size_in_bits = _engineering_bits(p) if calibrated else str(p.bit_length)
            return X.FloatParameterType({**name, "sizeInBits": size_in_bits}, *unit, encoding,
                                        *alarms)
        if p.type == "enum":
            return X.EnumeratedParameterType(name, *unit, self.integer_encoding(p, where),
                                             self.enumeration_list(p, where), *alarms)
        if p.type == "boolean":
            return X.BooleanParameterType(name, *unit, self.integer_encoding(p, where),
                                          *alarms)
        if p.type == "string":
            if size is None:
                size = X.SizeInBits(X.Fixed(X.FixedValue(str(p.bit_length))))
            return X.StringParameterType(name, *unit, X.StringDataEncoding(
                {"encoding": "UTF-8"}, size), *alarms)
        if p.type == "binary":
            if size is None:
                size = X.SizeInBits(X.FixedValue(str(p.bit_length)))
            return X.BinaryParameterType(name, *unit, X.BinaryDataEncoding(size), *alarms)
        # A declared spare of a variable packet's layout (fixed packets drop them).
        return self.filler_type(type_name, p.bit_length)

    def enumeration_list(self, parameter: Parameter, where: str) -> Element:
        top = (1 << 63) - 1  # XTCE enumeration values are xs:long
        items = [(value, value, label) for value, label in sorted(parameter.states.items())]
        items += list(parameter.state_ranges)
        if any(high > top for _, high, _ in items):
            self.problem(where, f"enum values above {top} do not fit XTCE's enumeration "
                                f"values (64-bit signed)")
        enumerations = []
        for low, high, label in items:
            attributes = {"value": str(low)}
            if (low, high, label) in parameter.state_ranges:
                attributes["maxValue"] = str(high)
            attributes["label"] = self.text(label, where, "state name")
            enumerations.append(X.Enumeration(attributes))
        return X.EnumerationList(*enumerations)

    @staticmethod
    def filler_type(type_name: str, bits: int) -> Element:
        if bits <= FILLER_MAX_INTEGER_BITS:
            return X.IntegerParameterType(
                {"name": type_name, "signed": "false", "sizeInBits": str(bits)},
                X.IntegerDataEncoding({"sizeInBits": str(bits), "encoding": "unsigned"}))
        return X.BinaryParameterType({"name": type_name},
                                     X.BinaryDataEncoding(X.SizeInBits(X.FixedValue(str(bits)))))

    # ------------------------------------------------------------------ parameters

    def extras(self, parameter: Parameter) -> list[tuple[str, str]]:
        """The parameter's values XTCE has no element for (only those not default)."""
        p = parameter
        items = []
        if p.report:
            items.append(("isls.report", "true"))
        if p.monitoring.event:
            items.append(("isls.event", "true"))
        if p.overlay:
            items.append(("isls.overlay", "true"))
        if p.monitoring.deadband:
            items.append(("isls.deadband", _double(p.monitoring.deadband)))
        if p.element_of:
            items.append(("isls.element_of", p.element_of))
        if p.type == "spare":
            items.append(("isls.spare", "true"))
        return items

    def add_field(self, packet: PacketDef, parameter: Parameter,
                  size: Element | None = None) -> str:
        """A TMDB parameter (or layout item) as a Parameter and its type; its XTCE name."""
        where = f"{self.tmdb.spacecraft} {packet.name} {parameter.name}"
        name = self.names[(packet.name, parameter.name)]
        type_name = f"{name}_type"
        self.claim(name, where)
        self.add_type(self.parameter_type(parameter, type_name, where, size), where)
        self.add_parameter(name, type_name, where, alias=parameter.name,
                           description=parameter.description, extras=self.extras(parameter))
        return name

    def add_array(self, packet: PacketDef, item: Parameter, ending: Element) -> str:
        """A variable-size array: an ArrayParameterType over its element's type."""
        where = f"{self.tmdb.spacecraft} {packet.name} {item.name}"
        name = self.names[(packet.name, item.name)]
        element_type = f"{name}_element_type"
        self.claim(name, where)
        self.add_type(self.parameter_type(item, element_type, where), where)
        self.add_type(X.ArrayParameterType(
            {"name": f"{name}_type", "arrayTypeRef": element_type},
            X.DimensionList(X.Dimension(X.StartingIndex(X.FixedValue("0")),
                                        X.EndingIndex(ending)))), where)
        self.add_parameter(name, f"{name}_type", where, alias=item.name,
                           description=item.description, extras=self.extras(item))
        return name

    def add_derived(self, packet: PacketDef, derived: DerivedParameter) -> None:
        where = f"{self.tmdb.spacecraft} {packet.name} {derived.name}"
        name = self.names[(packet.name, derived.name)]
        type_name = f"{name}_type"
        self.claim(name, where)
        if derived.limits != derived.monitoring.limits:
            self.problem(where, "limits and monitoring.limits differ: XTCE has one "
                                "DefaultAlarm")
        # An encoding although no packet carries the value: space-packet-parser wants
        # one on every type it reads.
        self.add_type(X.FloatParameterType(
            {"name": type_name, "sizeInBits": "64"}, *self.unit(derived.unit, where),
            X.FloatDataEncoding({"sizeInBits": "64", "encoding": "IEEE754_1985"}),
            *self.alarms(derived.limits, derived.monitoring, True, where)), where)
        extras = [("isls.expression", derived.expression), ("isls.packet", packet.name)]
        if derived.report:
            extras.append(("isls.report", "true"))
        if derived.monitoring.event:
            extras.append(("isls.event", "true"))
        if derived.monitoring.deadband:
            extras.append(("isls.deadband", _double(derived.monitoring.deadband)))
        self.add_parameter(name, type_name, where, alias=derived.name,
                           description=derived.description, extras=extras, derived=True)

    # ------------------------------------------------------------------ entries
    # A packet's entries are planned first (slots), then written: the types of one APID
    # share their first slots, which go to the APID's container once.

    def entry(self, name: str, location: int | None = None) -> Element:
        placed = [_location(location)] if location is not None else []
        return X.ParameterRefEntry({"parameterRef": name}, *placed)

    def filler(self, owner: str, bit_offset: int, bits: int, location: int | None) -> Element:
        """Bits no parameter covers, as a parameter of their own (the importer drops it)."""
        name = f"{owner}__spare_{bit_offset}"
        where = f"{self.tmdb.spacecraft} {owner} {name}"
        self.claim(name, where)
        self.add_type(self.filler_type(f"{name}_type", bits), where)
        self.add_parameter(name, f"{name}_type", where, extras=[("isls.spare", "true")])
        return self.entry(name, location)

    @staticmethod
    def place(place: _Place, bit_offset: int, bits: int, overlay: bool,
              starts: Sequence[int]) -> tuple[list[_Slot], int | None]:
        """Fill the gap before a field at a fixed place; the fillers and the field's
        location (None when it follows the previous entry)."""
        fillers: list[_Slot] = []
        if not overlay and place.end == place.reach and bit_offset > place.reach:
            # Up to the field, or to a field declared further on that starts earlier.
            end = min((s for s in starts if place.reach < s < bit_offset), default=bit_offset)
            fillers.append(_Slot("filler", place.reach, end - place.reach))
            place.end = place.reach = end
        location = None if (not overlay and place.end == bit_offset) else bit_offset
        place.end = bit_offset + bits
        if not overlay:
            place.reach = max(place.reach, place.end)
        return fillers, location

    def plan(self, packet: PacketDef) -> tuple[_Slot, ...]:
        """The entries of a packet after its primary header, in order: its time, its
        fields with the gaps between them filled, its CRC."""
        slots: list[_Slot] = []
        if packet.time == "cuc":
            slots.append(_Slot("time", PRIMARY_HEADER_BITS, CUC_BITS))
        place = _Place(end=packet.header_bits, reach=packet.header_bits)
        if packet.variable:
            slots.extend(self.plan_layout(packet, place))
        else:
            starts = sorted(p.bit_offset for p in packet.parameters if not p.overlay)
            for p in packet.parameters:
                fillers, location = self.place(place, p.bit_offset, p.bit_length, p.overlay,
                                               starts)
                slots.extend(fillers)
                slots.append(_Slot("field", p.bit_offset, p.bit_length, location, p))
            data_end = packet.length * 8 - packet.trailer_bits
            if place.reach < data_end:
                location = None if place.end == place.reach else place.reach
                slots.append(_Slot("filler", place.reach, data_end - place.reach, location))
                place.end = place.reach = data_end
        if packet.error_control:
            if packet.variable:
                slots.append(_Slot("crc", -1, CRC_BITS))
            else:
                data_end = packet.length * 8 - CRC_BITS
                slots.append(_Slot("crc", data_end, CRC_BITS,
                                   None if place.end == data_end else data_end))
        return tuple(slots)

    def plan_layout(self, packet: PacketDef, place: _Place) -> list[_Slot]:
        """A variable packet's layout: fields at fixed places up to the first field of
        variable size, then each field right after the previous one."""
        slots: list[_Slot] = []
        fixed_part = []
        for item in packet.layout:
            if isinstance(item.array, str):
                break
            fixed_part.append(item)
        starts = sorted(p.bit_offset for p in fixed_part if not p.overlay)
        for position, item in enumerate(packet.layout):
            located: int | None = None
            if place.end is not None:
                count = item.array if isinstance(item.array, int) else 1
                fillers, located = self.place(place, item.bit_offset, item.bit_length * count,
                                              item.overlay, starts)
                slots.extend(fillers)
            elif item.overlay:
                self.problem(f"{self.tmdb.spacecraft} {packet.name} {item.name}",
                             "an overlay after a variable-size field has no fixed place to "
                             "overlay")
            if isinstance(item.array, int):
                for index, element in enumerate(expand_array(item, item.array,
                                                             item.bit_offset)):
                    slots.append(_Slot("field", element.bit_offset, element.bit_length,
                                       located if index == 0 else None, element))
            elif isinstance(item.array, str):
                # Its start is known only while every field before it has a fixed place.
                start = item.bit_offset if place.end is not None else -1
                slots.append(_Slot("sized", start, -1, located, item, position))
                place.end = None
            else:
                slots.append(_Slot("field", item.bit_offset, item.bit_length, located, item))
        return slots

    def write(self, owner: str, packet: PacketDef, slot: _Slot) -> Element:
        """A planned slot as an entry of ``owner``'s container: the packet's own, or its
        APID's for the slots the APID's types share (their fillers and time are named
        after it)."""
        if slot.kind == "time":
            name = f"{owner}__obt"
            where = f"{self.tmdb.spacecraft} {owner} {name}"
            self.claim(name, where)
            self.add_parameter(name, CUC_TYPE, where)
            return self.entry(name)
        if slot.kind == "filler":
            return self.filler(owner, slot.bit_offset, slot.bits, slot.location)
        if slot.kind == "crc":
            name = f"{owner}__crc"
            where = f"{self.tmdb.spacecraft} {owner} {name}"
            self.claim(name, where)
            self.add_type(self.filler_type(f"{name}_type", CRC_BITS), where)
            self.add_parameter(name, f"{name}_type", where, extras=[("isls.role", "crc")])
            return self.entry(name, slot.location)
        assert slot.parameter is not None  # a field
        if slot.kind == "sized":
            where = f"{self.tmdb.spacecraft} {packet.name} {slot.parameter.name}"
            return self.entry(self.variable_field(packet, slot.position, slot.bit_offset >= 0,
                                                  where), slot.location)
        return self.entry(self.add_field(packet, slot.parameter), slot.location)

    def variable_field(self, packet: PacketDef, position: int, fixed_start: bool,
                       where: str) -> str:
        """An array of variable size, or a string/binary of dynamic size."""
        item = packet.layout[position]
        if item.array == "expand":
            # It takes what the fields after it (all of fixed size) and the CRC leave:
            # 8 * ccsds_packet_length + 56 - start - after - trailer bits.
            if not fixed_start:
                self.problem(where, "size or array `expand` after another variable-size "
                                    "field: its start is not at a fixed place, so XTCE "
                                    "cannot size it from the packet length")
            start = item.bit_offset if fixed_start else 0
            after = sum(q.bit_length * (q.array if isinstance(q.array, int) else 1)
                        for q in packet.layout[position + 1:]) + packet.trailer_bits
            rest = PACKET_LENGTH_BITS_OFFSET - start - after
            if item.octets_value:
                return self.add_field(packet, item, self.octets_size(
                    item, PACKET_LENGTH_FIELD, rest, MAX_PACKET_BYTES * 8 - start - after))
            # Elements: those bits over the element's; the ending index one less.
            per = item.bit_length
            return self.add_array(packet, item, _dynamic(PACKET_LENGTH_FIELD, 8 / per,
                                                         rest / per - 1))
        counter = next((q for q in packet.layout[:position] if q.name == item.array), None)
        if counter is None:
            self.problem(where, f"its size {item.array!r} names no earlier field")
            counter = replace(item, array=None)
        name = self.names.get((packet.name, counter.name), counter.name)
        if item.octets_value:  # the counter holds octets
            most = min(8 * ((1 << counter.bit_length) - 1), MAX_PACKET_BYTES * 8)
            return self.add_field(packet, item, self.octets_size(item, name, 0, most))
        # The counter holds elements: the ending index is one less.
        return self.add_array(packet, item, _dynamic(name, 1, -1))

    @staticmethod
    def octets_size(item: Parameter, reference: str, intercept: int, most: int) -> Element:
        """The size in bits of a string or binary, 8 * ``reference`` + ``intercept``."""
        size = _dynamic(reference, 8, intercept)
        if item.type == "string":
            # A string's SizeInBits is fixed only: a dynamic one is Variable.
            return X.Variable({"maxSizeInBits": str(max(8, most))}, size)
        return X.SizeInBits(size)

    # ------------------------------------------------------------------ containers

    def header_restriction(self, apid: int) -> Element:
        """A packet of this spacecraft's version, telemetry, of this APID."""
        header = [("ccsds_version", self.tmdb.packet_version), ("ccsds_type", 0),
                  ("ccsds_apid", apid)]
        return X.RestrictionCriteria(X.ComparisonList(
            *(X.Comparison({"parameterRef": name, "value": str(value)})
              for name, value in header)))

    def select_restriction(self, packet: PacketDef) -> list[Element]:
        """Which type of its APID a packet is: its select values (raw), tested on fields
        its APID's container has read."""
        selects = []
        for name, values in packet.select:
            if (packet.name, name) not in self.names:
                self.problem(f"{self.tmdb.spacecraft} {packet.name}",
                             f"select: {name!r} is no parameter of this packet")
                continue
            selects.append((self.names[(packet.name, name)], values))
        if not selects:
            return []  # a type without select beside others: check_selects reports it
        if all(len(values) == 1 for _, values in selects):
            return [X.RestrictionCriteria(X.ComparisonList(*(
                X.Comparison({"parameterRef": name, "useCalibratedValue": "false",
                              "value": str(values[0])}) for name, values in selects)))]
        # A select of several values is an OR: the whole becomes a BooleanExpression.
        terms = [_condition(name, values[0]) if len(values) == 1 else
                 X.ORedConditions(*(_condition(name, v) for v in values))
                 for name, values in selects]
        return [X.RestrictionCriteria(X.BooleanExpression(
            terms[0] if len(terms) == 1 else X.ANDedConditions(*terms)))]

    def apid_container(self, group: _Group) -> Element:
        """The abstract container of an APID whose types ``select`` tells apart: the
        fields they share up to those the selects test. XTCE (space-packet-parser, Yamcs)
        evaluates a container's restriction before it reads the container's own
        entries, so the tested fields must be read here."""
        first = group.packets[0]
        entries = [self.write(group.name, first, slot)
                   for slot in self.plans[first.name][:group.shared]]
        tested = ", ".join(dict.fromkeys(name for p in group.packets for name, _ in p.select))
        types = ", ".join(p.name for p in group.packets)
        return X.SequenceContainer(
            {"name": group.name, "abstract": "true"},
            X.LongDescription(f"The fields every packet of APID {group.apid} starts with, up "
                              f"to those that tell its types apart ({tested}): {types}."),
            X.EntryList(*entries),
            X.BaseContainer({"containerRef": HEADER_CONTAINER},
                            self.header_restriction(group.apid)))

    def container(self, packet: PacketDef) -> Element:
        where = f"{self.tmdb.spacecraft} {packet.name}"
        children: list[Element] = []
        if packet.description:
            children.append(X.LongDescription(self.text(packet.description, where,
                                                        "description")))
        extras: list[tuple[str, str]] = [("isls.time", packet.time)]
        if packet.error_control:
            extras.append(("isls.error_control", "crc16"))
        if packet.period is not None:
            extras.append(("isls.period", _double(packet.period)))
        if packet.tail_skipped:  # packets may run past ``length`` (an imported XTCE's)
            extras.append(("isls.tail", "skip"))
        children.extend(_ancillary(extras))
        if packet.period is not None:
            rate = _double(1 / packet.period)
            children.append(X.DefaultRateInStream({"basis": "perSecond", "minimumValue": rate,
                                                   "maximumValue": rate}))
        group = self.groups.get(packet.name)
        shared = group.shared if group is not None else 0
        entries = [self.write(packet.name, packet, slot)
                   for slot in self.plans[packet.name][shared:]]
        for derived in packet.derived:
            self.add_derived(packet, derived)
        if group is None:
            base = X.BaseContainer({"containerRef": HEADER_CONTAINER},
                                   self.header_restriction(packet.apid))
        else:
            base = X.BaseContainer({"containerRef": group.name},
                                   *self.select_restriction(packet))
        return X.SequenceContainer({"name": packet.name}, *children, X.EntryList(*entries),
                                   base)

    def _groups(self) -> dict[str, _Group]:
        """The APID group of every packet whose APID has types told apart by select
        (a lone type with a select too), by packet name."""
        taken = {HEADER_CONTAINER, *(p.name for p in self.tmdb.packets)}
        out: dict[str, _Group] = {}
        for apid, packets in self.tmdb.variants().items():
            if not any(p.select for p in packets):
                continue
            name, suffix = f"apid_{apid}", 2
            while name in taken:  # a packet may be called so
                name, suffix = f"apid_{apid}_{suffix}", suffix + 1
            taken.add(name)
            group = _Group(name, apid, packets, self.shared_slots(apid, packets))
            out.update((p.name, group) for p in packets)
        return out

    def shared_slots(self, apid: int, packets: tuple[PacketDef, ...]) -> int:
        """How many first slots the types of an APID share in its container: up to
        the last field a select tests. Every type must read those alike (XTCE has one
        parameter per field); where they do not is reported."""
        plans = [self.plans[p.name] for p in packets]
        first = plans[0]
        common = 0
        while common < len(first) and all(common < len(plan) and plan[common] == first[common]
                                          for plan in plans[1:]):
            common += 1
        needed = 0
        for packet, plan in zip(packets, plans, strict=True):
            tested = {name for name, _ in packet.select}
            needed = max([needed, *(index + 1 for index, slot in enumerate(plan)
                                    if slot.kind == "field" and slot.parameter is not None
                                    and slot.parameter.name in tested)])
        if needed <= common:
            return needed
        index = next(i for i, plan in enumerate(plans)
                     if plan[common:common + 1] != first[common:common + 1])
        other = packets[index]
        mine = first[common] if common < len(first) else None
        theirs = plans[index][common] if common < len(plans[index]) else None
        names = ", ".join(dict.fromkeys(name for p in packets for name, _ in p.select))
        self.problem(f"{self.tmdb.spacecraft} {other.name}",
                     f"the packet types of APID {apid} must read the same fields, defined "
                     f"alike, up to the fields their selects test ({names}): XTCE reads "
                     f"those in one container all the types inherit from, before it tells "
                     f"them apart; {packets[0].name!r} has {_slot_text(mine)} where "
                     f"{other.name!r} has {_slot_text(theirs, mine)}")
        return common

    def check_selects(self) -> None:
        """Packets sharing an APID must be told apart by their selects alone: XTCE
        tries containers in no order, the decoder in file order."""
        by_apid: dict[int, list[PacketDef]] = {}
        for packet in self.tmdb.packets:
            by_apid.setdefault(packet.apid, []).append(packet)
        for apid, packets in by_apid.items():
            for index, later in enumerate(packets):
                for earlier in packets[:index]:
                    if not _selects_apart(earlier, later):
                        self.problem(
                            f"{self.tmdb.spacecraft} {later.name}",
                            f"its select can match the same packets of APID {apid} as "
                            f"packet {earlier.name!r}: the decoder takes the first in file "
                            f"order, XTCE containers have no order (make the select "
                            f"values of the two disjoint)")

    def header(self) -> Element:
        for name, bits in HEADER_FIELDS:
            self.claim(name, name)
            self.add_type(X.IntegerParameterType(
                {"name": f"{name}_type", "signed": "false", "sizeInBits": str(bits)},
                X.IntegerDataEncoding({"sizeInBits": str(bits), "encoding": "unsigned"})),
                name)
            self.add_parameter(name, f"{name}_type", name)
        return X.SequenceContainer({"name": HEADER_CONTAINER, "abstract": "true"},
                                   X.LongDescription("CCSDS space packet primary header "
                                                     "(CCSDS 133.0-B-2)"),
                                   X.EntryList(*(self.entry(name) for name, _ in HEADER_FIELDS)))

    def cuc_type(self) -> Element:
        """The onboard time: 4 octets of seconds and 2 of 1/65536 s, TAI since 1958."""
        return X.AbsoluteTimeParameterType(
            {"name": CUC_TYPE},
            X.Encoding({"units": "seconds", "scale": _double(CUC_SCALE), "offset": "0"},
                       X.IntegerDataEncoding({"sizeInBits": str(CUC_BITS),
                                              "encoding": "unsigned"})),
            X.ReferenceTime(X.Epoch("TAI")))

    def document(self) -> Element:
        tmdb = self.tmdb
        self.containers.append(self.header())
        if any(p.time == "cuc" for p in tmdb.packets):
            self.add_type(self.cuc_type(), CUC_TYPE)
        written: set[str] = set()
        for packet in tmdb.packets:
            group = self.groups.get(packet.name)
            if group is not None and group.name not in written:
                # Before its first type's container: the order stays the TMDB's.
                self.containers.append(self.apid_container(group))
                written.add(group.name)
            self.containers.append(self.container(packet))
        self.check_selects()
        root_extras = [("isls.spacecraft_id", str(tmdb.spacecraft_id)) if tmdb.spacecraft_id
                       else None,
                       ("isls.mission", tmdb.mission) if tmdb.mission else None,
                       ("isls.agency", tmdb.agency) if tmdb.agency else None,
                       ("isls.packet_version", str(tmdb.packet_version))
                       if tmdb.packet_version else None]
        children: list[Element] = []
        if tmdb.description:
            children.append(X.LongDescription(self.text(tmdb.description, tmdb.spacecraft,
                                                        "description")))
        children.extend(_ancillary([(k, self.text(v, tmdb.spacecraft, k))
                                    for k, v in _present(root_extras)]))
        root = X.SpaceSystem({"name": tmdb.spacecraft}, *children, X.TelemetryMetaData(
            X.ParameterTypeSet(*self.types), X.ParameterSet(*self.parameters),
            X.ContainerSet(*self.containers)))
        root.set(f"{{{XSI_NAMESPACE}}}schemaLocation", SCHEMA_LOCATION)
        return root


def _present(items: Iterable[tuple[str, str] | None]) -> list[tuple[str, str]]:
    return [item for item in items if item is not None]


def export_xtce(tmdb: Tmdb) -> bytes:
    """``tmdb`` as an XTCE 1.2 document (UTF-8, indented), in the ISLS profile.

    Raises :class:`TmdbError` listing every part of the TMDB XTCE cannot express, each
    as ``"SPACECRAFT PACKET PARAMETER: reason"``.
    """
    export = _Export(tmdb)
    root = export.document()
    if export.problems:
        raise TmdbError(export.problems)
    document: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8",
                                     pretty_print=True)
    return document

