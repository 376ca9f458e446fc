"""`isls import` counts every bad packet, and fails for a file that gave no good packet.

Against a real InfluxDB (the ``influxd`` and ``database`` fixtures): the points stored
are counted, not only the summary.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import pytest

from control_center.archive import importer
from control_center.archive.importer import import_files
from control_center.config import Config
from control_center.operations.servers import InfluxServer
from control_center.storage.contract import format_lines_off_loop
from control_center.telemetry.packets import PrimaryHeader, crc16
from control_center.telemetry.records import DecodedBatch
from control_center.telemetry.tmdb import Tmdb
from tests.conftest import CONFIG, ISLS, count_points
from tests.integration.test_pipeline import _good_packets

NOTHING = "nothing stored from this file"


def _env(config: Config) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISLS_")}
    env.update(ISLS_MQTT_URL=config.mqtt.url, ISLS_INFLUX_URL=config.influx.url,
               ISLS_INFLUX_DB=config.influx.database, ISLS_STATE_DIR=str(config.state_dir))
    return env


def _isls_import(config: Config, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ISLS, "--config", str(CONFIG), "import", *args],
                          env=_env(config), capture_output=True, text=True, timeout=120)


def _set_header_bits(packet: bytes, *, version: int = 0, packet_type: int = 0,
                     error_control: bool = True) -> bytes:
    """``packet`` with another version and type, its CRC made again over the new header
    so that only the header field is wrong."""
    data = bytes([(packet[0] & 0x0F) | (version << 5) | (packet_type << 4)]) + packet[1:]
    if error_control:
        data = data[:-2] + crc16(data[:-2]).to_bytes(2, "big")
    return data


def _power(tmdbs: list[Tmdb], count: int, first: int = 0) -> list[bytes]:
    return _good_packets(tmdbs[0], "lander_power", count, first)


# ------------------------------------------------------------- counting, in-process


def test_bad_versions_are_counted_per_packet(config: Config, tmdbs: list[Tmdb],
                                             influxd: InfluxServer, database: str,
                                             tmp_path: Path) -> None:
    good = _power(tmdbs, 9)
    bad = [_set_header_bits(p, version=1 + i) for i, p in enumerate(_power(tmdbs, 3, 100))]
    path = tmp_path / "mixed.bin"
    path.write_bytes(b"".join(good[:5] + bad + good[5:]))
    # A small chunk puts the bad packets across chunk boundaries: the same counts.
    for chunk in (8 << 20, 3 * len(good[0]) + 5):
        summary = asyncio.run(import_files(config, tmdbs, [path], spacecraft="lander",
                                           chunk=chunk))
        assert summary.packets["lander/lander_power"] == 9
        assert +summary.errors == {"bad_header": 3}
        (file,) = summary.by_file
        assert (file.packets, +file.errors, file.seen) == (9, {"bad_header": 3}, 12)
        assert not summary.files_without_packets
    assert count_points(influxd, database, "lander_power", "WHERE source='import'") == 9


def test_type_1_packets_are_imported(config: Config, tmdbs: list[Tmdb],
                                     influxd: InfluxServer, database: str,
                                     tmp_path: Path) -> None:
    error_control = tmdbs[0].packet("lander_power").error_control
    packets = [_set_header_bits(p, packet_type=1, error_control=error_control)
               for p in _power(tmdbs, 20)]
    assert {PrimaryHeader.unpack(p).packet_type for p in packets} == {1}
    path = tmp_path / "typed.bin"
    path.write_bytes(b"".join(packets[:7]) + b"".join(packets[7:]))
    summary = asyncio.run(import_files(config, tmdbs, [path]))  # spacecraft by its APIDs
    assert summary.packets["lander/lander_power"] == 20
    assert not +summary.errors
    assert count_points(influxd, database, "lander_power", "WHERE source='import'") == 20


def test_a_file_of_bad_versions_is_still_told_apart_by_its_apids(
        config: Config, tmdbs: list[Tmdb], influxd: InfluxServer, database: str,
        tmp_path: Path) -> None:
    # No --spacecraft: the lander's APIDs name the spacecraft even in bad headers, so
    # the file is walked and every bad packet counted, not refused as unknown.
    path = tmp_path / "versions.bin"
    path.write_bytes(b"".join(_set_header_bits(p, version=1) for p in _power(tmdbs, 12)))
    summary = asyncio.run(import_files(config, tmdbs, [path]))
    (file,) = summary.files_without_packets
    assert (file.problem, +file.errors, file.seen) == ("", {"bad_header": 12}, 12)


# ------------------------------------------------------------- exit code and summary


def test_import_of_good_files_exits_0(config: Config, tmdbs: list[Tmdb],
                                      influxd: InfluxServer, database: str,
                                      tmp_path: Path) -> None:
    first, second = tmp_path / "pass1.bin", tmp_path / "pass2.bin"
    first.write_bytes(b"".join(_power(tmdbs, 6)))
    second.write_bytes(b"".join(_power(tmdbs, 4, 50)))
    result = _isls_import(config, str(first), str(second))
    assert result.returncode == 0, result.stderr
    assert "imported 2 file(s)" in result.stdout
    assert "lander/lander_power" in result.stdout
    assert "unknown APIDs 0, bad packets 0\n" in result.stdout  # nothing dropped
    assert NOTHING not in result.stderr
    assert count_points(influxd, database, "lander_power", "WHERE source='import'") == 10


def test_import_of_an_all_bad_file_exits_1_and_says_so(config: Config, tmdbs: list[Tmdb],
                                                      influxd: InfluxServer, database: str,
                                                      tmp_path: Path) -> None:
    good = tmp_path / "pass1.bin"
    good.write_bytes(b"".join(_power(tmdbs, 5)))
    bad = tmp_path / "pass2.bin"
    bad.write_bytes(b"".join(_set_header_bits(p, version=2) for p in _power(tmdbs, 37, 10)))
    result = _isls_import(config, "--spacecraft", "lander", str(good), str(bad))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert f"isls import: {bad}: 0 good packets of 37 (bad_header 37) — {NOTHING}\n" \
        in result.stderr
    assert str(good) not in result.stderr  # the good file is not reported as failed
    assert "bad packets 37 (bad_header 37)" in result.stdout
    # The good file was still stored.
    assert count_points(influxd, database, "lander_power", "WHERE source='import'") == 5


def test_import_of_unknown_apids_exits_1(config: Config, tmdbs: list[Tmdb],
                                         influxd: InfluxServer, database: str,
                                         tmp_path: Path) -> None:
    path = tmp_path / "other.bin"
    path.write_bytes(b"".join(bytes([0x0A, 0x55]) + p[2:] for p in _power(tmdbs, 8)))
    result = _isls_import(config, "--spacecraft", "lander", str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"isls import: {path}: 0 good packets of 8 (unknown_apid 8) — {NOTHING}" \
        in result.stderr
    assert count_points(influxd, database, "lander_power") == 0


def test_import_of_garbage_and_empty_files_exits_1_without_traceback(
        config: Config, tmdbs: list[Tmdb], influxd: InfluxServer, database: str,
        tmp_path: Path) -> None:
    garbage = tmp_path / "notes.txt"
    garbage.write_bytes(b"this is not a packet file\n" * 40)
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    good = tmp_path / "pass.bin"
    good.write_bytes(b"".join(_power(tmdbs, 3)))
    # No --spacecraft: the garbage names no known APID, which fails that file only.
    result = _isls_import(config, str(garbage), str(empty), str(good))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("isls import:")]
    assert len(lines) == 2
    assert lines[0].startswith(f"isls import: {garbage}: 0 good packets: no telemetry "
                               f"database knows its APIDs")
    assert lines[0].endswith(NOTHING)
    assert lines[1] == f"isls import: {empty}: 0 good packets: the file is empty — {NOTHING}"
    assert "imported 3 file(s)" in result.stdout
    assert count_points(influxd, database, "lander_power", "WHERE source='import'") == 3
    # Told which spacecraft, the garbage is walked: its first "header" declares a length
    # ("is" = 26995 octets) past the end of the file.
    forced = _isls_import(config, "--spacecraft", "lander", str(garbage))
    assert forced.returncode == 1, forced.stdout + forced.stderr
    assert f"isls import: {garbage}: 0 good packets of 1 (truncated 1) — {NOTHING}\n" \
        in forced.stderr


def test_a_chunk_is_stored_in_batches_of_one_post(
        config: Config, tmdbs: list[Tmdb], influxd: InfluxServer, database: str,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunk's packets go to the writer in batches of ``influx.batch_lines`` (one POST
    each), not as one write of the whole chunk (which went out as 8 MiB POSTs one at a
    time and held the whole chunk's text at once); every packet is stored."""
    sizes: list[int] = []
    real = format_lines_off_loop

    async def spy(batch: DecodedBatch, tags: Mapping[str, str]) -> bytes:
        sizes.append(len(batch))
        return await real(batch, tags)

    monkeypatch.setattr(importer, "format_lines_off_loop", spy)
    path = tmp_path / "power.bin"
    path.write_bytes(b"".join(_power(tmdbs, 250)))
    settings = replace(config, influx=replace(config.influx, batch_lines=100))
    summary = asyncio.run(import_files(settings, tmdbs, [path], spacecraft="lander"))
    assert summary.packets["lander/lander_power"] == 250
    assert sizes == [100, 100, 50]
    assert count_points(influxd, database, "lander_power", "WHERE source='import'") == 250
