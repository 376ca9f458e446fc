"""The ccsdspy CSV importer (control_center/telemetry/ccsdspy_csv.py): the TMDB mapping it makes.

Every packet definition ccsdspy ships in its wheel (``ccsdspy/tests/data/packet_def``
and the ``hs`` data set's ``apid*/defs.csv``) must import without an error; each is
also read with ccsdspy's own CSV parser, so field order, names, types, lengths,
offsets and array shapes are checked against ccsdspy rather than against our reading.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import ccsdspy
import pytest
from ccsdspy.packet_types import _get_fields_csv_file

from control_center.errors import TmdbError
from control_center.telemetry.ccsdspy_csv import clean_name, import_ccsdspy_csv

DATA = Path(ccsdspy.__file__).parent / "tests" / "data"
PACKET_DEF = DATA / "packet_def"
HS = DATA / "hs"
HS_APIDS = (1, 10, 35, 130, 251, 895)
TMDB_TYPE = {"uint": "unsigned", "int": "signed", "float": "float", "str": "string",
             "fill": "spare"}


def hs_defs(apid: int) -> Path:
    return HS / f"apid{apid:03d}" / "defs.csv"


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, skipinitialspace=True))


def write(tmp_path: Path, text: str, name: str = "defs.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def imported(path: Path, length: int | None = None) -> tuple[dict[str, Any], list[str]]:
    return import_ccsdspy_csv(path, 0x42, "test packet", length=length)


def params(path: Path, length: int | None = None) -> dict[str, dict[str, Any]]:
    mapping, _ = imported(path, length)
    return {p["name"]: p for p in mapping["parameters"]}


def problems_of(path: Path, length: int | None = None) -> list[str]:
    with pytest.raises(TmdbError) as caught:
        imported(path, length)
    return caught.value.problems


# ------------------------------------------------------------------ ccsdspy's own files


def assert_like_ccsdspy(path: Path, mapping: dict[str, Any]) -> None:
    """Same fields in the same order as ccsdspy's CSV parser reads them."""
    theirs = _get_fields_csv_file(str(path))
    ours = mapping["parameters"]
    assert len(ours) == len(theirs)
    for parameter, field in zip(ours, theirs, strict=True):
        assert parameter["description"] == f"imported from {path.name}: {field._name}"
        assert parameter["name"] == clean_name(field._name)
        assert parameter["bit_length"] == field._bit_length
        assert parameter.get("bit_offset") == field._bit_offset
        assert parameter["type"] == TMDB_TYPE[field._data_type] or (
            parameter["type"] == "enum" and field._data_type == "uint")
        shape = field._array_shape
        if shape is None:
            assert "array" not in parameter
        elif shape == "expand":
            assert parameter["array"] == "expand"
        elif isinstance(shape, str):
            assert parameter["array"] == clean_name(shape)
        else:
            count = 1
            for dim in shape:
                count *= dim
            assert parameter["array"] == count


@pytest.mark.parametrize("path", sorted(PACKET_DEF.glob("*.csv")), ids=lambda p: p.stem)
def test_every_ccsdspy_packet_def_imports(path: Path) -> None:
    mapping, _ = imported(path)
    assert_like_ccsdspy(path, mapping)
    assert mapping["time"] == "receive"
    assert mapping["error_control"] == "none"
    assert mapping["description"] == f"imported from {path.name}"
    variable = any(isinstance(p.get("array"), str) for p in mapping["parameters"])
    assert ("length" in mapping) != variable


def test_basic_csv_3col_with_all_exact() -> None:
    path = PACKET_DEF / "basic_csv_3col_with_all.csv"
    mapping, notes = imported(path)
    about = "imported from basic_csv_3col_with_all.csv"
    assert mapping == {
        "name": "test_packet", "apid": 0x42, "time": "receive", "error_control": "none",
        "description": about,
        "parameters": [
            {"name": "shcoarse", "type": "unsigned", "bit_length": 32,
             "description": f"{about}: SHCOARSE"},
            {"name": "shfine", "type": "unsigned", "bit_length": 20, "array": "expand",
             "description": f"{about}: SHFINE"},
            {"name": "opmode", "type": "unsigned", "bit_length": 3, "array": "shfine",
             "description": f"{about}: OPMODE"},
            {"name": "spacer", "type": "spare", "bit_length": 1,
             "description": f"{about}: SPACER"},
            {"name": "voltage", "type": "signed", "bit_length": 8, "array": 288,
             "description": f"{about}: VOLTAGE"},
        ]}
    assert notes == [
        f"{path}:4: 'OPMODE': array size field 'SHFINE' (line 3) is itself an array: taken "
        "as written, but no decoder (ccsdspy included) can read one count from it",
        f"{path}:6: 'VOLTAGE': 12 x 24 array flattened in C (row-major) order: elements "
        "voltage_0 .. voltage_287",
    ]


def test_fixed_packet_defs_get_their_length() -> None:
    # 48 header bits + 32 + 20 + 3 + 1 + 8 = 112 bits.
    assert imported(PACKET_DEF / "basic_csv_3col.csv")[0]["length"] == 14
    assert imported(PACKET_DEF / "basic_csv_3col_with_array.csv")[0]["length"] == \
        (48 + 56 + 12 * 24 * 8) // 8
    assert imported(PACKET_DEF / "extended_csv_4col_with_array.csv")[0]["length"] == 20


def test_four_column_offsets_and_overlays() -> None:
    four = params(PACKET_DEF / "extended_csv_4col_with_array.csv")
    # Offsets count from the packet start: SHCOARSE(4) sits on the primary header.
    assert four["shcoarse"] == {"name": "shcoarse", "type": "unsigned", "bit_length": 32,
                                "bit_offset": 0, "array": 4, "overlay": True,
                                "description": "imported from "
                                "extended_csv_4col_with_array.csv: SHCOARSE"}
    assert [(p["bit_offset"], p.get("overlay", False)) for p in four.values()] == [
        (0, True), (128, False), (148, False), (151, False), (152, False)]
    assert four["spacer"]["type"] == "spare"


def test_three_column_files_have_no_offsets() -> None:
    for path in PACKET_DEF.glob("basic_csv_3col*.csv"):
        mapping, _ = imported(path)
        assert not any("bit_offset" in p or "overlay" in p for p in mapping["parameters"])


@pytest.mark.parametrize("apid", HS_APIDS)
def test_every_hs_definition_imports(apid: int) -> None:
    path = hs_defs(apid)
    mapping, notes = imported(path)
    assert_like_ccsdspy(path, mapping)
    rows = csv_rows(path)
    for row, parameter in zip(rows, mapping["parameters"], strict=True):
        assert parameter.get("overlay", False) == (
            int(row["bit_offset"]) < 48 or parameter["name"] in OVERLAYS[apid])
        calibration = json.loads(row["calibration"]) if row["calibration"] else None
        if calibration and all(isinstance(v, str) for v in calibration.values()):
            assert parameter["type"] == "enum"
        elif calibration:
            assert parameter["calibration"] == {"polynomial": [
                float(calibration.get(str(i), 0)) for i in range(len(calibration))]}
        else:
            assert "calibration" not in parameter and "states" not in parameter
    # The only notes: lengths worked out from fields that end inside an octet.
    assert all("length rounded up" in note for note in notes)


# Fields after the header that overlap an earlier field (bit fields inside a word, and
# the hs files' array elements, all at one offset).
OVERLAYS: dict[int, set[str]] = {
    1: {f"pkt1_uint32_sprsmp_{i}" for i in range(1, 8)},
    10: {"pkt10_datavalid", "pkt10_oscstatus", "pkt10_notused", "pkt10_5hzflag",
         "pkt10_13hzflag", *(f"pkt10_rnd{i}status" for i in range(8)),
         *(f"pkt10_int32_rnd_{i}" for i in range(1, 8))},
    35: {f"pkt35_flt_sin_2h_{i}" for i in range(1, 8)},
    130: set(),
    251: {f"pkt251_fld{i}" for i in range(1, 6)},
    895: {f"pkt895_fld{i}" for i in range(1, 6)},
}


def test_hs_states_with_ranges() -> None:
    hs1 = params(hs_defs(1), length=51)
    assert hs1["pkt1_uint8_cnt"]["states"] == {
        0: "INVALID", "[1,3]": "POSITIVE", "[6,100]": "NEGATIVE", "[101,101]": "OVERFLOW",
        103: "NO_OVERFLOW", "[110,255]": "DEFAULT"}
    assert hs1["pkt1_uint32_cnt"] == {
        "name": "pkt1_uint32_cnt", "type": "enum", "bit_length": 32, "bit_offset": 72,
        "states": {"[0,1714811133]": "BELOW", 1714834890: "INVALID",
                   1714866566: "EQUAL", "[1714866567,4294967295]": "ABOVE"},
        "description": "imported from defs.csv: pkt1_uint32_cnt"}
    hs10 = params(hs_defs(10))
    assert hs10["pkt10_oscstatus"]["states"] == {0: "INVALID", 1: "BELOW", 2: "EQUAL",
                                                 3: "ABOVE"}


def test_hs_float_calibration_and_strings() -> None:
    hs251 = params(hs_defs(251))
    assert hs251["pkt251_flt_sin_1h"] == {
        "name": "pkt251_flt_sin_1h", "type": "float", "bit_length": 32, "bit_offset": 96,
        "calibration": {"polynomial": [20.0, -0.0000379, 2.933]},
        "description": "imported from defs.csv: pkt251_flt_sin_1h"}
    assert hs251["pkt251_char_hellow"] == {
        "name": "pkt251_char_hellow", "type": "string", "bit_length": 64,
        "bit_offset": 224, "description": "imported from defs.csv: pkt251_char_hellow"}
    hs130 = params(hs_defs(130))
    assert hs130["pkt130_char_lwrcase"]["type"] == "string"
    assert hs130["pkt130_char_lwrcase"]["bit_length"] == 8
    assert hs130["pkt130_int32_sin_1h"]["calibration"] == {
        "polynomial": [2000.0, -0.002766, 0.0000535, -0.00000000162]}


def test_hs_array_element_rows_keep_todays_handling() -> None:
    mapping, _ = imported(hs_defs(35), length=51)
    last = mapping["parameters"][-8:]
    assert [p["name"] for p in last] == [f"pkt35_flt_sin_2h_{i}" for i in range(8)]
    # All eight rows sit at bit 104: the first owns the bits, the others overlay it.
    assert [p.get("overlay", False) for p in last] == [False] + [True] * 7
    assert not any("array" in p for p in last)
    assert mapping["length"] == 51


def test_hs_lengths() -> None:
    mapping, notes = imported(hs_defs(895))
    assert mapping["length"] == 28 and notes == []
    mapping, notes = imported(hs_defs(895), length=34)
    assert mapping["length"] == 34 and notes == []
    mapping, notes = imported(hs_defs(1))
    assert mapping["length"] == 14
    assert notes == [f"{hs_defs(1)}: the fields end at bit 108, not on an octet: length "
                     "rounded up to 14 octets"]


# ------------------------------------------------------------------------------ names


def test_signs_are_spelled_not_dropped() -> None:
    assert clean_name("FGx_-4.7VHK") == "fgx_minus4_7vhk"
    assert clean_name("FGx_+4.7VHK") == "fgx_plus4_7vhk"
    assert clean_name("FGx_+4.7_I") == "fgx_plus4_7_i"
    assert clean_name("-12V") == "minus12v"
    assert clean_name("BUS V+") == "bus_v_plus"
    assert clean_name("BUS V-") == "bus_v_minus"
    assert clean_name("A-B") == "a_b"  # a hyphen between words is no sign
    assert clean_name("name[3]") == "name_3"
    assert clean_name("img[1][2]") == "img_1_2"
    assert clean_name("PEC (CRC-16-CCITT)") == "pec_crc_16_ccitt"
    assert clean_name("5V_REF") == "p_5v_ref"
    assert clean_name("Température") == "temperature"
    assert clean_name("already_clean__x") == "already_clean__x"
    assert clean_name("+++") == ""


def test_ccsdspy_regression_packet_names_do_not_collide(tmp_path: Path) -> None:
    # The fluxgate housekeeping packet of ccsdspy's test_regression.py, as a CSV.
    names = ["Instrument SCLK Time second", "Instrument SCLK Time subsec",
             "Accountability ID"]
    names += [f"FGx_CH{c}_{i}" for i in range(160) for c in (3, 2, 1)]
    names += ["FGx_-4.7VHK", "FGx_+4.7VHK", "FGx_2VREF", "FGx_1VREF", "FGx_DRV_SNS",
              "FGx_OP_PRTA", "FGx_FBX", "FGx_FBY", "FGx_FBZ", "FGx_BPFX", "FGx_BPFY",
              "FGx_BPFZ", "FGx_+4.7_I", "FGx_-4.7_I", "FGx_HK_CH14", "FGx_HK_CH15"]
    text = "name, data_type, bit_length\n" + "".join(f"{n}, int, 24\n" for n in names)
    mapping, notes = imported(write(tmp_path, text))
    assert notes == []
    ours = [p["name"] for p in mapping["parameters"]]
    assert len(set(ours)) == len(names)
    assert ours[-16:-14] == ["fgx_minus4_7vhk", "fgx_plus4_7vhk"]
    assert ours[-4:-2] == ["fgx_plus4_7_i", "fgx_minus4_7_i"]


def test_remaining_collisions_are_suffixed_with_both_names(tmp_path: Path) -> None:
    path = write(tmp_path, "name,data_type,bit_length\n"
                           "Temp A,uint,8\n"
                           "temp-a,uint,8\n"
                           "TEMP.A,uint,8\n"
                           "SPARE,fill,4\n"
                           "SPARE,fill,4\n")
    mapping, notes = imported(path)
    assert [p["name"] for p in mapping["parameters"]] == [
        "temp_a", "temp_a_2", "temp_a_3", "spare", "spare_2"]
    assert [p["description"] for p in mapping["parameters"]][:3] == [
        "imported from defs.csv: Temp A", "imported from defs.csv: temp-a",
        "imported from defs.csv: TEMP.A"]
    assert notes == [
        f"{path}:3: 'temp-a': named 'temp_a_2': 'temp_a' is already 'Temp A' (line 2)",
        f"{path}:4: 'TEMP.A': named 'temp_a_3': 'temp_a' is already 'Temp A' (line 2)",
        f"{path}:6: 'SPARE': named 'spare_2': 'spare' is already 'SPARE' (line 5)",
    ]


def test_array_element_names_count_as_taken(tmp_path: Path) -> None:
    # The TMDB names the elements of array v v_0, v_1, v_2: a field v_1 would clash.
    path = write(tmp_path, "name,data_type,bit_length\n"
                           "v,uint(3),8\n"
                           "V_1,uint,8\n"
                           "n,uint,8\n"
                           "data,uint(n),8\n"
                           "data_7,uint,8\n"
                           "w_0,uint,8\n"
                           "w,uint(2),8\n")
    mapping, notes = imported(path)
    assert [p["name"] for p in mapping["parameters"]] == ["v", "v_1_2", "n", "data",
                                                          "data_7_2", "w_0", "w_2"]
    assert notes == [
        f"{path}:3: 'V_1': named 'v_1_2': 'v_1' is already 'v' (line 2), element 1",
        f"{path}:6: 'data_7': named 'data_7_2': 'data_7' is already 'data' (line 5), "
        "whose elements are data_<i>",
        f"{path}:8: 'w': named 'w_2': 'w' is already 'w_0' (line 7) (named like an element "
        "of this array)",
    ]


def test_a_large_image_array_is_cheap(tmp_path: Path) -> None:
    path = write(tmp_path, "name,data_type,bit_length\n"
                           'image,"uint(2048, 2048)",16\n'
                           "image_2,uint,8\n")
    mapping, _ = imported(path)
    assert mapping["parameters"][0]["array"] == 2048 * 2048
    assert mapping["parameters"][1]["name"] == "image_2_2"  # image_2 is an element


# ------------------------------------------------------------------ format coverage


def test_columns_in_any_order_with_byte_order(tmp_path: Path) -> None:
    path = write(tmp_path, "\ufeffbyte_order, bit_length, name, data_type, bit_offset\n"
                           "big, 16, A, uint, 48\n"
                           "little, 32, B, int, 64\n"
                           "2143, 32, C, uint, 96\n"
                           "3412, 32, D, float, 128\n"
                           "87654321, 64, E, float, 160\n"
                           "1234, 32, F, uint, 224\n"
                           ", 8, G, uint, 256\n"
                           "4321, 32, H, int, 264\n")
    fields = params(path)
    assert {name: p.get("byte_order", "big") for name, p in fields.items()} == {
        "a": "big", "b": "little", "c": "2143", "d": "3412", "e": "87654321",
        "f": "big", "g": "big", "h": "4321"}
    assert "byte_order" not in fields["f"]  # 1234 is big-endian: not written
    assert fields["b"] == {"name": "b", "type": "signed", "bit_length": 32,
                           "bit_offset": 64, "byte_order": "little",
                           "description": "imported from defs.csv: B"}


def test_fill_str_and_arrays(tmp_path: Path) -> None:
    path = write(tmp_path, "name,data_type,bit_length\n"
                           "label,str,32\n"
                           "pad,fill,3\n"
                           "flags,uint(5),1\n"
                           "matrix,\"float(2, 3)\",32\n"
                           "count,uint,8\n"
                           "samples,int(count),16\n"
                           "rest,uint(expand),8\n")
    mapping, notes = imported(path, length=200)
    fields = {p["name"]: p for p in mapping["parameters"]}
    assert fields["label"]["type"] == "string"
    assert fields["pad"]["type"] == "spare" and fields["pad"]["bit_length"] == 3
    assert fields["flags"]["array"] == 5
    assert fields["matrix"]["array"] == 6
    assert fields["samples"]["array"] == "count"
    assert fields["samples"]["type"] == "signed"
    assert fields["rest"]["array"] == "expand"
    assert "length" not in mapping  # given, but a variable packet takes its header's
    assert notes == [
        f"{path}:5: 'matrix': 2 x 3 array flattened in C (row-major) order: elements "
        "matrix_0 .. matrix_5",
        f"{path}:7: length 200 given, but this array makes the packet variable-length: "
        "each packet's own header length is used and the given length is ignored",
    ]


def test_variable_array_in_a_four_column_file(tmp_path: Path) -> None:
    path = write(tmp_path, "name,data_type,bit_length,bit_offset\n"
                           "n,uint,8,48\n"
                           "id,uint,4,48\n"
                           "data,uint(n),8,\n"
                           "crc,uint,16,\n")
    mapping, notes = imported(path)
    assert "length" not in mapping
    assert [(p["name"], p.get("bit_offset"), p.get("overlay", False))
            for p in mapping["parameters"]] == [
        ("n", 48, False), ("id", 48, True), ("data", None, False), ("crc", None, False)]
    assert notes == []


def test_calibrations(tmp_path: Path) -> None:
    path = write(tmp_path, "name,data_type,bit_length,calibration\n"
                           'gain,uint,8,"{""1"": 2, ""0"": -1}"\n'
                           'curve,int,16,"{""2"": 0.5}"\n'
                           'temp,float,32,"{""0"": 273.15, ""1"": 1}"\n'
                           'mode,int,8,"{""-1"": ""ERROR"", ""0"": ""OFF"", ""[1,5]"": ""ON"", '
                           '""[-3,-2]"": ""FAULT""}"\n'
                           "none,uint,8,{}\n"
                           'pad,fill,8,"{""0"": ""X""}"\n')
    mapping, notes = imported(path)
    fields = {p["name"]: p for p in mapping["parameters"]}
    assert fields["gain"]["calibration"] == {"polynomial": [-1.0, 2.0]}
    assert fields["curve"]["calibration"] == {"polynomial": [0.0, 0.0, 0.5]}
    assert fields["temp"]["type"] == "float"
    assert fields["temp"]["calibration"] == {"polynomial": [273.15, 1.0]}
    # An enum reads the raw unsigned bits: -1 is 255 and -3..-2 is 253..254 in 8 bits.
    assert fields["mode"]["type"] == "enum"
    assert fields["mode"]["states"] == {255: "ERROR", 0: "OFF", "[1,5]": "ON",
                                        "[253,254]": "FAULT"}
    assert "calibration" not in fields["none"] and "states" not in fields["none"]
    assert "calibration" not in fields["pad"] and "states" not in fields["pad"]
    assert notes == [
        f"{path}:5: 'mode': signed field with states taken as an enum of its raw unsigned "
        "bits: negative state values as their two's complement",
        f"{path}:6: 'none': empty calibration {{}}: ignored",
        f"{path}:7: 'pad': calibration ignored: a fill field has no numeric value",
    ]


def test_reference_by_cleaned_name_is_noted(tmp_path: Path) -> None:
    path = write(tmp_path, "name,data_type,bit_length\n"
                           "N-SAMPLES,uint,8\n"
                           "samples,uint(n_samples),8\n")
    mapping, notes = imported(path)
    assert mapping["parameters"][1]["array"] == "n_samples"
    assert notes == [f"{path}:3: 'samples': array size 'n_samples' taken as the field "
                     "'N-SAMPLES' (line 2), the same name once cleaned"]


def test_unknown_columns_are_noted(tmp_path: Path) -> None:
    path = write(tmp_path, "name,data_type,bit_length,units\nx,uint,8,V\n")
    mapping, notes = imported(path)
    assert mapping["parameters"][0]["name"] == "x"
    assert notes == [f"{path}:1: column 'units' is not one of ccsdspy's (name, data_type, "
                     "bit_length, bit_offset, calibration, byte_order): ignored"]


# ----------------------------------------------------------------------------- errors


def test_errors_are_reported_all_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "name,data_type,bit_length,calibration\n"
                           "ok,uint,8,\n"
                           "flag,bool,1,\n"
                           "width,uint,eight,\n"
                           'mode,uint,8,"{""0"": ""OFF"",}"\n'
                           "labels,str(4),8,\n"
                           "samples,uint(COUNT),8,\n"
                           "early,uint(late),8,\n"
                           "late,uint,8,\n")
    assert problems_of(path) == [
        f"{path}:3: 'flag': data_type 'bool': 'bool' is not one of uint, int, float, str, "
        "fill",
        f"{path}:4: 'width': bit_length must be a positive integer, got 'eight'",
        f"{path}:5: 'mode': calibration is not valid JSON: Expecting property name "
        "enclosed in double quotes: line 1 column 13 (char 12)",
        f"{path}:6: 'labels': an array of str is not supported: give each string its own "
        "row, or read the octets as uint(N) with bit_length 8",
        f"{path}:7: 'samples': array size 'COUNT' is not a field of this packet: it must "
        "name an earlier field",
        f"{path}:8: 'early': array size 'late' is a field defined later (line 9): it must "
        "name an earlier field",
    ]


@pytest.mark.parametrize(("row", "problem"), [
    ("x,uint,0", "bit_length must be a positive integer, got '0'"),
    ("x,uint,65", "a uint field is at most 64 bits, got 65"),
    ("x,float,16", "a float is 32 or 64 bits, got 16"),
    ("x,str,12", "a str field is whole octets: bit_length 12 is not a multiple of 8"),
    ("x,uint(0),8", "data_type 'uint(0)': array dimensions must be positive"),
    ('x,"uint(4, FIELD)",8', "data_type 'uint(4, FIELD)': the array shape must be a count "
                           "(4), dimensions (12, 24), expand, or the name of an earlier "
                           "field"),
    ("x,uint(x),8", "array size 'x' is this field itself: it must name an earlier field"),
    ("x,uint,8,1,", "5 values for the 3 columns of the header"),
])
def test_row_errors(tmp_path: Path, row: str, problem: str) -> None:
    path = write(tmp_path, f"name,data_type,bit_length\n{row}\n")
    assert problems_of(path) == [f"{path}:2: 'x': {problem}"]


def test_array_size_field_must_be_uint(tmp_path: Path) -> None:
    path = write(tmp_path, "name,data_type,bit_length\n"
                           "n,int,8\n"
                           "x,uint(n),8\n")
    assert problems_of(path) == [f"{path}:3: 'x': array size field 'n' has data_type int: "
                                 "the element count must come from a uint field"]


def test_layout_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "name,data_type,bit_length,bit_offset,byte_order\n"
                           "a,uint,4,48,\n"
                           "f,float,32,52,\n"
                           "s,str,8,60,\n"
                           "b,uint,16,,little\n"
                           "c,uint,32,96,21\n"
                           "d,uint,16,128,nope\n"
                           "e,uint(expand),8,144,\n"
                           "g,uint(expand),8,,\n"
                           "h,uint(expand),8,,\n"
                           "i,uint,8,200,\n")
    assert problems_of(path) == [
        f"{path}:3: 'f': a float field must start on an octet; it starts at bit 52",
        f"{path}:4: 's': a str field must start on an octet; it starts at bit 60",
        f"{path}:5: 'b': byte_order 'little' needs a field starting on an octet; it "
        "starts at bit 84",
        f"{path}:6: 'c': byte_order '21' orders 2 octets but bit_length is 32",
        f"{path}:7: 'd': byte_order must be big, little or a digit order such as 2143, "
        "got 'nope'",
        f"{path}:8: 'e': a variable-length array (expand or sized by a field) takes no "
        "bit_offset: its place is worked out per packet, as in ccsdspy's VariableLength",
        f"{path}:10: 'h': a second expand array (the first is at line 9): ccsdspy allows "
        "one per packet",
        f"{path}:11: 'i': bit_offset after the variable-length array at line 9: this "
        "field moves with that array's size; leave bit_offset empty",
    ]


@pytest.mark.parametrize(("calibration", "problem"), [
    ('{""0"": ""A"", ""1"": 2}', "calibration mixes state names and polynomial "
                                 "coefficients"),
    ("[1, 2]", 'calibration must be a JSON object: {"0": c0, "1": c1} or '
               '{"0": "STATE", "[1,3]": "STATE"}'),
    ('{""0"": ""A"", ""0"": ""B""}', "calibration is not valid JSON: key '0' given twice"),
    ('{""x"": 1}', "calibration power 'x' is not an integer >= 0"),
    ('{""0"": null}', "calibration values must be all numbers (polynomial coefficients) "
                      "or all text (state names)"),
    ('{""[3,1]"": ""A""}', "calibration state range '[3,1]' has low > high"),
    ('{""A"": ""B""}', "calibration state key 'A' is neither an integer nor a range "
                       "[low,high]"),
    ('{""256"": ""A""}', "calibration state '256' does not fit in 8 unsigned bits "
                         "(0..255)"),
    ('{""[0,9]"": ""LOW"", ""5"": ""MID""}', "calibration states '[0,9]' (LOW) and '5' "
                                             "(MID) overlap at raw value 5"),
])
def test_calibration_errors(tmp_path: Path, calibration: str, problem: str) -> None:
    path = write(tmp_path, f'name,data_type,bit_length,calibration\nx,uint,8,"{calibration}"\n')
    assert problems_of(path) == [f"{path}:2: 'x': {problem}"]


def test_states_on_a_float_are_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, 'name,data_type,bit_length,calibration\nx,float,32,"{""0"": ""A""}"\n')
    assert problems_of(path) == [f"{path}:2: 'x': calibration states need an integer field, "
                                 "this is a float"]


def test_fixed_length_shorter_than_the_fields(tmp_path: Path) -> None:
    path = write(tmp_path, "name,data_type,bit_length\nx,uint,32\n")
    assert problems_of(path, length=9) == [
        f"{path}: length 9 octets is shorter than the fields, which end at bit 80 "
        "(10 octets)"]


@pytest.mark.parametrize(("text", "problem"), [
    ("name,data_type\nx,uint\n", ":1: needs columns name, data_type, bit_length "
                                 "(missing: bit_length)"),
    ("name,data_type,bit_length\n", ": no field rows after the header"),
    ("", ": empty: needs a header row naming the columns name, data_type, bit_length"),
    ("name,name,data_type,bit_length\nx,x,uint,8\n", ":1: column 'name' is given twice"),
    ("name,data_type,bit_length\n,uint,8\n", ":2: the name is empty"),
    ("name,data_type,bit_length\n+++,uint,8\n", ":2: '+++': the name has no letter or "
                                                "digit to make a TMDB name from"),
])
def test_file_errors(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text)
    assert problems_of(path) == [f"{path}{problem}"]


def test_a_bad_row_does_not_cascade(tmp_path: Path) -> None:
    # Without offsets, a row whose size is unknown leaves the next offsets unknown:
    # the float after it is not reported as starting off an octet.
    path = write(tmp_path, "name,data_type,bit_length\n"
                           "a,uint,x\n"
                           "b,float,32\n"
                           "c,bool(4),3\n"
                           "d,float,64\n")
    assert problems_of(path) == [
        f"{path}:2: 'a': bit_length must be a positive integer, got 'x'",
        f"{path}:4: 'c': data_type 'bool(4)': 'bool' is not one of uint, int, float, str, "
        "fill"]


def test_unreadable_csv(tmp_path: Path) -> None:
    with pytest.raises(TmdbError, match="cannot read: No such file or directory"):
        imported(tmp_path / "nope.csv")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"name,data_type,bit_length\n\xff\xfe,uint,8\n")
    with pytest.raises(TmdbError, match="not UTF-8"):
        imported(binary)


def test_line_numbers_count_blank_and_multiline_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "name,data_type,bit_length,calibration\n"
                           "\n"
                           'a,uint,8,"{""0"": ""A"",\n""1"": ""B""}"\n'
                           "b,uint,x,\n")
    assert problems_of(path) == [f"{path}:5: 'b': bit_length must be a positive integer, "
                                 "got 'x'"]
