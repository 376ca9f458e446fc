"""The archive in the running system: an ingest killed mid-pass, replay and import
against the real servers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np

from control_center.archive.importer import import_files
from control_center.archive.recorder import (
    KIND_PACKETS,
    ReadStats,
    encode_record,
    find_pass,
    iter_pass_records,
    list_passes,
)
from control_center.archive.replay import replay_pass
from control_center.config import Config
from control_center.operations.servers import InfluxServer
from control_center.pipeline.service import IngestService, wait_subscribed
from control_center.telemetry.ccsdspy_csv import import_ccsdspy_csv
from control_center.telemetry.tmdb import Tmdb
from control_center.telemetry.tmdb_yaml import parse_tmdb
from simulators.runner import PacketGenerator, SimulatorService, make_model
from tests.conftest import (
    ISLS,
    count_points,
    run_pipeline,
    start_isls,
    wait_for,
    wait_for_async,
)


def _env(config: Config) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISLS_")}
    env.update(ISLS_MQTT_URL=config.mqtt.url, ISLS_INFLUX_URL=config.influx.url,
               ISLS_INFLUX_DB=config.influx.database, ISLS_STATE_DIR=str(config.state_dir))
    return env


def test_ingest_killed_mid_pass_leaves_a_readable_archive(
        config: Config, tmdbs: list[Tmdb], tmp_path: Path) -> None:
    ingest = start_isls(["ingest"], _env(config))
    try:
        async def publish() -> None:
            service = SimulatorService(PacketGenerator(make_model("lander", 1), tmdbs[0]),
                                       config.mqtt, speed=5.0, publish_interval=0.05)
            await service.run(asyncio.Event(), 3.0)

        asyncio.run(publish())
        archive = config.archive_dir
        wait_for(lambda: bool(list_passes(archive)) and list_passes(archive)[0].records >= 40,
                 20, message="the ingest to archive records")
    finally:
        ingest.send_signal(signal.SIGKILL)
        ingest.wait(10)
    (info,) = list_passes(config.archive_dir)
    assert not info.closed  # nobody closed it: the summary is recomputed from the segments
    directory = find_pass(config.archive_dir, info.id)
    segment = sorted(directory.glob("seg-*.isla"))[-1]
    # Simulate the worst moment for the kill: half a record written.
    half = encode_record(KIND_PACKETS, 0, "sim-lander", b"x" * 100)[:57]
    with segment.open("ab") as handle:
        handle.write(half)
    stats = ReadStats()
    records = list(iter_pass_records(directory, stats))
    assert stats.torn_tail and stats.damaged == 0
    assert len(records) == info.records >= 40
    # Every whole record holds whole packets with contiguous sequence counts.
    assert info.gaps == 0 and info.packets > 0


async def _live_run(config: Config, tmdbs: list[Tmdb]) -> IngestService:
    ingest, _ = await run_pipeline(config, tmdbs, 2.5, 4.0, seed=5, start_unix=None)
    return ingest


async def _replay(config: Config, tmdbs: list[Tmdb], pass_id: str, expected: int,
                  **options: object) -> None:
    stop = asyncio.Event()
    ingest = IngestService.from_config(config, tmdbs)
    task = asyncio.create_task(ingest.run(stop))
    await wait_subscribed(ingest)
    await replay_pass(config, pass_id, show_progress=False, **options)  # type: ignore[arg-type]
    await wait_for_async(lambda: sum(ingest.stats.packets.values()) >= expected, 20,
                         "the replay to be decoded")
    stop.set()
    await task


def _rows(influxd: InfluxServer, database: str, measurement: str, where: str
          ) -> list[list[object]]:
    result = influxd.query(f'SELECT * FROM "{measurement}" WHERE {where}', database)
    series = result["results"][0]["series"][0]  # type: ignore[index]
    columns = series["columns"]
    keep = [i for i, c in enumerate(columns) if c not in ("pass", "source", "spacecraft")]
    return [[row[i] for i in keep] for row in series["values"]]


def test_replay_at_max_speed_equals_live_packet_for_packet_and_is_idempotent(
        config: Config, tmdbs: list[Tmdb], influxd: InfluxServer, database: str) -> None:
    live = asyncio.run(_live_run(config, tmdbs))
    passes = {p.spacecraft: p for p in list_passes(config.archive_dir)}
    assert set(passes) == {"lander", "orbiter"}
    lander_pass = passes["lander"]
    assert lander_pass.closed and lander_pass.packets == live.stats.packets["lander"]
    for _ in range(2):  # twice: the second replay must change nothing
        asyncio.run(_replay(config, tmdbs, lander_pass.id, lander_pass.packets, speed=None))
        for packet in tmdbs[0].packets:
            live_rows = _rows(influxd, database, packet.name, "source='live'")
            replayed = _rows(influxd, database, packet.name,
                             f"source='replay' AND \"pass\"='{lander_pass.id}'")
            assert replayed == live_rows, packet.name
    assert count_points(influxd, database, "orbiter_orbit", "WHERE source='replay'") == 0


def test_replay_shift_to_now_and_window(config: Config, tmdbs: list[Tmdb],
                                        influxd: InfluxServer, database: str) -> None:
    asyncio.run(_live_run(config, [tmdbs[1]]))
    (orbiter_pass,) = list_passes(config.archive_dir)
    live_first = influxd.query('SELECT FIRST("altitude") FROM "orbiter_orbit" '
                               "WHERE source='live'", database)
    first_ns = live_first["results"][0]["series"][0]["values"][0][0]  # type: ignore[index]
    before = time.time_ns()
    asyncio.run(_replay(config, [tmdbs[1]], orbiter_pass.id, 1, speed=None, end="+1",
                        shift_to_now=True))
    shifted = influxd.query('SELECT FIRST("altitude") FROM "orbiter_orbit" '
                            "WHERE source='replay'", database)
    shifted_ns = shifted["results"][0]["series"][0]["values"][0][0]  # type: ignore[index]
    assert shifted_ns - first_ns >= before - orbiter_pass.start_ns
    replayed = count_points(influxd, database, "orbiter_orbit", "WHERE source='replay'")
    live = count_points(influxd, database, "orbiter_orbit", "WHERE source='live'")
    assert 0 < replayed < live  # --to +1 s took only the first second of the pass


def test_passes_and_replay_from_the_command_line(
        config: Config, tmdbs: list[Tmdb], influxd: InfluxServer, database: str) -> None:
    asyncio.run(_live_run(config, [tmdbs[0]]))
    (lander_pass,) = list_passes(config.archive_dir)
    listing = subprocess.run([*ISLS, "passes"], env=_env(config), capture_output=True,
                             text=True, timeout=60)
    assert listing.returncode == 0 and lander_pass.id in listing.stdout
    show = subprocess.run([*ISLS, "passes", "show", lander_pass.id], env=_env(config),
                          capture_output=True, text=True, timeout=60)
    assert f"packets     {lander_pass.packets}" in show.stdout
    stop_ingest = start_isls(["ingest"], _env(config))
    try:
        result = subprocess.run([*ISLS, "replay", lander_pass.id, "--speed", "max"],
                                env=_env(config), capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "replayed" in result.stdout and "100%" in result.stderr
        wait_for(lambda: count_points(influxd, database, "lander_nav", "WHERE source='replay'")
                 == count_points(influxd, database, "lander_nav", "WHERE source='live'"), 20,
                 message="the replay in InfluxDB")
    finally:
        stop_ingest.send_signal(signal.SIGINT)
        stop_ingest.wait(30)
    missing = subprocess.run([*ISLS, "replay", "lander-nope"], env=_env(config),
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "no pass 'lander-nope'" in missing.stderr
    out = config.state_dir / "report"
    report = subprocess.run([*ISLS, "report", lander_pass.id, "--out", str(out)],
                            env=_env(config), capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    report_parameters = [p for p in tmdbs[0].packets for q in p.fields if q.report]
    assert len(list(out.glob("*.png"))) == len(report_parameters)
    assert lander_pass.id in (out / "index.html").read_text()


def test_import_a_real_ccsdspy_packet_file(config: Config, influxd: InfluxServer,
                                           database: str) -> None:
    import ccsdspy

    directory = Path(ccsdspy.__file__).parent / "tests/data/hs/apid895"
    tlm = next(directory.glob("*.tlm"))
    packet, _ = import_ccsdspy_csv(directory / "defs.csv", 895, "ssat_hk", length=34)
    ssat = parse_tmdb({"spacecraft": "ssat1", "packets": [packet]}, "test")
    expected = ccsdspy.FixedLength.from_file(directory / "defs.csv").load(str(tlm))
    summary = asyncio.run(import_files(config, [ssat], [tlm]))
    n = len(expected["pkt895_int16_osc"])
    assert summary.packets["ssat1/ssat_hk"] == n
    assert count_points(influxd, database, "ssat_hk", "WHERE source='import'") == n
    result = influxd.query('SELECT "pkt895_int16_osc" FROM "ssat_hk" ORDER BY time', database)
    stored = [row[1] for row in result["results"][0]["series"][0]["values"]]  # type: ignore[index]
    assert np.array_equal(stored, expected["pkt895_int16_osc"])


def test_import_counts_unknown_and_bad_packets(config: Config, tmdbs: list[Tmdb],
                                               influxd: InfluxServer, database: str,
                                               tmp_path: Path) -> None:
    from tests.integration.test_pipeline import _good_packets

    good = _good_packets(tmdbs[0], "lander_power", 4, 0)
    bad = bytearray(good[1])
    bad[15] ^= 1
    unknown = bytes([0x0A, 0x55]) + good[0][2:]  # APID 0x255: nobody's
    path = tmp_path / "pass.bin"
    path.write_bytes(good[0] + bytes(bad) + unknown + good[2] + good[3] + good[3][:9])
    summary = asyncio.run(import_files(config, tmdbs, [path], spacecraft="lander"))
    assert summary.packets["lander/lander_power"] == 3
    assert summary.errors["bad_crc"] == 1 and summary.errors["unknown_apid"] == 1
    assert summary.errors["truncated"] == 1
    assert count_points(influxd, database, "lander_power", "WHERE source='import'") == 3
