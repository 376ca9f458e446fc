"""The ccsdspy CSV import, checked against ccsdspy itself on the data its wheel ships.

The ``hs`` data set (ccsdspy/tests/data/hs) holds one ``defs.csv`` and one ``.tlm``
file of back-to-back packets per APID. ccsdspy 2.0.1 loads all six definitions, so
no APID is skipped for ccsdspy's sake; the few rows our TMDB cannot express are
adapted in a temporary copy of the CSV, each with its reason (see ``ADAPTATIONS``).

In these CSVs the explicit ``bit_offset`` values count from the packet start
including the 48-bit primary header (ccsdspy's ``PacketField`` docstring), so the
``*_time_*`` fields overlap the header and the importer marks them ``overlay``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ccsdspy
import numpy as np
import numpy.typing as npt
import pytest
from ccsdspy.converters import EnumConverter, PolyConverter

from control_center.telemetry.ccsdspy_csv import import_ccsdspy_csv
from control_center.telemetry.codec import PacketCodec, render_text
from control_center.telemetry.packets import PRIMARY_HEADER_LENGTH, PrimaryHeader, split_packets
from control_center.telemetry.tmdb import PacketDef
from control_center.telemetry.tmdb_yaml import parse_tmdb

HS = Path(ccsdspy.__file__).parent / "tests" / "data" / "hs"
Row = dict[str, str]


def apid_dir(apid: int) -> Path:
    return HS / f"apid{apid:03d}"


def tlm_path(apid: int) -> Path:
    return next(apid_dir(apid).glob("*.tlm"))


def read_rows(path: Path) -> list[Row]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, skipinitialspace=True))


def write_rows(path: Path, rows: list[Row], columns: list[str]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def drop_strings(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r["data_type"] != "str"]


# Every row of the shipped hs CSVs is now expressible (range-keyed states, strings,
# a polynomial on a float): the definitions are imported exactly as ccsdspy ships them.
ADAPTATIONS: dict[int, list[Callable[[list[Row]], list[Row]]]] = {
    1: [], 10: [], 35: [], 130: [], 251: [], 895: []}


def first_packet_length(data: bytes) -> int:
    return PrimaryHeader.unpack(data[:PRIMARY_HEADER_LENGTH]).packet_length


def import_packet(csv_path: Path, apid: int, length: int | None) -> PacketDef:
    mapping, _ = import_ccsdspy_csv(csv_path, apid, f"hs_apid{apid}", length=length)
    tmdb = parse_tmdb({"spacecraft": "ssat1", "packets": [mapping]}, str(csv_path))
    return tmdb.packets[0]


def decode_file(packet: PacketDef, data: bytes) -> tuple[int, dict[str, npt.NDArray[Any]],
                                                          dict[str, npt.NDArray[Any]]]:
    split = split_packets(data, lengths={packet.apid: packet.length})
    assert not split.errors
    assert split.idle == 0
    packets = split.by_apid[packet.apid]
    receive = np.arange(len(packets), dtype=np.int64)
    # Read at the offsets these CSVs give, some floats are signalling NaNs, which
    # numpy flags as "invalid" when widening them to float64 engineering values.
    with np.errstate(invalid="ignore"):
        batch = PacketCodec("ssat1", packet).decode_packets(packets, receive)
    assert batch.times_ns.tolist() == receive.tolist()  # time: receive
    return len(packets), {k: np.asarray(v) for k, v in batch.raw.items()}, \
        {k: np.asarray(v) for k, v in batch.values.items()}


def assert_same_raw(ours: npt.NDArray[Any], theirs: npt.NDArray[Any], name: str) -> None:
    if theirs.dtype.kind == "f":
        # Bit for bit: these files hold NaNs and denormals when read at these offsets.
        assert ours.astype(theirs.dtype).tobytes() == theirs.tobytes(), name
    else:
        assert ours.tolist() == theirs.tolist(), name


def expected_labels(calibration: dict[str, str], raw: npt.NDArray[Any]) -> list[str | None]:
    """State names straight from the CSV's JSON: ccsdspy's EnumConverter takes integer
    keys only, so ranges ("[1,3]") are read here, then plain keys through ccsdspy."""
    plain = {int(k): v for k, v in calibration.items() if not k.startswith("[")}
    ranges = [(*json.loads(k), v) for k, v in calibration.items() if k.startswith("[")]
    labels: list[str | None] = []
    for value in raw.tolist():
        if value in plain:
            labels.append(str(EnumConverter(plain).convert(np.array([value]))[0]))
        else:
            labels.append(next((name for low, high, name in ranges if low <= value <= high),
                               None))
    return labels


def poly_coefficients_high_first(calibration: dict[str, Any]) -> list[float]:
    """PolyConverter wants the coefficients from the highest power down to the intercept."""
    by_power = {int(k): float(v) for k, v in calibration.items()}
    return [by_power.get(power, 0.0) for power in range(max(by_power), -1, -1)]


@pytest.mark.parametrize("apid", sorted(ADAPTATIONS))
def test_hs_file_decodes_like_ccsdspy(apid: int, tmp_path: Path) -> None:
    defs = apid_dir(apid) / "defs.csv"
    rows = read_rows(defs)
    for adapt in ADAPTATIONS[apid]:
        rows = adapt(rows)
    ours_csv = write_rows(tmp_path / "defs.csv", rows, list(read_rows(defs)[0])) \
        if ADAPTATIONS[apid] else defs
    data = tlm_path(apid).read_bytes()
    length = first_packet_length(data)
    packet = import_packet(ours_csv, apid, length)
    assert packet.length == length
    assert packet.time == "receive"
    assert not packet.error_control
    assert len(packet.parameters) == len(rows)

    count, raw, values = decode_file(packet, data)
    assert count == len(data) // length
    theirs = ccsdspy.FixedLength.from_file(str(defs)).load(str(tlm_path(apid)))
    compared_poly = compared_enum = 0
    for row, parameter in zip(rows, packet.parameters, strict=True):
        expected = np.asarray(theirs[row["name"]])
        assert expected.shape == (count,)
        assert parameter.bit_offset == int(row["bit_offset"])
        assert parameter.bit_length == int(row["bit_length"])
        if parameter.bit_offset < 48:
            assert parameter.overlay, parameter.name
        assert_same_raw(raw[parameter.name], expected, row["name"])
        calibration = json.loads(row["calibration"]) if row["calibration"] else None
        if calibration is None:
            if row["data_type"] == "str":
                # The octets are compared bit for bit above; the text rendering itself is
                # checked character by character in tests/integration/test_real_missions.py.
                assert values[parameter.name].tolist() == [
                    render_text(v) for v in expected.tolist()]
            continue
        if all(isinstance(v, str) for v in calibration.values()):
            assert parameter.type == "enum"
            assert values[parameter.name].tolist() == expected.tolist()
            labels = expected_labels(calibration, expected)
            assert [parameter.state_label(v) for v in values[parameter.name].tolist()] \
                == list(labels)
            compared_enum += 1
        else:
            converter = PolyConverter(poly_coefficients_high_first(calibration))
            # Horner (ours) and a power sum (ccsdspy) round differently in the last bits.
            np.testing.assert_allclose(values[parameter.name], converter.convert(expected),
                                       rtol=1e-12, atol=1e-9, err_msg=row["name"])
            compared_poly += 1
    # Keep the test honest: these files do carry calibrations of both kinds.
    assert (compared_poly, compared_enum) == {
        1: (0, 2), 10: (0, 12), 35: (1, 9), 130: (1, 0), 251: (1, 0), 895: (1, 0)}[apid]


def test_hs_header_overlapping_fields_are_overlays() -> None:
    packet = import_packet(apid_dir(895) / "defs.csv", 895, 34)
    overlays = [p.name for p in packet.parameters if p.overlay]
    assert overlays == ["pkt895_time_secs", "pkt895_time_usecs", "pkt895_fld1", "pkt895_fld2",
                        "pkt895_fld3", "pkt895_fld4", "pkt895_fld5"]
    names = [p.name for p in packet.parameters]
    assert names[2] == "pkt895_uint16_cnt"
    assert packet.parameter("pkt895_uint16_cnt").calibration.coefficients == (20.0, -0.0002766)
    # Without length= the packet would end where the fields do, 2 octets short.
    short = import_packet(apid_dir(895) / "defs.csv", 895, None)
    assert short.length == 28
    assert split_packets(tlm_path(895).read_bytes()[:34 * 3],
                         lengths={895: short.length}).errors == {"wrong_length": 3}


def test_array_names_become_tmdb_names(tmp_path: Path) -> None:
    packet = import_packet(apid_dir(35) / "defs.csv", 35, 51)
    assert [p.name for p in packet.parameters][-8:] == [f"pkt35_flt_sin_2h_{i}"
                                                        for i in range(8)]
    # All eight rows sit at bit 104: the first owns the bits, the others overlay it.
    assert [p.overlay for p in packet.parameters][-8:] == [False] + [True] * 7


# ----------------------------------------------------------------------- 3-column form


def three_column(apid: int) -> list[Row]:
    """The hs definition without offsets: array elements (``name[i]``) one after the
    other, and bit fields inside an earlier word left out."""
    rows: list[Row] = []
    end = 0
    for row in read_rows(apid_dir(apid) / "defs.csv"):
        offset, bits = int(row["bit_offset"]), int(row["bit_length"])
        if "[" in row["name"]:
            offset = max(offset, end)
        if offset < end:
            continue  # a bit field inside the word before it
        end = offset + bits
        rows.append({"name": row["name"],
                     "data_type": "uint" if row["data_type"] == "str" else row["data_type"],
                     "bit_length": row["bit_length"]})
    return rows


@pytest.mark.parametrize(("apid", "skip_rows"), [
    (895, 0), (130, 0), (251, 0), (35, 0),
    # Shorter than the packet, as in ccsdspy's own test_hs (which leaves out the time
    # fields). FixedLength.load always prepends the primary header fields at explicit
    # offsets 0..47, so in ccsdspy 2.0.1 such fields follow the header too and the rest
    # of the packet is ignored (its "fill to the end" branch never runs for them).
    (35, 2), (10, 2), (10, 0),
])
def test_three_column_csv_like_ccsdspy(apid: int, skip_rows: int, tmp_path: Path) -> None:
    rows = three_column(apid)[skip_rows:]
    path = write_rows(tmp_path / f"apid{apid}_3col.csv", rows,
                      ["name", "data_type", "bit_length"])
    data = tlm_path(apid).read_bytes()
    length = first_packet_length(data)
    packet = import_packet(path, apid, length)
    theirs = ccsdspy.FixedLength.from_file(str(path)).load(str(tlm_path(apid)))
    count, raw, _ = decode_file(packet, data)
    # The fields follow the primary header back to back.
    assert packet.parameters[0].bit_offset == 48
    for left, right in zip(packet.parameters, packet.parameters[1:], strict=False):
        assert right.bit_offset == left.bit_offset + left.bit_length
    assert not any(p.overlay for p in packet.parameters)
    for row, parameter in zip(rows, packet.parameters, strict=True):
        assert_same_raw(raw[parameter.name], np.asarray(theirs[row["name"]]), row["name"])
    assert count == len(data) // length
    last = packet.parameters[-1]
    fills = last.bit_offset + last.bit_length == length * 8
    assert fills == (apid != 10 and skip_rows == 0)


def test_three_column_sines_are_sines(tmp_path: Path) -> None:
    # With the header-relative reading of the hs layout, apid 35 carries 8 sine waves:
    # the same check ccsdspy's own test makes (values reach -1 and +1).
    path = write_rows(tmp_path / "sines.csv", three_column(35),
                      ["name", "data_type", "bit_length"])
    packet = import_packet(path, 35, None)
    assert packet.length == 51
    _, _, values = decode_file(packet, tlm_path(35).read_bytes())
    for i in range(8):
        sine = values[f"pkt35_flt_sin_2h_{i}"]
        assert abs(sine.min() + 1.0) < 1e-3
        assert abs(sine.max() - 1.0) < 1e-3


def test_three_column_synthetic_unaligned_fields(tmp_path: Path) -> None:
    """Odd widths at odd offsets, random octets: ours and ccsdspy's decoders agree."""
    rows = [{"name": n, "data_type": t, "bit_length": str(b)} for n, t, b in [
        ("a", "uint", 3), ("b", "int", 13), ("c", "uint", 24), ("d", "int", 5),
        ("e", "uint", 27), ("f", "float", 64), ("g", "int", 64), ("h", "uint", 1),
        ("i", "int", 7), ("j", "uint", 33), ("k", "int", 31), ("l", "float", 32)]]
    path = write_rows(tmp_path / "odd.csv", rows, ["name", "data_type", "bit_length"])
    total_bits = sum(int(r["bit_length"]) for r in rows)
    assert total_bits % 8 == 0
    length = 6 + total_bits // 8
    rng = np.random.default_rng(20170101)
    count = 500
    octets = rng.integers(0, 256, size=(count, length), dtype=np.uint8)
    octets[:, 0:2] = [0x00, 0x42]  # version 0, TM, no secondary header, APID 0x42
    octets[:, 2] = 0xC0 | (np.arange(count) >> 8)
    octets[:, 3] = np.arange(count) & 0xFF
    octets[:, 4:6] = [(length - 7) >> 8, (length - 7) & 0xFF]
    tlm = tmp_path / "odd.tlm"
    tlm.write_bytes(octets.tobytes())
    packet = import_packet(path, 0x42, None)
    assert packet.length == length
    theirs = ccsdspy.FixedLength.from_file(str(path)).load(str(tlm))
    _, raw, _ = decode_file(packet, tlm.read_bytes())
    for row in rows:
        assert_same_raw(raw[row["name"]], np.asarray(theirs[row["name"]]), row["name"])
    assert raw["i"].min() < 0 < raw["i"].max()  # sign extension was exercised
