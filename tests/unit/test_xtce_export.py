"""Unit tests of telemetry.xtce.export: a TMDB as an XTCE 1.2 document.

The document must be valid against the official schema, carry every field of the TMDB
where the ISLS profile puts it (read back here element by element, independently of the
exporter's code), be decoded by an independent XTCE decoder (space-packet-parser) to
exactly the values our own decoder gives, and be the same bytes every time.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from lxml import etree
from space_packet_parser.generators.ccsds import ccsds_generator
from space_packet_parser.xtce.definitions import XtcePacketDefinition

from control_center.errors import TmdbError
from control_center.monitoring.limits import OK, raw_levels
from control_center.telemetry.codec import PacketCodec, concrete_layout
from control_center.telemetry.decoder import Decoder
from control_center.telemetry.packets import crc16, cuc_to_unix_ns
from control_center.telemetry.records import DecodedBatch, RawMessage
from control_center.telemetry.tmdb import (
    DerivedParameter,
    Limits,
    PacketDef,
    Parameter,
    Tmdb,
    expand_array,
)
from control_center.telemetry.tmdb_yaml import load_tmdb, parse_tmdb
from control_center.telemetry.xtce import import_xtce
from control_center.telemetry.xtce.export import export_xtce, schema_path, validate_xtce
from simulators.runner import PacketGenerator, make_model
from tests.support.storage import same_float32

PROJECT = Path(__file__).resolve().parents[2]
LANDER_SAMPLE = PROJECT / "samples" / "lander-descent.tlm"
START_UNIX = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC).timestamp()  # make_samples.py
XTCE = "http://www.omg.org/spec/XTCE/20180204"
NS = {"x": XTCE}

# Every feature of the TMDB the export covers, in one spacecraft.
PROBE_YAML = """
spacecraft: probe
spacecraft_id: 42
mission: XTCE-TEST
agency: isls
description: "Every feature of the telemetry database the XTCE export covers."
packets:
  - name: probe_hk
    apid: 0x100
    period: 0.5
    length: 78
    description: Housekeeping with every scalar type at fixed places, gaps filled.
    parameters:
      - {name: mode, bit_length: 3, type: enum, event: true, report: true,
         states: {0: SAFE, 1: IDLE, 2: SCIENCE, "[3,7]": SPARE_MODE},
         description: Operating mode.}
      - {name: big_range, bit_length: 13, type: enum,
         states: {0: LOW, "[1,4000]": MID, "[4001,8191]": HIGH}}
      - {name: counter_u5, bit_length: 5, type: unsigned}
      - {name: delta_s11, bit_length: 11, type: signed, unit: count}
      - {name: word_le, bit_length: 16, type: unsigned, byte_order: little}
      - {name: long_le, bit_length: 32, type: signed, byte_order: little}
      - name: temp_f32
        bit_length: 32
        type: float
        unit: degC
        limits: {yellow: [-10.0, 40.0], red: [-20.0, 60.0]}
        persistence: 3
        deadband: 0.5
      - {name: pos_f64, bit_length: 64, type: float, unit: km}
      - {name: volt_le_f32, bit_length: 32, type: float, byte_order: little, unit: V}
      - name: current
        bit_length: 12
        type: unsigned
        calibration: {polynomial: [-2.5, 0.002, 1.0e-7]}
        unit: A
        limits: {yellow: [null, 5.0]}
      - name: thermistor
        bit_length: 12
        type: unsigned
        calibration: {table: [[0, -100.0], [1000, 0.0], [3000, 80.0], [4095, 150.0]],
                      engineering: float32}
        unit: degC
        limits: {yellow: [-20.0, 50.0], red: [-40.0, 70.0]}
        limit_sets:
          - when: {mode: [SCIENCE]}
            limits: {yellow: [0.0, 45.0], red: [-10.0, 60.0]}
          - when: {mode: [SAFE, IDLE]}
            limits: {red: [-60.0, 90.0]}
        persistence: 2
      - {name: heater_on, bit_length: 1, type: boolean, event: true, persistence: 2}
      - {name: status_word, bit_length: 16, type: unsigned}
      - {name: fill, bit_length: 7, type: spare}
      - {name: label, bit_length: 64, type: string, description: Instrument label.}
      - {name: dump, bit_length: 32, type: binary}
      - {name: sample, bit_length: 16, type: signed, array: 3, unit: V,
         calibration: {polynomial: [0.0, 0.5]}, limits: {red: [-1000.0, 1000.0]}}
      - {name: late, bit_offset: 504, bit_length: 8, type: unsigned}
      - {name: uptime, bit_length: 64, type: unsigned, unit: s}
      - {name: le24, bit_length: 24, type: unsigned, byte_order: little}
    derived:
      - name: power
        expression: current * 2
        unit: W
        limits: {yellow: [null, 8.0]}
        persistence: 2
        deadband: 0.1
        report: true
        description: Twice the current.
  - name: probe_beacon
    apid: 0x106
    time: receive
    error_control: none
    parameters:
      - {name: beacon_count, bit_offset: 52, bit_length: 12, type: unsigned}
      - {name: beacon_flag, bit_length: 1, type: boolean}
  - name: probe_flags
    apid: 0x101
    time: receive
    description: Flags overlaid on a status word, declared last (the CRC is placed).
    parameters:
      - {name: status_word, bit_length: 16, type: unsigned}
      - {name: tail, bit_length: 8, type: unsigned}
      - {name: status_fault, bit_offset: 50, bit_length: 1, type: boolean, overlay: true}
      - {name: status_code, bit_offset: 52, bit_length: 4, type: unsigned, overlay: true}
  - name: probe_sci_a
    apid: 0x102
    select: {sci_type: 1}
    parameters:
      - {name: sci_type, bit_length: 8, type: enum, states: {1: A, 2: B, 3: C}}
      - {name: a_value, bit_length: 16, type: unsigned}
  - name: probe_sci_bc
    apid: 0x102
    select: {sci_type: [2, 3]}
    parameters:
      - {name: sci_type, bit_length: 8, type: enum, states: {1: A, 2: B, 3: C}}
      - {name: bc_value, bit_length: 32, type: float}
  - name: probe_var
    apid: 0x103
    parameters:
      - {name: n_samples, bit_length: 8, type: unsigned}
      - {name: n_text, bit_length: 8, type: unsigned}
      - {name: gains, bit_length: 8, type: unsigned, array: 2}
      - {name: note, type: string, size: n_text}
      - {name: samples, bit_length: 16, type: signed, array: n_samples, unit: V,
         calibration: {polynomial: [0.0, 0.1]}, limits: {red: [-100.0, 100.0]}}
      - {name: pad, bit_length: 8, type: spare}
      - {name: checksum_ok, bit_length: 8, type: boolean}
  - name: probe_dump
    apid: 0x104
    parameters:
      - {name: dump_id, bit_length: 16, type: unsigned}
      - {name: block, type: binary, size: expand}
      - {name: dump_tail, bit_length: 16, type: unsigned}
  - name: probe_wave
    apid: 0x105
    time: receive
    parameters:
      - {name: wave_gain, bit_length: 8, type: unsigned}
      - {name: wave, bit_length: 12, type: unsigned, array: expand}
      - {name: wave_end, bit_length: 4, type: unsigned}
"""

# Polymorphic packets: three types on one APID told apart by sci_type (one of them of
# variable length), and a lone type with a select of two fields on another APID.
POLY_YAML = """
spacecraft: poly
spacecraft_id: 7
mission: POLY-1
agency: isls
description: Science packet types told apart by a type field.
packets:
  - name: sci_short
    apid: 0x140
    select: {sci_type: 0}
    description: A short science record.
    parameters:
      - {name: sci_seq, bit_length: 16, type: unsigned}
      - {name: sci_type, bit_offset: 116, bit_length: 4, type: enum,
         states: {0: SHORT, 1: LONG, 2: LONG_RAW, 3: DUMP}}
      - {name: temp, bit_length: 16, type: signed, unit: degC,
         calibration: {polynomial: [-40.0, 0.01]}}
      - {name: heater_on, bit_length: 1, type: boolean}
  - name: sci_long
    apid: 0x140
    select: {sci_type: [1, 2]}
    parameters:
      - {name: sci_seq, bit_length: 16, type: unsigned}
      - {name: sci_type, bit_offset: 116, bit_length: 4, type: enum,
         states: {0: SHORT, 1: LONG, 2: LONG_RAW, 3: DUMP}}
      - {name: gain, bit_length: 8, type: unsigned}
      - {name: level, bit_length: 32, type: float}
      - {name: tag, bit_length: 48, type: string}
  - name: sci_dump
    apid: 0x140
    select: {sci_type: 3}
    parameters:
      - {name: sci_seq, bit_length: 16, type: unsigned}
      - {name: sci_type, bit_offset: 116, bit_length: 4, type: enum,
         states: {0: SHORT, 1: LONG, 2: LONG_RAW, 3: DUMP}}
      - {name: block, type: binary, size: expand}
      - {name: dump_end, bit_length: 16, type: unsigned}
  - name: beacon
    apid: 0x141
    time: receive
    error_control: none
    select: {beacon_kind: 5, beacon_mode: [1, 3]}
    parameters:
      - {name: beacon_kind, bit_length: 8, type: unsigned}
      - {name: beacon_mode, bit_length: 8, type: unsigned}
      - {name: beacon_count, bit_length: 16, type: unsigned}
"""


@pytest.fixture(scope="module")
def lander() -> Tmdb:
    return load_tmdb(PROJECT / "config" / "tmdb" / "lander.yaml")


@pytest.fixture(scope="module")
def orbiter() -> Tmdb:
    return load_tmdb(PROJECT / "config" / "tmdb" / "orbiter.yaml")


@pytest.fixture(scope="module")
def probe() -> Tmdb:
    return parse_tmdb(yaml.safe_load(PROBE_YAML), "probe.yaml")


@pytest.fixture(scope="module")
def poly() -> Tmdb:
    return parse_tmdb(yaml.safe_load(POLY_YAML), "poly.yaml")


@pytest.fixture(scope="module")
def documents(lander: Tmdb, orbiter: Tmdb, probe: Tmdb, poly: Tmdb) -> dict[str, bytes]:
    return {tmdb.spacecraft: export_xtce(tmdb) for tmdb in (lander, orbiter, probe, poly)}


def parse_xml(document: bytes) -> Any:
    return etree.fromstring(document, etree.XMLParser(resolve_entities=False, no_network=True))


# --------------------------------------------------------------------------- schema


def test_the_shipped_tmdbs_export_to_valid_xtce(documents: dict[str, bytes]) -> None:
    for spacecraft in ("lander", "orbiter"):
        document = documents[spacecraft]
        assert document.startswith(b"<?xml version='1.0' encoding='UTF-8'?>\n<xtce:SpaceSystem")
        assert b'xsi:schemaLocation="http://www.omg.org/spec/XTCE/20180204 ' \
               b'https://www.omg.org/spec/XTCE/20180204/SpaceSystem.xsd"' in document
        assert validate_xtce(document) == [], spacecraft


def test_the_rich_synthetic_tmdb_exports_to_valid_xtce(documents: dict[str, bytes]) -> None:
    assert validate_xtce(documents["probe"]) == []
    assert validate_xtce(documents["poly"]) == []


def test_validation_names_the_line_and_the_fault(documents: dict[str, bytes]) -> None:
    root = parse_xml(documents["lander"])
    telemetry = root.find("x:TelemetryMetaData", NS)
    # The ParameterSet moved before the ParameterTypeSet: the schema wants types first.
    telemetry.insert(0, telemetry.find("x:ParameterSet", NS))
    # A parameter that names no type.
    altitude = root.find("x:TelemetryMetaData/x:ParameterSet/x:Parameter[@name='altitude']", NS)
    del altitude.attrib["parameterTypeRef"]
    broken = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    errors = validate_xtce(broken)
    assert len(errors) == 2, errors
    lines = broken.decode().splitlines()
    by_reason = {e.split(": ", 1)[1].split(" (")[0]: e for e in errors}
    misplaced = by_reason["Unexpected child with tag 'xtce:ParameterTypeSet' at position 2."]
    assert misplaced.endswith("(/xtce:SpaceSystem/xtce:TelemetryMetaData)")
    assert "<xtce:TelemetryMetaData>" in lines[int(misplaced.split(":")[0]) - 1]
    missing = by_reason["missing required attribute 'parameterTypeRef'"]
    assert '<xtce:Parameter name="altitude">' in lines[int(missing.split(":")[0]) - 1]


def test_validation_checks_values_and_unique_names(documents: dict[str, bytes]) -> None:
    text = documents["lander"].replace(b'byteOrder="leastSignificantByteFirst"',
                                       b'byteOrder="littleEndian"', 1)
    assert any("littleEndian" in e for e in validate_xtce(text))
    twice = documents["lander"].replace(b'<xtce:Parameter name="altitude"',
                                        b'<xtce:Parameter name="throttle"', 1)
    # Reported where the name comes the second time: the real throttle, after altitude.
    line = 1 + twice.decode().splitlines().index(
        '      <xtce:Parameter name="throttle" parameterTypeRef="throttle_type">')
    assert [e.rsplit(" (", 1)[0] for e in validate_xtce(twice)] == [
        f"{line}: duplicated value ('throttle',) for XsdKey(name='xtce:parameterNameKey')"]


def test_validation_reads_files_and_reports_bad_xml(documents: dict[str, bytes],
                                                    tmp_path: Path) -> None:
    path = tmp_path / "lander.xml"
    path.write_bytes(documents["lander"])
    assert validate_xtce(path) == []
    assert validate_xtce(b"<SpaceSystem>\n<oops>") == [
        "2: not well-formed XML: Premature end of data in tag oops line 2, line 2, column 7"]
    with pytest.raises(TmdbError, match=r"missing\.xml: cannot read"):
        validate_xtce(tmp_path / "missing.xml")
    assert schema_path().name == "SpaceSystem.xsd" and schema_path().is_file()


def test_export_is_byte_stable(lander: Tmdb, probe: Tmdb, documents: dict[str, bytes]) -> None:
    assert export_xtce(lander) == documents["lander"]
    again = load_tmdb(PROJECT / "config" / "tmdb" / "lander.yaml")
    assert export_xtce(again) == documents["lander"]
    assert export_xtce(parse_tmdb(yaml.safe_load(PROBE_YAML), "probe.yaml")) == \
        documents["probe"] == export_xtce(probe)
    assert export_xtce(parse_tmdb(yaml.safe_load(POLY_YAML), "poly.yaml")) == documents["poly"]


# --------------------------------------------------------------------------- read back
# An independent reading of the document, element by element as the profile places
# them: every field of every parameter and packet must be found again.


def ancillary(element: Any) -> dict[str, str]:
    return {a.get("name"): a.text for a in element.findall("x:AncillaryDataSet/x:AncillaryData",
                                                           NS)}


def limits_of(alarm: Any) -> Limits:
    """Yellow and red limits back from StaticAlarmRanges (inclusive bounds only)."""
    values: dict[str, float | None] = {}
    for tag, level in (("WarningRange", "yellow"), ("CriticalRange", "red")):
        band = alarm.find(f"x:StaticAlarmRanges/x:{tag}", NS)
        if band is not None:
            assert not {"minExclusive", "maxExclusive"} & set(band.attrib)
        for bound, key in (("low", "minInclusive"), ("high", "maxInclusive")):
            text = None if band is None else band.get(key)
            values[f"{level}_{bound}"] = None if text is None else float(text)
    return Limits(**values)


def match_states(match: Any, names: dict[str, Any]) -> tuple[str, tuple[int, ...]]:
    """(mode parameter's TMDB name, raw states) of a ContextMatch."""
    comparison = match.find("x:Comparison", NS)
    if comparison is not None:
        assert comparison.get("useCalibratedValue") == "false"
        return alias(names[comparison.get("parameterRef")]), (int(comparison.get("value")),)
    conditions = match.findall("x:BooleanExpression/x:ORedConditions/x:Condition", NS)
    refs = {c.find("x:ParameterInstanceRef", NS).get("parameterRef") for c in conditions}
    assert len(refs) == 1 and all(c.find("x:ComparisonOperator", NS).text == "=="
                                  for c in conditions)
    return alias(names[refs.pop()]), tuple(int(c.find("x:Value", NS).text) for c in conditions)


def alias(parameter: Any) -> str:
    found = parameter.find("x:AliasSet/x:Alias[@nameSpace='isls']", NS)
    return str(found.get("alias"))


@dataclass
class Document:
    """The parts of an exported document the checks look up by name."""

    root: Any
    types: dict[str, Any]
    parameters: dict[str, Any]
    containers: dict[str, Any]

    @classmethod
    def read(cls, document: bytes) -> Document:
        root = parse_xml(document)
        tm = root.find("x:TelemetryMetaData", NS)
        return cls(root, {t.get("name"): t for t in tm.find("x:ParameterTypeSet", NS)},
                   {p.get("name"): p for p in tm.findall("x:ParameterSet/x:Parameter", NS)},
                   {c.get("name"): c for c in tm.findall("x:ContainerSet/x:SequenceContainer",
                                                         NS)})

    def type_of(self, parameter: Any) -> Any:
        return self.types[parameter.get("parameterTypeRef")]

    def encoding_bits(self, parameter: Any) -> int | None:
        """Bits a sequential reader takes for an entry (None: dynamic)."""
        kind = self.type_of(parameter)
        for path in ("x:IntegerDataEncoding", "x:FloatDataEncoding",
                     "x:Encoding/x:IntegerDataEncoding"):
            encoding = kind.find(path, NS)
            if encoding is not None:
                return int(encoding.get("sizeInBits"))
        fixed = kind.find("x:StringDataEncoding/x:SizeInBits/x:Fixed/x:FixedValue", NS)
        if fixed is None:
            fixed = kind.find("x:BinaryDataEncoding/x:SizeInBits/x:FixedValue", NS)
        return None if fixed is None else int(fixed.text)

    def chain(self, container: str) -> list[str]:
        """The container and those it inherits from, the header container first."""
        names = [container]
        while (base := self.containers[names[0]].find("x:BaseContainer", NS)) is not None:
            names.insert(0, base.get("containerRef"))
        return names

    def own(self, container: str) -> list[str]:
        """The parameter names of a container's own entries."""
        return [e.get("parameterRef") for e in
                self.containers[container].findall("x:EntryList/x:ParameterRefEntry", NS)]

    def placed(self, container: str) -> Iterator[tuple[str, Any, int | None]]:
        """(container holding it, Parameter element, absolute bit offset or None) of the
        entries a packet of ``container`` is read with, placed as XTCE does: the entries
        of the containers it inherits from first, each after the previous entry unless
        LocationInContainerInBits (containerStart: from the packet's first bit)."""
        position: int | None = 0
        for name in self.chain(container):
            for entry in self.containers[name].findall("x:EntryList/x:ParameterRefEntry", NS):
                parameter = self.parameters[entry.get("parameterRef")]
                location = entry.find("x:LocationInContainerInBits", NS)
                if location is not None:
                    assert location.get("referenceLocation") == "containerStart"
                    position = int(location.find("x:FixedValue", NS).text)
                yield name, parameter, position
                bits = self.encoding_bits(parameter)
                position = None if position is None or bits is None else position + bits

    def entries(self, container: str) -> Iterator[tuple[Any, int | None]]:
        """(Parameter element, absolute bit offset or None), as :meth:`placed`."""
        for _, parameter, position in self.placed(container):
            yield parameter, position

    def aliases(self, container: str) -> dict[str, str]:
        """TMDB name -> XTCE name of the fields a packet of ``container`` is read with."""
        return {alias(p): p.get("name") for _, p, _ in self.placed(container)
                if p.find("x:AliasSet", NS) is not None}


def check_type(doc: Document, parameter: Any, p: Parameter, *, dynamic: bool = False) -> None:
    """The ParameterType of one value of ``p`` says everything ``p`` says."""
    kind = doc.type_of(parameter)
    if kind.tag == f"{{{XTCE}}}ArrayParameterType":
        kind = doc.types[kind.get("arrayTypeRef")]
    tag = etree.QName(kind).localname
    calibrated = p.calibration.kind != "none"
    expected_tag = {"unsigned": "IntegerParameterType", "signed": "IntegerParameterType",
                    "float": "FloatParameterType", "enum": "EnumeratedParameterType",
                    "boolean": "BooleanParameterType", "string": "StringParameterType",
                    "binary": "BinaryParameterType", "spare": "IntegerParameterType"}[p.type]
    if calibrated:
        expected_tag = "FloatParameterType"
        size = {"float32": "32", "float64": "64"}[p.calibration.engineering]
        assert kind.get("sizeInBits") == size, p.name  # the engineering value's size
    assert tag == expected_tag, p.name
    unit = kind.find("x:UnitSet/x:Unit", NS)
    assert (unit.text if unit is not None else "") == p.unit, p.name
    if p.type in ("unsigned", "signed", "enum", "boolean", "float", "spare"):
        encoding = kind.find("x:IntegerDataEncoding", NS)
        if p.type == "float":
            encoding = kind.find("x:FloatDataEncoding", NS)
            assert encoding.get("encoding") == "IEEE754_1985"
            if not calibrated:
                assert kind.get("sizeInBits") == str(p.bit_length)
        else:
            assert encoding.get("encoding") == ("twosComplement" if p.type == "signed"
                                                else "unsigned"), p.name
        assert int(encoding.get("sizeInBits")) == p.bit_length, p.name
        byte_order = {"big": None, "little": "leastSignificantByteFirst"}[p.byte_order]
        assert encoding.get("byteOrder") == byte_order, p.name
        if tag == "IntegerParameterType":
            assert kind.get("signed") == ("true" if p.type == "signed" else "false")
            assert kind.get("sizeInBits") == str(p.bit_length)
        terms = [(float(t.get("coefficient")), int(t.get("exponent"))) for t in
                 encoding.findall("x:DefaultCalibrator/x:PolynomialCalibrator/x:Term", NS)]
        points = encoding.findall("x:DefaultCalibrator/x:SplineCalibrator/x:SplinePoint", NS)
        if p.calibration.kind == "polynomial":
            assert terms == [(c, i) for i, c in enumerate(p.calibration.coefficients)]
        elif p.calibration.kind == "table":
            spline = encoding.find("x:DefaultCalibrator/x:SplineCalibrator", NS)
            assert (spline.get("order"), spline.get("extrapolate")) == ("1", "false")
            assert [(float(s.get("raw")), float(s.get("calibrated"))) for s in points] == \
                list(p.calibration.table)
        else:
            assert not terms and not points
    if p.type == "enum":
        enumerations = kind.findall("x:EnumerationList/x:Enumeration", NS)
        assert {int(e.get("value")): e.get("label") for e in enumerations
                if e.get("maxValue") is None} == dict(p.states)
        assert tuple((int(e.get("value")), int(e.get("maxValue")), e.get("label"))
                     for e in enumerations if e.get("maxValue") is not None) == p.state_ranges
    if p.type in ("string", "binary") and not dynamic:
        assert doc.encoding_bits(parameter) == p.bit_length
    check_alarms(doc, kind, p.limits, p.monitoring.persistence,
                 [(m.mode, m.states, m.limits) for m in p.monitoring.limit_sets])


def check_alarms(doc: Document, kind: Any, limits: Limits, persistence: int,
                 limit_sets: list[tuple[str, tuple[int, ...], Limits]]) -> None:
    default = kind.find("x:DefaultAlarm", NS)
    if default is None:
        assert not limits.defined and persistence == 1
    else:
        assert int(default.get("minViolations", "1")) == persistence
        assert limits_of(default) == limits
    contexts = kind.findall("x:ContextAlarmList/x:ContextAlarm", NS)
    found = []
    for context in contexts:
        assert int(context.get("minViolations", "1")) == persistence
        mode, states = match_states(context.find("x:ContextMatch", NS), doc.parameters)
        found.append((mode, states, limits_of(context)))
    assert found == limit_sets


def check_parameter(doc: Document, parameter: Any, p: Parameter) -> None:
    assert alias(parameter) == p.name
    description = parameter.find("x:LongDescription", NS)
    assert (description.text if description is not None else "") == p.description
    flags = {"isls.report": p.report, "isls.event": p.monitoring.event,
             "isls.overlay": p.overlay, "isls.spare": p.type == "spare"}
    expected = {k: "true" for k, v in flags.items() if v}
    if p.monitoring.deadband:
        expected["isls.deadband"] = repr(p.monitoring.deadband)
    if p.element_of:
        expected["isls.element_of"] = p.element_of
    assert ancillary(parameter) == expected, p.name


def restriction_of(container: Any) -> list[tuple[str, tuple[int, ...], bool]]:
    """A container's RestrictionCriteria as (parameter, values any of which passes,
    whether the raw value is tested), in order: an AND of ORs of ``==``."""
    criteria = container.find("x:BaseContainer/x:RestrictionCriteria", NS)
    if criteria is None:
        return []
    found: list[tuple[str, tuple[int, ...], bool]] = []
    for c in criteria.findall("x:ComparisonList/x:Comparison", NS):
        assert c.get("comparisonOperator", "==") == "=="
        found.append((c.get("parameterRef"), (int(c.get("value")),),
                      c.get("useCalibratedValue") == "false"))
    for top in criteria.findall("x:BooleanExpression/*", NS):
        terms = list(top) if etree.QName(top).localname == "ANDedConditions" else [top]
        for item in terms:
            conditions = [item] if etree.QName(item).localname == "Condition" else \
                item.findall("x:Condition", NS)
            assert all(c.find("x:ComparisonOperator", NS).text == "==" for c in conditions)
            refs = {(r.get("parameterRef"), r.get("useCalibratedValue") == "false")
                    for r in (c.find("x:ParameterInstanceRef", NS) for c in conditions)}
            assert len(refs) == 1
            ref, raw = refs.pop()
            found.append((ref, tuple(int(c.find("x:Value", NS).text) for c in conditions), raw))
    return found


def check_restriction(doc: Document, container: Any, tmdb: Tmdb, packet: PacketDef) -> None:
    """A packet type alone on its APID: the header comparisons on its container. Types
    told apart by select: the header comparisons on their APID's abstract container,
    which reads the fields the selects test (XTCE tests a restriction before it reads
    the container's own entries), and the select comparisons (raw values) on each
    type's container, in order."""
    base = container.find("x:BaseContainer", NS).get("containerRef")
    header = [("ccsds_version", (tmdb.packet_version,), False), ("ccsds_type", (0,), False),
              ("ccsds_apid", (packet.apid,), False)]
    if not packet.select:
        assert base == "ccsds_packet"
        assert restriction_of(container) == header
        return
    assert doc.containers[base].get("abstract") == "true"
    assert doc.chain(base) == ["ccsds_packet", base]
    assert restriction_of(doc.containers[base]) == header
    tested = restriction_of(container)
    assert [(alias(doc.parameters[name]), values) for name, values, _ in tested] == \
        list(packet.select)
    assert all(raw for _, _, raw in tested)
    assert {name for name, _, _ in tested} <= set(doc.own(base))


def check_packet(doc: Document, tmdb: Tmdb, packet: PacketDef) -> None:
    container = doc.containers[packet.name]
    description = container.find("x:LongDescription", NS)
    assert (description.text if description is not None else "") == packet.description
    expected: dict[str, str] = {"isls.time": packet.time}
    if packet.error_control:
        expected["isls.error_control"] = "crc16"
    if packet.period is not None:
        expected["isls.period"] = repr(packet.period)
        rate = container.find("x:DefaultRateInStream", NS)
        assert float(rate.get("minimumValue")) == float(rate.get("maximumValue")) == \
            1 / packet.period
    assert ancillary(container) == expected
    check_restriction(doc, container, tmdb, packet)
    placed = list(doc.placed(packet.name))[7:]  # after the primary header's seven
    if not any(p.overlay for p in packet.parameters):
        # Read one after the other, as space-packet-parser does: gaps are filled.
        assert all(doc.containers[name].find(".//x:LocationInContainerInBits", NS) is None
                   for name in doc.chain(packet.name))
    if packet.time == "cuc":
        owner, obt, place = placed.pop(0)
        assert (obt.get("name"), obt.get("parameterTypeRef"), place) == \
            (f"{owner}__obt", "cuc_time", 48)
    if packet.error_control:
        owner, crc, place = placed.pop()
        assert owner == packet.name
        assert ancillary(crc) == {"isls.role": "crc"} and doc.encoding_bits(crc) == 16
        if not packet.variable:
            assert place == packet.length * 8 - 16
    entries = [(e, place) for _, e, place in placed]
    aliased = [(e, place) for e, place in entries if e.find("x:AliasSet", NS) is not None]
    for owner, filler, place in placed:
        if filler.find("x:AliasSet", NS) is None:
            assert filler.get("name") == f"{owner}__spare_{place}"
            assert ancillary(filler) == {"isls.spare": "true"}
    if packet.variable:
        layout = [e for item in packet.layout for e in (
            expand_array(item, item.array, item.bit_offset) if isinstance(item.array, int)
            else (item,))]
        assert len(aliased) == len(layout)
        for (parameter, place), item in zip(aliased, layout, strict=True):
            if item.bit_offset >= 0:
                assert place == item.bit_offset, item.name
            check_parameter(doc, parameter, item)
            check_type(doc, parameter, item, dynamic=isinstance(item.array, str))
    else:
        # Every bit of the packet is read once, parameters where the TMDB puts them.
        last, place = list(doc.entries(packet.name))[-1]
        assert place is not None
        assert place + (doc.encoding_bits(last) or 0) == packet.length * 8
        assert len(aliased) == len(packet.parameters)
        for (parameter, place), p in zip(aliased, packet.parameters, strict=True):
            assert place == p.bit_offset, p.name
            check_parameter(doc, parameter, p)
            check_type(doc, parameter, p)
    for d in packet.derived:
        check_derived(doc, packet, d)


def check_derived(doc: Document, packet: PacketDef, d: DerivedParameter) -> None:
    parameter = next(p for p in doc.parameters.values()
                     if ancillary(p).get("isls.expression") is not None
                     and ancillary(p).get("isls.packet") == packet.name and alias(p) == d.name)
    expected = {"isls.expression": d.expression, "isls.packet": packet.name}
    if d.report:
        expected["isls.report"] = "true"
    if d.monitoring.deadband:
        expected["isls.deadband"] = repr(d.monitoring.deadband)
    assert ancillary(parameter) == expected
    assert parameter.find("x:ParameterProperties", NS).get("dataSource") == "derived"
    assert parameter.find("x:LongDescription", NS).text == d.description
    kind = doc.type_of(parameter)
    assert etree.QName(kind).localname == "FloatParameterType"
    assert kind.find("x:UnitSet/x:Unit", NS).text == d.unit
    check_alarms(doc, kind, d.limits, d.monitoring.persistence,
                 [(m.mode, m.states, m.limits) for m in d.monitoring.limit_sets])
    # In no container: a value computed on the ground.
    assert all(e.get("parameterRef") != parameter.get("name")
               for c in doc.containers.values() for e in c.iter(f"{{{XTCE}}}ParameterRefEntry"))


@pytest.mark.parametrize("spacecraft", ["lander", "orbiter", "probe", "poly"])
def test_every_field_of_the_tmdb_is_in_the_document(
        spacecraft: str, documents: dict[str, bytes], request: pytest.FixtureRequest) -> None:
    tmdb: Tmdb = request.getfixturevalue(spacecraft)
    doc = Document.read(documents[spacecraft])
    root = doc.root
    assert root.get("name") == tmdb.spacecraft
    assert root.find("x:LongDescription", NS).text == tmdb.description
    assert ancillary(root) == {"isls.spacecraft_id": str(tmdb.spacecraft_id),
                               "isls.mission": tmdb.mission, "isls.agency": tmdb.agency}
    apids = {f"apid_{apid}" for apid, types in tmdb.variants().items()
             if any(t.select for t in types)}
    assert set(doc.containers) == {"ccsds_packet", *(p.name for p in tmdb.packets), *apids}
    assert doc.containers["ccsds_packet"].get("abstract") == "true"
    header = [(p.get("name"), doc.encoding_bits(p)) for p, _ in doc.entries("ccsds_packet")][:7]
    assert header == [("ccsds_version", 3), ("ccsds_type", 1), ("ccsds_secondary_header", 1),
                      ("ccsds_apid", 11), ("ccsds_sequence_flags", 2),
                      ("ccsds_sequence_count", 14), ("ccsds_packet_length", 16)]
    for packet in tmdb.packets:
        check_packet(doc, tmdb, packet)
    # XTCE tests a container's restriction before it reads the container's own entries
    # (space-packet-parser and Yamcs alike): a restriction tests only parameters read by
    # the containers it inherits from.
    for name, container in doc.containers.items():
        read_before = {ref for base in doc.chain(name)[:-1] for ref in doc.own(base)}
        assert {ref for ref, _, _ in restriction_of(container)} <= read_before, name


def test_a_name_two_packets_share_is_qualified_by_its_packet(
        documents: dict[str, bytes]) -> None:
    doc = Document.read(documents["probe"])
    assert {"probe_hk__status_word", "probe_flags__status_word", "mode",
            "thermistor"} <= set(doc.parameters)
    assert "status_word" not in doc.parameters
    assert alias(doc.parameters["probe_flags__status_word"]) == "status_word"
    # The field two types of an APID select on is one parameter, their APID's.
    assert doc.own("apid_258") == ["apid_258__obt", "sci_type"]
    assert not {"probe_sci_a__sci_type", "probe_sci_bc__sci_type"} & set(doc.parameters)


def test_header_names_and_clashing_qualified_names() -> None:
    """A field named like a header field is qualified by its packet; two qualified
    names that still clash are reported, never written twice."""
    tmdb = parse_tmdb({"spacecraft": "names", "packets": [
        {"name": "a", "apid": 1, "parameters": [
            {"name": "ccsds_apid", "bit_length": 8, "type": "unsigned"},
            {"name": "b__c", "bit_length": 8, "type": "unsigned"}]},
        {"name": "a__b", "apid": 2, "parameters": [
            {"name": "c", "bit_length": 8, "type": "unsigned"}]},
        {"name": "d", "apid": 3, "parameters": [
            {"name": "b__c", "bit_length": 8, "type": "unsigned"},
            {"name": "c", "bit_length": 8, "type": "unsigned"}]},
    ]}, "names.yaml")
    with pytest.raises(TmdbError) as caught:
        export_xtce(tmdb)
    assert caught.value.problems == [
        "names.yaml: names a__b c: its XTCE name 'a__b__c' is also the name of names a b__c; "
        "rename one"]
    fine = replace(tmdb, packets=(tmdb.packets[0], tmdb.packets[2]))
    doc = Document.read(export_xtce(fine))
    assert alias(doc.parameters["a__ccsds_apid"]) == "ccsds_apid"
    assert {"a__b__c", "d__b__c", "c"} <= set(doc.parameters)


def test_dynamic_sizes_follow_their_counter_or_the_packet_length(
        documents: dict[str, bytes]) -> None:
    doc = Document.read(documents["probe"])

    def dynamic(path: str, type_name: str) -> tuple[str | None, float, float]:
        value = doc.types[type_name].find(path, NS)
        adjustment = value.find("x:LinearAdjustment", NS)
        return (value.find("x:ParameterInstanceRef", NS).get("parameterRef"),
                float(adjustment.get("slope")), float(adjustment.get("intercept")))

    # note: n_text octets.
    assert dynamic("x:StringDataEncoding/x:Variable/x:DynamicValue", "note_type") == \
        ("n_text", 8, 0)
    # samples: n_samples elements, so the last index is n_samples - 1.
    ending = "x:DimensionList/x:Dimension/x:EndingIndex/x:DynamicValue"
    assert dynamic(ending, "samples_type") == ("n_samples", 1, -1)
    assert doc.types["samples_type"].get("arrayTypeRef") == "samples_element_type"
    # block: a packet of L + 7 octets less its 14 header octets, dump_id, dump_tail, CRC.
    assert dynamic("x:BinaryDataEncoding/x:SizeInBits/x:DynamicValue", "block_type") == \
        ("ccsds_packet_length", 8, 56 - 112 - 16 - 16)
    length_field, slope, intercept = dynamic(ending, "wave_type")
    # 12-bit elements between the 6 header octets and wave_gain, and wave_end and the CRC.
    for octets, elements in ((11, 1), (14, 3), (101, 61)):
        assert octets * 8 == 48 + 8 + elements * 12 + 4 + 16
        assert slope * (octets - 7) + intercept == pytest.approx(elements - 1, abs=1e-9)
    assert length_field == "ccsds_packet_length"


def test_limits_are_inclusive_as_the_limit_checker_counts_them(
        lander: Tmdb, documents: dict[str, bytes]) -> None:
    """limits.py: a value equal to a limit is in limits; XTCE: the alarm ranges (form
    "outside") are the values in limits, so the bounds must be inclusive."""
    rate = lander.packet("lander_nav").parameter("imu_rate_x")
    assert (rate.limits.yellow_high, rate.limits.red_low) == (15.0, -30.0)
    assert raw_levels([15.0, -30.0, 15.01], rate.limits).tolist() == [OK, 1, 2]
    doc = Document.read(documents["lander"])
    alarm = doc.types["imu_rate_x_type"].find("x:DefaultAlarm/x:StaticAlarmRanges", NS)
    assert alarm.get("rangeForm", "outside") == "outside"
    assert alarm.find("x:WarningRange", NS).attrib == {"minInclusive": "-15.0",
                                                       "maxInclusive": "15.0"}


# --------------------------------------------------------------------------- problems


def test_what_xtce_cannot_say_is_reported_all_at_once() -> None:
    document = {"spacecraft": "odd", "packets": [
        {"name": "odd_words", "apid": 1, "parameters": [
            {"name": "swapped", "bit_length": 32, "type": "unsigned", "byte_order": "2143"},
            {"name": "plain", "bit_length": 32, "type": "unsigned", "byte_order": "1234"}]},
        {"name": "odd_var", "apid": 2, "parameters": [
            {"name": "n", "bit_length": 8, "type": "unsigned"},
            {"name": "values", "bit_length": 8, "type": "unsigned", "array": "n"},
            {"name": "rest", "bit_length": 8, "type": "unsigned", "array": "expand"},
            {"name": "flag", "bit_length": 8, "type": "unsigned", "overlay": True}]},
        {"name": "odd_a", "apid": 3, "select": {"kind": 1}, "parameters": [
            {"name": "kind", "bit_length": 8, "type": "unsigned"}]},
        {"name": "odd_b", "apid": 3, "select": {"kind": [1, 2]}, "parameters": [
            {"name": "kind", "bit_length": 8, "type": "unsigned"}]},
    ]}
    with pytest.raises(TmdbError) as caught:
        export_xtce(parse_tmdb(document, "odd.yaml"))
    problems = caught.value.problems
    expected = [
        ("odd.yaml: odd odd_words swapped: byte_order '2143'", "big and little endian only"),
        ("odd.yaml: odd odd_words plain: byte_order '1234'", "write byte_order: big"),
        ("odd.yaml: odd odd_var rest: ", "`expand` after another variable-size field"),
        ("odd.yaml: odd odd_var flag: ", "overlay after a variable-size field"),
        ("odd.yaml: odd odd_b: ", "can match the same packets of APID 3 as packet 'odd_a'"),
    ]
    assert len(problems) == len(expected), problems
    for start, reason in expected:
        assert any(p.startswith(start) and reason in p for p in problems), (start, problems)


def test_text_xml_cannot_carry_is_reported(probe: Tmdb) -> None:
    hk = probe.packet("probe_hk")
    bad = replace(hk.parameters[0], description="bell\x07")
    tmdb = replace(probe, packets=(replace(hk, parameters=(bad, *hk.parameters[1:])),))
    with pytest.raises(TmdbError, match=r"probe\.yaml: probe probe_hk mode: description holds "
                                        r"control characters"):
        export_xtce(tmdb)


def test_inconsistent_limits_are_reported(probe: Tmdb) -> None:
    hk = probe.packet("probe_hk")
    temp = hk.parameter("temp_f32")
    odd = replace(temp, limits=Limits(yellow_high=1.0))
    tmdb = replace(probe, packets=(replace(hk, parameters=tuple(
        odd if p is temp else p for p in hk.parameters)),))
    with pytest.raises(TmdbError, match=r"temp_f32: limits and monitoring\.limits differ"):
        export_xtce(tmdb)


def test_packet_version_and_absent_metadata(probe: Tmdb) -> None:
    bare = replace(probe, packet_version=5, spacecraft_id=0, mission="", agency="",
                   description="", packets=(probe.packet("probe_beacon"),))
    doc = Document.read(export_xtce(bare))
    assert ancillary(doc.root) == {"isls.packet_version": "5"}
    assert doc.root.find("x:LongDescription", NS) is None
    check_restriction(doc, doc.containers["probe_beacon"], bare, bare.packets[0])


# --------------------------------------------------------------------------- decoding
# space-packet-parser reads our packets with the exported XTCE: its values must be the
# values our own decoder gives, packet for packet, parameter for parameter.


def spp_decode(document: bytes, stream: bytes) -> list[Any]:
    definition = XtcePacketDefinition.from_xtce(io.BytesIO(document),
                                                root_container_name="ccsds_packet")
    with warnings.catch_warnings():
        # It warns when a container ends before or after its packet: an error here.
        warnings.simplefilter("error")
        return [definition.parse_bytes(raw) for raw in ccsds_generator(stream)]


def our_decode(tmdb: Tmdb, stream: bytes) -> dict[str, list[tuple[DecodedBatch, int]]]:
    """Our decoder's (batch, row) of every packet, by packet name, in stream order."""
    decoder = Decoder([tmdb], max_future_days=36500)
    decoder.feed(RawMessage(tmdb.spacecraft, stream, receive_ns=1_900_000_000 * 10**9,
                            link="test"))
    rows: dict[str, list[tuple[DecodedBatch, int]]] = {}
    for batch in decoder.take(force=True):
        rows.setdefault(batch.packet.name, []).extend((batch, i) for i in range(len(batch)))
    assert not decoder.stats.errors
    return rows


def same_value(p: Parameter, ours: Any, raw: Any, theirs: Any) -> bool:
    if p.type == "enum":
        return bool(theirs.raw_value == raw) and str(theirs) == p.state_label(int(raw))
    if p.type == "boolean":
        return bool(theirs) == bool(ours) and int(theirs.raw_value) == int(raw)
    if p.type == "string":
        return bool(str(theirs).rstrip("\x00") == ours)
    if p.type == "binary":
        return bool(bytes(theirs).hex() == ours)
    if p.calibration.kind != "none":
        if theirs.raw_value != raw:
            return False
        # A polynomial of degree 2 and more: space-packet-parser sums the powers, numpy
        # runs Horner's scheme; they may differ in the last bit.
        exact = p.calibration.kind == "table" or len(p.calibration.coefficients) <= 2
        if p.is_float32:  # rounded once from the float64 they compute
            return same_float32(ours, theirs)
        return float(theirs) == float(ours) if exact else \
            math.isclose(float(theirs), float(ours), rel_tol=1e-12, abs_tol=1e-12)
    if p.type == "float":
        return float(theirs) == float(ours) or (math.isnan(theirs) and math.isnan(ours))
    return int(theirs) == int(ours)


@dataclass(frozen=True)
class Reading:
    """How a packet type's containers are read: the entries (Parameter elements), the
    XTCE name of each TMDB field, and the names of the type's own entries."""

    placed: list[Any]
    names: dict[str, str]
    own: frozenset[str]

    @classmethod
    def of(cls, doc: Document, container: str) -> Reading:
        return cls([p for _, p, _ in doc.placed(container)], doc.aliases(container),
                   frozenset(doc.own(container)))


def spp_type(readings: dict[str, Reading], types: tuple[PacketDef, ...],
             packet: Any) -> PacketDef:
    """The type whose container space-packet-parser chose for a packet of an APID: the
    one whose own entries it read."""
    if len(types) == 1:
        return types[0]
    (chosen,) = [t for t in types if readings[t.name].own <= packet.keys()]
    return chosen


def compare_decoders(tmdb: Tmdb, document: bytes, stream: bytes) -> dict[str, int]:
    """Decode ``stream`` both ways and compare every value; the packets compared, by
    packet name. Packets are paired by type and sequence count (our decoder batches a
    variable type by layout, not in stream order): those must be unique in ``stream``."""
    doc = Document.read(document)
    theirs = spp_decode(document, stream)
    ours = {(name, int(batch.sequence_counts[row])): (batch, row)
            for name, rows in our_decode(tmdb, stream).items() for batch, row in rows}
    assert len(ours) == len(theirs)
    variants = tmdb.variants()
    readings = {p.name: Reading.of(doc, p.name) for p in tmdb.packets}
    seen: dict[str, int] = {}
    for packet in theirs:
        definition = spp_type(readings, variants[packet["ccsds_apid"]], packet)
        batch, row = ours[(definition.name, int(packet["ccsds_sequence_count"]))]
        seen[definition.name] = seen.get(definition.name, 0) + 1
        placed, names = readings[definition.name].placed, readings[definition.name].names
        # It read the entries of the type's containers, all of them and nothing else.
        assert list(packet) == [p.get("name") for p in placed]
        # The packet's fields as our decoder laid them out (a variable packet: with the
        # sizes this one has).
        for p in batch.packet.parameters:
            name = names[p.name]
            assert same_value(p, batch.values[p.name][row], batch.raw[p.name][row],
                              packet[name]), (definition.name, p.name, packet[name])
        if definition.time == "cuc":
            (obt,) = [packet[p.get("name")] for p in placed
                      if p.get("parameterTypeRef") == "cuc_time"]
            coarse, fine = obt.raw_value >> 16, obt.raw_value & 0xFFFF
            assert float(obt) == coarse + fine / 65536
            onboard = cuc_to_unix_ns(np.array([coarse]), np.array([fine]))[0]
            assert onboard + int(batch.sequence_counts[row]) == batch.times_ns[row]
        if definition.error_control:
            (crc,) = [packet[p.get("name")] for p in placed
                      if ancillary(p).get("isls.role") == "crc"]
            assert crc == crc16(packet.binary_data[:-2])
    return seen


def test_space_packet_parser_decodes_the_lander_sample_as_we_do(
        lander: Tmdb, documents: dict[str, bytes]) -> None:
    """samples/lander-descent.tlm: two minutes of the lander simulator's descent."""
    seen = compare_decoders(lander, documents["lander"], LANDER_SAMPLE.read_bytes())
    assert seen == {"lander_nav": 1200, "lander_power": 120, "lander_thermal": 60}


def test_space_packet_parser_decodes_the_orbiter_simulator_as_we_do(
        orbiter: Tmdb, documents: dict[str, bytes]) -> None:
    generator = PacketGenerator(make_model("orbiter", seed=0), orbiter, start_unix=START_UNIX)
    stream = b"".join(generator.advance_to(float(second)) for second in range(1, 31))
    seen = compare_decoders(orbiter, documents["orbiter"], stream)
    assert seen == generator.counts() and set(seen) == {p.name for p in orbiter.packets}


def random_raw(p: Parameter, rng: np.random.Generator, n: int) -> Any:
    """Raw values space-packet-parser can take: enum values it lists (it ignores an
    Enumeration's maxValue) and table counts below the last point (its spline fails
    on the last point itself)."""
    if p.type == "enum":
        return rng.choice([*p.states, *(low for low, _, _ in p.state_ranges)], n)
    if p.type == "boolean":
        return rng.integers(0, 2, n)
    if p.type == "float":
        scale = 1e6 if p.bit_length == 64 else 1e3
        return rng.normal(0.0, scale, n).astype(np.float32 if p.bit_length == 32 else np.float64)
    if p.type == "string":
        letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz0123456789"))
        return np.array(["".join(rng.choice(letters, rng.integers(1, p.bit_length // 8 + 1)))
                         for _ in range(n)], dtype=object)
    if p.type == "binary":
        return np.array([rng.bytes(p.bit_length // 8).hex() for _ in range(n)], dtype=object)
    if p.calibration.kind == "table":
        return rng.integers(0, int(p.calibration.table[-1][0]), n)
    if p.type == "signed":
        return rng.integers(-(1 << (p.bit_length - 1)), 1 << (p.bit_length - 1), n)
    return rng.integers(0, 1 << p.bit_length, n, dtype=np.uint64)


def test_space_packet_parser_decodes_random_synthetic_packets_as_we_do(probe: Tmdb) -> None:
    """Every fixed packet space-packet-parser can read: without overlays (it reads each
    entry after the previous one). The codec writes a select field's first value."""
    fixed = tuple(p for p in probe.packets
                  if not p.variable and not any(q.overlay for q in p.parameters))
    assert [p.name for p in fixed] == ["probe_hk", "probe_beacon", "probe_sci_a",
                                       "probe_sci_bc"]
    tmdb = replace(probe, packets=fixed)
    rng = np.random.default_rng(7)
    n = 200
    stream = b""
    for packet in fixed:
        selected = dict(packet.select)
        values = {p.name: random_raw(p, rng, n) for p in packet.parameters
                  if p.name not in selected}
        stream += PacketCodec(tmdb.spacecraft, packet).encode(
            values, coarse=2_100_000_000 + np.arange(n), fine=rng.integers(0, 65536, n),
            sequence_counts=np.arange(n), raw=True)
    assert compare_decoders(tmdb, export_xtce(tmdb), stream) == {
        "probe_hk": n, "probe_beacon": n, "probe_sci_a": n, "probe_sci_bc": n}


ENGINEERING_YAML = """
spacecraft: sizes
packets:
  - name: sizes
    apid: 0x50
    parameters:
      - {name: count32, bit_length: 16, type: unsigned,
         calibration: {polynomial: [-40.1, 0.0123], engineering: float32}}
      - {name: count64, bit_length: 16, type: signed,
         calibration: {polynomial: [-40.1, 0.0123], engineering: float64}}
      - {name: ieee32, bit_length: 64, type: float,
         calibration: {polynomial: [1.5, 0.1], engineering: float32}}
      - {name: ieee64, bit_length: 32, type: float, calibration: {polynomial: [1.5, 0.1]}}
      - {name: raw32, bit_length: 32, type: float}
      - {name: table32, bit_length: 12, type: unsigned,
         calibration: {table: [[0, -5.1], [4095, 100.3]], engineering: float32}}
      - {name: pad, bit_length: 4, type: spare}
"""


def test_a_calibrations_engineering_size_is_its_size_in_bits_and_imports_back(
        tmp_path: Path) -> None:
    """``engineering: float32`` is FloatParameterType sizeInBits 32, float64 is 64: the
    database imports back with it, and space-packet-parser's values, narrowed, are ours."""
    tmdb = parse_tmdb(yaml.safe_load(ENGINEERING_YAML), "sizes.yaml")
    document = export_xtce(tmdb)
    assert validate_xtce(document) == []
    doc = Document.read(document)
    names = [p.name for p in tmdb.packets[0].parameters]
    assert {name: doc.type_of(doc.parameters[name]).get("sizeInBits") for name in names} == {
        "count32": "32", "count64": "64", "ieee32": "32", "ieee64": "64", "raw32": "32",
        "table32": "32"}
    path = tmp_path / "sizes.xml"
    path.write_bytes(document)
    back = parse_tmdb(import_xtce(path).document, "back")
    assert [p.calibration.engineering for p in back.packets[0].parameters] == [
        "float32", "float64", "float32", "float64", "float64", "float32"]
    assert replace(back, source="") == replace(tmdb, source="")
    rng = np.random.default_rng(32)
    n = 300
    packet = tmdb.packets[0]
    stream = PacketCodec(tmdb.spacecraft, packet).encode(
        {p.name: random_raw(p, rng, n) for p in packet.parameters},
        coarse=2_100_000_000 + np.arange(n), fine=rng.integers(0, 65536, n),
        sequence_counts=np.arange(n), raw=True)
    assert compare_decoders(tmdb, document, stream) == {"sizes": n}


# --------------------------------------------------------------------------- polymorphic
# Types of one APID told apart by select: XTCE tests a container's restriction before it
# reads the container's own entries, so the fields a select tests are read by an
# abstract container of the APID that the types inherit from.


def test_the_types_of_an_apid_inherit_the_fields_their_selects_test(
        documents: dict[str, bytes]) -> None:
    doc = Document.read(documents["poly"])
    header = [("ccsds_version", (0,), False), ("ccsds_type", (0,), False),
              ("ccsds_apid", (0x140,), False)]
    assert doc.containers["apid_320"].get("abstract") == "true"
    assert restriction_of(doc.containers["apid_320"]) == header
    # The time, the fields up to sci_type and the gap before it, once for all types.
    assert doc.own("apid_320") == ["apid_320__obt", "sci_seq", "apid_320__spare_112",
                                   "sci_type"]
    for name in ("sci_short", "sci_long", "sci_dump"):
        assert doc.chain(name) == ["ccsds_packet", "apid_320", name]
    assert doc.own("sci_short") == ["temp", "heater_on", "sci_short__spare_137",
                                    "sci_short__crc"]
    assert doc.own("sci_long") == ["gain", "level", "tag", "sci_long__crc"]
    assert doc.own("sci_dump") == ["block", "dump_end", "sci_dump__crc"]
    assert [restriction_of(doc.containers[name]) for name in ("sci_short", "sci_long")] == [
        [("sci_type", (0,), True)], [("sci_type", (1, 2), True)]]
    # A lone type with a select: the same structure.
    assert doc.chain("beacon") == ["ccsds_packet", "apid_321", "beacon"]
    assert doc.own("apid_321") == ["beacon_kind", "beacon_mode"]
    assert restriction_of(doc.containers["beacon"]) == [("beacon_kind", (5,), True),
                                                        ("beacon_mode", (1, 3), True)]


def test_an_apid_container_name_a_packet_has_is_made_unique(poly: Tmdb) -> None:
    named = parse_tmdb({"spacecraft": "poly", "packets": [
        {"name": "apid_320", "apid": 0x142, "time": "receive", "parameters": [
            {"name": "sci_seq", "bit_length": 16, "type": "unsigned"}]}]}, "named.yaml")
    doc = Document.read(export_xtce(replace(poly, packets=(*poly.packets, *named.packets))))
    assert doc.chain("sci_short") == ["ccsds_packet", "apid_320_2", "sci_short"]
    # sci_seq is the field of two containers now: each qualifies it.
    assert doc.own("apid_320_2")[:2] == ["apid_320_2__obt", "apid_320_2__sci_seq"]
    assert doc.own("apid_320") == ["apid_320__sci_seq", "apid_320__crc"]


def test_polymorphic_packets_import_back_as_the_same_database(
        poly: Tmdb, documents: dict[str, bytes], tmp_path: Path) -> None:
    path = tmp_path / "poly.xml"
    path.write_bytes(documents["poly"])
    result = import_xtce(path)
    assert result.unsupported == ()
    assert not [note for note in result.notes if "select" in note or "own entries" in note]
    assert replace(parse_tmdb(result.document, "back"), source="") == replace(poly, source="")


def test_space_packet_parser_tells_polymorphic_packets_apart_as_we_do(
        poly: Tmdb, documents: dict[str, bytes]) -> None:
    """Random packets of every type, shuffled: space-packet-parser picks each one's
    container as our decoder picks its type, and reads every value as we do."""
    rng = np.random.default_rng(11)
    packets: list[bytes] = []

    def encode(packet: PacketDef, values: dict[str, Any], n: int, first: int = 0) -> None:
        octets = PacketCodec(poly.spacecraft, packet).encode(
            values, coarse=2_100_000_000 + np.arange(n), fine=rng.integers(0, 65536, n),
            sequence_counts=first + np.arange(n), raw=True)
        packets.extend(octets[i * packet.length:(i + 1) * packet.length] for i in range(n))

    def randoms(packet: PacketDef, n: int) -> dict[str, Any]:
        """Every field but the select's, which the codec writes (its first value)."""
        tested = dict(packet.select)
        return {p.name: random_raw(p, rng, n) for p in packet.parameters
                if p.name not in tested}

    n = 40
    encode(poly.packet("sci_short"), randoms(poly.packet("sci_short"), n), n)
    long_types, modes = rng.choice([1, 2], n), rng.choice([1, 3], n)
    assert set(long_types.tolist()) == {1, 2} and set(modes.tolist()) == {1, 3}
    encode(poly.packet("sci_long"), {**randoms(poly.packet("sci_long"), n),
                                     "sci_type": long_types}, n)
    encode(poly.packet("beacon"), {**randoms(poly.packet("beacon"), n), "beacon_mode": modes},
           n)
    dump = poly.packet("sci_dump")
    for octets in range(1, 13):
        # 15 octets up to the block (headers, sci_seq, sci_type), dump_end and the CRC.
        concrete = concrete_layout(dump, 15 + octets + 4, (octets,))
        encode(concrete, randoms(concrete, 1), 1, first=octets)
    stream = b"".join(packets[i] for i in rng.permutation(len(packets)))
    assert compare_decoders(poly, documents["poly"], stream) == {
        "sci_short": n, "sci_long": n, "sci_dump": 12, "beacon": n}


def poly_variant(change: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(POLY_YAML)
    long_fields = document["packets"][1]["parameters"]
    if change == "select field elsewhere":
        long_fields[1]["bit_offset"] = 112
        long_fields[2]["bit_length"] = 12  # the fields after it stay on octets
    elif change == "select field with other states":
        long_fields[1]["states"] = {1: "LONG", 2: "LONG_RAW"}
    elif change == "another field before it":
        long_fields[0]["name"] = "long_seq"
    return document


@pytest.mark.parametrize(("change", "reason"), [
    ("select field elsewhere",
     "'sci_short' has 4 unused bits at bit 112 where 'sci_long' has 'sci_type' at bit 112 "
     "(enum, 4 bits)"),
    ("select field with other states",
     "'sci_short' has 'sci_type' at bit 116 (enum, 4 bits) where 'sci_long' has 'sci_type' "
     "at bit 116 defined otherwise (states)"),
    ("another field before it",
     "'sci_short' has 'sci_seq' at bit 96 (unsigned, 16 bits) where 'sci_long' has "
     "'long_seq' at bit 96 (unsigned, 16 bits)"),
])
def test_types_that_do_not_read_their_select_field_alike_are_reported(
        change: str, reason: str) -> None:
    with pytest.raises(TmdbError) as caught:
        export_xtce(parse_tmdb(poly_variant(change), "poly.yaml"))
    problems = caught.value.problems
    assert problems[0] == (
        "poly.yaml: poly sci_long: the packet types of APID 320 must read the same fields, "
        "defined alike, up to the fields their selects test (sci_type): XTCE reads those in "
        "one container all the types inherit from, before it tells them apart; " + reason)
    # Moved, sci_type is other bits to the decoder too: the selects no longer exclude
    # each other.
    assert len(problems) == (3 if change == "select field elsewhere" else 1), problems
    assert all("its select can match the same packets of APID 320" in p for p in problems[1:])

