"""Scale-out benchmark: 1, 2 and 4 ingest processes in one MQTT shared subscription.

    python bench/scaleout.py [--packets 1500000] [--counts 1,2,4]
                             [--json bench/results/scaleout.json]

For each count it starts a Mosquitto and an influxd of its own, that many ``isls ingest``
processes (each with a state directory of its own, all in the configured shared group
``$share/<group>/isls/+/tm/raw``), warms them up, then publishes ``--packets``
``lander_nav`` packets (20 ms of a 1.5 M values/s stream per message, QoS 1) as fast as
the publisher can, and times until InfluxDB holds every one. It reports the total rate
and checks the two ways a shared subscription could go wrong:

* lost: the points counted in InfluxDB against the packets published;
* stored twice: the sum over the ingests of the packets each decoded (their ``ingest``
  health points) against the packets published. InfluxDB would silently merge a
  duplicate point, so only the ingests' own counts can show one.

The single ingest is the baseline of the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: make the bench package importable

from bench.e2e import (  # noqa: E402
    DATABASE,
    PACKET,
    Influx,
    build_step,
    cpu_seconds,
    lander_nav,
    start_ingest,
    stop_process,
    wait_count,
    warm_up,
)
from control_center.operations.servers import InfluxServer, MosquittoServer, free_port  # noqa: E402
from drivers.mqtt import raw_properties, raw_topic  # noqa: E402

DEFAULT_JSON = ROOT / "bench" / "results" / "scaleout.json"


async def decoded_by_ingest(influx: Influx) -> dict[str, int]:
    body = await influx.query('SELECT LAST("packets") FROM "ingest" GROUP BY "ingest"')
    series = body["results"][0].get("series", [])
    return {s["tags"]["ingest"]: int(s["values"][0][1]) for s in series}


def shared_config(source: Path, work: Path) -> Path:
    """The configuration with a shared subscription group (the shipped one has none:
    one ingest), its telemetry database paths made absolute."""
    text = re.sub(r'(?m)^shared_group = .*$', 'shared_group = "isls-ingest"',
                  source.read_text())
    text = re.sub(r'(?m)^tmdb = "(?!/)', f'tmdb = "{source.parent}/', text)
    path = work / "isls-shared.toml"
    path.write_text(text)
    return path


async def one(count: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    packet, codec = lander_nav()
    config = shared_config(args.config, work)
    with MosquittoServer(work / "mosquitto", free_port()) as broker, \
            InfluxServer(work / "influx", free_port()) as influxd:
        assert influxd.process is not None
        ingests = [start_ingest(work, broker, influxd, config, f"ingest-{i}")
                   for i in range(count)]
        try:
            async with aiohttp.ClientSession() as session, aiomqtt.Client(
                    "127.0.0.1", broker.port, identifier="bench-scaleout",
                    protocol=aiomqtt.ProtocolVersion.V5) as client:
                influx = Influx(session, influxd.url)
                await influx.query(f'CREATE DATABASE "{DATABASE}"')
                warm_packets = await warm_up(client, influx, ingests, args)
                # Seconds at 1.5 M values/s that make up --packets: only the message size
                # and the onboard times depend on it; the publisher goes flat out.
                seconds = args.packets * len(packet.parameters) / 1_500_000
                step = build_step(packet, codec, 1, 1_500_000, seconds, 20.0, args.seed)
                pids = [process.pid for process, _ in ingests]
                cpu_before = [cpu_seconds(pid) for pid in [*pids, influxd.process.pid]]
                started = time.perf_counter()
                for payload in step.messages:
                    await client.publish(raw_topic("lander"), payload, qos=1,
                                         properties=raw_properties(time.time_ns(), "bench"))
                published = time.perf_counter() - started
                stored, seen = await wait_count(
                    influx, PACKET, int(step.times_ns[0]), int(step.times_ns[-1]),
                    step.packets, started + args.timeout, poll=0.25)
                seconds_to_store = (seen or time.perf_counter()) - started
                cpu = [100 * (cpu_seconds(pid) - before) / seconds_to_store
                       for pid, before in zip([*pids, influxd.process.pid], cpu_before,
                                              strict=True)]
        finally:
            for process, _ in ingests:
                stop_process(process)  # each writes its last health point as it stops
        problems = [f"{log.name}: exit {process.returncode}: {log.read_text()[-1500:]}"
                    for process, log in ingests if process.returncode != 0]
        for problem in problems:
            print(problem, file=sys.stderr)
        async with aiohttp.ClientSession() as session:
            by_ingest = await decoded_by_ingest(Influx(session, influxd.url))
    decoded = sum(by_ingest.values()) - warm_packets
    return {
        "ingests": count, "packets": step.packets, "stored": stored,
        "lost": step.packets - stored, "decoded": decoded,
        "stored_twice": max(0, decoded - step.packets),
        "decoded_by_ingest": sorted(by_ingest.values()),
        "publish_seconds": published, "seconds": seconds_to_store,
        "packets_per_second": stored / seconds_to_store,
        "values_per_second": stored * len(packet.parameters) / seconds_to_store,
        "cpu_ingests_percent": sum(cpu[:-1]), "cpu_influxd_percent": cpu[-1],
        "ingest_problems": problems,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=1_500_000)
    parser.add_argument("--counts", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1, 2, 4])
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--message-ms", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--config", type=Path, default=ROOT / "config" / "isls.toml")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    print(f"{args.packets:,} lander_nav packets ({args.packets * 17:,} values) published "
          f"flat out, stored by N ingests in one shared subscription:")
    print(f"  {'ingests':>7} {'seconds':>8} {'values/s':>11} {'vs 1':>5} {'lost':>6} "
          f"{'twice':>6} {'CPU% ingests':>12} {'influxd':>7}  packets per ingest")
    for count in args.counts:
        with tempfile.TemporaryDirectory(prefix="isls-bench-scaleout-") as temporary:
            result = asyncio.run(one(count, args, Path(temporary)))
        results.append(result)
        ratio = result["values_per_second"] / results[0]["values_per_second"]
        print(f"  {count:>7} {result['seconds']:>8.1f} {result['values_per_second']:>11,.0f} "
              f"{ratio:>5.2f} {result['lost']:>6,} {result['stored_twice']:>6,} "
              f"{result['cpu_ingests_percent']:>12.0f} {result['cpu_influxd_percent']:>7.0f}"
              f"  {', '.join(f'{n:,}' for n in result['decoded_by_ingest'])}", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": f"{os.cpu_count()} cores",
                                     "results": results}, indent=1))
    print(f"written {args.json}")
    return 0 if all(r["lost"] == 0 and r["stored_twice"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
