"""Import a partner's XTCE file (OMG XTCE 1.2 or 1.1) as a TMDB document.

XTCE (XML Telemetric and Command Exchange) describes a spacecraft's telemetry as a tree
of SpaceSystems holding parameter types, parameters and SequenceContainers; a packet is
a concrete container at the end of a chain of containers that inherit from each other
(``BaseContainer``), each link restricted by comparisons on the fields before it. This
module turns the telemetry part into the plain mapping a TMDB YAML file holds
(docs/contracts.md, "Telemetry database"), which
:func:`control_center.telemetry.tmdb_yaml.parse_tmdb` validates. It follows the ISLS
profile that :mod:`control_center.telemetry.xtce_export` writes (``isls`` aliases and
``isls.*`` AncillaryData, README "Partners' databases: XTCE"), so that our own export
imports back exactly, and reads what real mission files use:

- SpaceSystem trees: references are looked up in the referring system, then its
  ancestors; relative (``sub/name``, ``../name``) and absolute (``/Root/Sub/name``)
  paths and aggregate members (``param.member``, ``param/member``) resolve too.
- Containers: inheritance with Comparison / ComparisonList / BooleanExpression
  restrictions, abstract headers, ContainerRefEntry inlined, LocationInContainerInBits
  (``containerStart``: absolute from the packet start, ``previousEntry``: after the
  previous entry). Concrete containers without inheritors are the packets; the CCSDS
  primary header fields are known by their place, whatever their names. A restriction
  on the APID gives ``apid``, on the version ``packet_version``; telecommand packets
  (type 1) are skipped with a note; restrictions on other fields at fixed places become
  ``select`` (``> 1`` as the list of raw values it allows). A restriction may also test
  the container's own fields, as the ISLS profile writes ``select``.
- Types: integer (any size up to 64 bits, either byte order), float (IEEE 754 32/64 or
  an integer with a calibrator), enumerated (``maxValue`` ranges too), boolean, string
  and binary (fixed, or dynamic: ``size``), absolute and relative time, aggregates
  (flattened into ``<param>_<member>``), arrays (fixed: ``array: N``; dynamic:
  ``array: COUNTER`` or ``expand``), polynomial and first-order spline calibrators,
  units, static alarm ranges (limits), context alarms on an enum (limit sets),
  ``minViolations`` (persistence).

What is not supported is listed once per element, with its line, in
:attr:`XtceImport.unsupported`; what was taken with a change is in
:attr:`XtceImport.notes`. A packet that cannot be imported (or that the TMDB refuses:
each is checked with :func:`~control_center.telemetry.tmdb_yaml.parse_tmdb`) is skipped
with its reason and the others still import. A file that is not XTCE, not well-formed,
declares a DOCTYPE (entities: billion laughs, external files) or holds references to
nothing raises :class:`TmdbError` naming the file, line and element.
"""

from __future__ import annotations

import bisect
import codecs
import itertools
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lxml import etree

from control_center.errors import TmdbError
from control_center.telemetry.ccsdspy_csv import clean_name
from control_center.telemetry.tmdb_yaml import parse_tmdb

__all__ = ["XTCE_11", "XTCE_12", "XtceImport", "import_xtce"]

XTCE_12 = "http://www.omg.org/spec/XTCE/20180204"
XTCE_11 = "http://www.omg.org/space/xtce"
Xml = Any  # an lxml element: lxml ships no type information

PRIMARY_HEADER_BITS = 48  # CCSDS 133.0-B-2 §4.1.3
CUC_END = 96  # our secondary header: 6 octets of CUC time after the primary header
PACKET_LENGTH_BIAS_BITS = 56  # whole packet = (packet length field + 7) octets
MAX_NUMBER_BITS = 64
MAX_PACKET_BITS = 65542 * 8
# A restriction such as "> 1" becomes the list of raw values it allows; wider ones than
# this are not spelt out.
MAX_SELECT_VALUES = 4096
CUC_FINE_SCALE = 2.0 ** -16
_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")

# The CCSDS primary header fields, by (first bit, bits): a field of a packet at one of
# these places is that header field, whatever its name.
_HEADER_ROLES = {(0, 3): "version", (3, 1): "type", (4, 1): "secondary_header",
                 (5, 11): "apid", (16, 2): "sequence_flags", (18, 14): "sequence_count",
                 (32, 16): "packet_length"}
_OPERATORS = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b,
              "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
              ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}
_YELLOW = ("WarningRange", "WatchRange")  # first found wins
_RED = ("CriticalRange", "DistressRange", "SevereRange")
_TAI_EPOCHS = ("TAI", "1958-01-01")
# Children that carry nothing the TMDB keeps (display hints, provenance).
_IGNORED = {"Header", "ToString", "ParameterProperties", "TimeAssociation",
            "DefaultRateInStream", "RateInStreamSet", "BinaryEncoding", "UnitSet",
            "AliasSet", "AncillaryDataSet", "LongDescription"}


@dataclass(frozen=True)
class XtceImport:
    """An imported XTCE file: the TMDB document and what the import changed or left out."""

    document: dict[str, Any]
    notes: tuple[str, ...]
    unsupported: tuple[str, ...]


# ----------------------------------------------------------------------- reading XML


def _prolog_declares_doctype(data: bytes) -> bool:
    """Whether a DOCTYPE comes before the root element (skipping the XML declaration,
    comments and processing instructions), seen without parsing anything."""
    head = data[:1 << 16]
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text = head.decode("utf-16", errors="ignore")
    else:
        text = head.decode("latin-1").removeprefix("\xef\xbb\xbf")
    position = 0
    while True:
        while position < len(text) and text[position] in " \t\r\n\ufeff":
            position += 1
        for opening, closing in (("<?", "?>"), ("<!--", "-->")):
            if text.startswith(opening, position):
                end = text.find(closing, position)
                if end < 0:
                    return False
                position = end + len(closing)
                break
        else:
            return text.startswith("<!DOCTYPE", position)


def _refused(where: str, line: int) -> TmdbError:
    return TmdbError([f"{where}:{line}: refused: the file declares a DOCTYPE (entities or an "
                      "external DTD); XTCE needs none, and one can expand to gigabytes "
                      "(billion laughs) or read local files. Remove the DOCTYPE."])


def _read_root(path: Path) -> Xml:
    """The root element, parsed with entities, DTDs and the network refused."""
    where = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TmdbError([f"{where}: cannot read: {exc.strerror}"]) from None
    if _prolog_declares_doctype(data):
        raise _refused(where, 1)
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             huge_tree=False, remove_comments=True, remove_pis=True)
    try:
        root = etree.fromstring(data, parser, base_url=where)
    except etree.XMLSyntaxError as exc:
        if "entit" in str(exc.msg).lower():
            raise _refused(where, exc.lineno or 1) from None
        raise TmdbError([f"{where}:{exc.lineno}: not well-formed XML: {exc.msg}"]) from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None \
            or next(root.iter(etree.Entity), None) is not None:
        raise _refused(where, 1)
    return root


# ------------------------------------------------------------------- the system tree


@dataclass(eq=False)
class _System:
    """One SpaceSystem: its telemetry definitions by name, and its place in the tree."""

    element: Xml
    name: str
    path: str  # "/Root/Sub"
    parent: _System | None
    children: dict[str, _System] = field(default_factory=dict)
    types: dict[str, Xml] = field(default_factory=dict)
    parameters: dict[str, Xml] = field(default_factory=dict)
    containers: dict[str, Xml] = field(default_factory=dict)

    def lineage(self) -> Iterator[_System]:
        """This system, then its ancestors up to the root (the XTCE lookup order)."""
        system: _System | None = self
        while system is not None:
            yield system
            system = system.parent


@dataclass(frozen=True, eq=False)
class _Size:
    """A size or count read per packet from another parameter (XTCE DynamicValue):
    ``slope * value + intercept``."""

    element: Xml
    system: _System
    ref: str
    slope: float
    intercept: float
    calibrated: bool


@dataclass(frozen=True, eq=False)
class _ContextAlarm:
    element: Xml
    system: _System
    mode: tuple[_System, Xml, tuple[str, ...]]  # the mode parameter (system, element, members)
    values: tuple[tuple[str, bool], ...]  # (as written in the XTCE, a calibrated value)
    limits: dict[str, list[float | None]]


@dataclass(frozen=True, eq=False)
class _Member:
    name: str
    type: _Type
    description: str


@dataclass(frozen=True, eq=False)
class _Type:
    """What a parameter type says about one value (or an aggregate or array of them)."""

    element: Xml
    system: _System
    kind: str  # integer float enum boolean string binary time aggregate array
    ptype: str = ""  # the TMDB type
    bits: int = 0  # fixed size of one value in bits; 0 when given by ``size``
    size: _Size | None = None  # dynamic size of a string or binary (bits)
    byte_order: str = "big"
    calibration: dict[str, Any] | None = None
    states: dict[int | str, str] = field(default_factory=dict)
    unit: str = ""
    description: str = ""  # what the type adds to a parameter's description
    limits: dict[str, list[float | None]] = field(default_factory=dict)
    persistence: int = 1
    context_alarms: tuple[_ContextAlarm, ...] = ()
    members: tuple[_Member, ...] = ()
    element_type: _Type | None = None  # arrays
    count: int = 0  # fixed array element count
    count_size: _Size | None = None  # dynamic array: the ending index
    start_index: int = 0
    # time types: what decides whether it is our CUC secondary header
    absolute: bool = False
    epoch: str = ""
    scale: float = 1.0
    offset: float = 0.0
    problem: str = ""  # why a packet holding it cannot be imported


class _Skip(Exception):
    """A packet cannot be imported: the element that says why, and why. ``listed``: the
    element is a construct not supported (listed on its own line besides the packet),
    not just a reason this one packet cannot be ours (a telecommand...)."""

    def __init__(self, element: Xml, system: _System, reason: str, *, listed: bool = True,
                 note_only: bool = False) -> None:
        super().__init__(reason)
        self.element = element
        self.system = system
        self.reason = reason
        self.listed = listed
        self.note_only = note_only  # left out on purpose (a telecommand): a note


@dataclass(eq=False)
class _Field:
    """One value of a packet as laid out: a parameter (or aggregate member) at a place."""

    key: tuple[str, str, tuple[str, ...]]  # (system path, parameter, members)
    qualified: str  # "/Root/Sub/param.member", for notes
    parameter: Xml
    system: _System
    type: _Type
    name_hint: str
    description: str
    offset: int | None  # absolute bit of the packet; None: follows a variable field
    bits: int  # one value (8 for a string or binary of dynamic size)
    count: int = 1  # fixed array elements
    grouped: bool = False  # elements our export wrote one by one, an array again
    # Read per packet: "array" (an element count) or "octets" (a string or binary's size),
    # from ``counter``, or to the end of the packet (``expand``) when it is None.
    dynamic: str = ""
    counter: _Field | None = None
    # A size on the packet length, until the fields after it are known: (size, index of
    # an array's first element).
    on_length: tuple[_Size, int] | None = None
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
class _Packet:
    """A packet as it is built from its container chain."""

    container: Xml
    system: _System
    name: str
    fields: list[_Field] = field(default_factory=list)
    position: int | None = 0  # where the next previousEntry field starts
    apid: int | None = None
    version: int | None = None
    select: dict[str, tuple[_Field, frozenset[int]]] = field(default_factory=dict)
    secondary_header: frozenset[int] | None = None


# ------------------------------------------------------------------------ importer


class _Importer:
    """One pass over an XTCE file: the TMDB document, notes, unsupported elements and the
    problems that make the file unusable."""

    def __init__(self, path: Path, root: Xml, spacecraft: str | None) -> None:
        self.where = str(path)
        self.ns = etree.QName(root).namespace or ""
        self.spacecraft = spacecraft
        self.problems: list[str] = []
        self.notes: list[str] = []
        self._unsupported: dict[str, str] = {}  # by the element's XPath
        self._noted: set[str] = set()
        self._types: dict[tuple[str, str], _Type] = {}
        self._resolving: set[tuple[str, str]] = set()
        self._commands: list[tuple[Xml, _System]] = []  # CommandMetaData elements
        self._pending_sets: list[tuple[_Field, dict[str, Any]]] = []  # derived limit sets
        self.version = 0
        self.root = self._index(root, None)
        self.used: set[tuple[str, str]] = set()  # parameters placed in an imported packet
        # XTCE parameter -> its TMDB name and type in the first packet holding it
        self.placed: dict[tuple[str, str, tuple[str, ...]], tuple[str, str, _Field]] = {}
        self.header_fields: dict[str, None] = {}  # the CCSDS primary header's, in order

    # ------------------------------------------------------------------ reporting

    @staticmethod
    def tag(element: Xml) -> str:
        return str(etree.QName(element).localname)

    def describe(self, element: Xml) -> str:
        tag = self.tag(element)
        for attribute in ("name", "parameterRef", "containerRef", "typeRef"):
            if element.get(attribute) is not None:
                return f"<{tag} {attribute}='{element.get(attribute)}'>"
        return f"<{tag}>"

    def here(self, element: Xml, system: _System) -> str:
        return f"{self.where}:{element.sourceline}: {self.describe(element)} in {system.path}"

    def unsupported(self, element: Xml, system: _System, reason: str) -> None:
        """List ``element`` as not supported, once (the first reason found)."""
        key = str(element.getroottree().getpath(element))  # unique, even on one line
        self._unsupported.setdefault(key, f"{self.here(element, system)}: {reason}")

    def problem(self, element: Xml, system: _System, reason: str) -> None:
        text = f"{self.here(element, system)}: {reason}"
        if text not in self.problems:
            self.problems.append(text)

    def note(self, element: Xml | None, system: _System | None, text: str) -> None:
        line = f"{self.here(element, system)}: {text}" if element is not None \
            and system is not None else f"{self.where}: {text}"
        if line not in self._noted:
            self._noted.add(line)
            self.notes.append(line)

    @property
    def unsupported_list(self) -> tuple[str, ...]:
        return tuple(self._unsupported.values())

    # ------------------------------------------------------------------ XML helpers

    def is_xtce(self, element: Xml) -> bool:
        return isinstance(element.tag, str) and (etree.QName(element).namespace or "") == self.ns

    def kids(self, element: Xml, name: str | None = None) -> list[Xml]:
        return [child for child in element if self.is_xtce(child)
                and (name is None or etree.QName(child).localname == name)]

    def kid(self, element: Xml | None, *path: str) -> Xml | None:
        for name in path:
            if element is None:
                return None
            found = self.kids(element, name)
            element = found[0] if found else None
        return element

    def text(self, element: Xml | None) -> str:
        return (element.text or "").strip() if element is not None else ""

    def description(self, element: Xml) -> str:
        long = self.text(self.kid(element, "LongDescription"))
        return long or (element.get("shortDescription") or "").strip()

    def ancillary(self, element: Xml) -> dict[str, str]:
        found = self.kid(element, "AncillaryDataSet")
        return {item.get("name", ""): self.text(item)
                for item in (self.kids(found, "AncillaryData") if found is not None else [])}

    def alias(self, element: Xml, namespace: str = "isls") -> str:
        found = self.kid(element, "AliasSet")
        for item in self.kids(found, "Alias") if found is not None else []:
            if item.get("nameSpace") == namespace:
                return str(item.get("alias", ""))
        return ""

    def integer(self, element: Xml, system: _System, text: str | None, what: str,
                default: int | None = None) -> int:
        if text is None or not text.strip():
            if default is not None:
                return default
            self.problem(element, system, f"{what} is missing")
            return 0
        try:
            return int(text.strip())
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            if value.is_integer():
                return int(value)
            self.problem(element, system, f"{what} must be an integer, got {text.strip()!r}")
            return 0

    def number(self, element: Xml, system: _System, text: str | None, what: str) -> float:
        try:
            value = float((text or "").strip())
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            self.problem(element, system, f"{what} must be a finite number, got {text!r}")
            return 0.0
        return value

    # ------------------------------------------------------------------ the tree

    def _index(self, element: Xml, parent: _System | None) -> _System:
        name = element.get("name") or ""
        path = f"{parent.path if parent else ''}/{name}"
        system = _System(element, name, path, parent)
        if not name:
            self.problem(element, system, "a SpaceSystem needs a name")
        for child in self.kids(element):
            tag = self.tag(child)
            if tag == "TelemetryMetaData":
                self._index_telemetry(child, system)
            elif tag == "SpaceSystem":
                sub = self._index(child, system)
                if sub.name in system.children:
                    self.problem(child, system, f"a second SpaceSystem named {sub.name!r}")
                system.children.setdefault(sub.name, sub)
            elif tag == "CommandMetaData":
                self._commands.append((child, system))
            elif tag == "ServiceSet":
                self.unsupported(child, system, "services are not supported: ignored")
            elif tag not in _IGNORED:
                self.unsupported(child, system, "not supported: ignored")
        return system

    def _index_telemetry(self, element: Xml, system: _System) -> None:
        tables = {"ParameterTypeSet": system.types, "ParameterSet": system.parameters,
                  "ContainerSet": system.containers}
        for child in self.kids(element):
            tag = self.tag(child)
            table = tables.get(tag)
            if table is None:
                if tag == "AlgorithmSet":
                    for algorithm in self.kids(child):
                        self.unsupported(algorithm, system, "algorithms are not supported: "
                                         "their output parameters are not computed")
                else:
                    self.unsupported(child, system, "not supported: ignored")
                continue
            for item in self.kids(child):
                name = item.get("name")
                wanted = {"ParameterSet": "Parameter", "ContainerSet": "SequenceContainer"}
                if self.tag(item) != wanted.get(tag, self.tag(item)):
                    self.unsupported(item, system, "not supported: ignored")
                    continue
                if not name:
                    self.problem(item, system, "needs a name")
                elif name in table:
                    self.problem(item, system, f"a second definition named {name!r} in "
                                 f"{system.path}")
                else:
                    table[name] = item

    def find(self, system: _System, ref: str, table: str) -> tuple[_System, Xml] | None:
        """A definition by XTCE reference: a name (this system, then its ancestors), a
        relative path (``sub/name``, ``../name``) or an absolute one (``/Root/name``)."""
        head, _, name = ref.strip().rpartition("/")
        if ref.startswith("/"):
            parts = head.split("/")[1:]
            if not parts or parts[0] != self.root.name:
                return None
            starts: list[_System] = [self.root]
            parts = parts[1:]
        else:
            parts = head.split("/") if head else []
            starts = list(system.lineage())
        for start in starts:
            current: _System | None = start
            for part in parts:
                if current is None:
                    break
                if part == "..":
                    current = current.parent
                elif part not in (".", ""):
                    current = current.children.get(part)
            if current is not None:
                found = getattr(current, table).get(name)
                if found is not None:
                    return current, found
            if not parts and start is not system:
                continue
        return None

    def find_parameter(self, system: _System, ref: str
                       ) -> tuple[_System, Xml, tuple[str, ...]] | None:
        """A parameter reference, possibly to an aggregate member (``p.member`` as XTCE
        1.2 writes it, ``p/member`` as Yamcs does)."""
        ref = ref.strip()
        if "[" in ref:
            return None
        # "." separates members only in the last segment: "../x" is a path.
        path, slash, last = ref.rpartition("/")
        name, *dotted = last.split(".")
        head = f"{path}{slash}{name}"
        found = self.find(system, head, "parameters")
        if found is not None:
            return found[0], found[1], tuple(dotted)
        parts = head.split("/")
        for cut in range(len(parts) - 1, 0, -1):
            found = self.find(system, "/".join(parts[:cut]), "parameters")
            if found is not None:
                return found[0], found[1], (*parts[cut:], *dotted)
        return None

    # ------------------------------------------------------------------ types

    def type_of(self, system: _System, parameter: Xml) -> _Type | None:
        ref = parameter.get("parameterTypeRef")
        if ref is None:
            self.problem(parameter, system, "needs a parameterTypeRef")
            return None
        found = self.find(system, ref, "types")
        if found is None:
            self.problem(parameter, system, f"parameterTypeRef {ref!r} names no parameter type "
                         f"(looked up in {system.path} and its ancestors)")
            return None
        return self.parse_type(*found)

    def parse_type(self, system: _System, element: Xml) -> _Type:
        key = (system.path, element.get("name", ""))
        known = self._types.get(key)
        if known is not None:
            return known
        if key in self._resolving:
            self.problem(element, system, "the type contains itself")
            return _Type(element, system, "invalid", problem="the type contains itself")
        self._resolving.add(key)
        try:
            parsed = self._parse_type(system, element)
        finally:
            self._resolving.discard(key)
        if parsed.problem:
            self.unsupported(element, system, parsed.problem)
        self._types[key] = parsed
        return parsed

    def _parse_type(self, system: _System, element: Xml) -> _Type:
        tag = self.tag(element)
        parsers = {
            "IntegerParameterType": self._integer_type,
            "FloatParameterType": self._float_type,
            "EnumeratedParameterType": self._enum_type,
            "BooleanParameterType": self._boolean_type,
            "StringParameterType": self._string_type,
            "BinaryParameterType": self._binary_type,
            "AbsoluteTimeParameterType": self._time_type,
            "RelativeTimeParameterType": self._time_type,
            "AggregateParameterType": self._aggregate_type,
            "ArrayParameterType": self._array_type,
        }
        parser = parsers.get(tag)
        if parser is None:
            return _Type(element, system, "invalid", problem=f"{tag} is not supported")
        parsed = parser(system, element)
        handled = {"IntegerDataEncoding", "FloatDataEncoding", "StringDataEncoding",
                   "BinaryDataEncoding", "EnumerationList", "DefaultAlarm", "ContextAlarmList",
                   "Encoding", "ReferenceTime", "MemberList", "DimensionList",
                   "DefaultCalibrator", "ContextCalibratorList", *_IGNORED}
        for child in self.kids(element):
            if self.tag(child) not in handled:
                reason = ("valid ranges are not checked" if self.tag(child) == "ValidRange"
                          else "not supported: ignored")
                self.unsupported(child, system, reason)
        if not parsed.problem and parsed.kind not in ("aggregate", "array"):
            parsed = replace(parsed, unit=self._unit(system, element) or parsed.unit,
                             **self._alarms(system, element, parsed))
        return parsed

    def _unit(self, system: _System, element: Xml) -> str:
        listing = self.kid(element, "UnitSet")
        units = [self.text(u) for u in self.kids(listing, "Unit")] if listing is not None else []
        units = [u for u in units if u]
        if len(units) > 1:
            self.note(element, system, f"units {units} joined as {' '.join(units)!r}")
        return " ".join(units)

    # numeric encodings -------------------------------------------------------------

    def _integer_encoding(self, system: _System, encoding: Xml) -> tuple[dict[str, Any], str]:
        """(fields of _Type, problem) of an IntegerDataEncoding."""
        bits = self.integer(encoding, system, encoding.get("sizeInBits"), "sizeInBits",
                            default=8)
        scheme = encoding.get("encoding", "unsigned")
        if scheme not in ("unsigned", "twosComplement", "twosCompliment", "signed"):
            return {}, f"integer encoding {scheme!r} is not supported (unsigned and " \
                       "twosComplement are)"
        if not 1 <= bits <= MAX_NUMBER_BITS:
            return {}, f"an integer of {bits} bits is not supported (1..64)"
        order = self._byte_order(encoding, bits)
        if order is None:
            return {}, f"byte order {encoding.get('byteOrder')!r} of a {bits}-bit integer is " \
                       "not supported (little endian needs whole octets)"
        calibration = self._calibrator(system, encoding)
        return {"bits": bits, "ptype": "unsigned" if scheme == "unsigned" else "signed",
                "byte_order": order, "calibration": calibration}, ""

    def _byte_order(self, encoding: Xml, bits: int) -> str | None:
        order = encoding.get("byteOrder", "mostSignificantByteFirst")
        if order == "mostSignificantByteFirst" or bits <= 8:
            return "big"
        if order == "leastSignificantByteFirst" and bits % 8 == 0:
            return "little"
        return None

    def _calibrator(self, system: _System, encoding: Xml) -> dict[str, Any] | None:
        context = self.kid(encoding, "ContextCalibratorList")
        if context is not None:
            self.unsupported(context, system, "context calibrators are not supported: the "
                             "default calibrator is applied in every context")
        default = self.kid(encoding, "DefaultCalibrator")
        if default is None:
            return None
        calibrators = self.kids(default)
        if not calibrators:
            return None
        calibrator = calibrators[0]
        tag = self.tag(calibrator)
        if tag == "PolynomialCalibrator":
            terms: dict[int, float] = {}
            for term in self.kids(calibrator, "Term"):
                exponent = self.integer(term, system, term.get("exponent"), "exponent")
                if exponent < 0:
                    self.problem(term, system, "a polynomial exponent must be >= 0")
                    continue
                terms[exponent] = terms.get(exponent, 0.0) + self.number(
                    term, system, term.get("coefficient"), "coefficient")
            if not terms:
                return None
            return {"polynomial": [terms.get(power, 0.0) for power in range(max(terms) + 1)]}
        if tag == "SplineCalibrator":
            order = self.integer(calibrator, system, calibrator.get("order"), "order",
                                 default=1)  # XTCE's default order is 1 (linear)
            points = [(self.number(p, system, p.get("raw"), "raw"),
                       self.number(p, system, p.get("calibrated"), "calibrated"))
                      for p in self.kids(calibrator, "SplinePoint")]
            points.sort()
            if order != 1:
                self.unsupported(calibrator, system, f"a spline of order {order} is not "
                                 "supported (order 1, linear, is): the raw value is imported")
                return None
            if len(points) < 2 or any(b[0] <= a[0] for a, b in itertools.pairwise(points)):
                self.unsupported(calibrator, system, "a spline needs two or more points of "
                                 "distinct raw values: the raw value is imported")
                return None
            if calibrator.get("extrapolate", "false").lower() == "true":
                self.note(calibrator, system, "extrapolate=true: outside its points the "
                          "table holds the end values")
            return {"table": [[raw, eng] for raw, eng in points]}
        self.unsupported(calibrator, system, f"{tag} is not supported: the raw value is "
                         "imported")
        return None

    def _encoding_of(self, system: _System, element: Xml, allowed: tuple[str, ...]
                     ) -> tuple[Xml | None, str]:
        for tag in ("IntegerDataEncoding", "FloatDataEncoding", "StringDataEncoding",
                    "BinaryDataEncoding"):
            found = self.kid(element, tag)
            if found is not None:
                if tag not in allowed:
                    return None, f"a {self.tag(element)} with a {tag} is not supported"
                return found, ""
        return None, "no data encoding: its size in the packet is unknown"

    def _integer_type(self, system: _System, element: Xml) -> _Type:
        encoding, problem = self._encoding_of(system, element, ("IntegerDataEncoding",))
        if encoding is None:
            return _Type(element, system, "integer", problem=problem)
        values, problem = self._integer_encoding(system, encoding)
        return _Type(element, system, "integer", problem=problem, **values)

    def _float_type(self, system: _System, element: Xml) -> _Type:
        encoding, problem = self._encoding_of(system, element, ("FloatDataEncoding",
                                                                "IntegerDataEncoding"))
        if encoding is None:
            return _Type(element, system, "float", problem=problem)
        if self.tag(encoding) == "IntegerDataEncoding":
            values, problem = self._integer_encoding(system, encoding)
            if not problem and values["calibration"] is None:
                self.note(element, system, "a float of an integer encoding without "
                          "calibrator: the integer as it is")
            return _Type(element, system, "float", problem=problem, **values)
        bits = self.integer(encoding, system, encoding.get("sizeInBits"), "sizeInBits",
                            default=32)
        scheme = encoding.get("encoding", "IEEE754_1985")
        if scheme not in ("IEEE754_1985", "IEEE754"):
            return _Type(element, system, "float", problem=f"float encoding {scheme!r} is not "
                         "supported (IEEE754_1985 is)")
        if bits not in (32, 64):
            return _Type(element, system, "float", problem=f"a {bits}-bit float is not "
                         "supported (IEEE 754 32 or 64 bits are)")
        order = self._byte_order(encoding, bits) or "big"
        return _Type(element, system, "float", ptype="float", bits=bits, byte_order=order,
                     calibration=self._calibrator(system, encoding))

    def _enum_type(self, system: _System, element: Xml) -> _Type:
        encoding, problem = self._encoding_of(system, element, ("IntegerDataEncoding",))
        if encoding is None:
            return _Type(element, system, "enum", problem=problem)
        values, problem = self._integer_encoding(system, encoding)
        if problem:
            return _Type(element, system, "enum", problem=problem)
        if values["calibration"] is not None:
            self.note(encoding, system, "calibrator of an enumeration ignored: states are "
                      "looked up by raw value")
        bits, signed = values["bits"], values["ptype"] == "signed"
        states: dict[int | str, str] = {}
        taken: list[tuple[int, int, str]] = []
        listing = self.kid(element, "EnumerationList")
        for item in self.kids(listing, "Enumeration") if listing is not None else []:
            label = (item.get("label") or "").strip()
            low = self.integer(item, system, item.get("value"), "value")
            high = self.integer(item, system, item.get("maxValue"), "maxValue", default=low)
            if not label:
                self.note(item, system, "an enumeration without label: left out")
                continue
            for span in self._raw_spans(item, system, low, high, bits, signed):
                if any(a <= span[1] and span[0] <= b for a, b, _ in taken):
                    self.note(item, system, f"values {span[0]}..{span[1]} already have a "
                              "state: the first one kept")
                    continue
                taken.append((*span, label))
                states[span[0] if span[0] == span[1] else f"[{span[0]},{span[1]}]"] = label
        if not states:
            return _Type(element, system, "enum", problem="an enumeration without states")
        return _Type(element, system, "enum", ptype="enum", bits=bits,
                     byte_order=values["byte_order"], states=states)

    def _raw_spans(self, item: Xml, system: _System, low: int, high: int, bits: int,
                   signed: bool) -> list[tuple[int, int]]:
        """Enumeration values as raw unsigned spans (our enums read the raw bits)."""
        bottom, top = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed \
            else (0, (1 << bits) - 1)
        if low > high or low < bottom or high > top:
            self.note(item, system, f"values {low}..{high} do not fit the {bits}-bit "
                      "encoding: left out")
            return []
        wrap = 1 << bits
        if high < 0:
            self.note(item, system, "negative values taken as their two's complement")
            return [(low + wrap, high + wrap)]
        if low < 0:
            self.note(item, system, "negative values taken as their two's complement")
            return [(low + wrap, wrap - 1), (0, high)]
        return [(low, high)]

    def _boolean_type(self, system: _System, element: Xml) -> _Type:
        encoding, problem = self._encoding_of(system, element, ("IntegerDataEncoding",))
        if encoding is None:
            return _Type(element, system, "boolean", problem=problem)
        values, problem = self._integer_encoding(system, encoding)
        if problem:
            return _Type(element, system, "boolean", problem=problem)
        return _Type(element, system, "boolean", ptype="boolean", bits=values["bits"],
                     byte_order=values["byte_order"])

    def _sized(self, system: _System, holder: Xml) -> tuple[int, _Size | None, str]:
        """(fixed bits, dynamic size, problem) of a SizeInBits / Variable element."""
        for path in (("SizeInBits", "Fixed", "FixedValue"), ("SizeInBits", "FixedValue")):
            fixed = self.kid(holder, *path)
            if fixed is not None:
                return self.integer(fixed, system, fixed.text, "FixedValue"), None, ""
        for path in (("SizeInBits", "DynamicValue"), ("SizeInBits", "Fixed", "DynamicValue"),
                     ("Variable", "DynamicValue")):
            dynamic = self.kid(holder, *path)
            if dynamic is not None:
                size = self._dynamic(system, dynamic)
                return (0, size, "") if size is not None else (
                    0, None, "a DynamicValue without ParameterInstanceRef")
        return 0, None, "a size given by a DiscreteLookupList or not at all is not supported"

    def _dynamic(self, system: _System, dynamic: Xml) -> _Size | None:
        ref = self.kid(dynamic, "ParameterInstanceRef")
        if ref is None or not ref.get("parameterRef"):
            return None
        adjust = self.kid(dynamic, "LinearAdjustment")
        slope = self.number(adjust, system, adjust.get("slope", "1"), "slope") \
            if adjust is not None else 1.0
        intercept = self.number(adjust, system, adjust.get("intercept", "0"), "intercept") \
            if adjust is not None else 0.0
        if ref.get("instance", "0") != "0":
            self.unsupported(ref, system, "an instance other than 0 is taken as 0")
        return _Size(dynamic, system, ref.get("parameterRef"), slope, intercept,
                     ref.get("useCalibratedValue", "true").lower() == "true")

    def _string_type(self, system: _System, element: Xml) -> _Type:
        encoding, problem = self._encoding_of(system, element, ("StringDataEncoding",))
        if encoding is None:
            return _Type(element, system, "string", problem=problem)
        charset = encoding.get("encoding", "UTF-8")
        ptype = "string"
        if charset not in ("UTF-8", "US-ASCII", "ISO-8859-1", "Windows-1252"):
            self.note(encoding, system, f"{charset} text: stored as binary (hex), our strings "
                      "are octets shown as UTF-8")
            ptype = "binary"
        elif charset != "UTF-8" and charset != "US-ASCII":
            self.note(encoding, system, f"{charset} text: octets above 127 are shown as \\xNN")
        bits, size, problem = self._sized(system, encoding)
        sized = self.kid(encoding, "SizeInBits") if self.kid(encoding, "SizeInBits") \
            is not None else self.kid(encoding, "Variable")
        if sized is not None and self.kid(sized, "LeadingSize") is not None:
            return _Type(element, system, "string", problem="a string with a leading size "
                         "is not supported")
        if sized is not None and self.kid(sized, "TerminationChar") is not None:
            if size is not None or bits == 0:
                return _Type(element, system, "string", problem="a string ended by a "
                             "termination character is not supported")
            self.note(sized, system, "termination character in a fixed-size string: trailing "
                      "NULs are dropped, text after a NUL inside the field is kept")
        if problem:
            return _Type(element, system, "string", problem=problem)
        if size is None and (bits <= 0 or bits % 8):
            return _Type(element, system, "string", problem=f"a string of {bits} bits is not "
                         "whole octets")
        return _Type(element, system, "string", ptype=ptype, bits=bits or 8, size=size)

    def _binary_type(self, system: _System, element: Xml) -> _Type:
        encoding, problem = self._encoding_of(system, element, ("BinaryDataEncoding",))
        if encoding is None:
            return _Type(element, system, "binary", problem=problem)
        if self.kid(encoding, "FromBinaryTransformAlgorithm") is not None:
            return _Type(element, system, "binary", problem="a binary decoded by an algorithm "
                         "is not supported")
        bits, size, problem = self._sized(system, encoding)
        if problem:
            return _Type(element, system, "binary", problem=problem)
        if size is None and bits % 8:
            if bits <= MAX_NUMBER_BITS:
                self.note(element, system, f"a {bits}-bit binary (not whole octets): imported "
                          "as an unsigned integer")
                return _Type(element, system, "binary", ptype="unsigned", bits=bits)
            return _Type(element, system, "binary", problem=f"a binary of {bits} bits is not "
                         "whole octets")
        return _Type(element, system, "binary", ptype="binary", bits=bits or 8, size=size)

    def _time_type(self, system: _System, element: Xml) -> _Type:
        absolute = self.tag(element) == "AbsoluteTimeParameterType"
        holder = self.kid(element, "Encoding")
        if holder is None:
            return _Type(element, system, "time", problem="a time without Encoding")
        encoding, problem = self._encoding_of(system, holder, ("IntegerDataEncoding",
                                                               "FloatDataEncoding"))
        if encoding is None:
            return _Type(element, system, "time", problem=problem)
        if self.tag(encoding) == "IntegerDataEncoding":
            values, problem = self._integer_encoding(system, encoding)
        else:
            bits = self.integer(encoding, system, encoding.get("sizeInBits"), "sizeInBits",
                                default=32)
            values = {"bits": bits, "ptype": "float", "byte_order": self._byte_order(
                encoding, bits) or "big", "calibration": None}
            problem = "" if bits in (32, 64) else f"a {bits}-bit float is not supported"
        if problem:
            return _Type(element, system, "time", problem=problem)
        if values["calibration"] is not None:
            return _Type(element, system, "time", problem="a calibrator inside a time "
                         "encoding is not supported (scale and offset are)")
        scale = self.number(holder, system, holder.get("scale", "1"), "scale")
        offset = self.number(holder, system, holder.get("offset", "0"), "offset")
        units = (holder.get("units") or "seconds").strip()
        unit = "s" if units.lower() in ("seconds", "second", "s", "sec") else units
        reference = self.kid(element, "ReferenceTime")
        epoch = self.text(self.kid(reference, "Epoch"))
        after = self.kid(reference, "OffsetFrom")
        if absolute and epoch:
            meaning = f"time in {unit} since the epoch {epoch}"
        elif absolute and after is not None:
            meaning = f"time in {unit} after parameter {after.get('parameterRef')}"
        else:
            meaning = f"relative time in {unit}" if not absolute \
                else f"time in {unit}, epoch not given"
        values["calibration"] = {"polynomial": [offset, scale]}
        return _Type(element, system, "time", absolute=absolute, epoch=epoch, scale=scale,
                     offset=offset, unit=unit, description=meaning, **values)

    def _aggregate_type(self, system: _System, element: Xml) -> _Type:
        listing = self.kid(element, "MemberList")
        members: list[_Member] = []
        for member in self.kids(listing, "Member") if listing is not None else []:
            ref = member.get("typeRef", "")
            found = self.find(system, ref, "types")
            if found is None:
                self.problem(member, system, f"typeRef {ref!r} names no parameter type")
                return _Type(element, system, "aggregate", problem="a member's type is missing")
            member_type = self.parse_type(*found)
            if member_type.problem:
                return _Type(element, system, "aggregate", problem=f"member {member.get('name')!r}"
                             f": {member_type.problem}")
            members.append(_Member(member.get("name", ""), member_type,
                                   self.description(member)))
        if not members:
            return _Type(element, system, "aggregate", problem="an aggregate without members")
        return _Type(element, system, "aggregate", members=tuple(members))

    def _array_type(self, system: _System, element: Xml) -> _Type:
        ref = element.get("arrayTypeRef", "")
        found = self.find(system, ref, "types")
        if found is None:
            self.problem(element, system, f"arrayTypeRef {ref!r} names no parameter type")
            return _Type(element, system, "array", problem="its element type is missing")
        element_type = self.parse_type(*found)
        if element_type.problem:
            return _Type(element, system, "array", problem=f"its element type: "
                         f"{element_type.problem}")
        if element_type.kind in ("aggregate", "array", "string", "binary") \
                or element_type.ptype in ("string", "binary"):
            return _Type(element, system, "array", problem=f"an array of {element_type.kind} is "
                         "not supported (arrays of numbers, enums and booleans are)")
        listing = self.kid(element, "DimensionList")
        dimensions = self.kids(listing, "Dimension") if listing is not None else []
        if not dimensions:
            return _Type(element, system, "array", problem="an array without DimensionList "
                         "(XTCE 1.1 sizes arrays in the container) is not supported")
        count = 1
        for dimension in dimensions:
            start = self.kid(dimension, "StartingIndex", "FixedValue")
            end = self.kid(dimension, "EndingIndex")
            if start is None or end is None:
                return _Type(element, system, "array", problem="a dimension needs a fixed "
                             "StartingIndex and an EndingIndex")
            first = self.integer(start, system, start.text, "StartingIndex")
            fixed = self.kid(end, "FixedValue")
            if fixed is None:
                dynamic = self.kid(end, "DynamicValue")
                size = self._dynamic(system, dynamic) if dynamic is not None else None
                if size is None or len(dimensions) > 1:
                    return _Type(element, system, "array", problem="an array whose size comes "
                                 "from a lookup or has several dimensions of which one is "
                                 "dynamic is not supported")
                return _Type(element, system, "array", element_type=element_type,
                             count_size=size, start_index=first)
            count *= self.integer(fixed, system, fixed.text, "EndingIndex") - first + 1
        if len(dimensions) > 1:
            self.note(element, system, f"{len(dimensions)}-dimensional array flattened in "
                      "order, last index fastest")
        if count < 1 or count * max(element_type.bits, 1) > MAX_PACKET_BITS:
            return _Type(element, system, "array", problem=f"an array of {count} elements "
                         "does not fit in a CCSDS packet")
        return _Type(element, system, "array", element_type=element_type, count=count)

    # alarms ------------------------------------------------------------------------

    def _alarms(self, system: _System, element: Xml, parsed: _Type) -> dict[str, Any]:
        """limits, persistence and context alarms of a numeric type."""
        out: dict[str, Any] = {}
        default = self.kid(element, "DefaultAlarm")
        contexts = self.kid(element, "ContextAlarmList")
        numeric = parsed.ptype in ("unsigned", "signed", "float") and parsed.kind != "time"
        if not numeric:
            # Our export gives an enum or boolean's persistence as a DefaultAlarm that
            # holds nothing else.
            if default is not None and not self.kids(default):
                out["persistence"] = self._violations(system, default)
            for holder in (default if out.get("persistence") is None else None, contexts):
                if holder is not None:
                    self.unsupported(holder, system, f"alarms of a {parsed.kind} are not "
                                     "supported (limits are numeric)")
            return out
        if default is not None:
            limits = self._ranges(system, default)
            if limits is not None:
                out["limits"] = limits
            out["persistence"] = self._violations(system, default)
        alarms: list[_ContextAlarm] = []
        for context in self.kids(contexts, "ContextAlarm") if contexts is not None else []:
            alarm = self._context_alarm(system, context, out.get("persistence", 1))
            if alarm is not None:
                alarms.append(alarm)
        out["context_alarms"] = tuple(alarms)
        return out

    def _violations(self, system: _System, alarm: Xml) -> int:
        for attribute in ("maxViolations", "minConformance"):
            if alarm.get(attribute) is not None:
                self.note(alarm, system, f"{attribute} ignored (our persistence is the "
                          "number of samples out before the level changes)")
        persistence = self.integer(alarm, system, alarm.get("minViolations"), "minViolations",
                                   default=1)
        return max(1, min(persistence, 10_000))

    def _ranges(self, system: _System, alarm: Xml) -> dict[str, list[float | None]] | None:
        for tag in ("ChangeAlarmRanges", "AlarmMultiRanges", "CustomAlarm"):
            found = self.kid(alarm, tag)
            if found is not None:
                self.unsupported(found, system, "not supported: only static ranges become limits")
        ranges = self.kid(alarm, "StaticAlarmRanges")
        if ranges is None:
            return None
        limits: dict[str, list[float | None]] = {}
        for level, tags in (("yellow", _YELLOW), ("red", _RED)):
            present = [r for tag in tags for r in self.kids(ranges, tag)]
            if not present:
                continue
            chosen = present[0]
            for other in present[1:]:
                self.note(other, system, f"{self.tag(other)} ignored: {self.tag(chosen)} is "
                          f"taken as the {level} limits")
            if self.tag(chosen) not in ("WarningRange", "CriticalRange"):
                self.note(chosen, system, f"{self.tag(chosen)} taken as the {level} limits")
            low, high = self._bound(system, chosen, "min"), self._bound(system, chosen, "max")
            if low is not None or high is not None:
                limits[level] = [low, high]
        problem = self._limits_problem(limits)
        if problem:
            self.unsupported(ranges, system, f"{problem}: these limits are left out")
            return None
        return limits or None

    def _bound(self, system: _System, element: Xml, side: str) -> float | None:
        inclusive, exclusive = element.get(f"{side}Inclusive"), element.get(f"{side}Exclusive")
        if exclusive is not None:
            # Ours: a value equal to a limit is within it (control_center.monitoring.limits).
            self.note(element, system, f"{side}Exclusive taken as inclusive: a value equal to "
                      "the limit is within it")
        text = inclusive if inclusive is not None else exclusive
        return None if text is None else self.number(element, system, text, f"{side} limit")

    @staticmethod
    def _limits_problem(limits: dict[str, list[float | None]]) -> str:
        yellow = limits.get("yellow", [None, None])
        red = limits.get("red", [None, None])
        for level, (low, high) in (("yellow", yellow), ("red", red)):
            if low is not None and high is not None and low >= high:
                return f"the {level} range is empty ({low}..{high})"
        if yellow[0] is not None and red[0] is not None and red[0] > yellow[0]:
            return "the red low limit is above the yellow one"
        if yellow[1] is not None and red[1] is not None and red[1] < yellow[1]:
            return "the red high limit is below the yellow one"
        return ""

    def _context_alarm(self, system: _System, context: Xml, persistence: int
                       ) -> _ContextAlarm | None:
        match = self.kid(context, "ContextMatch")
        terms = self._conditions(system, match) if match is not None else None
        if isinstance(terms, str) or not terms or len(terms) != 1:
            reason = terms if isinstance(terms, str) else "it does not test one parameter"
            self.unsupported(context, system, f"a context alarm is imported when it tests "
                             f"one enumerated parameter for one or more states; {reason}: "
                             "left out")
            return None
        ref, alternatives = terms[0]
        mode = self.find_parameter(system, ref)
        if mode is None:
            self.problem(match, system, f"parameterRef {ref!r} names no parameter")
            return None
        operators = {op for op, _, _ in alternatives}
        if operators != {"=="}:
            self.unsupported(context, system, "a context alarm tests its mode with ==: left out")
            return None
        ranges = self._ranges(system, context)
        if ranges is None:
            return None
        if self._violations(system, context) != persistence:
            self.note(context, system, "minViolations of a context alarm ignored: the "
                      "default alarm's (the parameter's persistence) applies")
        return _ContextAlarm(context, system, mode,
                             tuple((value, calibrated) for _, value, calibrated in alternatives),
                             ranges)

    # conditions --------------------------------------------------------------------

    def _conditions(self, system: _System, holder: Xml
                    ) -> list[tuple[str, list[tuple[str, str, bool]]]] | str:
        """A restriction or context match as an AND of groups, each an OR of tests of one
        parameter: ``[(parameterRef, [(operator, value, calibrated), ...]), ...]``; or why
        it cannot be read that way."""
        groups: list[list[tuple[str, str, str, bool]]] = []
        for child in self.kids(holder):
            tag = self.tag(child)
            if tag == "Comparison":
                groups.append([self._comparison(child)])
            elif tag == "ComparisonList":
                groups.extend([self._comparison(c)] for c in self.kids(child, "Comparison"))
            elif tag == "BooleanExpression":
                found = self._boolean(child)
                if isinstance(found, str):
                    return found
                groups.extend(found)
            else:
                return f"a <{tag}> cannot be read as comparisons"
        out: list[tuple[str, list[tuple[str, str, bool]]]] = []
        for group in groups:
            if len({ref for ref, _, _, _ in group}) != 1:
                return "an OR across different parameters cannot be expressed"
            out.append((group[0][0], [(op, value, calibrated)
                                      for _, op, value, calibrated in group]))
        return out

    def _comparison(self, element: Xml) -> tuple[str, str, str, bool]:
        return (element.get("parameterRef", ""), element.get("comparisonOperator", "=="),
                element.get("value", ""),
                element.get("useCalibratedValue", "true").lower() == "true")

    def _condition(self, element: Xml) -> tuple[str, str, str, bool] | str:
        refs = self.kids(element, "ParameterInstanceRef")
        if len(refs) != 1:
            return ""  # compares two parameters
        return (refs[0].get("parameterRef", ""),
                self.text(self.kid(element, "ComparisonOperator")) or "==",
                self.text(self.kid(element, "Value")),
                refs[0].get("useCalibratedValue", "true").lower() == "true")

    def _boolean(self, element: Xml) -> list[list[tuple[str, str, str, bool]]] | str:
        """A BooleanExpression as an AND of ORs of conditions."""
        children = self.kids(element)
        if len(children) != 1:
            return "an empty BooleanExpression"
        return self._and(children[0])

    def _and(self, element: Xml) -> list[list[tuple[str, str, str, bool]]] | str:
        tag = self.tag(element)
        if tag == "Condition":
            condition = self._condition(element)
            return [[condition]] if not isinstance(condition, str) else \
                "a condition comparing two parameters cannot be expressed"
        if tag == "ANDedConditions":
            out: list[list[tuple[str, str, str, bool]]] = []
            for child in self.kids(element):
                found = self._and(child)
                if isinstance(found, str):
                    return found
                out.extend(found)
            return out
        if tag == "ORedConditions":
            alternatives: list[tuple[str, str, str, bool]] = []
            for child in self.kids(element):
                found = self._and(child)
                if isinstance(found, str):
                    return found
                if len(found) != 1:
                    return "an AND inside an OR cannot be expressed"
                alternatives.extend(found[0])
            return [alternatives]
        return f"a <{tag}> cannot be read as conditions"

    # ------------------------------------------------------------------ packets

    def run(self) -> dict[str, Any]:
        self._report_commands()
        for system in self._systems():
            for element in system.types.values():
                self.parse_type(system, element)
            for element in system.parameters.values():
                self.type_of(system, element)
        built: list[tuple[_Packet, dict[str, Any]]] = []
        for system, element in self._packet_containers():
            try:
                built.append(self._checked(*self._build(system, element)))
            except _Skip as skip:
                if skip.listed and skip.element is not element:
                    self.unsupported(skip.element, skip.system, skip.reason)
                if skip.note_only:
                    self.note(element, system, f"packet skipped: {skip.reason}")
                else:
                    self.unsupported(element, system, f"packet skipped: {skip.reason}")
        built = self._shared_apids(self._versions(built))
        for packet, _ in built:
            self._remember(packet)
        packets = [document for _, document in built]
        self._derived(packets)
        for packet, document in built:
            self._limit_sets(packet, document)
        for placed, item in self._pending_sets:
            self._resolve_sets(placed, item)
        self._report_unused()
        return self._document(packets)

    def _systems(self) -> Iterator[_System]:
        pending = [self.root]
        while pending:
            system = pending.pop(0)
            yield system
            pending.extend(system.children.values())

    def _report_commands(self) -> None:
        """One line for the whole command side: this is a telemetry import."""
        listings = [(listing, system) for element, system in self._commands
                    for listing in self.kids(element, "MetaCommandSet")]
        commands = [command for listing, _ in listings for command in self.kids(listing)
                    if command.get("abstract", "false").lower() != "true"]
        if listings:
            self.unsupported(listings[0][0], listings[0][1], f"{len(commands)} commands "
                             "skipped: this is a telemetry system")

    def _base(self, system: _System, element: Xml) -> tuple[_System, Xml] | None:
        base = self.kid(element, "BaseContainer")
        if base is None:
            return None
        ref = base.get("containerRef", "")
        found = self.find(system, ref, "containers")
        if found is None:
            self.problem(base, system, f"containerRef {ref!r} names no container")
        return found

    def _packet_containers(self) -> list[tuple[_System, Xml]]:
        """The concrete containers nothing inherits from and that are not only parts of
        others (ContainerRefEntry), in file order."""
        containers = {(system.path, name): (system, element) for system in self._systems()
                      for name, element in system.containers.items()}
        inherited: set[tuple[str, str]] = set()
        parts: set[tuple[str, str]] = set()
        for system, element in containers.values():
            base = self._base(system, element)
            if base is not None:
                inherited.add((base[0].path, base[1].get("name")))
            entries = self.kid(element, "EntryList")
            for entry in self.kids(entries) if entries is not None else []:
                # every reference checked here, so that a broken file is reported whole
                if self.tag(entry) == "ParameterRefEntry":
                    ref = entry.get("parameterRef", "")
                    if self.find_parameter(system, ref) is None:
                        self.problem(entry, system, f"parameterRef {ref!r} names no parameter")
                if self.tag(entry) != "ContainerRefEntry":
                    continue
                found = self.find(system, entry.get("containerRef", ""), "containers")
                if found is None:
                    self.problem(entry, system, f"containerRef {entry.get('containerRef')!r} "
                                 "names no container")
                elif self.kid(found[1], "BaseContainer") is None:
                    parts.add((found[0].path, found[1].get("name")))
        out = []
        for key, (system, element) in containers.items():
            if element.get("abstract", "false").lower() == "true" or key in inherited:
                continue
            if key in parts:
                continue
            out.append((system, element))
        out.sort(key=lambda item: item[1].sourceline or 0)
        return out

    def _chain(self, system: _System, element: Xml) -> list[tuple[_System, Xml]]:
        chain = [(system, element)]
        seen = {(system.path, element.get("name"))}
        while True:
            base = self._base(*chain[0])
            if base is None:
                return chain
            key = (base[0].path, base[1].get("name"))
            if key in seen:
                raise _Skip(element, system, "its BaseContainer chain loops")
            seen.add(key)
            chain.insert(0, base)

    def _checked(self, packet: _Packet, document: dict[str, Any]
                 ) -> tuple[_Packet, dict[str, Any]]:
        """The packet as the TMDB reads it, or skipped with what the TMDB says."""
        try:
            parse_tmdb({"spacecraft": "check", "packets": [document]}, "")
        except TmdbError as exc:
            raise _Skip(packet.container, packet.system, "the TMDB cannot hold it: "
                        + "; ".join(p.removeprefix(": ") for p in exc.problems),
                        listed=False) from None
        return packet, document

    def _build(self, system: _System, element: Xml) -> tuple[_Packet, dict[str, Any]]:
        """A packet from its container chain (the header's container first), with the
        TMDB mapping of it."""
        chain = self._chain(system, element)
        packet = _Packet(element, system, element.get("name", ""))
        for index, (link_system, link) in enumerate(chain):
            before = len(packet.fields)
            self._place_entries(packet, link_system, link, 0, ())
            if index:
                self._restrict(packet, link_system, link, before)
        if packet.apid is None:
            raise _Skip(element, system, "no restriction fixes its CCSDS APID (a comparison "
                        "on the 11-bit field at bit 5)")
        return packet, self._packet_document(packet)

    # restrictions ------------------------------------------------------------------

    def _restrict(self, packet: _Packet, system: _System, container: Xml, before: int) -> None:
        """The container's restriction: on the fields before its entries (XTCE), or on
        its own (as the ISLS profile writes ``select``) when none of those is tested."""
        base = self.kid(container, "BaseContainer")
        criteria = self.kid(base, "RestrictionCriteria")
        if criteria is None:
            return
        if self.kid(criteria, "CustomAlgorithm") is not None \
                or self.kid(criteria, "NextContainer") is not None:
            raise _Skip(criteria, system, "a restriction by algorithm or NextContainer is not "
                        "supported")
        terms = self._conditions(system, criteria)
        if isinstance(terms, str):
            raise _Skip(criteria, system, terms)
        for ref, alternatives in terms:
            if "[" in ref:
                raise _Skip(criteria, system, f"{ref}: a test of an array element is not "
                            "supported")
            found = self.find_parameter(system, ref)
            if found is None:
                self.problem(criteria, system, f"parameterRef {ref!r} names no parameter")
                raise _Skip(criteria, system, f"parameterRef {ref!r} names no parameter")
            target = self._field_of(packet, found, before)
            if target is None:
                target = self._field_of(packet, found)
                if target is None:
                    raise _Skip(criteria, system, f"the restriction tests {ref!r}, which is "
                                "not a field of this packet", listed=False)
                self.note(criteria, system, f"the restriction tests {ref!r}, a field of the "
                          "container's own entries: taken as a select (strict XTCE decoders "
                          "test the fields of the base container only)")
            values: frozenset[int] = frozenset()
            for operator, value, calibrated in alternatives:
                allowed = self._allowed(target, operator, value, calibrated)
                if isinstance(allowed, str):
                    raise _Skip(criteria, system, f"{ref} {operator} {value}: {allowed}")
                values |= allowed
                if operator.strip() != "==" and not target.role:
                    shown = sorted(allowed)
                    self.note(criteria, system, f"{ref} {operator} {value}: select lists the "
                              f"raw values {_ranges_text(shown)}")
            self._apply(packet, target, values, criteria, system)

    def _field_of(self, packet: _Packet, found: tuple[_System, Xml, tuple[str, ...]],
                  limit: int | None = None) -> _Field | None:
        key = (found[0].path, found[1].get("name"), found[2])
        matches = [f for f in packet.fields[:limit] if f.key == key]
        return matches[-1] if matches else None  # instance 0: the latest one

    def _allowed(self, target: _Field, operator: str, value: str, calibrated: bool
                 ) -> frozenset[int] | str:
        """The raw values of ``target`` that pass ``target <operator> value``, or why
        that cannot be listed."""
        kind, operator = target.type, operator.strip()
        test = _OPERATORS.get(operator)
        if test is None:
            return f"comparison operator {operator!r} is not supported"
        if kind.ptype not in ("unsigned", "signed", "enum", "boolean") \
                or not target.fixed_size or target.count != 1:
            return "only integer, enumerated and boolean fields can be tested"
        if calibrated and kind.calibration is not None:
            return "a test of a calibrated value is not supported (useCalibratedValue=false " \
                   "tests the raw one)"
        bits = target.bits
        low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if kind.ptype == "signed" \
            else (0, (1 << bits) - 1)
        if calibrated and kind.ptype == "enum":  # the value is a state name
            named = _raws_of(kind.states, value)
            if isinstance(named, str) or not named:
                return named or f"{value!r} is not one of its states"
            if operator == "==":
                return named
            if operator != "!=":
                return "a state name is tested with == or !="
            return self._listed(low, high, lambda raw: raw not in named)
        if calibrated and kind.ptype == "boolean":  # the value is true/false or a label
            if operator not in ("==", "!="):
                return "a boolean is tested with == or !="
            truth = value.strip().lower() in (
                "true", "1", kind.element.get("oneStringValue", "True").lower())
            if truth and bits > 1:
                return "a boolean of several bits tested for true is not supported"
            number = int(truth)
        else:
            parsed = _int_or(value)
            if parsed is None:
                return f"{value!r} is not an integer"
            number = parsed
        if operator == "==":
            return frozenset([number]) if low <= number <= high else frozenset()
        wanted = number
        return self._listed(low, high, lambda raw: bool(test(raw, wanted)))

    @staticmethod
    def _listed(low: int, high: int, passes: Callable[[int], bool]) -> frozenset[int] | str:
        if high - low >= 1 << 20:
            return "the field is too wide to list the values the test allows"
        allowed = frozenset(raw for raw in range(low, high + 1) if passes(raw))
        if len(allowed) > MAX_SELECT_VALUES:
            return f"it allows {len(allowed)} values, more than the {MAX_SELECT_VALUES} a " \
                   "select lists"
        return allowed

    def _apply(self, packet: _Packet, target: _Field, values: frozenset[int], criteria: Xml,
               system: _System) -> None:
        role = target.role
        if role in ("apid", "version", "type"):
            if len(values) != 1:
                raise _Skip(criteria, system, f"the CCSDS {role} must be tested for one value",
                            listed=False)
            (value,) = values
            if role == "type" and value == 1:
                raise _Skip(criteria, system, "a telecommand packet (CCSDS type 1)", listed=False,
                            note_only=True)
            if role == "apid":
                packet.apid = value if packet.apid in (None, value) else -1
            elif role == "version":
                packet.version = value
            if packet.apid == -1:
                raise _Skip(criteria, system, "two different APIDs required", listed=False)
            return
        if role == "secondary_header":
            packet.secondary_header = values if packet.secondary_header is None \
                else packet.secondary_header & values
            return
        if role:
            raise _Skip(criteria, system, f"a restriction on the CCSDS {role.replace('_', ' ')} "
                        "is not supported")
        if target.offset is None:
            raise _Skip(criteria, system, f"{target.qualified} is tested but has no fixed place "
                        "(it follows a variable-size field)", listed=False)
        key = target.qualified
        if key in packet.select:
            values = packet.select[key][1] & values
        if not values:
            raise _Skip(criteria, system, f"no value of {target.qualified} passes its tests",
                        listed=False)
        packet.select[key] = (target, values)

    # entries -----------------------------------------------------------------------

    def _place_entries(self, packet: _Packet, system: _System, container: Xml,
                       container_start: int | None, inside: tuple[str, ...]) -> None:
        """The container's entries, from ``container_start`` (the packet's start, or where
        a ContainerRefEntry puts it); ``inside``: the containers it is part of."""
        here = f"{system.path}/{container.get('name')}"
        if here in inside:
            raise _Skip(container, system, "the container contains itself")
        entries = self.kid(container, "EntryList")
        for entry in self.kids(entries) if entries is not None else []:
            for tag in ("RepeatEntry", "IncludeCondition"):
                found = self.kid(entry, tag)
                if found is not None:
                    raise _Skip(found, system, f"{tag} is not supported: the offsets after "
                                "it would be wrong")
            tag = self.tag(entry)
            if tag == "ParameterRefEntry":
                start = self._location(packet, system, entry, container_start)
                ref = entry.get("parameterRef", "")
                found = self.find_parameter(system, ref)
                if found is None:
                    self.problem(entry, system, f"parameterRef {ref!r} names no parameter")
                    raise _Skip(entry, system, f"parameterRef {ref!r} names no parameter")
                self._place_parameter(packet, entry, start, *found)
            elif tag == "ContainerRefEntry":
                start = self._location(packet, system, entry, container_start)
                found = self.find(system, entry.get("containerRef", ""), "containers")
                if found is None:
                    raise _Skip(entry, system, "its containerRef names no container")
                if self.kid(found[1], "BaseContainer") is not None:
                    raise _Skip(entry, system, "a ContainerRefEntry to a container that "
                                "inherits is not supported")
                packet.position = start
                self._place_entries(packet, found[0], found[1], start, (*inside, here))
            else:
                raise _Skip(entry, system, f"<{tag}> entries are not supported")
            for child in self.kids(entry):
                if self.tag(child) not in ("LocationInContainerInBits", "TimeAssociation",
                                           "AncillaryDataSet"):
                    self.unsupported(child, system, "not supported: ignored")

    def _location(self, packet: _Packet, system: _System, entry: Xml,
                  container_start: int | None) -> int | None:
        location = self.kid(entry, "LocationInContainerInBits")
        reference, value = "previousEntry", 0
        if location is not None:
            reference = location.get("referenceLocation", "previousEntry")
            fixed = self.kid(location, "FixedValue")
            if fixed is None:
                raise _Skip(location, system, "a location that is not a FixedValue is not "
                            "supported")
            value = self.integer(fixed, system, fixed.text, "FixedValue")
        if reference == "containerStart":
            if container_start is None:
                raise _Skip(location, system, "a containerStart location in a container that "
                            "follows a variable-size field")
            return container_start + value
        if reference != "previousEntry":
            raise _Skip(location, system, f"referenceLocation {reference!r} is not supported "
                        "(containerStart and previousEntry are)")
        if packet.position is None:
            if value < 0:
                raise _Skip(location, system, "a negative offset after a variable-size field")
            if value:
                self._add_gap(packet, system, entry, value)
            return None
        return packet.position + value

    def _add_gap(self, packet: _Packet, system: _System, element: Xml, bits: int) -> None:
        spare = _Type(element, system, "integer", ptype="unsigned", bits=bits)
        packet.fields.append(_Field(("", f"gap{len(packet.fields)}", ()), "gap", element,
                                    system, spare, f"spare_{len(packet.fields)}", "", None,
                                    bits, spare=True))

    def _place_parameter(self, packet: _Packet, entry: Xml, start: int | None,
                         system: _System, parameter: Xml, members: tuple[str, ...]) -> None:
        kind = self.type_of(system, parameter)
        if kind is None:
            raise _Skip(entry, system, f"parameter {parameter.get('name')!r} has no type")
        name = parameter.get("name", "")
        description = self.description(parameter)
        for member in members:
            found = next((m for m in kind.members if m.name == member), None)
            if found is None:
                raise _Skip(entry, system, f"{kind.kind} type has no member {member!r}")
            kind, description = found.type, found.description or description
            name = f"{name}_{member}"
        if kind.problem:
            raise _Skip(kind.element, kind.system, kind.problem)
        qualified = f"{system.path}/{parameter.get('name')}" + "".join(f".{m}" for m in members)
        data = self.ancillary(parameter)
        base = _Field((system.path, parameter.get("name", ""), members), qualified, parameter,
                      system, kind, name, description, start, kind.bits, ancillary=data,
                      alias="" if members else self.alias(parameter),
                      spare=data.get("isls.spare") == "true")
        self._place_typed(packet, base, entry)

    def _place_typed(self, packet: _Packet, base: _Field, entry: Xml) -> None:
        kind = base.type
        if kind.kind == "aggregate":
            packet.position = base.offset
            for member in kind.members:
                self._place_typed(packet, replace(
                    base, key=(*base.key[:2], (*base.key[2], member.name)),
                    qualified=f"{base.qualified}.{member.name}", type=member.type,
                    name_hint=f"{base.name_hint}_{member.name}",
                    description=member.description or base.description,
                    offset=packet.position, bits=member.type.bits, alias="",
                    ancillary={}), entry)
            return
        placed = base  # made for this entry: completed in place
        placed.bits = kind.bits
        if kind.kind == "array":
            assert kind.element_type is not None
            placed.type, placed.bits = kind.element_type, kind.element_type.bits
            if kind.count_size is None:
                placed.count = kind.count
            else:
                self._per_packet(packet, placed, "array", kind.count_size, kind.start_index)
        elif kind.size is not None:
            self._per_packet(packet, placed, "octets", kind.size, 0)
        packet.fields.append(placed)
        role = _HEADER_ROLES.get((placed.offset, placed.span)) \
            if placed.offset is not None and placed.offset < PRIMARY_HEADER_BITS else None
        if role and placed.type.ptype in ("unsigned", "enum", "boolean") \
                and placed.type.calibration is None and placed.count == 1:
            placed.role = role
        packet.position = placed.end

    def _per_packet(self, packet: _Packet, placed: _Field, what: str, size: _Size,
                 start_index: int) -> None:
        """How an array's element count (``what`` "array") or a string or binary's size
        ("octets") is read per packet: from an earlier counter, or from the packet length
        (``expand``, once the fields after it are known)."""
        found = self.find_parameter(size.system, size.ref)
        if found is None:
            self.problem(size.element, size.system, f"parameterRef {size.ref!r} names no "
                         "parameter")
            raise _Skip(size.element, size.system, f"its size refers to {size.ref!r}, no "
                        "parameter")
        counter = self._field_of(packet, found)
        if counter is None:
            raise _Skip(size.element, size.system, f"its size comes from {size.ref!r}, not an "
                        "earlier field of this packet")
        placed.dynamic = what
        if counter.role == "packet_length":
            placed.on_length = (size, start_index)
            return
        calibrated = counter.type.calibration is not None and size.calibrated
        if counter.type.ptype != "unsigned" or calibrated or not counter.fixed_size \
                or counter.count != 1:
            raise _Skip(size.element, size.system, f"its size comes from {size.ref!r}, which "
                        "must be an uncalibrated unsigned field of fixed size")
        if what == "array" and (size.slope != 1 or size.intercept != start_index - 1):
            raise _Skip(size.element, size.system, "an array's ending index must be the "
                        "counter minus 1 (intercept -1, slope 1): our count is the counter")
        if what == "octets" and (size.slope != 8 or size.intercept != 0):
            raise _Skip(size.element, size.system, "a dynamic size must be the counter in "
                        "octets (LinearAdjustment slope 8, intercept 0)")
        placed.counter = counter

    # the packet's document ---------------------------------------------------------

    def _packet_document(self, packet: _Packet) -> dict[str, Any]:
        container, system = packet.container, packet.system
        data = self.ancillary(container)
        self._sizes_on_length(packet)
        fields = [f for f in packet.fields if not f.role]
        time = self._time(packet, data, fields)
        if time == "cuc":
            fields = [f for f in fields if f.role != "time"]
        header_bits = CUC_END if time == "cuc" else PRIMARY_HEADER_BITS
        error_control = data.get("isls.error_control") == "crc16"
        crc = [f for f in fields if f.ancillary.get("isls.role") == "crc"]
        if crc:
            fields = [f for f in fields if f not in crc]
            if not error_control:
                self.note(container, system, "a CRC field marked isls.role=crc without "
                          "isls.error_control=crc16: kept out")
        fields = self._regroup_arrays(fields)
        if not fields:
            raise _Skip(container, system, "no parameter besides the headers", listed=False)
        self._name(packet, fields)
        self._overlays(packet, fields, header_bits)
        self._check_places(packet, fields)
        variable = any(f.end is None for f in fields)
        document: dict[str, Any] = {"name": self._packet_name(packet), "apid": packet.apid}
        if packet.select:
            document["select"] = {f.name: _runs(sorted(v)) for f, v in packet.select.values()}
        description = self.description(container)
        if description:
            document["description"] = description
        period = self._period(packet, data)
        if period is not None:
            document["period"] = period
        document["time"] = time
        document["error_control"] = "crc16" if error_control else "none"
        if not variable:
            document["length"] = self._length(packet)
            if "isls.time" not in data or data.get("isls.tail") == "skip":
                # XTCE describes a packet's fields, not its length: real packets run on
                # past them (CTIM's APID 1 by 7 bits of padding, one APID 20 packet by 16
                # octets). Their fields are decoded and the rest, which no definition
                # describes, skipped, as space-packet-parser does; the raw packet stays
                # whole in the archive. Our own exports say whether (isls.tail).
                document["tail"] = "skip"
        document["parameters"] = self._parameter_documents(fields, header_bits)
        return document

    def _sizes_on_length(self, packet: _Packet) -> None:
        """A size on the packet length is ``expand``: the rest of the packet before the
        fields after it; a spare fills the bits it stops short of them."""
        for placed in [f for f in packet.fields if f.on_length is not None]:
            assert placed.on_length is not None
            size, start_index = placed.on_length
            index = packet.fields.index(placed)
            after = packet.fields[index + 1:]
            if placed.offset is None or not all(f.fixed_size for f in after):
                raise _Skip(size.element, size.system, "a size on the packet length needs a "
                            "fixed place and only fields of fixed size after it")
            # The packet is 8*L + 56 bits for a length field L; the size is slope*L +
            # intercept bits, or (slope*L + intercept - first index + 1) elements.
            unit = placed.bits if placed.dynamic == "array" else 1
            if not math.isclose(size.slope * unit, 8, rel_tol=1e-9):
                raise _Skip(size.element, size.system, "a size on the packet length must grow "
                            "by 8 bits per octet of it (slope 8, or 8 / element bits)")
            constant = (size.intercept - start_index + 1) * unit \
                if placed.dynamic == "array" else size.intercept
            exact = PACKET_LENGTH_BIAS_BITS - placed.offset - sum(f.span for f in after) \
                - constant
            gap = round(exact)  # slope 2/3 and the like are written rounded
            if gap < 0 or abs(exact - gap) > 1e-6:
                raise _Skip(size.element, size.system, f"its size on the packet length does "
                            f"not end where the fields after it begin ({-exact:g} bits into "
                            "them)")
            placed.on_length = None  # dynamic, no counter: expand
            if gap:
                self.note(size.element, size.system, f"{placed.qualified} ends {int(gap)} bits "
                          "before the fields after it: a spare fills them")
                spare = _Type(size.element, size.system, "integer", ptype="unsigned",
                              bits=int(gap))
                packet.fields.insert(index + 1, _Field(
                    ("", f"gap{index}", ()), "gap", size.element, size.system, spare,
                    f"spare_{index}", "", None, int(gap), spare=True))

    def _time(self, packet: _Packet, data: dict[str, str], fields: list[_Field]) -> str:
        """``cuc`` when the packet carries our CUC secondary header at octets 6..11."""
        said = data.get("isls.time")
        in_header = [f for f in fields if f.offset is not None
                     and PRIMARY_HEADER_BITS <= f.offset < CUC_END and f.type.kind == "time"]
        if said in ("cuc", "receive"):
            if said == "cuc":
                for f in in_header:
                    f.role = "time"
            return said
        if packet.secondary_header is not None and 1 not in packet.secondary_header:
            return "receive"
        starts = {f.offset: f for f in in_header}
        first = starts.get(PRIMARY_HEADER_BITS)
        if first is None or not first.type.absolute or first.count != 1 \
                or not first.type.epoch.upper().startswith(_TAI_EPOCHS) \
                or first.type.ptype != "unsigned" or first.type.offset != 0 \
                or first.type.byte_order != "big":
            return "receive"
        if first.bits == 48 and first.type.scale == CUC_FINE_SCALE:
            chosen = [first]
        elif first.bits == 32 and first.type.scale == 1 and 80 in starts \
                and starts[80].bits == 16 and starts[80].type.ptype == "unsigned" \
                and starts[80].type.scale in (CUC_FINE_SCALE, 1):
            chosen = [first, starts[80]]
        else:
            return "receive"
        for f in chosen:
            f.role = "time"
        names = ", ".join(f.qualified for f in chosen)
        self.note(packet.container, packet.system, f"time: cuc: {names} is a CUC time (TAI "
                  "since 1958) at octets 6..11: the packet's onboard time")
        return "cuc"

    def _regroup_arrays(self, fields: list[_Field]) -> list[_Field]:
        """Our export's fixed arrays (one parameter per element, isls.element_of) back
        into ``array: N``."""
        out: list[_Field] = []
        for placed in fields:
            owner = placed.ancillary.get("isls.element_of")
            previous = out[-1] if out else None
            if owner and previous is not None \
                    and previous.ancillary.get("isls.element_of") == owner \
                    and _signature(previous.type) == _signature(placed.type) \
                    and previous.fixed_size \
                    and placed.alias == f"{owner}_{previous.count}" \
                    and previous.offset is not None and placed.offset is not None \
                    and placed.offset == previous.offset + previous.span:
                previous.count += 1
                continue
            if owner and placed.alias == f"{owner}_0":
                placed.alias, placed.grouped = owner, True
            out.append(placed)
        return out

    def _name(self, packet: _Packet, fields: list[_Field]) -> None:
        """TMDB names: the ``isls`` alias, else the cleaned XTCE name; unique in the packet
        (array elements ``<name>_<i>`` included)."""
        taken: set[str] = set()
        for placed in fields:
            if placed.spare and placed.qualified == "gap":
                wanted = f"spare_{placed.offset if placed.offset is not None else len(taken)}"
            else:
                wanted = placed.alias if _NAME_PATTERN.match(placed.alias or "") else \
                    clean_name(placed.name_hint) or "parameter"
            name, suffix = wanted, 2
            while name in taken or any(f"{name}_{i}" in taken for i in range(placed.count)
                                       if placed.count > 1):
                name = f"{wanted}_{suffix}"
                suffix += 1
            if name != wanted and not placed.spare:
                self.note(placed.parameter, placed.system, f"{placed.qualified} named {name!r}: "
                          f"{wanted!r} is taken in packet {packet.name!r}")
            elif not placed.spare and not placed.alias \
                    and name != placed.name_hint.lower() and name != placed.name_hint:
                self.note(placed.parameter, placed.system, f"{placed.qualified} named {name!r}")
            placed.name = name
            taken.add(name)
            taken.update(f"{name}_{i}" for i in range(placed.count) if placed.count > 1)

    def _overlays(self, packet: _Packet, fields: list[_Field], header_bits: int) -> None:
        """A field sharing bits with the headers or an earlier field is an overlay (as is
        one our export marked so)."""
        # The spans taken so far never overlap each other: kept sorted by start, a new
        # span can only overlap its neighbours.
        starts: list[int] = [0]
        ends: list[int] = [header_bits]
        for placed in fields:
            start, end = placed.offset, placed.end
            if start is None or end is None:
                continue
            said = placed.ancillary.get("isls.overlay") == "true"
            index = bisect.bisect_right(starts, start)
            overlaps = (index > 0 and ends[index - 1] > start) \
                or (index < len(starts) and starts[index] < end)
            if overlaps and not said and not placed.spare:
                where = "the packet headers" if start < header_bits else "an earlier field"
                self.note(placed.parameter, placed.system, f"{placed.qualified} shares bits "
                          f"with {where}: an overlay in packet {packet.name!r}")
            placed.overlay = said or overlaps
            if not placed.overlay:
                starts.insert(index, start)
                ends.insert(index, end)

    def _check_places(self, packet: _Packet, fields: list[_Field]) -> None:
        for placed in fields:
            ptype, offset = placed.type.ptype, placed.offset
            if offset is None:
                continue
            aligned = offset % 8 == 0
            # A float32 may sit off the octet grid (CTIM's at bit 629); text and float64
            # may not.
            if (ptype in ("string", "binary") or (ptype == "float" and placed.bits != 32)) \
                    and not aligned:
                raise _Skip(placed.parameter, placed.system, f"{placed.qualified}: a {ptype} "
                            f"of {placed.bits} bits must start on an octet, it starts at bit "
                            f"{offset}")
            if placed.type.byte_order != "big" and not aligned:
                raise _Skip(placed.parameter, placed.system, f"{placed.qualified}: a little "
                            f"endian field must start on an octet, it starts at bit {offset}")
            if not aligned and ptype not in ("float", "string", "binary") \
                    and offset % 8 + placed.bits > 64:
                raise _Skip(placed.parameter, placed.system, f"{placed.qualified}: a field not "
                            "starting on an octet must fit in 8 octets")
            end = placed.end
            if end is not None and end > MAX_PACKET_BITS:
                raise _Skip(packet.container, packet.system, "longer than a CCSDS packet")

    def _packet_name(self, packet: _Packet) -> str:
        alias = self.alias(packet.container)
        return alias if _NAME_PATTERN.match(alias) else clean_name(packet.name) or "packet"

    def _period(self, packet: _Packet, data: dict[str, str]) -> float | None:
        if "isls.period" in data:
            return self.number(packet.container, packet.system, data["isls.period"],
                               "isls.period")
        rate = self.kid(packet.container, "DefaultRateInStream")
        if rate is None or rate.get("basis", "perSecond") != "perSecond":
            return None
        values = [self.number(rate, packet.system, rate.get(a), a)
                  for a in ("maximumValue", "minimumValue") if rate.get(a) is not None]
        values = [v for v in values if v > 0]
        if not values:
            return None
        if len(set(values)) > 1:
            self.note(rate, packet.system, "rate range: the period of the highest rate taken")
        return 1.0 / values[0]

    def _length(self, packet: _Packet) -> int:
        end = max((f.end or 0 for f in packet.fields), default=PRIMARY_HEADER_BITS)
        declared = self.kid(packet.container, "BinaryEncoding", "SizeInBits", "FixedValue")
        if declared is not None:
            size = self.integer(declared, packet.system, declared.text, "SizeInBits")
            if size > end:
                end = size
        octets = -(-end // 8)
        if end % 8:
            self.note(packet.container, packet.system, f"the fields end at bit {end}, not on "
                      f"an octet: length {octets} octets")
        return octets

    def _parameter_documents(self, fields: list[_Field], header_bits: int
                             ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        next_offset: int | None = header_bits
        for placed in fields:
            if placed.spare and placed.offset is not None:
                continue  # a gap: the next field's bit_offset says it
            item: dict[str, Any] = {"name": placed.name}
            if placed.offset is not None and placed.offset != next_offset:
                item["bit_offset"] = placed.offset
            kind = placed.type
            ptype = "spare" if placed.spare else kind.ptype
            how_many = placed.counter.name if placed.counter is not None else "expand"
            if placed.dynamic == "octets":
                item["type"] = ptype
                item["size"] = how_many
            else:
                item["bit_length"] = placed.bits
                item["type"] = ptype
            if kind.byte_order != "big":
                item["byte_order"] = kind.byte_order
            if kind.calibration is not None and not placed.spare:
                item["calibration"] = kind.calibration
            if kind.states:
                item["states"] = dict(kind.states)
            if kind.unit:
                item["unit"] = kind.unit
            if kind.limits and not placed.spare:
                item["limits"] = {level: list(pair) for level, pair in kind.limits.items()}
            self._extras(placed, item)
            if placed.overlay:
                item["overlay"] = True
            if placed.count > 1 or placed.grouped:
                item["array"] = placed.count
            elif placed.dynamic == "array":
                item["array"] = how_many
            description = f"{placed.description} ({kind.description})" \
                if placed.description and kind.description \
                else placed.description or kind.description
            if description and not placed.spare:
                item["description"] = description
            out.append(item)
            if next_offset is not None and placed.end is not None:
                next_offset = max(next_offset, placed.end)
            elif placed.end is None:
                next_offset = None
        return out

    def _extras(self, placed: _Field, item: dict[str, Any]) -> None:
        data, kind = placed.ancillary, placed.type
        if kind.persistence > 1:
            item["persistence"] = kind.persistence
        if "isls.deadband" in data:
            item["deadband"] = self.number(placed.parameter, placed.system,
                                           data["isls.deadband"], "isls.deadband")
        for key in ("event", "report"):
            if data.get(f"isls.{key}") == "true":
                item[key] = True

    # across packets ----------------------------------------------------------------

    def _versions(self, built: list[tuple[_Packet, dict[str, Any]]]
                  ) -> list[tuple[_Packet, dict[str, Any]]]:
        said = self.ancillary(self.root.element).get("isls.packet_version")
        versions = Counter(p.version for p, _ in built if p.version is not None)
        if said is not None:
            self.version = self.integer(self.root.element, self.root, said,
                                        "isls.packet_version")
        else:
            self.version = versions.most_common(1)[0][0] if versions else 0
        out = []
        for packet, document in built:
            if packet.version not in (None, self.version):
                self.unsupported(packet.container, packet.system, f"packet skipped: CCSDS "
                                 f"version {packet.version}, the spacecraft's packets carry "
                                 f"{self.version}")
                continue
            out.append((packet, document))
        return out

    def _shared_apids(self, built: list[tuple[_Packet, dict[str, Any]]]
                      ) -> list[tuple[_Packet, dict[str, Any]]]:
        """Packets may share an APID only when select tells them apart."""
        first: dict[int, _Packet] = {}
        names: set[str] = set()
        out = []
        for packet, document in built:
            other = first.get(document["apid"])
            if other is not None and not (other.select and packet.select):
                self.unsupported(packet.container, packet.system, f"packet skipped: APID "
                                 f"{document['apid']} is also {other.name!r} and no field "
                                 "tells them apart")
                continue
            first.setdefault(document["apid"], packet)
            name, suffix = document["name"], 2
            while name in names:
                name = f"{document['name']}_{suffix}"
                suffix += 1
            if name != document["name"]:
                self.note(packet.container, packet.system, f"packet named {name!r}: "
                          f"{document['name']!r} is taken")
                document["name"] = name
            names.add(name)
            out.append((packet, document))
        return out

    def _remember(self, packet: _Packet) -> None:
        for placed in packet.fields:
            self.used.add(placed.key[:2])
            if placed.role in _HEADER_ROLES.values():
                self.header_fields.setdefault(placed.qualified, None)
            if placed.name:
                self.used.add(placed.key[:2])
                self.placed.setdefault(placed.key, (placed.name, placed.type.ptype, placed))

    def _derived(self, packets: list[dict[str, Any]]) -> None:
        """Our export's derived parameters: in no container, isls.expression and
        isls.packet say what and where."""
        by_name = {p["name"]: p for p in packets}
        for system in self._systems():
            for name, parameter in system.parameters.items():
                data = self.ancillary(parameter)
                if "isls.expression" not in data:
                    continue
                self.used.add((system.path, name))
                target = by_name.get(data.get("isls.packet", ""))
                if target is None:
                    self.note(parameter, system, f"derived parameter of packet "
                              f"{data.get('isls.packet')!r}, which is not imported: left out")
                    continue
                kind = self.type_of(system, parameter)
                item: dict[str, Any] = {"name": self.alias(parameter) or clean_name(name),
                                        "expression": data["isls.expression"]}
                if kind is not None and not kind.problem:
                    if kind.unit:
                        item["unit"] = kind.unit
                    if kind.limits:
                        item["limits"] = {k: list(v) for k, v in kind.limits.items()}
                placed = _Field((system.path, name, ()), f"{system.path}/{name}", parameter,
                                system, kind or _Type(parameter, system, "float"), name, "",
                                None, 64, ancillary=data)
                if kind is not None:
                    self._extras(placed, item)
                description = self.description(parameter)
                if description:
                    item["description"] = description
                target.setdefault("derived", []).append(item)
                self._pending_sets.append((placed, item))

    def _limit_sets(self, packet: _Packet, document: dict[str, Any]) -> None:
        items = {item["name"]: item for item in document["parameters"]}
        for placed in packet.fields:
            if placed.type.context_alarms and placed.name in items:
                self._resolve_sets(placed, items[placed.name])

    def _resolve_sets(self, placed: _Field, item: dict[str, Any]) -> None:
        sets: list[dict[str, Any]] = []
        for alarm in placed.type.context_alarms:
            system, element, members = alarm.mode
            mode = self.placed.get((system.path, element.get("name"), members))
            if mode is None or mode[1] != "enum":
                self.unsupported(alarm.element, alarm.system, "the context is not an "
                                 "enumerated parameter of an imported packet: left out")
                continue
            states = mode[2].type.states
            labels: list[str] = []
            for value, calibrated in alarm.values:
                label = value if calibrated else _state_label(states, _int_or(value))
                if label is None or label not in states.values():
                    self.unsupported(alarm.element, alarm.system, f"{value!r} is not a state of "
                                     f"{mode[2].qualified}: left out")
                    labels = []
                    break
                labels.append(label)
            if labels:
                sets.append({"when": {mode[0]: labels}, "limits": {
                    level: list(pair) for level, pair in alarm.limits.items()}})
        if sets:
            item["limit_sets"] = sets

    def _report_unused(self) -> None:
        if self.header_fields:
            self.note(None, None, "the CCSDS primary header (" + ", ".join(self.header_fields)
                      + ") is read by the decoder itself: not imported as parameters")
        unused = [f"{system.path}/{name}" for system in self._systems()
                  for name in system.parameters if (system.path, name) not in self.used]
        if unused:
            shown = ", ".join(unused[:8]) + (", ..." if len(unused) > 8 else "")
            self.note(None, None, f"{len(unused)} parameters are in no imported packet: "
                      f"not imported ({shown})")

    def _document(self, packets: list[dict[str, Any]]) -> dict[str, Any]:
        root = self.root
        data = self.ancillary(root.element)
        spacecraft = self.spacecraft or clean_name(root.name) or "imported"
        if not self.spacecraft and spacecraft != root.name:
            self.note(None, None, f"spacecraft {spacecraft!r}: the root SpaceSystem "
                      f"{root.name!r} made lower_snake_case")
        document: dict[str, Any] = {"spacecraft": spacecraft}
        if "isls.spacecraft_id" in data:
            document["spacecraft_id"] = self.integer(root.element, root,
                                                     data["isls.spacecraft_id"],
                                                     "isls.spacecraft_id")
        for key in ("mission", "agency"):
            if data.get(f"isls.{key}"):
                document[key] = data[f"isls.{key}"]
        description = self.description(root.element)
        if description:
            document["description"] = description
        if self.version:
            document["packet_version"] = self.version
        document["packets"] = packets
        return document


def _signature(kind: _Type) -> tuple[Any, ...]:
    """What two element types of one exported array share (each has a type of its own)."""
    return (kind.kind, kind.ptype, kind.bits, kind.byte_order, repr(kind.calibration),
            repr(kind.states), kind.unit, repr(kind.limits), kind.persistence,
            [(a.mode[0].path, a.mode[1].get("name"), a.values, repr(a.limits))
             for a in kind.context_alarms])


def _state_label(states: dict[int | str, str], raw: int | None) -> str | None:
    if raw is None:
        return None
    if raw in states:
        return states[raw]
    for key, label in states.items():
        if isinstance(key, str):
            low, high = (int(v) for v in key.strip("[]").split(","))
            if low <= raw <= high:
                return label
    return None


def _ranges_text(values: list[int]) -> str:
    """``[2, 3, 4, 7]`` as "2..4, 7"."""
    parts: list[str] = []
    for _, run in itertools.groupby(enumerate(values), key=lambda item: item[1] - item[0]):
        numbers = [value for _, value in run]
        parts.append(str(numbers[0]) if len(numbers) == 1 else f"{numbers[0]}..{numbers[-1]}")
    return ", ".join(parts)


def _int_or(text: str) -> int | None:
    """An integer written in decimal (``5``, ``5.0``) or hexadecimal (``0x1F``)."""
    text = text.strip()
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def _raws_of(states: dict[int | str, str], label: str) -> frozenset[int] | str:
    """The raw values an enumeration names ``label``."""
    out: set[int] = set()
    for key, name in states.items():
        if name != label:
            continue
        if isinstance(key, int):
            out.add(key)
            continue
        low, high = (int(v) for v in key.strip("[]").split(","))
        if high - low >= MAX_SELECT_VALUES:
            return f"state {label!r} covers {high - low + 1} values, too many to list"
        out.update(range(low, high + 1))
    return frozenset(out)


def import_xtce(path: Path, spacecraft: str | None = None) -> XtceImport:
    """Read an XTCE file's telemetry as a TMDB document (see the module docstring).

    ``spacecraft`` names the result (default: the root SpaceSystem's name made
    lower_snake_case). Raises :class:`TmdbError` for a file that is not usable XTCE,
    naming the file, line and element of every problem.
    """
    root = _read_root(path)
    where = str(path)
    namespace = etree.QName(root).namespace or ""
    if etree.QName(root).localname != "SpaceSystem" or (
            namespace and namespace not in (XTCE_12, XTCE_11)
            and "xtce" not in namespace.lower()):
        raise TmdbError([f"{where}:{root.sourceline}: not an XTCE file: the root element is "
                         f"<{root.tag}>, XTCE's is <SpaceSystem> (namespace {XTCE_12} or "
                         f"{XTCE_11})"])
    if spacecraft is not None and not _NAME_PATTERN.match(spacecraft):
        raise TmdbError([f"{where}: spacecraft {spacecraft!r} must be lower_snake_case"])
    importer = _Importer(path, root, spacecraft)
    if namespace and namespace not in (XTCE_12, XTCE_11):
        importer.note(None, None, f"namespace {namespace} read as XTCE")
    document = importer.run()
    if importer.problems:
        raise TmdbError(importer.problems)
    if not document["packets"]:
        raise TmdbError([f"{where}: no packet could be imported"] + [
            f"  {item}" for item in importer.unsupported_list])
    return XtceImport(document, tuple(importer.notes), importer.unsupported_list)


def _runs(values: list[int]) -> int | list[int | str]:
    """Select values as YAML shows them best: one value, or values with runs of three
    or more written as ranges ("2..255" for IDEX's "type > 1")."""
    if len(values) == 1:
        return values[0]
    out: list[int | str] = []
    start = previous = values[0]
    for value in [*values[1:], None]:
        if value is not None and value == previous + 1:
            previous = value
            continue
        out.extend([f"{start}..{previous}"] if previous - start >= 2
                   else list(range(start, previous + 1)))
        if value is not None:
            start = previous = value
    return out
