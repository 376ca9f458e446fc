"""Export a telemetry database as an XTCE 1.2 document (OMG XML Telemetric and Command
Exchange, namespace http://www.omg.org/spec/XTCE/20180204), and validate XTCE documents
against the official schema shipped in ``schemas/SpaceSystem.xsd``.

The document follows the ISLS XTCE profile, which the importer reads back, so that a
TMDB exported and imported again is the same database:

* everything sits flat in the root SpaceSystem and each packet is one concrete
  SequenceContainer read sequentially after the abstract ``ccsds_packet`` header
  container (space-packet-parser reads only that much of XTCE);
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
from dataclasses import dataclass, replace
from importlib.resources import files
from pathlib import Path
from typing import Any

from lxml import etree
from lxml.builder import ElementMaker

from control_center.errors import TmdbError
from control_center.telemetry.tmdb import (
    CRC_BITS,
    CUC_BITS,
    MAX_PACKET_BYTES,
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
        """(packet, TMDB name) -> XTCE name: the name itself unless another packet has
        a field of that name too (or it is a header field's), then ``packet__name``."""
        packets_of: dict[str, set[str]] = {}
        for packet in self.tmdb.packets:
            for name in _field_names(packet):
                packets_of.setdefault(name, set()).add(packet.name)
        reserved = {name for name, _ in HEADER_FIELDS}
        return {(packet.name, name): name if len(packets_of[name]) == 1 and name not in reserved
                else f"{packet.name}__{name}"
                for packet in self.tmdb.packets for name in _field_names(packet)}

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
                return X.FloatParameterType({**name, "sizeInBits": "64"}, *unit, encoding,
                                            *alarms)
            return X.IntegerParameterType(
                {**name, "signed": "true" if p.type == "signed" else "false",
                 "sizeInBits": str(p.bit_length)}, *unit, encoding, *alarms)
        if p.type == "float":
            encoding = X.FloatDataEncoding(
                {"sizeInBits": str(p.bit_length), "encoding": "IEEE754_1985",
                 **self.byte_order(p, where)}, *_calibrator(p.calibration))
            size_in_bits = "64" if calibrated else str(p.bit_length)
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

    def entry(self, name: str, location: int | None = None) -> Element:
        placed = [_location(location)] if location is not None else []
        return X.ParameterRefEntry({"parameterRef": name}, *placed)

    def filler(self, packet: PacketDef, bit_offset: int, bits: int,
               location: int | None) -> Element:
        """Bits no parameter covers, as a parameter of their own (the importer drops it)."""
        name = f"{packet.name}__spare_{bit_offset}"
        where = f"{self.tmdb.spacecraft} {packet.name} {name}"
        self.claim(name, where)
        self.add_type(self.filler_type(f"{name}_type", bits), where)
        self.add_parameter(name, f"{name}_type", where, extras=[("isls.spare", "true")])
        return self.entry(name, location)

    def place(self, packet: PacketDef, place: _Place, bit_offset: int, bits: int,
              overlay: bool, starts: Sequence[int]) -> tuple[list[Element], int | None]:
        """Fill the gap before a field at a fixed place; the fillers' entries and the
        field's location (None when it follows the previous entry)."""
        entries: list[Element] = []
        if not overlay and place.end == place.reach and bit_offset > place.reach:
            # Up to the field, or to a field declared further on that starts earlier.
            end = min((s for s in starts if place.reach < s < bit_offset), default=bit_offset)
            entries.append(self.filler(packet, place.reach, end - place.reach, None))
            place.end = place.reach = end
        location = None if (not overlay and place.end == bit_offset) else bit_offset
        place.end = bit_offset + bits
        if not overlay:
            place.reach = max(place.reach, place.end)
        return entries, location

    def packet_entries(self, packet: PacketDef) -> list[Element]:
        entries: list[Element] = []
        if packet.time == "cuc":
            name = f"{packet.name}__obt"
            self.claim(name, f"{self.tmdb.spacecraft} {packet.name} {name}")
            self.add_parameter(name, CUC_TYPE, f"{self.tmdb.spacecraft} {packet.name} {name}")
            entries.append(self.entry(name))
        place = _Place(end=packet.header_bits, reach=packet.header_bits)
        if packet.variable:
            entries.extend(self.variable_entries(packet, place))
        else:
            starts = sorted(p.bit_offset for p in packet.parameters if not p.overlay)
            for p in packet.parameters:
                fillers, location = self.place(packet, place, p.bit_offset, p.bit_length,
                                               p.overlay, starts)
                entries.extend(fillers)
                entries.append(self.entry(self.add_field(packet, p), location))
            data_end = packet.length * 8 - packet.trailer_bits
            if place.reach < data_end:
                location = None if place.end == place.reach else place.reach
                entries.append(self.filler(packet, place.reach, data_end - place.reach,
                                           location))
                place.end = place.reach = data_end
        if packet.error_control:
            name = f"{packet.name}__crc"
            where = f"{self.tmdb.spacecraft} {packet.name} {name}"
            self.claim(name, where)
            self.add_type(self.filler_type(f"{name}_type", CRC_BITS), where)
            self.add_parameter(name, f"{name}_type", where, extras=[("isls.role", "crc")])
            data_end = packet.length * 8 - CRC_BITS
            location = None if packet.variable or place.end == data_end else data_end
            entries.append(self.entry(name, location))
        return entries

    def variable_entries(self, packet: PacketDef, place: _Place) -> list[Element]:
        """A variable packet's layout: fields at fixed places up to the first field of
        variable size, then each field right after the previous one."""
        entries: list[Element] = []
        fixed_part = []
        for item in packet.layout:
            if isinstance(item.array, str):
                break
            fixed_part.append(item)
        starts = sorted(p.bit_offset for p in fixed_part if not p.overlay)
        for position, item in enumerate(packet.layout):
            where = f"{self.tmdb.spacecraft} {packet.name} {item.name}"
            located: int | None = None
            if place.end is not None:
                count = item.array if isinstance(item.array, int) else 1
                fillers, located = self.place(packet, place, item.bit_offset,
                                              item.bit_length * count, item.overlay, starts)
                entries.extend(fillers)
            elif item.overlay:
                self.problem(where, "an overlay after a variable-size field has no fixed "
                                    "place to overlay")
            if isinstance(item.array, int):
                for index, element in enumerate(expand_array(item, item.array,
                                                             item.bit_offset)):
                    entries.append(self.entry(self.add_field(packet, element),
                                              located if index == 0 else None))
            elif isinstance(item.array, str):
                entries.append(self.entry(self.variable_field(packet, position, place, where),
                                          located))
                place.end = None
            else:
                entries.append(self.entry(self.add_field(packet, item), located))
        return entries

    def variable_field(self, packet: PacketDef, position: int, place: _Place,
                       where: str) -> str:
        """An array of variable size, or a string/binary of dynamic size."""
        item = packet.layout[position]
        if item.array == "expand":
            # It takes what the fields after it (all of fixed size) and the CRC leave:
            # 8 * ccsds_packet_length + 56 - start - after - trailer bits.
            if place.end is None:
                self.problem(where, "size or array `expand` after another variable-size "
                                    "field: its start is not at a fixed place, so XTCE "
                                    "cannot size it from the packet length")
            start = item.bit_offset if place.end is not None else 0
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

    def restriction(self, packet: PacketDef) -> Element:
        """The packet is this container when its header and its select values match."""
        header = [("ccsds_version", self.tmdb.packet_version), ("ccsds_type", 0),
                  ("ccsds_apid", packet.apid)]
        selects = []
        for name, values in packet.select:
            if (packet.name, name) not in self.names:
                self.problem(f"{self.tmdb.spacecraft} {packet.name}",
                             f"select: {name!r} is no parameter of this packet")
                continue
            selects.append((self.names[(packet.name, name)], values))
        if all(len(values) == 1 for _, values in selects):
            comparisons = [X.Comparison({"parameterRef": name, "value": str(value)})
                           for name, value in header]
            comparisons += [X.Comparison({"parameterRef": name, "useCalibratedValue": "false",
                                          "value": str(values[0])})
                            for name, values in selects]
            return X.RestrictionCriteria(X.ComparisonList(*comparisons))
        # A select of several values is an OR: the whole becomes a BooleanExpression,
        # the header conditions first (a reader that evaluates in order rejects other
        # APIDs before it reads the select parameters).
        conditions = [X.Condition(X.ParameterInstanceRef({"parameterRef": name}),
                                  X.ComparisonOperator("=="), X.Value(str(value)))
                      for name, value in header]
        for name, values in selects:
            conditions.append(_condition(name, values[0]) if len(values) == 1 else
                              X.ORedConditions(*(_condition(name, v) for v in values)))
        return X.RestrictionCriteria(X.BooleanExpression(X.ANDedConditions(*conditions)))

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
        entries = self.packet_entries(packet)
        for derived in packet.derived:
            self.add_derived(packet, derived)
        return X.SequenceContainer({"name": packet.name}, *children, X.EntryList(*entries),
                                   X.BaseContainer({"containerRef": HEADER_CONTAINER},
                                                   self.restriction(packet)))

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
        for packet in tmdb.packets:
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

