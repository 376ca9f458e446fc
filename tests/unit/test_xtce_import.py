"""XTCE import (control_center.telemetry.xtce).

Real mission files (space-packet-parser's test data: JPSS-1, CTIM, IMAP-IDEX) and a
database built with Yamcs's own generator (yamcs-pymdb) are imported, their packets
decoded by our Decoder and by space-packet-parser (NASA/LASP's XTCE decoder, reading the
same XTCE) and compared value by value. Then the ISLS profile's own markers, the XTCE
constructs partners use, and hostile or broken files.
"""

from __future__ import annotations

import functools
import math
import string
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from lxml import etree
from space_packet_parser import common as spp_common
from space_packet_parser.generators.ccsds import ccsds_generator
from space_packet_parser.xtce import encodings as spp_encodings
from space_packet_parser.xtce import parameter_types as spp_types
from space_packet_parser.xtce import parameters as spp_parameters
from space_packet_parser.xtce.definitions import (
    TAG_NAME_TO_PARAMETER_TYPE_OBJECT,
    XtcePacketDefinition,
)

from control_center.errors import TmdbError
from control_center.telemetry.codec import PacketCodec, render_text
from control_center.telemetry.decoder import Decoder
from control_center.telemetry.records import DecodedBatch, RawMessage
from control_center.telemetry.tmdb import Limits, PacketDef, Parameter, Tmdb
from control_center.telemetry.tmdb_yaml import parse_tmdb
from control_center.telemetry.xtce import XTCE_11, XTCE_12, XtceImport, import_xtce
from control_center.telemetry.xtce.export import export_xtce
from tests.support import xtce_pymdb
from tests.support.storage import same_float32
from tests.support.xtce_data import spp_file

RECEIVE_NS = 1_700_000_000_000_000_000
HEADER_FIELDS = 7  # space-packet-parser yields the primary header's 7 fields first


@functools.cache
def imported(relative: str) -> XtceImport:
    return import_xtce(spp_file(relative))


def tmdb_of(result: XtceImport, source: str = "test") -> Tmdb:
    return parse_tmdb(result.document, source)


# ------------------------------------------------------------------ our side


@dataclass(frozen=True)
class Decoded:
    """One packet as our Decoder decoded it: a row of a batch."""

    batch: DecodedBatch
    row: int

    @property
    def packet(self) -> PacketDef:
        return self.batch.packet

    def value(self, name: str) -> Any:
        return np.asarray(self.batch.values[name])[self.row]

    def raw(self, name: str) -> Any:
        return np.asarray(self.batch.raw[name])[self.row]


def decode_ours(tmdb: Tmdb, data: bytes) -> tuple[dict[tuple[int, int], Decoded], Counter[str]]:
    """Every packet our Decoder decodes from ``data``, by (APID, sequence count), and the
    errors it counted."""
    decoder = Decoder([tmdb])
    decoder.feed(RawMessage(tmdb.spacecraft, data, RECEIVE_NS, "test"))
    out: dict[tuple[int, int], Decoded] = {}
    for batch in decoder.take(force=True):
        for row in range(len(batch)):
            key = (batch.packet.apid, int(batch.sequence_counts[row]))
            assert key not in out, f"(APID, sequence count) {key} twice: cannot pair packets"
            out[key] = Decoded(batch, row)
    return out, Counter(decoder.stats.errors)


# ------------------------------------------------------------------ their side


@pytest.fixture
def spp_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """space-packet-parser keeps one value per name: record every value it parses, in
    order, so a packet holding a parameter twice (CTIM's spares) is compared fully."""

    def record(self: spp_common.SpacePacket, key: str, value: Any) -> None:
        self.__dict__.setdefault("in_order", []).append((key, value))
        dict.__setitem__(self, key, value)

    monkeypatch.setattr(spp_common.SpacePacket, "__setitem__", record)


def same_value(parameter: Parameter, ours: Any, ours_raw: Any, theirs: Any) -> bool:
    """One of our decoded values against space-packet-parser's: raw integers exactly,
    IEEE floats exactly, calibrated values to 1e-12 (engineering float32: theirs narrowed,
    exactly), enums by raw value and label."""
    if parameter.type == "enum":
        return bool(int(ours_raw) == theirs.raw_value
                    and parameter.state_label(int(ours)) == str(theirs))
    if parameter.type == "boolean":
        return bool(ours) is bool(theirs) and int(ours_raw) == int(theirs.raw_value)
    if parameter.type == "string":
        return bool(ours == render_text(str(theirs).encode("utf-8").rstrip(b"\0")))
    if parameter.type == "binary":
        return bool(ours == bytes(theirs).hex())
    if parameter.calibration.kind != "none":
        if float(ours_raw) != float(theirs.raw_value):
            return False
        if parameter.is_float32:  # rounded once from the float64 they compute
            return same_float32(ours, theirs)
        return math.isclose(float(ours), float(theirs), rel_tol=1e-12, abs_tol=1e-12)
    if parameter.type == "float":
        if math.isnan(float(theirs)):
            return math.isnan(float(ours))
        return float(ours) == float(theirs) and float(ours_raw) == float(theirs.raw_value)
    return type(theirs) is spp_common.IntParameter and int(ours) == int(theirs) \
        and int(ours_raw) == theirs.raw_value


def compare_packet(ours: Decoded, theirs: list[tuple[str, Any]]) -> int:
    """Our parameters against space-packet-parser's values of one packet, in order (its
    primary header fields left out); returns the number of values compared."""
    packet = ours.packet
    assert len(theirs) == len(packet.parameters), (
        f"{packet.name}: space-packet-parser has {len(theirs)} values, we "
        f"{len(packet.parameters)}")
    for parameter, (their_name, value) in zip(packet.parameters, theirs, strict=True):
        # our name is theirs lower-cased, with _2, _3 ... for a name met twice
        assert parameter.name.startswith(their_name.lower()), (parameter.name, their_name)
        mine, raw = ours.value(parameter.name), ours.raw(parameter.name)
        assert same_value(parameter, mine, raw, value), (
            f"{packet.name}.{parameter.name}: ours {mine!r} (raw {raw!r}), "
            f"space-packet-parser {value!r}")
    return len(theirs)


def compare_file(xtce: str, data_name: str, ours: dict[tuple[int, int], Decoded],
                 take: Callable[[int, int, int], bool] = lambda apid, index, octets: True,
                 root: str | None = None) -> tuple[int, int]:
    """Decode the packets ``take`` picks (by APID, place among that APID's packets and
    length) with space-packet-parser and compare each with ours; returns (packets,
    values)."""
    definition = XtcePacketDefinition.from_xtce(spp_file(xtce))
    seen: Counter[int] = Counter()
    packets = values = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its notice of a packet longer than its fields
        for raw in ccsds_generator(spp_file(data_name).read_bytes()):
            seen[raw.apid] += 1
            key = (raw.apid, raw.sequence_count)
            if key not in ours or not take(raw.apid, seen[raw.apid] - 1, len(raw)):
                continue
            theirs = definition.parse_bytes(raw, root_container_name=root)
            values += compare_packet(ours[key], theirs.__dict__["in_order"][HEADER_FIELDS:])
            packets += 1
    return packets, values


# ------------------------------------------------------------------ real mission files


@pytest.mark.usefixtures("spp_in_order")
def test_jpss1_geolocation_every_packet_decodes_as_space_packet_parser_does() -> None:
    result = imported("jpss/jpss1_geolocation_xtce_v1.xml")
    tmdb = tmdb_of(result)
    (packet,) = tmdb.packets
    assert (packet.name, packet.apid, packet.time, packet.error_control) == \
        ("jpss_att_ephem", 11, "receive", False)
    # XTCE gives fields, not a length: they end at octet 71, and whatever a packet holds
    # past them is skipped (tail: skip), as space-packet-parser does.
    assert (packet.length, packet.tail_skipped) == (71, True)
    assert packet.parameter("adgpsposx").unit == "m"
    assert packet.parameter("adaescid").description == "Spacecraft ID"
    assert result.unsupported == ()
    ours, errors = decode_ours(tmdb, spp_file(
        "jpss/J01_G011_LZ_2021-04-09T00-00-00Z_V01.DAT1").read_bytes())
    assert not errors and len(ours) == 7200
    packets, values = compare_file("jpss/jpss1_geolocation_xtce_v1.xml",
                                   "jpss/J01_G011_LZ_2021-04-09T00-00-00Z_V01.DAT1", ours)
    assert (packets, values) == (7200, 7200 * 20)


@pytest.mark.usefixtures("spp_in_order")
def test_ctim_packets_decode_as_space_packet_parser_does() -> None:
    result = imported("ctim/ctim_xtce_v1.xml")
    tmdb = tmdb_of(result)
    assert len(tmdb.packets) == 38
    # APID 1 has a float32 at bit 629, off the octet grid: read where it sits.
    slew = next(p for p in tmdb.packets if p.apid == 1).parameter("sw_tec_slew_rate")
    assert (slew.type, slew.bit_offset % 8, slew.bit_length) == ("float", 5, 32)
    assert not result.unsupported
    # CTIM names a spare SPARE_8 many times in one packet: each gets its own name
    assert [p.name for p in tmdb.packet("apid_8_packet").parameters if "spare_8" in p.name][:3] \
        == ["spare_8", "spare_8_2", "spare_8_3"]
    ours, errors = decode_ours(tmdb, spp_file("ctim/ccsds_2021_155_14_39_51").read_bytes())
    # APID 1 packets run 7 bits past their fields, one APID 20 packet 16 octets past its
    # 30: as space-packet-parser does, the described fields are decoded, the rest skipped.
    assert errors == {}
    assert len(ours) == 1394 + 104 + 1
    # space-packet-parser takes ~3.5 ms a 1018-octet packet: every small packet, every
    # 25th of the three APIDs of 1018 octets.
    packets, values = compare_file("ctim/ctim_xtce_v1.xml", "ctim/ccsds_2021_155_14_39_51",
                                   ours, lambda apid, i, octets: octets < 200 or i % 25 == 0,
                                   root="CCSDSTelemetryPacket")
    # Every packet under 200 octets (APID 1 and 32: 104 each, APID 20: 6, APIDs 33, 34,
    # 39: 1 each) and every 25th of the 1018-octet ones.
    assert packets == (104 + 104 + 6 + 1 + 1 + 1) + (46 + 3 + 3)
    assert values > 50_000


@pytest.mark.usefixtures("spp_in_order")
def test_idex_polymorphic_packets_and_dynamic_binaries_decode_as_space_packet_parser_does(
        ) -> None:
    result = imported("idex/idex_combined_science_definition.xml")
    tmdb = tmdb_of(result)
    assert [(p.name, p.apid, p.variable) for p in tmdb.packets] == [
        ("sci0typezero", 1424, False), ("sci0typenonzero", 1424, True),
        ("scifetchtypezero", 1425, False), ("scifetchtypenonzero", 1425, True)]
    nonzero = tmdb.packet("sci0typenonzero")
    assert nonzero.select == (("idx__sci0type", tuple(range(2, 256))),)  # "> 1", 8 bits
    assert tmdb.packet("sci0typezero").select == (("idx__sci0type", (1,)),)
    # the waveform runs to the sync word and CRC at the end: size on the packet length
    raw = next(p for p in result.document["packets"] if p["name"] == "sci0typenonzero")
    assert {"name": "idx__sci0raw", "type": "binary", "size": "expand"} in raw["parameters"]
    assert result.unsupported == ()
    ours, errors = decode_ours(tmdb, spp_file("idex/sciData_2023_052_14_45_05").read_bytes())
    assert not errors and len(ours) == 78
    assert Counter(decoded.packet.name for decoded in ours.values()) == {
        "sci0typenonzero": 72, "sci0typezero": 6}
    packets, values = compare_file("idex/idex_combined_science_definition.xml",
                                   "idex/sciData_2023_052_14_45_05", ours)
    assert (packets, values) == (78, 6 * 100 + 72 * 21)


@pytest.mark.parametrize("name", ["test_xtce.xml", "test_xtce_no_namespace.xml",
                                  "test_xtce_default_namespace.xml", "XTCE 1.1"])
def test_files_with_a_prefix_a_default_namespace_or_none_and_xtce_1_1_import_alike(
        name: str, tmp_path: Path) -> None:
    reference = imported("jpss/jpss1_geolocation_xtce_v1.xml").document
    if name == "XTCE 1.1":
        path = tmp_path / "jpss_xtce_1_1.xml"
        path.write_text(spp_file("jpss/jpss1_geolocation_xtce_v1.xml").read_text().replace(
            XTCE_12, XTCE_11))
        document = import_xtce(path).document
    else:
        document = imported(name).document
    assert document["packets"] == reference["packets"]


# ------------------------------------------------------------------ Yamcs (pymdb)


def spp_containers(xml: bytes) -> dict[str, list[Any]]:
    """space-packet-parser's own types and parameters for each concrete container of a
    pymdb file, built from the file's elements by its ``from_xml`` parsers.

    Its ``from_xtce`` cannot read this file (no aggregates, only the root system): the
    primary header (two aggregates) is read as 48 bits of binary instead, and the
    entries are listed from the file. Its one deviation from XTCE is corrected: a
    SplineCalibrator without ``order`` is linear (XTCE's default is 1, it assumes 0).
    """
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    parser.set_element_class_lookup(
        etree.ElementDefaultClassLookup(element=spp_common.NamespaceAwareElement))
    root = etree.fromstring(xml, parser)
    spp_common.NamespaceAwareElement.set_ns_prefix(None)
    spp_common.NamespaceAwareElement.set_nsmap(root.nsmap)
    header = spp_parameters.Parameter("primary_header", spp_types.BinaryParameterType(
        "primary_header", spp_encodings.BinaryDataEncoding(fixed_size_in_bits=48)))
    types: dict[str, Any] = {}
    parameters: dict[str, Any] = {}
    containers: dict[str, list[Any]] = {}
    for system in root.iter("{*}SpaceSystem"):
        for element in system.find("TelemetryMetaData/ParameterTypeSet").iterfind("*"):
            tag = etree.QName(element).localname
            if tag == "AggregateParameterType":
                continue
            for spline in element.iter("{*}SplineCalibrator"):
                spline.set("order", spline.get("order", "1"))
            types[element.get("name")] = TAG_NAME_TO_PARAMETER_TYPE_OBJECT[tag].from_xml(element)
        for element in system.find("TelemetryMetaData/ParameterSet").iterfind("*"):
            if element.get("parameterTypeRef") in types:
                parameters[element.get("name")] = spp_parameters.Parameter.from_xml(
                    element, parameter_type_lookup=types)
        for element in system.find("TelemetryMetaData/ContainerSet").iterfind("*"):
            if element.get("abstract") != "true":
                containers[element.get("name")] = [header] + [
                    parameters[entry.get("parameterRef")]
                    for entry in element.find("EntryList").iterfind("ParameterRefEntry")]
    return containers


def random_raw(parameter: Parameter, n: int, rng: np.random.Generator) -> Any:
    bits = parameter.bit_length
    if parameter.type == "float":
        values = rng.normal(0.0, 1e3, n)
        return values.astype(np.float32) if bits == 32 else values
    if parameter.type == "string":  # shorter than the field: pymdb ends a string with a
        # NUL, which space-packet-parser requires in the field
        alphabet = np.array(list(string.ascii_letters + string.digits + " -"))
        return np.array(["".join(rng.choice(alphabet, rng.integers(0, bits // 8)))
                         for _ in range(n)], dtype=object)
    if parameter.type == "enum":  # the values space-packet-parser knows (no maxValue)
        return rng.choice(sorted(xtce_pymdb.MODE_STATES), n)
    if parameter.type == "signed":
        return rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), n, dtype=np.int64)
    return rng.integers(0, 1 << bits, n, dtype=np.uint64 if bits == 64 else np.int64)


def test_a_yamcs_pymdb_database_encodes_and_decodes_as_space_packet_parser_reads_it(
        tmp_path: Path) -> None:
    path = tmp_path / "demo_sat.xml"
    path.write_bytes(xtce_pymdb.demo_xtce())
    result = import_xtce(path)
    tmdb = tmdb_of(result)
    assert tmdb.spacecraft == "demo_sat"
    assert tmdb.description == "A demonstration spacecraft built with yamcs-pymdb."
    assert {p.name: p.apid for p in tmdb.packets} == xtce_pymdb.APIDS
    hk, pwr = tmdb.packet("hk"), tmdb.packet("pwr")
    assert [(p.name, p.bit_offset, p.bit_length, p.type, p.byte_order) for p in hk.parameters] \
        == [("board_temp", 48, 12, "signed", "big"), ("nibble", 60, 4, "unsigned", "big"),
            ("bus_voltage", 64, 32, "float", "big"), ("orbit_phase", 96, 64, "float", "big"),
            ("load_current", 160, 16, "unsigned", "little"),
            ("heater_power", 176, 16, "unsigned", "big"),
            ("wheel_speed", 192, 32, "signed", "little"), ("uptime", 224, 40, "unsigned", "big"),
            ("energy", 264, 64, "unsigned", "big"), ("software_tag", 328, 64, "string", "big"),
            ("safe_flag", 392, 1, "boolean", "big"), ("tri", 393, 3, "unsigned", "big"),
            ("delta", 396, 4, "signed", "big")]
    assert hk.length == 50 and hk.tail_skipped and pwr.period == 2.0
    assert hk.parameter("load_current").calibration.coefficients == tuple(xtce_pymdb.POLYNOMIAL)
    assert hk.parameter("heater_power").calibration.table == tuple(zip(*xtce_pymdb.SPLINE,
                                                                       strict=True))
    # pymdb's FloatParameter is 32 bits unless told: float32 engineering values
    assert [hk.parameter(name).calibration.engineering
            for name in ("load_current", "heater_power")] == ["float32", "float32"]
    # limits, persistence and the limit set that depends on the power subsystem's mode
    temperature = hk.parameter("board_temp")
    assert temperature.limits == Limits(-10.0, 40.0, -20.0, 50.0)
    assert temperature.monitoring.persistence == 3
    (safe,) = temperature.monitoring.limit_sets
    assert (safe.mode, safe.states, safe.limits) == ("mode", (2,), Limits(-5.0, 30.0))
    assert pwr.parameter("battery_voltage").limits == Limits(24.0, 33.0, 22.0, 34.0)
    mode = pwr.parameter("mode")
    assert [mode.state_label(v) for v in range(11)] == \
        ["OFF", "ON", "SAFE"] + ["TEST"] * 7 + [None]
    # the command and the algorithm are listed, once each, with their lines
    assert len(result.unsupported) == 2
    assert any("<CustomAlgorithm name='temperature_trend'> in /Demo-Sat: algorithms are not "
               "supported" in u for u in result.unsupported)
    assert any("<MetaCommandSet> in /Demo-Sat: 1 commands skipped: this is a telemetry system"
               in u for u in result.unsupported)

    rng = np.random.default_rng(20260412)
    n = 150
    stream: list[bytes] = []
    sent: dict[str, dict[str, Any]] = {}
    for packet in tmdb.packets:
        values = {p.name: random_raw(p, n, rng) for p in packet.parameters}
        sent[packet.name] = values
        data = PacketCodec(tmdb.spacecraft, packet).encode(
            values, coarse=0, fine=0, sequence_counts=np.arange(n), raw=True)
        stream.extend(data[i * packet.length:(i + 1) * packet.length] for i in range(n))
    ours, errors = decode_ours(tmdb, b"".join(stream))
    assert not errors and len(ours) == 3 * n
    containers = spp_containers(path.read_bytes())
    by_apid = {apid: name for name, apid in xtce_pymdb.APIDS.items()}
    compared = 0
    for raw in stream:
        apid, count = int.from_bytes(raw[:2], "big") & 0x7FF, \
            int.from_bytes(raw[2:4], "big") & 0x3FFF
        theirs = spp_common.SpacePacket(binary_data=raw)
        for entry in containers[by_apid[apid]]:
            entry.parse(theirs)
        assert theirs._parsing_pos == len(raw) * 8  # their fields end where the packet does
        decoded = ours[(apid, count)]
        compared += compare_packet(decoded, list(theirs.items())[1:])
        packet = decoded.packet
        for name, column in sent[packet.name].items():  # and we decode what we encoded
            mine = decoded.value(name) if packet.parameter(name).type == "string" \
                else decoded.raw(name)
            assert mine == column[count], (packet.name, name, mine, column[count])
    assert compared == n * sum(len(p.parameters) for p in tmdb.packets)


# ------------------------------------------------------------------ ISLS profile


def integer_type(name: str, bits: int, signed: bool = False) -> str:
    encoding = ' encoding="twosComplement"' if signed else ""
    return (f'<xtce:IntegerParameterType name="{name}" signed="{str(signed).lower()}">'
            f'<xtce:IntegerDataEncoding sizeInBits="{bits}"{encoding}/>'
            "</xtce:IntegerParameterType>")


def condition(ref: str, value: str | int, raw: bool = True) -> str:
    calibrated = ' useCalibratedValue="false"' if raw else ""
    return (f'<xtce:Condition><xtce:ParameterInstanceRef parameterRef="{ref}"{calibrated}/>'
            "<xtce:ComparisonOperator>==</xtce:ComparisonOperator>"
            f"<xtce:Value>{value}</xtce:Value></xtce:Condition>")


def comparisons(**tests: int) -> str:
    return "".join(f'<xtce:Comparison parameterRef="{ref}" value="{value}" '
                   'useCalibratedValue="false"/>' for ref, value in tests.items())


def ancillary(**items: str) -> str:
    return "<xtce:AncillaryDataSet>" + "".join(
        f'<xtce:AncillaryData name="{key.replace("_", ".", 1)}">{value}</xtce:AncillaryData>'
        for key, value in items.items()) + "</xtce:AncillaryDataSet>"


def isls_alias(name: str) -> str:
    return f'<xtce:AliasSet><xtce:Alias nameSpace="isls" alias="{name}"/></xtce:AliasSet>'


def parameter(name: str, type_name: str, inner: str = "") -> str:
    return f'<xtce:Parameter name="{name}" parameterTypeRef="{type_name}">{inner}</xtce:Parameter>'


def entry(ref: str, at: int | None = None) -> str:
    if at is None:
        return f'<xtce:ParameterRefEntry parameterRef="{ref}"/>'
    return (f'<xtce:ParameterRefEntry parameterRef="{ref}"><xtce:LocationInContainerInBits '
            f'referenceLocation="containerStart"><xtce:FixedValue>{at}</xtce:FixedValue>'
            "</xtce:LocationInContainerInBits></xtce:ParameterRefEntry>")


HEADER = ("ccsds_version", 3), ("ccsds_type", 1), ("ccsds_secondary_header", 1), \
    ("ccsds_apid", 11), ("ccsds_sequence_flags", 2), ("ccsds_sequence_count", 14), \
    ("ccsds_packet_length", 16)
ELEMENT_OF_RATE = ancillary(isls_element_of="rate")

# What our export writes for PROFILE_YAML (the ISLS profile, docs/contracts.md).
PROFILE = f"""<?xml version="1.0" encoding="UTF-8"?>
<xtce:SpaceSystem name="lander" xmlns:xtce="http://www.omg.org/spec/XTCE/20180204">
  <xtce:LongDescription>ISLS-1 lander.</xtce:LongDescription>
  {ancillary(isls_spacecraft_id="337", isls_mission="ISLS-1", isls_agency="roscosmos")}
  <xtce:TelemetryMetaData>
    <xtce:ParameterTypeSet>
      {"".join(integer_type(f"u{bits}", bits) for bits in (1, 2, 3, 4, 8, 11, 14, 16))}
      {integer_type("i16", 16, signed=True)}
      <xtce:AbsoluteTimeParameterType name="cuc_time">
        <xtce:Encoding units="seconds" scale="1.52587890625e-05">
          <xtce:IntegerDataEncoding sizeInBits="48"/></xtce:Encoding>
        <xtce:ReferenceTime><xtce:Epoch>TAI</xtce:Epoch></xtce:ReferenceTime>
      </xtce:AbsoluteTimeParameterType>
      <xtce:EnumeratedParameterType name="phase_type">
        <xtce:IntegerDataEncoding sizeInBits="8"/>
        <xtce:EnumerationList>
          <xtce:Enumeration value="0" label="COAST"/>
          <xtce:Enumeration value="1" label="BRAKING"/>
          <xtce:Enumeration value="2" label="TERMINAL"/>
        </xtce:EnumerationList>
      </xtce:EnumeratedParameterType>
      <xtce:FloatParameterType name="throttle_type" sizeInBits="64">
        <xtce:UnitSet><xtce:Unit>%</xtce:Unit></xtce:UnitSet>
        <xtce:IntegerDataEncoding sizeInBits="16">
          <xtce:DefaultCalibrator><xtce:PolynomialCalibrator>
            <xtce:Term coefficient="0.0" exponent="0"/>
            <xtce:Term coefficient="0.01" exponent="1"/>
          </xtce:PolynomialCalibrator></xtce:DefaultCalibrator>
        </xtce:IntegerDataEncoding>
        <xtce:DefaultAlarm minViolations="2"><xtce:StaticAlarmRanges>
          <xtce:WarningRange maxInclusive="100.0"/><xtce:CriticalRange maxInclusive="100.5"/>
        </xtce:StaticAlarmRanges></xtce:DefaultAlarm>
        <xtce:ContextAlarmList><xtce:ContextAlarm minViolations="2">
          <xtce:ContextMatch><xtce:BooleanExpression><xtce:ORedConditions>
            {condition("phase", "BRAKING", raw=False)}
            {condition("phase", 2)}
          </xtce:ORedConditions></xtce:BooleanExpression></xtce:ContextMatch>
          <xtce:StaticAlarmRanges>
            <xtce:WarningRange minInclusive="5.0" maxInclusive="90.0"/>
          </xtce:StaticAlarmRanges>
        </xtce:ContextAlarm></xtce:ContextAlarmList>
      </xtce:FloatParameterType>
      <xtce:FloatParameterType name="speed_type" sizeInBits="64">
        <xtce:UnitSet><xtce:Unit>m/s</xtce:Unit></xtce:UnitSet>
        <xtce:FloatDataEncoding sizeInBits="64"/>
      </xtce:FloatParameterType>
      <xtce:BinaryParameterType name="blob_type">
        <xtce:BinaryDataEncoding><xtce:SizeInBits><xtce:DynamicValue>
          <xtce:ParameterInstanceRef parameterRef="blob_length"/>
          <xtce:LinearAdjustment slope="8"/>
        </xtce:DynamicValue></xtce:SizeInBits></xtce:BinaryDataEncoding>
      </xtce:BinaryParameterType>
    </xtce:ParameterTypeSet>
    <xtce:ParameterSet>
      {"".join(parameter(name, f"u{bits}") for name, bits in HEADER)}
      {parameter("nav__obt", "cuc_time")}
      {parameter("phase", "phase_type", "<xtce:LongDescription>Guidance phase."
                 "</xtce:LongDescription>" + isls_alias("phase")
                 + ancillary(isls_event="true", isls_report="true"))}
      {parameter("throttle", "throttle_type", ancillary(isls_deadband="0.5"))}
      {"".join(parameter(f"rate_{i}", "i16", isls_alias(f"rate_{i}") + ELEMENT_OF_RATE)
               for i in range(3))}
      {parameter("status", "u8")}
      {parameter("status_high", "u4", ancillary(isls_overlay="true"))}
      {parameter("nav__spare_176", "u8", ancillary(isls_spare="true"))}
      {parameter("nav__crc", "u16", ancillary(isls_role="crc"))}
      {parameter("nav__speed", "speed_type", "<xtce:LongDescription>Throttle, doubled."
                 "</xtce:LongDescription>" + isls_alias("speed")
                 + ancillary(isls_expression="throttle * 2", isls_packet="nav"))}
      {"".join(parameter(name, "u8") for name in ("kind", "blob_length", "tail"))}
      {parameter("blob", "blob_type")}
    </xtce:ParameterSet>
    <xtce:ContainerSet>
      <xtce:SequenceContainer name="ccsds_packet" abstract="true">
        <xtce:EntryList>{"".join(entry(name) for name, _ in HEADER)}</xtce:EntryList>
      </xtce:SequenceContainer>
      <xtce:SequenceContainer name="nav">
        <xtce:LongDescription>Navigation at 10 Hz.</xtce:LongDescription>
        {ancillary(isls_time="cuc", isls_error_control="crc16", isls_period="0.1")}
        <xtce:DefaultRateInStream basis="perSecond" minimumValue="10" maximumValue="10"/>
        <xtce:EntryList>
          {"".join(entry(name) for name in ("nav__obt", "phase", "throttle", "rate_0",
                                             "rate_1", "rate_2", "status"))}
          {entry("status_high", 168)}{entry("nav__spare_176", 176)}{entry("nav__crc")}
        </xtce:EntryList>
        <xtce:BaseContainer containerRef="ccsds_packet"><xtce:RestrictionCriteria>
          <xtce:ComparisonList>
            {comparisons(ccsds_version=0, ccsds_type=0, ccsds_apid=272)}
          </xtce:ComparisonList>
        </xtce:RestrictionCriteria></xtce:BaseContainer>
      </xtce:SequenceContainer>
      <xtce:SequenceContainer name="sci_a">
        {ancillary(isls_time="receive")}
        <xtce:EntryList>{entry("kind")}{entry("tail")}</xtce:EntryList>
        <xtce:BaseContainer containerRef="ccsds_packet"><xtce:RestrictionCriteria>
          <xtce:ComparisonList>
            {comparisons(ccsds_version=0, ccsds_type=0, ccsds_apid=288, kind=0)}
          </xtce:ComparisonList>
        </xtce:RestrictionCriteria></xtce:BaseContainer>
      </xtce:SequenceContainer>
      <xtce:SequenceContainer name="sci_b">
        {ancillary(isls_time="receive")}
        <xtce:EntryList>
          {entry("kind")}{entry("blob_length")}{entry("blob")}{entry("tail")}
        </xtce:EntryList>
        <xtce:BaseContainer containerRef="ccsds_packet"><xtce:RestrictionCriteria>
          <xtce:BooleanExpression><xtce:ANDedConditions>
            {condition("ccsds_version", 0)}{condition("ccsds_type", 0)}
            {condition("ccsds_apid", 288)}
            <xtce:ORedConditions>{condition("kind", 1)}{condition("kind", 2)}</xtce:ORedConditions>
          </xtce:ANDedConditions></xtce:BooleanExpression>
        </xtce:RestrictionCriteria></xtce:BaseContainer>
      </xtce:SequenceContainer>
    </xtce:ContainerSet>
  </xtce:TelemetryMetaData>
</xtce:SpaceSystem>
"""

PROFILE_YAML = """
spacecraft: lander
spacecraft_id: 337
mission: ISLS-1
agency: roscosmos
description: ISLS-1 lander.
packets:
  - name: nav
    apid: 272
    period: 0.1
    length: 25
    description: Navigation at 10 Hz.
    parameters:
      - {name: phase, bit_length: 8, type: enum, states: {0: COAST, 1: BRAKING, 2: TERMINAL},
         event: true, report: true, description: Guidance phase.}
      - name: throttle
        bit_length: 16
        type: unsigned
        calibration: {polynomial: [0.0, 0.01]}
        unit: "%"
        limits: {yellow: [null, 100.0], red: [null, 100.5]}
        limit_sets:
          - when: {phase: [BRAKING, TERMINAL]}
            limits: {yellow: [5.0, 90.0]}
        persistence: 2
        deadband: 0.5
      - {name: rate, bit_length: 16, type: signed, array: 3}
      - {name: status, bit_length: 8, type: unsigned}
      - {name: status_high, bit_offset: 168, bit_length: 4, type: unsigned, overlay: true}
    derived:
      - {name: speed, expression: throttle * 2, unit: m/s, description: "Throttle, doubled."}
  - name: sci_a
    apid: 288
    select: {kind: 0}
    time: receive
    error_control: none
    parameters:
      - {name: kind, bit_length: 8, type: unsigned}
      - {name: tail, bit_length: 8, type: unsigned}
  - name: sci_b
    apid: 288
    select: {kind: [1, 2]}
    time: receive
    error_control: none
    parameters:
      - {name: kind, bit_length: 8, type: unsigned}
      - {name: blob_length, bit_length: 8, type: unsigned}
      - {name: blob, type: binary, size: blob_length}
      - {name: tail, bit_length: 8, type: unsigned}
"""


ROUND_TRIP_YAML = """
spacecraft: rich
spacecraft_id: 12
mission: RICH-1
description: Every kind of field our TMDB has.
packets:
  - name: hk
    apid: 0x20
    period: 2.5
    parameters:
      - {name: mode, bit_length: 16, type: enum, states: {0: IDLE, 1: RUN, "[2,30]": HIGH},
         event: true, persistence: 3}
      - name: temp
        bit_length: 16
        type: signed
        calibration: {table: [[-100, -50.0], [0, 0.0], [100, 75.5]], engineering: float32}
        unit: degC
        limits: {yellow: [-20.0, 40.0], red: [-30.0, 60.0]}
        persistence: 4
        deadband: 0.25
        limit_sets: [{when: {mode: [RUN, HIGH]}, limits: {yellow: [-10.0, 30.0]}}]
      - {name: word, bit_length: 16, type: unsigned}
      - {name: word_hi, bit_offset: 128, bit_length: 4, type: unsigned, overlay: true,
         report: true}
      - {name: le, bit_length: 32, type: unsigned, byte_order: little, bit_offset: 152}
      - {name: vec, bit_length: 16, type: signed, array: 4}
      - {name: flag, bit_length: 1, type: boolean, persistence: 2}
      - {name: pad, bit_length: 7, type: spare}
      - {name: volts, bit_length: 64, type: float, unit: V}
      - {name: label, bit_length: 64, type: string}
      - {name: blob, bit_length: 32, type: binary}
    derived:
      - {name: power, expression: volts * 2, unit: W, limits: {red: [null, 100.0]},
         report: true}
  - name: sci_a
    apid: 0x30
    time: receive
    error_control: none
    select: {kind: 0}
    parameters:
      - {name: kind, bit_length: 8, type: unsigned}
      - {name: n, bit_length: 8, type: unsigned}
      - {name: samples, bit_length: 16, type: unsigned, array: n}
      - {name: tail, bit_length: 8, type: unsigned}
  - name: sci_b
    apid: 0x30
    time: receive
    error_control: none
    select: {kind: [1, 2, 7]}
    parameters:
      - {name: kind, bit_length: 8, type: unsigned}
      - {name: text_len, bit_length: 8, type: unsigned}
      - {name: text, type: string, size: text_len}
      - {name: tail, bit_length: 8, type: unsigned}
  - name: dump
    apid: 0x31
    parameters:
      - {name: part, bit_length: 8, type: unsigned}
      - {name: data, type: binary, size: expand}
      - {name: check, bit_length: 16, type: unsigned}
  - name: waves
    apid: 0x32
    error_control: none
    parameters:
      - {name: gain, bit_length: 8, type: unsigned}
      - {name: wave, bit_length: 12, type: signed, array: expand}
      - {name: wave_end, bit_length: 4, type: unsigned}
  - name: single
    apid: 0x33
    tail: skip
    parameters:
      - {name: one, bit_length: 16, type: unsigned, array: 1}
      - {name: two, bit_length: 8, type: unsigned}
"""


@pytest.mark.parametrize("source", ["lander", "orbiter", "every kind of field"])
def test_our_export_imports_back_as_the_same_database(source: str, tmp_path: Path) -> None:
    if source == "every kind of field":
        tmdb = parse_tmdb(yaml.safe_load(ROUND_TRIP_YAML), "rich")
    else:
        path = Path(__file__).resolve().parents[2] / "config" / "tmdb" / f"{source}.yaml"
        tmdb = parse_tmdb(yaml.safe_load(path.read_text()), "shipped")
    exported = tmp_path / "exported.xml"
    exported.write_bytes(export_xtce(tmdb))
    result = import_xtce(exported)
    assert result.unsupported == ()
    assert replace(tmdb_of(result), source="") == replace(tmdb, source="")


def write(directory: Path, text: str, name: str = "partner.xml") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_isls_profile_imports_back_to_the_same_database(tmp_path: Path) -> None:
    """What our export writes (docs: the ISLS profile): the isls aliases and ancillary
    data, the CUC time entry, the CRC trailer, gap fillers, arrays written element by
    element, overlays at absolute places, select (an OR too), a dynamic size, derived
    parameters and limit sets, all back as the TMDB they came from."""
    result = import_xtce(write(tmp_path, PROFILE))
    expected = parse_tmdb(yaml.safe_load(PROFILE_YAML), "expected")
    got = tmdb_of(result, "expected")
    assert got.packets == expected.packets
    assert got == expected
    assert result.unsupported == ()


# ------------------------------------------------------------------ partners' XTCE


def probe(types: str = "", parameters: str = "", containers: str = "", systems: str = "",
          root: str = "Probe", extra: str = "") -> str:
    """An XTCE 1.2 file with a CCSDS primary header container ``header`` and what is
    given."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<SpaceSystem name="{root}" xmlns="http://www.omg.org/spec/XTCE/20180204">
  <TelemetryMetaData>
    <ParameterTypeSet>
      <IntegerParameterType name="U1"><IntegerDataEncoding sizeInBits="1"/></IntegerParameterType>
      <IntegerParameterType name="U2"><IntegerDataEncoding sizeInBits="2"/></IntegerParameterType>
      <IntegerParameterType name="U3"><IntegerDataEncoding sizeInBits="3"/></IntegerParameterType>
      <IntegerParameterType name="U11"><IntegerDataEncoding sizeInBits="11"/></IntegerParameterType>
      <IntegerParameterType name="U14"><IntegerDataEncoding sizeInBits="14"/></IntegerParameterType>
      <IntegerParameterType name="U16"><IntegerDataEncoding sizeInBits="16"/></IntegerParameterType>
      <IntegerParameterType name="U8"><IntegerDataEncoding sizeInBits="8"/></IntegerParameterType>
{types}
    </ParameterTypeSet>
    <ParameterSet>
      <Parameter name="VERSION" parameterTypeRef="U3"/>
      <Parameter name="TYPE" parameterTypeRef="U1"/>
      <Parameter name="SEC_HDR" parameterTypeRef="U1"/>
      <Parameter name="APID" parameterTypeRef="U11"/>
      <Parameter name="SEQ_FLAGS" parameterTypeRef="U2"/>
      <Parameter name="SEQ_COUNT" parameterTypeRef="U14"/>
      <Parameter name="LENGTH" parameterTypeRef="U16"/>
{parameters}
    </ParameterSet>
    <ContainerSet>
      <SequenceContainer name="header" abstract="true">
        <EntryList>
          <ParameterRefEntry parameterRef="VERSION"/><ParameterRefEntry parameterRef="TYPE"/>
          <ParameterRefEntry parameterRef="SEC_HDR"/><ParameterRefEntry parameterRef="APID"/>
          <ParameterRefEntry parameterRef="SEQ_FLAGS"/><ParameterRefEntry parameterRef="SEQ_COUNT"/>
          <ParameterRefEntry parameterRef="LENGTH"/>
        </EntryList>
      </SequenceContainer>
{containers}
    </ContainerSet>
  </TelemetryMetaData>
{extra}
{systems}
</SpaceSystem>
"""


def packet_xml(name: str, apid: int, entries: str, base: str = "header",
               more: str = "") -> str:
    """A packet container inheriting from ``base`` (the header container), restricted to
    ``apid`` and by the comparisons ``more``."""
    apid_ref = f"{base.rpartition('/')[0]}/APID" if "/" in base else "APID"
    return f"""      <SequenceContainer name="{name}">
        <EntryList>{entries}</EntryList>
        <BaseContainer containerRef="{base}"><RestrictionCriteria><ComparisonList>
          <Comparison parameterRef="{apid_ref}" value="{apid}"/>{more}
        </ComparisonList></RestrictionCriteria></BaseContainer>
      </SequenceContainer>"""


def refs(*names: str) -> str:
    return "".join(f'<ParameterRefEntry parameterRef="{n}"/>' for n in names)


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_subsystems_references_aggregates_arrays_and_times(tmp_path: Path) -> None:
    """Nested systems looked up by name (walking up), relative and absolute paths;
    aggregates flattened (a restriction on a member); fixed and dynamic arrays; a string
    sized by a counter; a foreign CUC time; other times as calibrated seconds."""
    types = """
      <AggregateParameterType name="Word"><MemberList>
        <Member name="kind" typeRef="U3"/><Member name="level" typeRef="/Probe/Sub/S5"/>
      </MemberList></AggregateParameterType>
      <ArrayParameterType name="Triple" arrayTypeRef="U8"><DimensionList><Dimension>
        <StartingIndex><FixedValue>0</FixedValue></StartingIndex>
        <EndingIndex><FixedValue>2</FixedValue></EndingIndex>
      </Dimension></DimensionList></ArrayParameterType>
      <ArrayParameterType name="Samples" arrayTypeRef="U16"><DimensionList><Dimension>
        <StartingIndex><FixedValue>0</FixedValue></StartingIndex>
        <EndingIndex><DynamicValue><ParameterInstanceRef parameterRef="Sub/N"/>
          <LinearAdjustment intercept="-1"/></DynamicValue></EndingIndex>
      </Dimension></DimensionList></ArrayParameterType>
      <AbsoluteTimeParameterType name="Cuc">
        <Encoding scale="1.52587890625e-05"><IntegerDataEncoding sizeInBits="48"/></Encoding>
        <ReferenceTime><Epoch>1958-01-01T00:00:00</Epoch></ReferenceTime>
      </AbsoluteTimeParameterType>
      <RelativeTimeParameterType name="Delay">
        <Encoding units="seconds" scale="0.001" offset="2">
          <IntegerDataEncoding sizeInBits="16"/></Encoding>
      </RelativeTimeParameterType>
      <BinaryParameterType name="Block"><BinaryDataEncoding>
        <SizeInBits><FixedValue>32</FixedValue></SizeInBits></BinaryDataEncoding>
      </BinaryParameterType>
      <ArrayParameterType name="Wave" arrayTypeRef="U8"><DimensionList><Dimension>
        <StartingIndex><FixedValue>0</FixedValue></StartingIndex>
        <EndingIndex><DynamicValue><ParameterInstanceRef parameterRef="LENGTH"/>
          <LinearAdjustment slope="1" intercept="-8"/></DynamicValue></EndingIndex>
      </Dimension></DimensionList></ArrayParameterType>
      <AbsoluteTimeParameterType name="Gps">
        <Encoding><IntegerDataEncoding sizeInBits="32"/></Encoding>
        <ReferenceTime><Epoch>GPS</Epoch></ReferenceTime>
      </AbsoluteTimeParameterType>"""
    sub = """
  <SpaceSystem name="Sub">
    <TelemetryMetaData>
      <ParameterTypeSet>
        <IntegerParameterType name="S5" signed="true">
          <IntegerDataEncoding sizeInBits="5" encoding="twosComplement"/></IntegerParameterType>
        <StringParameterType name="Text"><StringDataEncoding><Variable maxSizeInBits="800">
          <DynamicValue><ParameterInstanceRef parameterRef="TEXT_LEN"/>
            <LinearAdjustment slope="8"/></DynamicValue>
        </Variable></StringDataEncoding></StringParameterType>
      </ParameterTypeSet>
      <ParameterSet>
        <Parameter name="N" parameterTypeRef="U8"/>
        <Parameter name="TEXT_LEN" parameterTypeRef="U8"/>
        <Parameter name="TEXT" parameterTypeRef="Text"/>
        <Parameter name="WORD" parameterTypeRef="../Word">
          <LongDescription>Mode word.</LongDescription></Parameter>
      </ParameterSet>
      <ContainerSet>
""" + packet_xml("Science", 7, refs("WORD", "/Probe/TRIPLE", "N", "SAMPLES", "TEXT_LEN", "TEXT"),
                 base="../header", more='<Comparison parameterRef="WORD.kind" value="5"/>') + """
      </ContainerSet>
    </TelemetryMetaData>
  </SpaceSystem>"""
    parameters = """
      <Parameter name="TRIPLE" parameterTypeRef="Triple"/>
      <Parameter name="SAMPLES" parameterTypeRef="Samples"/>
      <Parameter name="OBT" parameterTypeRef="Cuc"/>
      <Parameter name="DELAY" parameterTypeRef="Delay"/>
      <Parameter name="GPS_TIME" parameterTypeRef="Gps"/>
      <Parameter name="FLAGS" parameterTypeRef="U8"/>
      <Parameter name="BLOCK" parameterTypeRef="Block"/>
      <Parameter name="WAVE" parameterTypeRef="Wave"/>
      <Parameter name="END" parameterTypeRef="U8"/>"""
    after_a_gap = """<ParameterRefEntry parameterRef="FLAGS">
          <LocationInContainerInBits referenceLocation="previousEntry">
            <FixedValue>8</FixedValue></LocationInContainerInBits></ParameterRefEntry>"""
    containers = packet_xml("Timed", 9, refs("OBT", "DELAY", "GPS_TIME")) + packet_xml(
        "Gapped", 11, after_a_gap + refs("BLOCK", "WAVE", "END"))
    result = import_xtce(write(tmp_path, probe(types, parameters, containers, sub)))
    tmdb = tmdb_of(result)
    science = tmdb.packet("science")
    assert science.variable and science.select == (("word_kind", (5,)),)
    assert [(p.name, p.type, p.bit_length, p.array) for p in science.layout] == [
        ("word_kind", "unsigned", 3, None), ("word_level", "signed", 5, None),
        ("triple", "unsigned", 8, 3), ("n", "unsigned", 8, None),
        ("samples", "unsigned", 16, "n"), ("text_len", "unsigned", 8, None),
        ("text", "string", 8, "text_len")]
    assert science.layout[0].description == "Mode word."
    timed = tmdb.packet("timed")
    assert timed.time == "cuc"  # a 48-bit TAI time at octet 6: our secondary header
    delay, gps = timed.parameters
    assert (delay.name, delay.bit_offset, delay.calibration.coefficients, delay.unit) == \
        ("delay", 96, (2.0, 0.001), "s")
    assert delay.description == "relative time in s"
    assert gps.calibration.coefficients == (0.0, 1.0)
    assert gps.description == "time in s since the epoch GPS"
    assert any("time: cuc: /Probe/OBT" in note for note in result.notes)
    # previousEntry 8 bits after the header; a fixed binary; an array whose last index is
    # on the packet length, ending one octet before the last octet: a spare fills it
    gapped = tmdb.packet("gapped")
    assert [(p.name, p.bit_offset, p.type, p.bit_length, p.array) for p in gapped.layout] == [
        ("flags", 56, "unsigned", 8, None), ("block", 64, "binary", 32, None),
        ("wave", 96, "unsigned", 8, "expand"), ("spare_3", -1, "spare", 8, None),
        ("end", -1, "unsigned", 8, None)]
    assert any("/Probe/WAVE ends 8 bits before the fields after it: a spare fills them" in note
               for note in result.notes)
    assert result.unsupported == ()
    # encoded by our codec, decoded back: the layout holds together
    codec = PacketCodec(tmdb.spacecraft, timed)
    data = codec.encode({"delay": [1500], "gps_time": [7]}, coarse=[100], fine=[32768],
                        sequence_counts=[1], raw=True)
    ours, errors = decode_ours(tmdb, data)
    assert not errors
    decoded = ours[(9, 1)]
    assert decoded.value("delay") == pytest.approx(3.5) and decoded.value("gps_time") == 7.0


def test_what_is_not_supported_is_listed_once_with_its_line_and_the_rest_imports(
        tmp_path: Path) -> None:
    types = """
      <IntegerParameterType name="Odd"><IntegerDataEncoding sizeInBits="8">
        <DefaultCalibrator><MathOperationCalibrator><ThisParameterOperand/></MathOperationCalibrator></DefaultCalibrator>
      </IntegerDataEncoding></IntegerParameterType>
      <FloatParameterType name="Ctx"><IntegerDataEncoding sizeInBits="8">
        <DefaultCalibrator><PolynomialCalibrator><Term coefficient="2" exponent="1"/>
        </PolynomialCalibrator></DefaultCalibrator>
        <ContextCalibratorList><ContextCalibrator>
          <ContextMatch><Comparison parameterRef="A" value="1"/></ContextMatch>
          <Calibrator><PolynomialCalibrator><Term coefficient="3" exponent="1"/>
          </PolynomialCalibrator></Calibrator>
        </ContextCalibrator></ContextCalibratorList>
      </IntegerDataEncoding></FloatParameterType>
      <FloatParameterType name="Steps"><IntegerDataEncoding sizeInBits="8">
        <DefaultCalibrator><SplineCalibrator order="0">
          <SplinePoint raw="0" calibrated="1"/><SplinePoint raw="10" calibrated="2"/>
        </SplineCalibrator></DefaultCalibrator>
      </IntegerDataEncoding></FloatParameterType>"""
    parameters = """
      <Parameter name="A" parameterTypeRef="U8"/>
      <Parameter name="B" parameterTypeRef="Odd"/>
      <Parameter name="C" parameterTypeRef="Ctx"/>
      <Parameter name="D" parameterTypeRef="Steps"/>"""
    repeated = """<ParameterRefEntry parameterRef="A">
          <RepeatEntry><Count><FixedValue>3</FixedValue></Count></RepeatEntry>
        </ParameterRefEntry>"""
    containers = "\n".join([
        packet_xml("Good", 1, refs("A", "B", "C", "D")),
        packet_xml("Repeated", 2, repeated),
        packet_xml("Command", 3, refs("A"), more='<Comparison parameterRef="TYPE" value="1"/>'),
        packet_xml("Other", 4, refs("A")),
        packet_xml("Idle", 2047, refs("A")),  # the idle APID: no telemetry of ours uses it
    ])
    extra = """
  <CommandMetaData><MetaCommandSet>
    <MetaCommand name="PING"/><MetaCommand name="RESET"/><MetaCommand name="BASE" abstract="true"/>
  </MetaCommandSet></CommandMetaData>"""
    path = write(tmp_path, probe(types, parameters, containers, extra=extra))
    result = import_xtce(path)
    tmdb = tmdb_of(result)
    assert [p.name for p in tmdb.packets] == ["good", "other"]
    good = tmdb.packet("good")
    assert good.parameter("b").calibration.kind == "none"  # raw, as listed
    assert good.parameter("c").calibration.coefficients == (0.0, 2.0)  # the default one
    assert good.parameter("d").calibration.kind == "none"
    where = str(path)
    expected = [
        (line_of(path, "<MathOperationCalibrator>"),
         "<MathOperationCalibrator> in /Probe: MathOperationCalibrator is not supported: the "
         "raw value is imported"),
        (line_of(path, '<SplineCalibrator order="0">'),
         "<SplineCalibrator> in /Probe: a spline of order 0 is not supported (order 1, "
         "linear, is): the raw value is imported"),
        (line_of(path, "<ContextCalibratorList>"),
         "<ContextCalibratorList> in /Probe: context calibrators are not supported: the "
         "default calibrator is applied in every context"),
        (line_of(path, "<RepeatEntry>"),
         "<RepeatEntry> in /Probe: RepeatEntry is not supported: the offsets after it would "
         "be wrong"),
        (line_of(path, 'name="Repeated"'),
         "<SequenceContainer name='Repeated'> in /Probe: packet skipped: RepeatEntry is not "
         "supported: the offsets after it would be wrong"),
        (line_of(path, 'name="Idle"'),
         "<SequenceContainer name='Idle'> in /Probe: packet skipped: the TMDB cannot hold it: "
         "packet 'idle': apid must be 0..2046, got 2047"),
        (line_of(path, "<MetaCommandSet>"),
         "<MetaCommandSet> in /Probe: 2 commands skipped: this is a telemetry system"),
    ]
    assert sorted(result.unsupported) == sorted(f"{where}:{line}: {text}"
                                                for line, text in expected)
    # a telecommand is left out on purpose: a note, not an unsupported element
    command = line_of(path, 'name="Command"')
    assert f"{where}:{command}: <SequenceContainer name='Command'> in /Probe: packet skipped: " \
        "a telecommand packet (CCSDS type 1)" in result.notes


def calibrated_type(name: str, size: str | None, encoding: str = "integer",
                    calibrator: str = "polynomial") -> str:
    """A FloatParameterType of ``size`` (its sizeInBits; None: absent) over a 16-bit
    integer or a 64-bit IEEE float, calibrated by ``-40.1 + 0.0123 x`` or a spline."""
    kind = f' sizeInBits="{size}"' if size is not None else ""
    inner = ('<PolynomialCalibrator><Term coefficient="-40.1" exponent="0"/>'
             '<Term coefficient="0.0123" exponent="1"/></PolynomialCalibrator>'
             if calibrator == "polynomial" else
             '<SplineCalibrator><SplinePoint raw="0" calibrated="-5.1"/>'
             '<SplinePoint raw="65535" calibrated="100.3"/></SplineCalibrator>')
    raw = '<IntegerDataEncoding sizeInBits="16">' if encoding == "integer" \
        else '<FloatDataEncoding sizeInBits="64">'
    close = "</IntegerDataEncoding>" if encoding == "integer" else "</FloatDataEncoding>"
    return (f'<FloatParameterType name="{name}"{kind}>{raw}<DefaultCalibrator>{inner}'
            f"</DefaultCalibrator>{close}</FloatParameterType>")


ENGINEERING_TYPES = "\n".join([
    calibrated_type("S32", "32"), calibrated_type("S64", "64"), calibrated_type("ABSENT", None),
    calibrated_type("S128", "128"), calibrated_type("SPLINE", None, calibrator="spline"),
    calibrated_type("IEEE32", "32", encoding="float"),
    calibrated_type("IEEE64", "64", encoding="float"),
    '<FloatParameterType name="RAW64"><FloatDataEncoding sizeInBits="64"/></FloatParameterType>',
    '<FloatParameterType name="RAWINT" sizeInBits="32"><IntegerDataEncoding sizeInBits="16"/>'
    "</FloatParameterType>"])
ENGINEERING_NAMES = ("S32", "S64", "ABSENT", "S128", "SPLINE", "IEEE32", "IEEE64", "RAW64",
                     "RAWINT")


def engineering_file(directory: Path) -> Path:
    """One packet holding a parameter of each of ENGINEERING_TYPES, named like it."""
    parameters = "".join(f'<Parameter name="{n}" parameterTypeRef="{n}"/>'
                         for n in ENGINEERING_NAMES)
    return write(directory, probe(ENGINEERING_TYPES, parameters,
                                  packet_xml("Cal", 5, refs(*ENGINEERING_NAMES))))


def test_a_calibrated_floats_size_in_bits_is_its_engineering_size(tmp_path: Path) -> None:
    """FloatParameterType sizeInBits, the engineering value's size: 32 and absent (XTCE
    1.2's default, SpaceSystem.xsd) a float32, 64 a float64, 128 a float64 with a note;
    over an integer or an IEEE float, a polynomial or a spline. A raw value keeps its
    encoding's size, whatever the type says."""
    path = engineering_file(tmp_path)
    result = import_xtce(path)
    packet = tmdb_of(result).packet("cal")
    engineering = {p.name: (p.calibration.kind, p.calibration.engineering, p.is_float32)
                   for p in packet.parameters}
    assert engineering == {
        "s32": ("polynomial", "float32", True), "s64": ("polynomial", "float64", False),
        "absent": ("polynomial", "float32", True), "s128": ("polynomial", "float64", False),
        "spline": ("table", "float32", True), "ieee32": ("polynomial", "float32", True),
        "ieee64": ("polynomial", "float64", False), "raw64": ("none", "float64", False),
        "rawint": ("none", "float64", False)}
    assert (packet.parameter("raw64").type, packet.parameter("raw64").bit_length) == \
        ("float", 64)
    # The document a YAML file gets: engineering: float32 beside the calibrator, nothing
    # for a float64.
    (document,) = result.document["packets"]
    calibrations = {p["name"]: p.get("calibration") for p in document["parameters"]}
    assert calibrations["s32"] == {"polynomial": [-40.1, 0.0123], "engineering": "float32"}
    assert calibrations["s64"] == {"polynomial": [-40.1, 0.0123]}
    assert result.unsupported == ()
    line = line_of(path, 'name="S128"')
    assert [n for n in result.notes if "engineering" in n] == [
        f"{path}:{line}: <FloatParameterType name='S128'> in /Probe: a 128-bit engineering "
        "float is not supported: the calibrated value is a float64"]


def test_a_float32_engineering_value_decodes_as_the_float64_calibration_rounded_once(
        tmp_path: Path) -> None:
    """Through an imported TMDB, a sizeInBits 32 calibration decodes to exactly
    float32(the float64 calibration); sizeInBits 64 to the float64 itself, and a raw
    float64 stays a float64."""
    tmdb = tmdb_of(import_xtce(engineering_file(tmp_path)))
    packet = tmdb.packet("cal")
    counts = np.arange(0, 65536, 16)
    n = len(counts)
    rng = np.random.default_rng(32)
    floats = rng.normal(0.0, 1e4, n)
    values = {p.name: floats if p.type == "float" else counts for p in packet.parameters}
    data = PacketCodec(tmdb.spacecraft, packet).encode(
        values, coarse=0, fine=0, sequence_counts=np.arange(n), raw=True)
    ours, errors = decode_ours(tmdb, data)
    assert not errors and len(ours) == n

    def column(name: str) -> np.ndarray[Any, Any]:
        return np.array([ours[(5, i)].value(name) for i in range(n)], dtype=np.float64)

    by_count = -40.1 + 0.0123 * counts.astype(np.float64)
    by_float = -40.1 + 0.0123 * floats
    for name, float64 in (("s32", by_count), ("absent", by_count), ("ieee32", by_float)):
        assert column(name).tobytes() == float64.astype(np.float32).astype(np.float64).tobytes()
        assert (column(name) != float64).sum() > n // 2, name  # not float64 values
    for name, float64 in (("s64", by_count), ("s128", by_count), ("ieee64", by_float)):
        assert column(name).tobytes() == float64.tobytes(), name
    assert column("raw64").tobytes() == floats.tobytes()
    assert (floats.astype(np.float32) != floats).all()  # a float32 would not hold them


# ------------------------------------------------------------------ broken and hostile


def test_a_reference_to_nothing_names_the_file_line_and_element(tmp_path: Path) -> None:
    path = write(tmp_path, probe(
        parameters='      <Parameter name="TEMP" parameterTypeRef="NoSuchType"/>',
        containers=packet_xml("Hk", 1, refs("TEMP", "GHOST"))))
    with pytest.raises(TmdbError) as caught:
        import_xtce(path)
    problems = caught.value.problems
    temp = line_of(path, 'name="TEMP"')
    assert f"{path}:{temp}: <Parameter name='TEMP'> in /Probe: " \
        "parameterTypeRef 'NoSuchType' names no parameter type (looked up in /Probe and its " \
        "ancestors)" in problems
    assert any(p.startswith(f"{path}:{line_of(path, 'GHOST')}: <ParameterRefEntry "
                            "parameterRef='GHOST'> in /Probe: parameterRef 'GHOST' names no "
                            "parameter") for p in problems)


@pytest.mark.parametrize(("text", "expected"), [
    ("<html><body/></html>", "not an XTCE file: the root element is <html>, XTCE's is "
                             "<SpaceSystem>"),
    ('<SpaceSystem xmlns="urn:other" name="x"/>', "not an XTCE file"),
    ("telemetry, but not XML", "not well-formed XML"),
    ("<SpaceSystem name='x'><TelemetryMetaData></SpaceSystem>", "not well-formed XML"),
])
def test_a_file_that_is_not_xtce_is_refused_with_a_reason(tmp_path: Path, text: str,
                                                          expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(TmdbError, match=expected) as caught:
        import_xtce(path)
    assert str(caught.value).startswith(f"{path}:")


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<SpaceSystem xmlns="http://www.omg.org/spec/XTCE/20180204" name="&lol9;"/>
"""


def external_entity(secret: Path) -> str:
    return f"""<?xml version="1.0"?>
<!-- a partner's file -->
<!DOCTYPE SpaceSystem [ <!ENTITY secret SYSTEM "file://{secret}"> ]>
<SpaceSystem xmlns="http://www.omg.org/spec/XTCE/20180204" name="x">
  <LongDescription>&secret;</LongDescription>
</SpaceSystem>
"""


@pytest.mark.parametrize("hostile", ["billion laughs", "external entity",
                                     "external entity, UTF-16", "after a long comment"])
def test_a_file_with_a_doctype_is_refused_before_anything_is_expanded_or_read(
        tmp_path: Path, hostile: str, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = write(tmp_path, "TOP-SECRET-TOKEN", "secret.txt")
    path = tmp_path / "hostile.xml"
    if hostile == "billion laughs":
        path.write_text(BILLION_LAUGHS)
    elif hostile == "external entity":
        path.write_text(external_entity(secret))
    elif hostile == "external entity, UTF-16":
        path.write_bytes(external_entity(secret).replace('"1.0"?', '"1.0" encoding="UTF-16"?')
                         .encode("utf-16"))
    else:  # past what is looked at before parsing: the parser's view of it refuses it
        path.write_text(external_entity(secret).replace(
            "<!-- a partner's file -->", f"<!-- {'x' * 70_000} -->"))
    if hostile != "after a long comment":  # refused from its first lines, never parsed
        def no_parsing(*args: Any, **kwargs: Any) -> None:
            raise AssertionError("a file with a DOCTYPE was handed to the XML parser")

        monkeypatch.setattr(etree, "fromstring", no_parsing)
    with pytest.raises(TmdbError, match="refused: the file declares a DOCTYPE") as caught:
        import_xtce(path)
    assert str(caught.value).startswith(f"{path}:")
    assert "TOP-SECRET-TOKEN" not in str(caught.value)


def test_a_spacecraft_name_given_names_the_database(tmp_path: Path) -> None:
    result = import_xtce(spp_file("jpss/jpss1_geolocation_xtce_v1.xml"), "noaa_21")
    assert result.document["spacecraft"] == "noaa_21"
    with pytest.raises(TmdbError, match="must be lower_snake_case"):
        import_xtce(spp_file("jpss/jpss1_geolocation_xtce_v1.xml"), "NOAA 21")
