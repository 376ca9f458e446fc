"""What each value costs InfluxDB: the levers of issue 17, one at a time.

    python bench/levers.py [--lines 300000] [--rounds 3] [--json bench/results/levers.json]

The ingest cannot make influxd faster, but it decides how much work each value costs it:
how the values are written (text), how the points are posted (lines per POST, POSTs at
once, gzip), and the settings ``isls up`` writes for its embedded influxd. Each lever is
measured alone against the shipped way, on the same lander_nav lines (17 parameters and
the sequence count a line, as the ingest formats them), posted straight to a fresh
influxd of its own (a new data directory per run, so no run inherits another's
compactions): the values per second it accepted, and the CPU seconds influxd spent per
million values (from /proc, the part of the cost a bigger machine would not hide).
Variants and the baseline alternate, ``--rounds`` times, and the median is reported
with its ratio to the baseline's median in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: make the bench package importable

from bench.e2e import build_step, cpu_seconds, decode, lander_nav  # noqa: E402
from control_center.operations.servers import InfluxServer, free_port  # noqa: E402
from control_center.storage.contract import format_lines  # noqa: E402
from control_center.telemetry.codec import PacketCodec  # noqa: E402
from control_center.telemetry.records import DecodedBatch  # noqa: E402

DATABASE = "levers"
TAGS = {"spacecraft": "lander", "source": "live"}


@dataclass(frozen=True)
class Lever:
    """One way of writing the same points."""

    name: str
    what: str
    lines: Callable[[DecodedBatch], bytes] = lambda batch: format_lines(batch, TAGS)
    per_post: int = 5000
    posts_at_once: int = 2
    gzip: bool = False
    precision: str = "ns"
    data_settings: dict[str, str] = field(default_factory=dict)


def rewritten(batch: DecodedBatch, value_text: Callable[[str, str], str]) -> bytes:
    """The shipped lines with each field's value text replaced by
    ``value_text(name, value)``."""
    out = []
    for line in format_lines(batch, TAGS).decode().splitlines():
        head, fields, stamp = line.split(" ")
        parts = [f"{name}={value_text(name, value)}"
                 for name, value in (part.split("=", 1) for part in fields.split(","))]
        out.append(f"{head} {','.join(parts)} {stamp}")
    return ("\n".join(out) + "\n").encode()


def float_digits(digits: int) -> Callable[[DecodedBatch], bytes]:
    """Every float field with ``digits`` significant digits (``%.{digits}g``)."""
    def value_text(name: str, value: str) -> str:
        return value if value.endswith(("i", "true", "false")) \
            else f"{float(value):.{digits}g}"
    return lambda batch: rewritten(batch, value_text)


def float32_widened(batch: DecodedBatch) -> bytes:
    """Float32 parameters as the shortest text of their float64 widening
    (``7726.14208984375``), as the ingest wrote them before 2026-11-30: the shipped way
    writes their shortest float32 text (``7726.142``)."""
    float32 = {p.name for p in batch.packet.parameters if p.is_float32}
    return rewritten(batch, lambda name, value: repr(float(np.float32(value)))
                     if name in float32 else value)


def calibrated_float64(batch: DecodedBatch) -> bytes:
    """Calibrated values as their float64 calibration (``27.490000000000002``), as the
    ingest wrote them before the lander's calibrations declared ``engineering: float32``
    (2026-11-30); the shipped way writes them rounded once to float32 (``27.49``)."""
    parameters = tuple(replace(p, calibration=replace(p.calibration, engineering="float64"))
                       for p in batch.packet.parameters)
    codec = PacketCodec(batch.spacecraft, replace(batch.packet, parameters=parameters))
    values = {**batch.values, **{
        p.name: codec._calibrate(p, batch.raw[p.name])  # the decoder's own calibration
        for p in parameters if p.calibration.kind != "none"}}
    return format_lines(replace(batch, packet=codec.packet, values=values), TAGS)


def microseconds(batch: DecodedBatch) -> bytes:
    """Times in µs (``precision=u``). Not a lever we may take: CUC fine time is 2^-16 s,
    not a whole number of µs, so two packets could land on one point; measured to know
    what ns costs."""
    text = format_lines(batch, TAGS).decode()
    return "".join(f"{line.rsplit(' ', 1)[0]} {int(line.rsplit(' ', 1)[1]) // 1000}\n"
                   for line in text.splitlines()).encode()


LEVERS = [
    Lever("baseline", "as shipped: float32 values (parameters and calibrations) as their "
          "shortest float32 text, "
          "other floats as their shortest float64 text, ns, 5,000 lines a POST, 2 POSTs "
          "at once, no gzip, inmem index"),
    Lever("float32_widened", "float32 parameters as float64 text (the way before)",
          lines=float32_widened),
    Lever("calibrated_float64", "calibrations as float64 text (before engineering: float32)",
          lines=calibrated_float64),
    Lever("floats_9_digits", "floats with 9 significant digits (a float32's round trip)",
          lines=float_digits(9)),
    Lever("floats_6_digits", "floats with 6 significant digits", lines=float_digits(6)),
    Lever("precision_us", "times in µs (not usable: breaks point identity)",
          lines=microseconds, precision="u"),
    Lever("post_20000", "20,000 lines a POST", per_post=20_000),
    Lever("post_1000", "1,000 lines a POST", per_post=1000),
    Lever("posts_4", "4 POSTs at once", posts_at_once=4),
    Lever("posts_1", "1 POST at a time", posts_at_once=1),
    Lever("gzip", "gzip-compressed bodies", gzip=True),
    Lever("tsi1", "index-version tsi1", data_settings={"index-version": '"tsi1"'}),
    Lever("wal_fsync_100ms", "wal-fsync-delay 100ms",
          data_settings={"wal-fsync-delay": '"100ms"'}),
    Lever("cache_snapshot_256m", "cache-snapshot-memory-size 256m",
          data_settings={"cache-snapshot-memory-size": '"256m"'}),
    Lever("compactions_1", "max-concurrent-compactions 1",
          data_settings={"max-concurrent-compactions": "1"}),
    Lever("snapshot_256m_compactions_1", "both of the two above",
          data_settings={"cache-snapshot-memory-size": '"256m"',
                         "max-concurrent-compactions": "1"}),
]


def batch_of(lines: int) -> DecodedBatch:
    packet, codec = lander_nav()
    step = build_step(packet, codec, 7, lines * len(packet.parameters), 1.0, 1000.0, 11)
    return decode(codec, b"".join(step.messages))


async def post_all(url: str, bodies: list[bytes], lever: Lever) -> None:
    headers = {"Content-Encoding": "gzip"} if lever.gzip else {}
    queue = list(reversed(bodies))
    async with aiohttp.ClientSession() as session:
        async def writer() -> None:
            while queue:
                body = queue.pop()
                async with session.post(f"{url}/write", params={
                        "db": DATABASE, "precision": lever.precision},
                        data=body, headers=headers) as response:
                    if response.status != 204:
                        raise RuntimeError(f"{lever.name}: {response.status} "
                                           f"{(await response.text())[:200]}")
        await asyncio.gather(*(writer() for _ in range(lever.posts_at_once)))


def run(lever: Lever, text: bytes, values: int, directory: Path) -> dict[str, float]:
    lines = text.splitlines(keepends=True)
    bodies = [b"".join(lines[i:i + lever.per_post])
              for i in range(0, len(lines), lever.per_post)]
    if lever.gzip:
        bodies = [gzip.compress(body, compresslevel=1) for body in bodies]
    with InfluxServer(directory, free_port(), data_settings=lever.data_settings) as influxd:
        influxd.query(f'CREATE DATABASE "{DATABASE}"')
        assert influxd.process is not None
        pid = influxd.process.pid
        cpu_before = cpu_seconds(pid)
        started = time.perf_counter()
        asyncio.run(post_all(influxd.url, bodies, lever))
        seconds = time.perf_counter() - started
        cpu = cpu_seconds(pid) - cpu_before
        stored = influxd.query('SELECT count("sequence_count") FROM "lander_nav"', DATABASE)
    counted = stored["results"][0]["series"][0]["values"][0][1]  # type: ignore[index]
    if counted != len(lines):
        raise SystemExit(f"{lever.name}: {counted} points stored of {len(lines)}")
    return {"values_per_s": values / seconds,
            "influxd_cpu_s_per_million_values": cpu / values * 1e6,
            "body_mb": sum(len(b) for b in bodies) / 1e6}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--lines", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", help="comma-separated lever names (baseline always runs)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    batch = batch_of(args.lines)
    values = len(batch) * (len(batch.packet.parameters) + 1)  # + sequence_count
    chosen = [lever for lever in LEVERS if lever.name == "baseline" or not args.only
              or lever.name in args.only.split(",")]
    texts = {lever.name: lever.lines(batch) for lever in chosen}
    samples: dict[str, list[dict[str, float]]] = {lever.name: [] for lever in chosen}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for index, lever in enumerate(chosen):
                directory = Path(tmp) / f"{round_}-{index}"
                samples[lever.name].append(run(lever, texts[lever.name], values, directory))
    base = {k: statistics.median(s[k] for s in samples["baseline"])
            for k in samples["baseline"][0]}
    rows: list[dict[str, Any]] = []
    print(f"{len(batch):,} lander_nav lines ({values:,} values), {args.rounds} rounds, medians:")
    print(f"  {'lever':<22} {'values/s':>11} {'vs base':>8} {'cpu s/Mv':>9} {'vs base':>8} "
          f"{'MB':>6}  what")
    for lever in chosen:
        median = {k: statistics.median(s[k] for s in samples[lever.name]) for k in base}
        row = {"lever": lever.name, "what": lever.what, **{k: round(v, 3) for k, v in
                                                             median.items()},
               "speed_vs_baseline": round(median["values_per_s"] / base["values_per_s"], 3),
               "cpu_vs_baseline": round(median["influxd_cpu_s_per_million_values"]
                                        / base["influxd_cpu_s_per_million_values"], 3),
               "spread_values_per_s": [round(s["values_per_s"]) for s in
                                       samples[lever.name]]}
        rows.append(row)
        print(f"  {lever.name:<22} {median['values_per_s']:>11,.0f} "
              f"{row['speed_vs_baseline']:>8.2f} "
              f"{median['influxd_cpu_s_per_million_values']:>9.2f} "
              f"{row['cpu_vs_baseline']:>8.2f} {median['body_mb']:>6.1f}  {lever.what}")
    if args.json:
        args.json.write_text(json.dumps({"lines": len(batch), "values": values,
                                         "rounds": args.rounds, "levers": rows,
                                         "numpy": np.__version__}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
