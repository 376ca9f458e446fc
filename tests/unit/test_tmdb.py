"""Unit tests of control_center.telemetry.tmdb: the shipped files load, every error is reported."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from control_center.errors import TmdbError
from control_center.telemetry.tmdb import Calibration, Limits, Tmdb
from control_center.telemetry.tmdb_yaml import load_tmdb, load_tmdbs, parse_tmdb

PROJECT = Path(__file__).resolve().parents[2]
LANDER = PROJECT / "config/tmdb/lander.yaml"
ORBITER = PROJECT / "config/tmdb/orbiter.yaml"
SOURCE = "craft.yaml"


def base_document() -> dict[str, Any]:
    """A small valid document; each error test breaks one thing in a copy of it."""
    return {
        "spacecraft": "craft",
        "packets": [
            {"name": "nav", "apid": 0x10, "parameters": [
                {"name": "mode", "bit_length": 8, "type": "enum", "states": {0: "OFF", 1: "ON"}},
                {"name": "altitude", "bit_length": 32, "type": "float"},
                {"name": "rate", "bit_length": 16, "type": "signed",
                 "calibration": {"polynomial": [0.0, 0.01]},
                 "limits": {"yellow": [-10.0, 10.0], "red": [-20.0, 20.0]}},
            ]},
            {"name": "power", "apid": 0x11, "parameters": [
                {"name": "voltage", "bit_length": 12, "type": "unsigned"},
                {"name": "spare", "bit_length": 4, "type": "unsigned"},
            ]},
        ],
    }


def problems_of(document: dict[str, Any]) -> list[str]:
    with pytest.raises(TmdbError) as caught:
        parse_tmdb(document, SOURCE)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def assert_reported(problems: list[str], *fragments: str) -> None:
    """One problem line names the file and every fragment (packet, parameter, reason)."""
    matching = [p for p in problems if p.startswith(f"{SOURCE}: ")
                and all(f in p for f in fragments)]
    assert matching, f"no problem mentions {fragments}: {problems}"


def nav_parameter(document: dict[str, Any], name: str) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = document["packets"][0]["parameters"]
    return next(p for p in parameters if p["name"] == name)


# ------------------------------------------------------------------------ shipped files


def test_base_document_is_valid() -> None:
    tmdb = parse_tmdb(base_document(), SOURCE)
    nav = tmdb.packet("nav")
    # Fields follow the 48-bit primary header and the 48-bit CUC time; a CRC closes it.
    assert [(p.name, p.bit_offset) for p in nav.parameters] == [
        ("mode", 96), ("altitude", 104), ("rate", 136)]
    assert nav.length == 12 + 1 + 4 + 2 + 2
    assert nav.parameter("rate").calibration == Calibration("polynomial", (0.0, 0.01))
    assert not nav.parameter("rate").is_float32
    assert nav.parameter("rate").limits == Limits(-10.0, 10.0, -20.0, 20.0)
    assert tmdb.by_apid()[0x11].name == "power"
    assert tmdb.source == SOURCE


@pytest.mark.parametrize(("path", "spacecraft", "apids"), [
    (LANDER, "lander", {0x110: "lander_nav", 0x111: "lander_power", 0x112: "lander_thermal"}),
    (ORBITER, "orbiter", {0x210: "orbiter_orbit", 0x211: "orbiter_power",
                          0x212: "orbiter_thermal", 0x213: "orbiter_relay"}),
], ids=["lander", "orbiter"])
def test_shipped_tmdb_loads(path: Path, spacecraft: str, apids: dict[int, str]) -> None:
    tmdb = load_tmdb(path)
    assert tmdb.spacecraft == spacecraft
    assert tmdb.source == str(path)
    assert tmdb.mission == "ISLS-1"
    assert {apid: p.name for apid, p in tmdb.by_apid().items()} == apids
    for packet in tmdb.packets:
        assert packet.time == "cuc"
        assert packet.error_control
        assert packet.period is not None and packet.period > 0
        assert packet.parameters
        end = max(p.bit_offset + p.bit_length for p in packet.parameters)
        assert packet.length == -(-end // 8) + 2
        assert all(p.bit_offset >= 96 for p in packet.parameters)
        assert all(p.description for p in packet.parameters)


def test_shipped_tmdb_details() -> None:
    lander = load_tmdb(LANDER)
    nav = lander.packet("lander_nav")
    assert nav.parameter("descent_phase").states[5] == "SURFACE"
    assert nav.parameter("throttle").limits == Limits(None, 100.0, None, 100.5)
    power = lander.packet("lander_power")
    assert power.parameter("bus_voltage").byte_order == "little"
    assert power.parameter("battery_voltage").bit_offset == 112
    assert power.parameter("battery_current").type == "signed"
    thermal = lander.packet("lander_thermal")
    assert thermal.parameter("engine_temperature").calibration.table[3] == (2400.0, 40.0)
    assert lander.spacecraft_id == 0x151
    orbiter = load_tmdb(ORBITER)
    assert orbiter.packet("orbiter_orbit").parameter("position_x").bit_length == 64
    assert orbiter.spacecraft_id == 0x152


def test_load_tmdbs_both_and_duplicate_spacecraft(tmp_path: Path) -> None:
    tmdbs = load_tmdbs([LANDER, ORBITER])
    assert [t.spacecraft for t in tmdbs] == ["lander", "orbiter"]
    copy_path = tmp_path / "lander_again.yaml"
    copy_path.write_text(LANDER.read_text(encoding="utf-8"), encoding="utf-8")
    broken = tmp_path / "broken.yaml"
    broken.write_text("spacecraft: x\npackets: [\n", encoding="utf-8")
    with pytest.raises(TmdbError) as caught:
        load_tmdbs([LANDER, ORBITER, copy_path, broken])
    problems = caught.value.problems
    assert any(p.startswith(f"{copy_path}: spacecraft: 'lander' is also defined in {LANDER}")
               for p in problems), problems
    assert any(p.startswith(f"{broken}: not valid YAML") for p in problems), problems


# -------------------------------------------------------------------- documented errors


def test_overlapping_fields_without_overlay() -> None:
    document = base_document()
    nav_parameter(document, "rate")["bit_offset"] = 120  # inside altitude (104..135)
    assert_reported(problems_of(document), "packet 'nav'", "parameter 'rate'",
                    "overlaps parameter 'altitude'", "overlay: true")
    # The same overlap marked as intended is accepted.
    nav_parameter(document, "rate")["overlay"] = True
    assert parse_tmdb(document, SOURCE).packet("nav").parameter("rate").overlay


def test_identical_fields_are_reported_not_crashed() -> None:
    document = base_document()
    document["packets"][0]["parameters"].append(
        {"name": "altitude_copy", "bit_offset": 104, "bit_length": 32, "type": "float"})
    assert_reported(problems_of(document), "packet 'nav'", "'altitude", "overlaps parameter")


def test_every_field_overlapping_a_long_one_is_reported() -> None:
    document = base_document()
    document["packets"][0]["parameters"] = [
        {"name": "word", "bit_offset": 96, "bit_length": 64, "type": "unsigned"},
        {"name": "first", "bit_offset": 100, "bit_length": 4, "type": "unsigned"},
        {"name": "second", "bit_offset": 120, "bit_length": 8, "type": "unsigned"},
        {"name": "after", "bit_offset": 160, "bit_length": 8, "type": "unsigned"},
    ]
    problems = problems_of(document)
    assert_reported(problems, "packet 'nav'", "parameter 'first'", "overlaps parameter 'word'")
    assert_reported(problems, "packet 'nav'", "parameter 'second'", "overlaps parameter 'word'")
    assert not any("'after'" in p for p in problems)
    assert len(problems) == 2


def test_field_outside_the_packet() -> None:
    document = base_document()
    document["packets"][0]["length"] = 18  # needs 21: 12 + 1 + 4 + 2 + CRC 2
    assert_reported(problems_of(document), "packet 'nav'", "parameter 'rate'",
                    "bits 136..151 lie outside the packet's 128 data bits")


def test_duplicate_parameter_name() -> None:
    document = base_document()
    document["packets"][1]["parameters"][1]["name"] = "voltage"
    assert_reported(problems_of(document), "packet 'power'", "parameter 'voltage'",
                    "duplicate parameter name")


def test_duplicate_packet_name() -> None:
    document = base_document()
    document["packets"][1]["name"] = "nav"
    assert_reported(problems_of(document), "packet 'nav'", "duplicate packet name")


def test_duplicate_apid() -> None:
    document = base_document()
    document["packets"][1]["apid"] = 0x10
    assert_reported(problems_of(document), "packet 'power'", "apid 16 is already used by 'nav'")


def test_unknown_type() -> None:
    document = base_document()
    nav_parameter(document, "rate")["type"] = "integer"
    assert_reported(problems_of(document), "packet 'nav'", "parameter #3 'rate'",
                    "type must be one of unsigned, signed, float, enum, boolean",
                    "'integer'")


def test_enum_without_states() -> None:
    document = base_document()
    del nav_parameter(document, "mode")["states"]
    assert_reported(problems_of(document), "packet 'nav'", "'mode'", "an enum needs states")
    nav_parameter(document, "mode")["states"] = {}
    assert_reported(problems_of(document), "packet 'nav'", "'mode'", "an enum needs states")


def test_enum_state_too_large_for_field() -> None:
    document = base_document()
    nav_parameter(document, "mode")["states"] = {256: "BIG"}
    assert_reported(problems_of(document), "packet 'nav'", "'mode'",
                    "state value 256 does not fit in 8 unsigned bits")


@pytest.mark.parametrize("bit_length", [16, 48, 8])
def test_float_not_32_or_64(bit_length: int) -> None:
    document = base_document()
    nav_parameter(document, "altitude")["bit_length"] = bit_length
    assert_reported(problems_of(document), "packet 'nav'", "'altitude'",
                    "a float must be 32 or 64 bits")


def test_64_bit_float_not_on_an_octet() -> None:
    """A float32 may sit off the octet grid (XTCE files have them); a float64 may not: it
    would span nine octets."""
    document = base_document()
    nav_parameter(document, "altitude").update(bit_offset=105, bit_length=64)
    assert_reported(problems_of(document), "packet 'nav'", "'altitude'",
                    "a 64-bit one start on an octet boundary")


@pytest.mark.parametrize(("limits", "reason"), [
    ({"yellow": [-10.0, 10.0], "red": [-5.0, 20.0]}, "red low must not be above yellow low"),
    ({"yellow": [-10.0, 10.0], "red": [-20.0, 5.0]}, "red high must not be below yellow high"),
    ({"yellow": [10.0, -10.0]}, "limits.yellow: low 10.0 must be below high -10.0"),
    ({"red": [3.0, 3.0]}, "limits.red: low 3.0 must be below high 3.0"),
])
def test_bad_limits_order(limits: dict[str, Any], reason: str) -> None:
    document = base_document()
    nav_parameter(document, "rate")["limits"] = limits
    assert_reported(problems_of(document), "packet 'nav'", "'rate'", reason)


def test_unknown_keys_at_every_level() -> None:
    document = base_document()
    document["mision"] = "typo"
    document["packets"][0]["perod"] = 1.0
    nav_parameter(document, "rate")["units"] = "deg/s"
    nav_parameter(document, "rate")["limits"]["orange"] = [0, 1]
    problems = problems_of(document)
    assert_reported(problems, "top level", "unknown key 'mision'")
    assert_reported(problems, "packet 'nav'", "unknown key 'perod'")
    assert_reported(problems, "packet 'nav'", "'rate'", "unknown key 'units'")
    assert_reported(problems, "packet 'nav'", "'rate'", "limits: unknown key 'orange'")


@pytest.mark.parametrize(("change", "fragments"), [
    ({"bit_length": 0}, ("'rate'", "bit_length must be 1..64, got 0")),
    ({"bit_length": 65}, ("'rate'", "bit_length must be 1..64, got 65")),
    ({"bit_offset": -1}, ("'rate'", "bit_offset must be >= 0, got -1")),
    ({"byte_order": "middle"}, ("'rate'", "byte_order must be big, little or an octet order")),
    ({"byte_order": "little", "bit_length": 12},
     ("'rate'", "a field with a byte order other than big must")),
    ({"calibration": {"spline": [1]}}, ("'rate'", "calibration: unknown kind 'spline'")),
    ({"calibration": {"table": [[0, 1], [0, 2]]}}, ("'rate'", "strictly increasing")),
    ({"calibration": {"polynomial": []}}, ("'rate'", "non-empty list of coefficients")),
    ({"calibration": {"polynomial": [0, 1], "engineering": "float16"}},
     ("'rate'", "calibration.engineering must be float32 or float64, not 'float16'")),
    ({"calibration": {"engineering": "float32"}},
     ("'rate'", "calibration must be {polynomial:")),
    ({"states": {0: "A"}}, ("'rate'", "states are only for type enum")),
    ({"overlay": "yes"}, ("'rate'", "overlay must be true or false")),
    ({"bit_offset": 40}, ("'rate'", "overlaps the packet headers")),
    ({"name": "Rate"}, ("parameter #3", "lower_snake_case", "'Rate'")),
])
def test_other_parameter_errors(change: dict[str, Any], fragments: tuple[str, ...]) -> None:
    document = base_document()
    nav_parameter(document, "rate").update(change)
    assert_reported(problems_of(document), "packet 'nav'", *fragments)


def test_calibration_on_enum_and_limits_on_boolean() -> None:
    document = base_document()
    nav_parameter(document, "mode")["calibration"] = {"polynomial": [0, 1]}
    document["packets"][0]["parameters"].append(
        {"name": "flag", "bit_length": 1, "type": "boolean", "limits": {"red": [0, 1]}})
    problems = problems_of(document)
    assert_reported(problems, "packet 'nav'", "'mode'", "a enum parameter takes no calibration")
    assert_reported(problems, "packet 'nav'", "'flag'", "takes no numeric limits")


@pytest.mark.parametrize(("change", "fragment"), [
    ({"apid": 0x7FF}, "apid must be 0..2046, got 2047"),
    ({"time": "gps"}, "time must be cuc or receive"),
    ({"error_control": "crc32"}, "error_control must be crc16 or none"),
    ({"period": -1.0}, "period must be positive"),
    ({"parameters": []}, "parameters must be a non-empty list"),
    ({"length": 3}, "length must be 7..65542, got 3"),
])
def test_packet_errors(change: dict[str, Any], fragment: str) -> None:
    document = base_document()
    document["packets"][0].update(change)
    assert_reported(problems_of(document), "packet 'nav'", fragment)


def test_top_level_errors() -> None:
    assert_reported(problems_of({"spacecraft": "Lander 1", "packets": []}),
                    "spacecraft", "lower_snake_case")
    assert_reported(problems_of({"spacecraft": "x", "packets": []}), "packets",
                    "must be a non-empty list")
    with pytest.raises(TmdbError) as caught:
        parse_tmdb(["not", "a", "mapping"], SOURCE)
    assert caught.value.problems == [f"{SOURCE}: the file must be a mapping with spacecraft "
                                     "and packets"]


def test_several_errors_reported_at_once() -> None:
    document = base_document()
    nav_parameter(document, "mode")["states"] = None
    nav_parameter(document, "altitude")["bit_length"] = 16
    nav_parameter(document, "rate")["limits"] = {"yellow": [5.0, -5.0]}
    nav_parameter(document, "rate")["colour"] = "red"
    document["packets"][1]["apid"] = 0x10
    document["packets"][1]["parameters"].append({"name": "temp", "bit_length": 8,
                                                 "type": "double"})
    document["packets"].append(copy.deepcopy(document["packets"][0]))
    problems = problems_of(document)
    assert_reported(problems, "packet 'nav'", "'mode'", "an enum needs states")
    assert_reported(problems, "packet 'nav'", "'altitude'", "a float must be 32 or 64 bits")
    assert_reported(problems, "packet 'nav'", "'rate'", "limits.yellow: low 5.0")
    assert_reported(problems, "packet 'nav'", "'rate'", "unknown key 'colour'")
    assert_reported(problems, "packet 'power'", "apid 16 is already used by 'nav'")
    assert_reported(problems, "packet 'power'", "'temp'", "type must be one of")
    assert_reported(problems, "packet 'nav'", "duplicate packet name")
    assert len(problems) >= 11  # the first nav packet's four problems appear twice


# ------------------------------------------------------------------------- files on disk


def write(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "craft.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def test_load_tmdb_names_the_file(tmp_path: Path) -> None:
    document = base_document()
    nav_parameter(document, "rate")["type"] = "complex"
    path = write(tmp_path, document)
    with pytest.raises(TmdbError) as caught:
        load_tmdb(path)
    assert caught.value.problems[0].startswith(f"{path}: packet 'nav' parameter #3 'rate': ")
    assert isinstance(load_tmdb(write(tmp_path, base_document())), Tmdb)


def test_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("spacecraft: craft\npackets:\n  - name: nav\n   apid: 1\n", encoding="utf-8")
    with pytest.raises(TmdbError) as caught:
        load_tmdb(path)
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(f"{path}: not valid YAML: ")
    assert "line 4" in caught.value.problems[0]


@pytest.mark.parametrize("kind", ["missing", "directory", "not_utf8"])
def test_unreadable_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "craft.yaml"
    if kind == "directory":
        path.mkdir()
    elif kind == "not_utf8":
        path.write_bytes(b"spacecraft: \xff\xfe\n")
    with pytest.raises(TmdbError) as caught:
        load_tmdb(path)
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(f"{path}: ")
    message = caught.value.problems[0]
    if kind == "missing":
        assert message == f"{path}: cannot read: No such file or directory"
    elif kind == "directory":
        assert message == f"{path}: cannot read: Is a directory"
    else:
        assert message == f"{path}: cannot read: not UTF-8 text (invalid start byte at byte 12)"


def test_a_calibration_may_declare_a_float32_engineering_value() -> None:
    document = base_document()
    nav_parameter(document, "rate")["calibration"] = {"table": [[0, 0.0], [100, 1.0]],
                                                      "engineering": "float32"}
    rate = parse_tmdb(document, SOURCE).packet("nav").parameter("rate")
    assert rate.calibration == Calibration("table", table=((0.0, 0.0), (100.0, 1.0)),
                                           engineering="float32")
    assert rate.is_float32
