"""Replay benchmark: how many times faster than real time a recorded pass replays into
InfluxDB through the whole pipeline (archive → MQTT → ingest → InfluxDB).

    python bench/replay.py [--minutes 60] [--json bench/results/replay.json]

It records a simulated lander pass of ``--minutes`` (one archive record per 0.1 s of
telemetry, as the live ingest records it), starts a Mosquitto and an influxd of its own
on free loopback ports, and times ``isls replay --speed max`` until the last point is
in InfluxDB. Baseline in the same run: ``isls import`` of the same packets, which decodes
and writes in-process with no MQTT hop.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
import tempfile
import time
from pathlib import Path

from control_center.archive.importer import import_files
from control_center.archive.recorder import ArchiveWriter, find_pass, iter_pass_records
from control_center.archive.replay import replay_pass
from control_center.config import load_config
from control_center.operations.servers import InfluxServer, MosquittoServer, free_port
from control_center.pipeline.alarm_stage import monitor_from_config
from control_center.pipeline.service import IngestService, wait_subscribed
from control_center.telemetry.tmdb_yaml import load_tmdbs
from simulators.runner import PacketGenerator, make_model

PROJECT = Path(__file__).resolve().parent.parent


def record_pass(root: Path, minutes: float) -> tuple[str, int, Path]:
    tmdb = load_tmdbs([PROJECT / "config/tmdb/lander.yaml"])[0]
    generator = PacketGenerator(make_model("lander", 0), tmdb, start_unix=1_800_000_000.0)
    writer = ArchiveWriter(root)
    raw = root.parent / "pass.bin"
    packets = 0
    with raw.open("wb") as flat:
        for tick in range(1, int(minutes * 600) + 1):
            payload = generator.advance_to(tick / 10)
            ert = 1_800_000_000_000_000_000 + tick * 100_000_000
            pass_id = writer.record("lander", ert, "sim-lander", payload)
            flat.write(payload)
    writer.close()
    packets = sum(generator.counts().values())
    return pass_id, packets, raw


async def run(minutes: float, work: Path) -> dict[str, float]:
    pass_id, packets, raw = record_pass(work / "state" / "archive", minutes)
    with MosquittoServer(work / "mosquitto", free_port()) as broker, \
            InfluxServer(work / "influx", free_port()) as influxd:
        config = load_config(PROJECT / "config/isls.toml", {
            "ISLS_MQTT_URL": broker.url, "ISLS_INFLUX_URL": influxd.url,
            "ISLS_STATE_DIR": str(work / "state")})
        tmdbs = load_tmdbs(config.tmdb_paths)
        records = sum(1 for _ in iter_pass_records(find_pass(config.archive_dir, pass_id)))

        stop = asyncio.Event()
        # No archive: the replayed pass is read from it; the shipped monitor.
        ingest = IngestService(config, tmdbs, archive=None,
                               monitor=monitor_from_config(config, tmdbs))
        task = asyncio.create_task(ingest.run(stop))
        await wait_subscribed(ingest)
        started = time.perf_counter()
        await replay_pass(config, pass_id, speed=None, show_progress=False)
        published = time.perf_counter() - started
        while ingest.writer is None or ingest.writer.stats.lines_written < packets:  # noqa: ASYNC110
            await asyncio.sleep(0.01)  # a benchmark polls its own counter; 10 ms resolution
        replay_seconds = time.perf_counter() - started
        stop.set()
        await task

        started = time.perf_counter()
        summary = await import_files(config, tmdbs, [raw], spacecraft="lander",
                                     out=io.StringIO())
        import_seconds = time.perf_counter() - started
        assert sum(summary.packets.values()) == packets
    pass_seconds = minutes * 60
    return {
        "pass_minutes": minutes, "packets": packets, "records": records,
        "replay_seconds": replay_seconds, "replay_publish_seconds": published,
        "replay_x_real_time": pass_seconds / replay_seconds,
        "import_seconds": import_seconds, "import_x_real_time": pass_seconds / import_seconds,
        "replay_packets_per_second": packets / replay_seconds,
        "replay_vs_import": import_seconds / replay_seconds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--json", type=Path, default=PROJECT / "bench/results/replay.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="isls-bench-replay-") as temporary:
        figures = asyncio.run(run(args.minutes, Path(temporary)))
    print(f"a {figures['pass_minutes']:.0f}-minute lander pass: {figures['packets']:.0f} "
          f"packets in {figures['records']:.0f} archive records")
    print(f"  {'':32} {'seconds':>9} {'x real time':>12} {'packets/s':>11}")
    print(f"  {'replay --speed max (via MQTT)':32} {figures['replay_seconds']:9.2f} "
          f"{figures['replay_x_real_time']:12.0f} {figures['replay_packets_per_second']:11.0f}")
    print(f"  {'baseline: import (no MQTT)':32} {figures['import_seconds']:9.2f} "
          f"{figures['import_x_real_time']:12.0f} "
          f"{figures['packets'] / figures['import_seconds']:11.0f}")
    print(f"  replay takes {1 / figures['replay_vs_import']:.1f}x the time of the import")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=1))
    print(f"written {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
