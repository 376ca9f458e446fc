"""Bulk import: ``isls import`` of a big packet file against InfluxDB's own ceiling.

    python bench/bulk.py [--packets 10000000] [--json bench/results/bulk.json]

Writes ``--packets`` ``lander_nav`` packets (44 octets, 17 parameters, CUC time a packet
every 2^-13 s, so each is its own point) into one file, in chunks (the benchmark's own
memory stays small), starts an influxd of its own, runs ``isls import FILE`` as a user
would (the shipped configuration: archive on), and reports the values per second it
stored, the peak memory of the import process (from the kernel's rusage), and the
ratio to InfluxDB's ceiling measured in the same run on the same server: the same kind
of lines, formatted beforehand, posted straight to ``/write`` by 2 writers, 5,000 a
POST (``bench/e2e.py``'s ceiling). Every packet must be stored: the points are counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: make the bench package importable

from bench.e2e import (  # noqa: E402
    DATABASE as CEILING_DATABASE,
)
from bench.e2e import (  # noqa: E402
    STEP_BASE_COARSE,
    TICKS_PER_PACKET,
    ceiling,
    cpu_seconds,
    lander_nav,
    nominal_values,
)
from control_center.operations.servers import InfluxServer, free_port  # noqa: E402

DATABASE = "bulk"
CHUNK = 1_000_000  # packets encoded at a time


def write_file(path: Path, packets: int) -> int:
    """``packets`` lander_nav packets, back to back; returns the file's octets."""
    packet, codec = lander_nav()
    rng = np.random.default_rng(3)
    with path.open("wb") as out:
        for start in range(0, packets, CHUNK):
            n = min(CHUNK, packets - start)
            ticks = (np.arange(n, dtype=np.int64) + start) * TICKS_PER_PACKET
            out.write(codec.encode(nominal_values(packet, n, rng),
                                   coarse=STEP_BASE_COARSE + 500 * 86_400 + ticks // 65_536,
                                   fine=ticks % 65_536,
                                   sequence_counts=(np.arange(n) + start) % 16_384))
    return path.stat().st_size


def run_import(path: Path, influxd: InfluxServer, state: Path
               ) -> tuple[float, float, str, float]:
    """Seconds, peak resident MiB of ``isls import``, its last output line and its CPU
    seconds (user + system)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISLS_")}
    env.update(ISLS_INFLUX_URL=influxd.url, ISLS_INFLUX_DB=DATABASE,
               ISLS_STATE_DIR=str(state), ISLS_MQTT_URL="mqtt://127.0.0.1:1")
    started = time.perf_counter()
    process = subprocess.Popen([str(ROOT / ".venv" / "bin" / "isls"), "import", str(path),
                                "--spacecraft", "lander"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    output = process.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"isls import failed ({process.returncode}):\n{output[-2000:]}")
    lines = [line for line in output.replace("\r", "\n").splitlines() if line.strip()]
    return (seconds, usage.ru_maxrss / 1024, lines[-1] if lines else "",
            usage.ru_utime + usage.ru_stime)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--packets", type=int, default=10_000_000)
    parser.add_argument("--ceiling-lines", type=int, default=500_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    packet, _ = lander_nav()
    values = args.packets * len(packet.parameters)
    with tempfile.TemporaryDirectory(prefix="isls-bench-bulk-") as tmp:
        work = Path(tmp)
        octets = write_file(work / "pass.tlm", args.packets)
        with InfluxServer(work / "influx", free_port()) as influxd:
            for name in (DATABASE, CEILING_DATABASE):
                influxd.query(f'CREATE DATABASE "{name}"')
            assert influxd.process is not None
            influx_cpu = cpu_seconds(influxd.process.pid)
            seconds, peak_mib, last, import_cpu = run_import(work / "pass.tlm", influxd,
                                                             work / "state")
            influx_cpu = cpu_seconds(influxd.process.pid) - influx_cpu
            stored = influxd.query('SELECT count("sequence_count") FROM "lander_nav"', DATABASE)
            counted = int(stored["results"][0]["series"][0]["values"][0][1])  # type: ignore[index]
            top = asyncio.run(ceiling(influxd, args.ceiling_lines, 2, 7))
    rate = values / seconds
    figures = {"packets": args.packets, "file_mb": round(octets / 1e6, 1),
               "values": values, "seconds": round(seconds, 1),
               "values_per_s": round(rate), "stored_points": counted,
               "peak_mib": round(peak_mib), "ceiling_values_per_s": round(
                   top["values_per_second"]),
               "vs_ceiling": round(rate / top["values_per_second"], 2),
               "import_said": last,
               "cpu_import": round(import_cpu / seconds, 2),
               "cpu_influxd": round(influx_cpu / seconds, 2)}
    print(f"isls import of {args.packets:,} lander_nav packets ({octets / 1e6:,.0f} MB, "
          f"{values:,} values): {seconds:,.1f} s, {rate:,.0f} values/s, peak "
          f"{peak_mib:,.0f} MiB; stored {counted:,} points; CPU (cores): import "
          f"{figures['cpu_import']:.2f}, influxd {figures['cpu_influxd']:.2f}")
    print(f"InfluxDB ceiling, same server and run (2 writers, 5,000 lines a POST): "
          f"{top['values_per_second']:,.0f} values/s; the import reached "
          f"{figures['vs_ceiling']:.2f} of it")
    if counted != args.packets:
        print(f"error: {args.packets - counted:,} packets not stored", file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    return 0 if counted == args.packets else 1


if __name__ == "__main__":
    sys.exit(main())
