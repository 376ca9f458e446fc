"""Pass reports: decoded from the archive, checked against values we encoded ourselves.

One archive holds four passes: a simulated lander and orbiter pass (60 s each), a
lander pass built from packets with known values that cross their limits, and a
lander pass of nothing decodable. Reports are written once per module (rendering is
the slow part) and each test checks one aspect of them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image, PngImagePlugin

from control_center.archive.recorder import ArchiveWriter
from control_center.archive.report import DPI, FIGSIZE, ReportSummary, _envelope, write_report
from control_center.errors import IslsError
from control_center.telemetry.codec import PacketCodec
from control_center.telemetry.packets import CucTime
from control_center.telemetry.tmdb import Limits, PacketDef, Parameter, Tmdb
from simulators.runner import PacketGenerator, make_model

SECOND = 1_000_000_000
START = 1_800_000_000  # 2027-01-15 08:00:00 UTC, Unix seconds
KNOWN_START = START + 3600  # separate passes: far more than the archive's silence apart
EMPTY_START = START + 7200
DURATION = 60  # seconds of every pass
RECORD_MS = 100  # one archive record per 0.1 s of packets
CHUNK = 50  # tiny decode chunks on the known pass: proves chunks join up right
EVIL_LINK = "<evil&link>"
LATE_MS = 5000  # the known pass's packets stamped 5 s in are archived after all others

Values = dict[str, npt.NDArray[Any]]


def _tmdb(tmdbs: list[Tmdb], spacecraft: str) -> Tmdb:
    return next(t for t in tmdbs if t.spacecraft == spacecraft)


def _report_parameters(tmdb: Tmdb) -> list[tuple[PacketDef, Parameter]]:
    return [(packet, p) for packet in tmdb.packets for p in packet.fields if p.report]


def _known_values(packet: PacketDef, n: int) -> Values:
    """Engineering values on each parameter's resolution, never exactly on a limit,
    crossing yellow and red on purpose. Unlisted parameters are zero."""
    i = np.arange(n)
    values: Values = {p.name: np.zeros(n) for p in packet.parameters if not p.overlay}
    if packet.name == "lander_nav":
        values["descent_phase"] = (i // 120) % 6
        values["altitude"] = (15000.0 - 25.0 * i).astype(np.float32)
        values["vertical_velocity"] = (-40.0 + 0.125 * i).astype(np.float32)
        horizontal = 1700.0 - 2.5 * i
        horizontal[7] = np.nan  # a bad sample: counted, but no min, max or violation
        values["horizontal_velocity"] = horizontal.astype(np.float32)
        values["throttle"] = (5000 + 9 * i) / 100.0  # 0.01 % counts, up to 103.91 %
        values["main_engine_on"] = i % 50 < 25
    elif packet.name == "lander_power":
        values["battery_soc"] = 80.25 - 1.25 * i  # 80.25 % down to 6.5 %
        values["battery_voltage"] = np.round(29.5 + 5.6 * np.sin(2 * np.pi * i / 30), 1) + 0.05
        values["solar_array_current"] = 2.5 + 0.001 * i
        mass = 300.0 - 4.5 * i
        # Exactly on a limit is within it: 150 kg is nominal, 60 kg only yellow.
        mass[[10, 55]] = 150.0, 60.0
        values["propellant_mass"] = mass.astype(np.float32)
        values["bus_voltage"] = np.full(n, 28.0)
    elif packet.name == "lander_thermal":
        # Table calibration: a count is 0.075 to 0.28 degC, so values stay > 0.5 off limits.
        values["engine_temperature"] = 20.0 + 11.0 * i
        values["battery_temperature"] = -14.5 + 2.0 * i
        for name in ("avionics_temperature", "tank_temperature"):
            values[name] = np.full(n, 20.0)
    return values


def _tolerance(parameter: Parameter) -> float:
    """How far a decoded value may lie from the encoded one: half a count."""
    calibration = parameter.calibration
    if calibration.kind == "table":
        return 0.3
    if calibration.kind == "polynomial":
        return abs(calibration.coefficients[1]) / 2 + 1e-9
    return 0.0  # floats (float32 exactly representable) and integers


def _expected_violations(values: npt.NDArray[np.float64], limits: Limits) -> tuple[int, int]:
    """(yellow, red) counted the report's way, written out independently: a sample is
    red outside red limits, else yellow outside yellow ones; on a limit is inside."""
    yellow = red = 0
    for value in values.tolist():
        if value != value:  # NaN
            continue
        if (limits.red_low is not None and value < limits.red_low) or \
                (limits.red_high is not None and value > limits.red_high):
            red += 1
        elif (limits.yellow_low is not None and value < limits.yellow_low) or \
                (limits.yellow_high is not None and value > limits.yellow_high):
            yellow += 1
    return yellow, red


def _record_packets(writer: ArchiveWriter, spacecraft: str, start: int,
                    packets: list[tuple[int, bytes]]) -> str:
    """Archive (ms since start of arrival, packet) pairs, one record per RECORD_MS
    window, each received a little after its last packet."""
    pass_id = ""
    windows: dict[int, list[bytes]] = {}
    for offset_ms, packet in sorted(packets, key=lambda item: item[0]):
        windows.setdefault(offset_ms // RECORD_MS, []).append(packet)
    for window, chunk in sorted(windows.items()):
        ert_ns = start * SECOND + (window + 1) * RECORD_MS * 1_000_000 + 250_000_000
        pass_id = writer.record(spacecraft, ert_ns, f"sim-{spacecraft}", b"".join(chunk))
    return pass_id


@dataclass
class Archive:
    root: Path
    sim_ids: dict[str, str]  # spacecraft: pass id
    sim_counts: dict[str, dict[str, int]]  # spacecraft: packets generated by packet name
    known_id: str
    known: dict[str, Values]  # packet name: the values encoded
    known_ms: dict[str, npt.NDArray[np.int64]]  # packet name: ms after KNOWN_START
    empty_id: str


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory, tmdbs: list[Tmdb]) -> Archive:
    root = tmp_path_factory.mktemp("report") / "archive"
    writer = ArchiveWriter(root, silence=60.0)
    sim_ids: dict[str, str] = {}
    sim_counts: dict[str, dict[str, int]] = {}
    for spacecraft in ("lander", "orbiter"):
        tmdb = _tmdb(tmdbs, spacecraft)
        generator = PacketGenerator(make_model(spacecraft, 7), tmdb, start_unix=START)
        for step in range(1, DURATION * 1000 // RECORD_MS + 1):
            octets = generator.advance_to(step * RECORD_MS / 1000)
            if octets:
                sim_ids[spacecraft] = writer.record(
                    spacecraft, START * SECOND + step * RECORD_MS * 1_000_000,
                    f"sim-{spacecraft}", octets)
        sim_counts[spacecraft] = generator.counts()

    lander = _tmdb(tmdbs, "lander")
    known: dict[str, Values] = {}
    known_ms: dict[str, npt.NDArray[np.int64]] = {}
    packets: list[tuple[int, bytes]] = []
    for packet in lander.packets:
        period_ms = round((packet.period or 1.0) * 1000)
        offsets = np.arange(0, DURATION * 1000, period_ms, dtype=np.int64)
        values = _known_values(packet, offsets.size)
        codes = [CucTime.from_unix(KNOWN_START + int(ms) / 1000) for ms in offsets]
        octets = PacketCodec("lander", packet).encode(
            values, coarse=[c.coarse for c in codes], fine=[c.fine for c in codes],
            sequence_counts=np.arange(offsets.size))
        # The packets of second 5 arrive last (a retransmission): the report must
        # put them back in time order.
        packets += [(int(ms) if ms != LATE_MS else DURATION * 1000 + 50,
                     octets[k * packet.length:(k + 1) * packet.length])
                    for k, ms in enumerate(offsets)]
        # Derived parameters from what the packets really hold (the decoded values).
        decoded = PacketCodec("lander", packet).decode_packets(
            [octets[k * packet.length:(k + 1) * packet.length] for k in range(offsets.size)])
        for derived in packet.derived:
            values[derived.name] = np.asarray(decoded.values[derived.name])
        known[packet.name] = values
        known_ms[packet.name] = offsets
    known_id = _record_packets(writer, "lander", KNOWN_START, packets)

    # Nothing decodable: foreign octets, from a link whose name needs escaping in HTML.
    empty_id = ""
    for k in range(5):
        empty_id = writer.record("lander", (EMPTY_START + k) * SECOND, EVIL_LINK,
                                 b"\x07\xff not a space packet \x00" * 3)
    writer.close()
    assert len({*sim_ids.values(), known_id, empty_id}) == 4
    return Archive(root, sim_ids, sim_counts, known_id, known, known_ms, empty_id)


@pytest.fixture(scope="module")
def reports(archive: Archive, tmdbs: list[Tmdb], tmp_path_factory: pytest.TempPathFactory
            ) -> dict[str, ReportSummary]:
    out = tmp_path_factory.mktemp("reports")
    written = {name: write_report(archive.root, pass_id, tmdbs, out / name)
               for name, pass_id in archive.sim_ids.items()}
    written["known"] = write_report(archive.root, archive.known_id, tmdbs, out / "known",
                                    chunk_packets=CHUNK)
    written["empty"] = write_report(archive.root, archive.empty_id, tmdbs, out / "empty")
    return written


def _open_png(path: Path) -> tuple[dict[str, Any], npt.NDArray[np.uint8]]:
    """The PNG's embedded summary and its RGB pixels, after checking it is a real
    image of the report's size that is not blank."""
    with Image.open(path) as image:
        assert isinstance(image, PngImagePlugin.PngImageFile), path
        assert image.size == (int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI)), path
        document = json.loads(image.text["Description"])
        pixels = np.asarray(image.convert("RGB"))
    assert isinstance(document, dict)
    # Grey levels of every other pixel: as telling as all of them, a fraction of the cost.
    assert pixels[::2, ::2].mean(axis=-1).var() > 0, f"{path} is blank"
    return document, pixels


def _has_colour(pixels: npt.NDArray[np.uint8], rgb: tuple[int, int, int]) -> bool:
    return bool(np.all(pixels == np.array(rgb, dtype=np.uint8), axis=-1).any())


# ----------------------------------------------------------------------- tests


def test_known_values_plots_hold_exactly_what_was_encoded(
        archive: Archive, reports: dict[str, ReportSummary], tmdbs: list[Tmdb]) -> None:
    summary = reports["known"]
    lander = _tmdb(tmdbs, "lander")
    expected_pngs = {f"{packet.name}-{p.name}.png" for packet, p in _report_parameters(lander)}
    assert {p.name for p in summary.pngs} == expected_pngs
    assert {p.name for p in summary.out.glob("*.png")} == expected_pngs
    assert summary.decode_errors == {}
    assert dict(summary.packets_decoded) == {name: ms.size for name, ms
                                             in archive.known_ms.items()}
    for packet, parameter in _report_parameters(lander):
        encoded = np.asarray(archive.known[packet.name][parameter.name], dtype=np.float64)
        finite = encoded[np.isfinite(encoded)]
        png = summary.out / f"{packet.name}-{parameter.name}.png"
        meta, _ = _open_png(png)
        where = f"{packet.name}.{parameter.name}"
        assert meta["parameter"] == parameter.name and meta["packet"] == packet.name, where
        assert meta["samples"] == encoded.size, where
        tolerance = _tolerance(parameter)
        assert meta["min"] == pytest.approx(finite.min(), abs=tolerance, rel=1e-12), where
        assert meta["max"] == pytest.approx(finite.max(), abs=tolerance, rel=1e-12), where
        assert (meta["yellow_violations"], meta["red_violations"]) == \
            _expected_violations(encoded, parameter.limits), where
        ms = archive.known_ms[packet.name]
        # Point times: onboard time plus the sequence count in ns (docs/contracts.md, "InfluxDB
        # contract"); the first packet's count is 0.
        assert meta["first_ns"] == point_ns(KNOWN_START * SECOND + int(ms[0]) * 1_000_000, 0), \
            where
        # CUC fine time is 1/65536 s, the count adds under 16,384 ns: the last stamp is
        # within 33 µs of the encoded one.
        assert abs(meta["last_ns"] - (KNOWN_START * SECOND + int(ms[-1]) * 1_000_000)) \
            < 33_000, where
        figures = next(f for f in summary.parameters if f.parameter == parameter.name)
        assert figures.plot_metadata() == meta, where


def point_ns(onboard_ns: int, sequence_count: int) -> int:
    """The point time of a packet (docs/contracts.md, "InfluxDB contract")."""
    return onboard_ns + sequence_count


def test_known_violations_anchor_the_independent_count(
        archive: Archive, reports: dict[str, ReportSummary]) -> None:
    """Hand-counted anchors, so the test's own counting cannot be wrong unnoticed."""
    figures = {f.parameter: f for f in reports["known"].parameters}
    soc = figures["battery_soc"]  # 80.25 - 1.25 i: yellow from i=41 (29 %), red from 53
    assert (soc.yellow_violations, soc.red_violations) == (12, 7)
    assert soc.first_violation_ns == point_ns((KNOWN_START + 41) * SECOND, 41)
    assert soc.worst_value == pytest.approx(6.5)
    throttle = figures["throttle"]  # 50 % + 0.09 % i: > 100 % from i=556, > 100.5 % from 562
    assert (throttle.yellow_violations, throttle.red_violations) == (6, 38)
    assert throttle.worst_value == pytest.approx(103.91)
    # 300 - 4.5 i kg: < 150 from i=34, < 60 from 54; 150 at i=10 is nominal, and 60
    # at i=55 is yellow, not red.
    mass = figures["propellant_mass"]
    assert (mass.yellow_violations, mass.red_violations) == (21, 5)
    horizontal = figures["horizontal_velocity"]
    assert horizontal.samples == 600 and horizontal.max == pytest.approx(1700.0)
    phase = figures["descent_phase"]
    assert (phase.min, phase.max) == (0, 4)


def test_plots_mark_violations_in_colour(reports: dict[str, ReportSummary]) -> None:
    out = reports["known"].out
    _, soc = _open_png(out / "lander_power-battery_soc.png")
    assert _has_colour(soc, (255, 165, 0))  # orange: yellow violations
    assert _has_colour(soc, (255, 0, 0))  # red violations and the red limit line
    _, clean = _open_png(out / "lander_power-solar_array_current.png")  # no limits
    assert not _has_colour(clean, (255, 165, 0)) and not _has_colour(clean, (255, 0, 0))


def test_index_html_summarises_the_pass(archive: Archive,
                                        reports: dict[str, ReportSummary]) -> None:
    summary = reports["known"]
    text = summary.index.read_text(encoding="utf-8")
    assert archive.known_id in text
    # Acquisition of signal: the first record, received 0.35 s after the first packet.
    assert "2027-01-15 09:00:00.350 UTC" in text
    for png in summary.pngs:
        assert f'<img src="{png.name}"' in text
    assert "http://" not in text and "https://" not in text  # self-contained
    for figures in summary.parameters:
        row = re.search(rf'<tr[^>]*id="violations-{figures.packet}-{figures.parameter}"'
                        r"[^>]*>(.*?)</tr>", text)
        assert row is not None, figures.parameter
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))
        assert cells[0] == figures.parameter
        assert cells[3:6] == [str(figures.samples), str(figures.yellow_violations),
                              str(figures.red_violations)]
    soc_row = re.search(r'id="violations-lander_power-battery_soc"[^>]*>(.*?)</tr>', text)
    assert soc_row is not None and "2027-01-15 09:00:41.000 UTC" in soc_row.group(1)


def test_report_json_matches_the_summary(archive: Archive,
                                         reports: dict[str, ReportSummary]) -> None:
    summary = reports["known"]
    document = json.loads(summary.report_json.read_text())
    assert document["pass"]["id"] == archive.known_id
    assert document["pass"]["spacecraft"] == "lander"
    assert document["no_data"] is False
    assert document["decoded_packets"] == dict(summary.packets_decoded)
    by_name = {p["parameter"]: p for p in document["parameters"]}
    for figures in summary.parameters:
        entry = by_name[figures.parameter]
        for key, value in figures.plot_metadata().items():
            assert entry[key] == value, (figures.parameter, key)
        assert entry["png"] == (figures.png.name if figures.png else None)


def test_simulated_passes_plot_every_report_parameter(
        archive: Archive, reports: dict[str, ReportSummary], tmdbs: list[Tmdb]) -> None:
    for spacecraft in ("lander", "orbiter"):
        summary = reports[spacecraft]
        assert summary.decode_errors == {}
        assert dict(summary.packets_decoded) == archive.sim_counts[spacecraft]
        for packet, parameter in _report_parameters(_tmdb(tmdbs, spacecraft)):
            png = summary.out / f"{packet.name}-{parameter.name}.png"
            assert png.is_file(), png
            meta, _ = _open_png(png)
            assert meta["samples"] == archive.sim_counts[spacecraft][packet.name], png
            assert meta["first_ns"] == point_ns(START * SECOND, 0), png
            assert meta["min"] is not None and meta["min"] <= meta["max"], png


def test_a_pass_with_nothing_decodable_gets_a_report_saying_so(
        archive: Archive, reports: dict[str, ReportSummary]) -> None:
    summary = reports["empty"]
    assert summary.decoded == 0 and summary.pngs == ()
    assert sum(summary.decode_errors.values()) > 0
    assert all(f.samples == 0 and f.png is None for f in summary.parameters)
    text = summary.index.read_text(encoding="utf-8")
    assert "No decodable packets" in text
    assert "&lt;evil&amp;link&gt;" in text and EVIL_LINK not in text
    assert json.loads(summary.report_json.read_text())["no_data"] is True


def test_unknown_pass_and_unknown_spacecraft_raise(archive: Archive, tmdbs: list[Tmdb],
                                                   tmp_path: Path) -> None:
    with pytest.raises(IslsError, match="lander-20990101T000000Z"):
        write_report(archive.root, "lander-20990101T000000Z", tmdbs, tmp_path / "out")
    with pytest.raises(IslsError, match="no telemetry database"):
        write_report(archive.root, archive.known_id, [_tmdb(tmdbs, "orbiter")],
                     tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_thinning_a_long_series_keeps_its_extremes_and_holes() -> None:
    """Plots of long passes draw a min/max envelope: no spike or NaN may vanish."""
    rng = np.random.default_rng(3)
    values = rng.normal(0.0, 1.0, 100_003)
    values[12_345] = 50.0
    values[77_777] = -50.0
    values[40_000:40_005] = np.nan
    kept = _envelope(values, 2_000)
    assert kept.size <= 2_000 + 2 * 50 + 10  # buckets, the tail, the NaNs and both ends
    assert np.all(np.diff(kept) > 0) and kept[0] == 0 and kept[-1] == values.size - 1
    assert {12_345, 77_777} <= set(kept.tolist())
    assert 40_000 in set(kept.tolist())  # the hole's first NaN breaks the line
    size = -(-values.size // 1_000)  # the bucket length _envelope uses for 2000 points
    for start in range(0, values.size - size, size * 97):  # every 97th bucket
        bucket = values[start:start + size]
        if np.isnan(bucket).all():
            continue
        chosen = values[kept[(kept >= start) & (kept < start + size)]]
        assert np.nanmax(chosen) == np.nanmax(bucket)
        assert np.nanmin(chosen) == np.nanmin(bucket)
