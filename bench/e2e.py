"""End-to-end benchmark: the highest telemetry rate the ingest sustains with zero loss.

    python bench/e2e.py [--seconds 60] [--rates 100000,250000,...] [--no-bridge]
                        [--json bench/results/e2e.json]

It starts a Mosquitto and an influxd of its own on free loopback ports and one
``isls ingest`` process (the shipped configuration: archive, limit monitoring and
alarms on), then publishes ``lander_nav`` packets (44 octets, 17 parameters, CUC time,
CRC) to ``isls/lander/tm/raw`` at stepped rates of parameter values per second, in
messages of ``--message-ms`` of packets at QoS 1, as a simulator or a frame-receiving
link does. Each step runs ``--seconds`` and passes when

* zero loss: the points counted in InfluxDB equal the packets published, and
* it kept up: the last packet was queryable within ``--max-lag`` seconds after it was
  published (a backlog that only grows is not a sustained rate).

It steps up until a step fails and reports each step's values/s, the latency from
publish to queryable in InfluxDB (p50/p99/max over every ``--probe-every``-th message,
each polled with an InfluxQL count of its own packets), and the ingest's peak memory.

References in the same run, on the same broker and database:

* InfluxDB's ceiling: the same lines, formatted beforehand, posted straight to
  ``/write`` in 5,000-line batches by 2 and by 4 concurrent writers;
* the bridge a team would otherwise use: ``mqtt2influxdb`` 1.5.2 (its last release for
  InfluxDB 1.x, in a virtualenv of its own under ``.venv-bench/``), fed the same values
  as JSON, one message per packet, stepped the same way.

Onboard times are synthetic (a packet every 2^-13 s from a base per step), so every
packet is its own InfluxDB point whatever the publish rate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: make the bench package importable

from bench import bridge  # noqa: E402
from control_center.operations.servers import (  # noqa: E402
    InfluxServer,
    MosquittoServer,
    free_port,
    stop_child,
)
from control_center.pipeline.health import peak_memory_mb  # noqa: E402
from control_center.storage.contract import format_lines  # noqa: E402
from control_center.telemetry.codec import PacketCodec  # noqa: E402
from control_center.telemetry.decoder import point_times  # noqa: E402
from control_center.telemetry.packets import split_packets  # noqa: E402
from control_center.telemetry.records import DecodedBatch  # noqa: E402
from control_center.telemetry.tmdb import PacketDef  # noqa: E402
from control_center.telemetry.tmdb_yaml import load_tmdbs  # noqa: E402
from drivers.mqtt import raw_properties, raw_topic  # noqa: E402

PACKET = "lander_nav"
DATABASE = "bench"
TICKS_PER_PACKET = 8  # CUC fine ticks (2^-16 s): a packet every 2^-13 s of onboard time
DEFAULT_RATES = (100_000, 250_000, 500_000, 750_000, 900_000, 1_000_000, 1_250_000,
                 1_500_000, 2_000_000)
BRIDGE_RATES = (1_700, 2_550, 3_400, 4_250, 5_100, 6_800)  # values/s: 100-400 msg/s
STEP_BASE_COARSE = 1_700_000_000  # CUC seconds; each step gets its own day
DEFAULT_JSON = ROOT / "bench" / "results" / "e2e.json"


# --------------------------------------------------------------------------- packets

def lander_nav() -> tuple[PacketDef, PacketCodec]:
    tmdb = load_tmdbs([ROOT / "config" / "tmdb" / "lander.yaml"])[0]
    packet = tmdb.packet(PACKET)
    return packet, PacketCodec(tmdb.spacecraft, packet)


def nominal_values(packet: PacketDef, n: int, rng: np.random.Generator
                   ) -> dict[str, npt.NDArray[Any]]:
    """Engineering values of a steady descent: noisy, inside every limit, phase fixed
    (a phase change is an event; the benchmark measures telemetry, not events)."""
    values: dict[str, npt.NDArray[Any]] = {
        "descent_phase": np.full(n, 3),
        "altitude": rng.uniform(100.0, 15_000.0, n),
        "vertical_velocity": rng.normal(-20.0, 5.0, n),
        "horizontal_velocity": rng.uniform(0.0, 1_700.0, n),
        "throttle": rng.uniform(10.0, 95.0, n),
        "gnc_spare": np.zeros(n, dtype=np.int64),
    }
    for name in ("attitude_q0", "attitude_q1", "attitude_q2", "attitude_q3"):
        values[name] = rng.uniform(-0.9, 0.9, n)
    for name in ("imu_rate_x", "imu_rate_y", "imu_rate_z"):
        values[name] = np.clip(rng.normal(0.0, 3.0, n), -12.0, 12.0)
    for name in ("main_engine_on", "radar_lock", "legs_deployed", "touchdown_sensed"):
        values[name] = rng.random(n) < 0.5
    missing = {p.name for p in packet.parameters} - set(values)
    assert not missing, f"benchmark values missing for {sorted(missing)}"
    return values


@dataclass
class Step:
    """One rate step's packets: ``messages[i]`` holds packets [bounds[i], bounds[i+1])."""

    values_per_second: float
    packets: int
    messages: list[bytes]
    bounds: list[int]
    times_ns: npt.NDArray[np.int64]  # UTC time of every packet, as the ingest stores it


def build_step(packet: PacketDef, codec: PacketCodec, index: int, values_per_second: float,
               seconds: float, message_ms: float, seed: int) -> Step:
    per_second = values_per_second / len(packet.parameters)
    n = int(per_second * seconds)
    per_message = max(1, round(per_second * message_ms / 1000))
    rng = np.random.default_rng(seed + index)
    ticks = np.arange(n, dtype=np.int64) * TICKS_PER_PACKET
    coarse = STEP_BASE_COARSE + index * 86_400 + ticks // 65_536
    octets = codec.encode(nominal_values(packet, n, rng), coarse=coarse,
                          fine=ticks % 65_536, sequence_counts=np.arange(n) % 16_384)
    length = packet.length
    bounds = [*range(0, n, per_message), n]
    messages = [octets[a * length:b * length] for a, b in itertools.pairwise(bounds)]
    # The stored time of each packet, from the ingest's own decoder and point identity.
    batch = decode(codec, octets)
    times = point_times(batch, np.zeros(len(batch), dtype=np.int64))
    return Step(values_per_second, n, messages, bounds, times.astype(np.int64))


def decode(codec: PacketCodec, octets: bytes) -> DecodedBatch:
    """Back-to-back packets of the codec's type, decoded as the ingest decodes them."""
    packet = codec.packet
    split = split_packets(octets, check_crc=frozenset(), lengths={packet.apid: packet.length})
    packets = split.by_apid[packet.apid]
    return codec.decode_packets(packets, np.zeros(len(packets), dtype=np.int64))


# --------------------------------------------------------------------------- InfluxDB

class Influx:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url

    async def query(self, influxql: str) -> dict[str, Any]:
        async with self.session.post(f"{self.url}/query", params={
                "db": DATABASE, "q": influxql, "epoch": "ns"}) as response:
            body: dict[str, Any] = await response.json(content_type=None)
            return body

    async def count(self, measurement: str, first_ns: int, last_ns: int,
                    where: str = "") -> int:
        """Points of ``measurement`` in [first_ns, last_ns] (matching ``where``)."""
        condition = f"time >= {first_ns} AND time <= {last_ns}" + (f" AND {where}" if where
                                                                    else "")
        body = await self.query(f'SELECT count("throttle") FROM "{measurement}" '
                                f"WHERE {condition}")
        series = body["results"][0].get("series")
        return int(series[0]["values"][0][1]) if series else 0

    async def write(self, body: bytes) -> None:
        async with self.session.post(f"{self.url}/write", params={
                "db": DATABASE, "precision": "ns"}, data=body) as response:
            if response.status != 204:
                raise RuntimeError(f"InfluxDB write: {response.status} "
                                   f"{(await response.text())[:200]}")


async def wait_count(influx: Influx, measurement: str, first_ns: int, last_ns: int,
                     expected: int, deadline: float, where: str = "",
                     poll: float = 0.005) -> tuple[int, float | None]:
    """Poll until ``expected`` points are queryable; (count, when) or (count, None)."""
    count = 0
    while time.perf_counter() < deadline:
        count = await influx.count(measurement, first_ns, last_ns, where)
        if count >= expected:
            return count, time.perf_counter()
        await asyncio.sleep(poll)
    return count, None


# --------------------------------------------------------------------------- the run

@dataclass
class StepResult:
    values_per_second: float
    packets_per_second: float
    packets: int
    stored: int
    lost: int
    behind_seconds: float  # how late the publisher finished against its schedule
    lag_seconds: float | None  # last publish to everything queryable
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    latency_max_ms: float | None
    probes: int
    peak_memory_mb: float
    sustained: bool
    cpu: dict[str, float] = field(default_factory=dict)  # % of one core, by process
    values_per_second_achieved: float = 0.0
    notes: list[str] = field(default_factory=list)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")



async def paced_publish(count: int, interval: float,
                        send: Callable[[int], Awaitable[None]],
                        on_sent: Callable[[int, float], None]) -> float:
    """Send ``count`` items on a fixed schedule; returns how late the last one went."""
    start = time.perf_counter()
    for i in range(count):
        delay = start + i * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing the load, not synchronising a test
        sent = time.perf_counter()
        await send(i)
        on_sent(i, sent)
    return max(0.0, time.perf_counter() - (start + count * interval))


class Prober:
    """Publish-to-queryable latency of sampled messages, polled one at a time in publish
    order (one query every ``poll`` seconds at most: many concurrent pollers would load
    InfluxDB more than the telemetry does and the latency would feed on itself)."""

    def __init__(self, stored: Callable[[int], Awaitable[bool]], poll: float = 0.01,
                 give_up: float = 60.0) -> None:
        self.stored = stored
        self.poll = poll
        self.give_up = give_up
        self.latencies: list[float] = []
        self.last_seen: float | None = None
        self._queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()

    def sent(self, item: int, at: float) -> None:
        self._queue.put_nowait((item, at))

    def close(self) -> None:
        self._queue.put_nowait(None)

    async def run(self) -> None:
        while (entry := await self._queue.get()) is not None:
            item, at = entry
            while True:
                if await self.stored(item):
                    self.last_seen = time.perf_counter()
                    self.latencies.append(self.last_seen - at)
                    break
                if time.perf_counter() > at + self.give_up:
                    self.last_seen = None
                    break
                await asyncio.sleep(self.poll)  # polling InfluxDB for the sample's points


async def measure_step(*, items: int, interval: float, send: Callable[[int], Awaitable[None]],
                       sampled: Callable[[int], Awaitable[bool]],
                       count_all: Callable[[], Awaitable[int]], packets: int,
                       values_per_second: float, seconds: float, args: argparse.Namespace,
                       pids: dict[str, int], memory_pid: int) -> StepResult:
    """Publish ``items`` on schedule, sample latencies, then check every packet arrived."""
    prober = Prober(sampled)
    polling = asyncio.create_task(prober.run())

    def on_sent(i: int, at: float) -> None:
        if i % args.probe_every == 0 or i == items - 1:  # the last one gives the lag
            prober.sent(i, at)

    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    started = time.perf_counter()
    behind = await paced_publish(items, interval, send, on_sent)
    finished = time.perf_counter()
    cpu = {name: 100 * (cpu_seconds(pid) - cpu_before[name]) / (finished - started)
           for name, pid in pids.items()}
    prober.close()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(polling, args.drain_timeout + 60)
    deadline = finished + args.drain_timeout
    stored = await count_all()
    while stored < packets and time.perf_counter() < deadline:
        await asyncio.sleep(0.5)  # waiting for a backlog to drain: a full count is costly
        stored = await count_all()
    done = time.perf_counter() if stored == packets else None
    lag = None
    if done is not None and prober.last_seen is not None:
        lag = max(0.0, min(done, prober.last_seen) - finished) if stored == packets else None
    notes: list[str] = []
    if stored != packets:
        notes.append(f"{packets - stored} packets not in InfluxDB after "
                     f"{args.drain_timeout:.0f} s")
    if behind > 1.0:
        notes.append(f"the publisher ran {behind:.1f} s behind its schedule")
    if lag is not None and lag > args.max_lag:
        notes.append(f"the last message was stored {lag:.1f} s after it was published")
    sustained = stored == packets and lag is not None and lag <= args.max_lag \
        and behind <= 1.0
    lat = np.array(prober.latencies) * 1000
    elapsed = (finished + (lag or 0.0)) - started
    return StepResult(
        values_per_second=values_per_second, packets_per_second=packets / seconds,
        packets=packets, stored=stored, lost=packets - stored, behind_seconds=behind,
        lag_seconds=lag,
        latency_p50_ms=float(np.percentile(lat, 50)) if lat.size else None,
        latency_p99_ms=float(np.percentile(lat, 99)) if lat.size else None,
        latency_max_ms=float(lat.max()) if lat.size else None, probes=int(lat.size),
        peak_memory_mb=peak_memory_mb(memory_pid), sustained=sustained,
        values_per_second_achieved=stored / max(packets, 1) * values_per_second * seconds
        / elapsed, notes=notes, cpu=cpu)


async def run_step(client: aiomqtt.Client, influx: Influx, step: Step, args: argparse.Namespace,
                   ingest_pid: int, pids: dict[str, int]) -> StepResult:
    topic = raw_topic("lander")
    times = step.times_ns

    async def send(i: int) -> None:
        await client.publish(topic, step.messages[i], qos=1,
                             properties=raw_properties(time.time_ns(), "bench"))

    async def sampled(i: int) -> bool:
        first, last = int(times[step.bounds[i]]), int(times[step.bounds[i + 1] - 1])
        expected = step.bounds[i + 1] - step.bounds[i]
        return await influx.count(PACKET, first, last) >= expected

    async def count_all() -> int:
        return await influx.count(PACKET, int(times[0]), int(times[-1]))

    return await measure_step(
        items=len(step.messages), interval=args.message_ms / 1000, send=send, sampled=sampled,
        count_all=count_all, packets=step.packets, values_per_second=step.values_per_second,
        seconds=args.seconds, args=args, pids=pids, memory_pid=ingest_pid)


def start_ingest(work: Path, broker: MosquittoServer, influxd: InfluxServer, config: Path,
                 name: str = "ingest") -> tuple[subprocess.Popen[bytes], Path]:
    """An ``isls ingest`` process with a state directory (archive, alarms) of its own."""
    log = work / f"{name}.log"
    env = {**os.environ, "ISLS_MQTT_URL": broker.url, "ISLS_INFLUX_URL": influxd.url,
           "ISLS_INFLUX_DB": DATABASE, "ISLS_STATE_DIR": str(work / name / "state")}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "control_center.cli", "--config", str(config), "ingest"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    return process, log


def stop_process(process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    stop_child(process, timeout=timeout)  # an ingest drains and flushes on SIGTERM


async def warm_up(client: aiomqtt.Client, influx: Influx,
                  ingests: list[tuple[subprocess.Popen[bytes], Path]],
                  args: argparse.Namespace) -> int:
    """Two seconds at 50,000 values/s, stored: the ingests are subscribed and warm.
    Returns the packets it published."""
    packet, codec = lander_nav()
    warm = build_step(packet, codec, 0, 50_000, 2.0, args.message_ms, args.seed)
    deadline = time.perf_counter() + 60
    while True:
        for process, log in ingests:
            if process.poll() is not None:
                raise RuntimeError(f"an ingest exited:\n{log.read_text()[-2000:]}")
        await client.publish(raw_topic("lander"), warm.messages[0], qos=1,
                             properties=raw_properties(time.time_ns(), "bench"))
        count, _ = await wait_count(influx, PACKET, int(warm.times_ns[0]),
                                    int(warm.times_ns[-1]), 1, time.perf_counter() + 1.0)
        if count:
            break
        if time.perf_counter() > deadline:
            raise RuntimeError("the ingest stored nothing within 60 s")
    for message in warm.messages[1:]:
        await client.publish(raw_topic("lander"), message, qos=1,
                             properties=raw_properties(time.time_ns(), "bench"))
    count, _ = await wait_count(influx, PACKET, int(warm.times_ns[0]), int(warm.times_ns[-1]),
                                warm.packets, time.perf_counter() + 60)
    if count != warm.packets:
        raise RuntimeError(f"warm-up: {count} of {warm.packets} packets stored")
    return warm.packets


async def ours(args: argparse.Namespace, broker: MosquittoServer, influxd: InfluxServer,
               work: Path) -> tuple[list[StepResult], list[str]]:
    packet, codec = lander_nav()
    ingest, log = start_ingest(work, broker, influxd, args.config)
    assert influxd.process is not None and broker.process is not None
    influxd_pid, broker_pid = influxd.process.pid, broker.process.pid
    results: list[StepResult] = []
    try:
        async with aiohttp.ClientSession() as session, aiomqtt.Client(
                "127.0.0.1", broker.port, identifier="bench-load",
                protocol=aiomqtt.ProtocolVersion.V5) as client:
            influx = Influx(session, influxd.url)
            await warm_up(client, influx, [(ingest, log)], args)
            profiler = None
            if args.profile is not None:
                # Sampling profiler on the ingest process, from here to the last step.
                profiler = subprocess.Popen(  # noqa: ASYNC220 (started once, not awaited)
                    # The venv's own py-spy (a dev dependency): the venv need not be on PATH.
                    [str(Path(sys.executable).with_name("py-spy")), "record",
                     "--pid", str(ingest.pid), "--rate", "200",
                     "--format", "raw", "--output", str(args.profile)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for index, rate in enumerate(args.rates, start=1):
                step = build_step(packet, codec, index, rate, args.seconds, args.message_ms,
                                  args.seed)
                pids = {"ingest": ingest.pid, "influxd": influxd_pid, "mosquitto": broker_pid,
                        "bench": os.getpid()}
                result = await run_step(client, influx, step, args, ingest.pid, pids)
                results.append(result)
                print(row(result), flush=True)
                if not result.sustained:
                    break
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(30)
    finally:
        stop_process(ingest)
    errors = [line for line in log.read_text().splitlines()
              if "ERROR" in line or "Traceback" in line]
    return results, errors


# --------------------------------------------------------------------------- ceiling

async def ceiling(influxd: InfluxServer, lines_total: int, writers: int, index: int
                  ) -> dict[str, float]:
    """InfluxDB alone: pre-formatted lander_nav lines, 5,000 a POST, ``writers`` at once."""
    packet, codec = lander_nav()
    step = build_step(packet, codec, 100 + index, lines_total * len(packet.parameters), 1.0,
                      1000.0, 99)
    batch = decode(codec, b"".join(step.messages))
    text = format_lines(batch, {"spacecraft": "lander", "source": "ceiling"})
    lines = text.splitlines(keepends=True)
    bodies = [b"".join(lines[i:i + 5000]) for i in range(0, len(lines), 5000)]
    async with aiohttp.ClientSession() as session:
        influx = Influx(session, influxd.url)
        queue = list(reversed(bodies))

        async def writer() -> None:
            while queue:
                await influx.write(queue.pop())

        started = time.perf_counter()
        await asyncio.gather(*(writer() for _ in range(writers)))
        seconds = time.perf_counter() - started
        stored = await influx.count(PACKET, int(step.times_ns[0]), int(step.times_ns[-1]))
    assert stored == step.packets, (stored, step.packets)
    return {"writers": writers, "lines": step.packets, "seconds": seconds,
            "lines_per_second": step.packets / seconds,
            "values_per_second": step.packets * len(packet.parameters) / seconds}


# --------------------------------------------------------------------------- bridge

async def bridge_steps(args: argparse.Namespace, broker: MosquittoServer,
                       influxd: InfluxServer, work: Path) -> list[StepResult]:
    packet, codec = lander_nav()
    names = [p.name for p in packet.parameters]
    executable = bridge.ensure_bridge(ROOT / ".venv-bench" / "mqtt2influxdb")
    steps = list(enumerate(args.bridge_rates, start=50))
    # A topic and a measurement per step: the bridge stamps receipt time (whole seconds),
    # so a step's points are counted by measurement, not by time range.
    routes = {f"bench/json/{i}": f"bridge_step_{i}" for i, _ in steps}
    config = bridge.write_bridge_config(
        work / "bridge.yml", mqtt_port=broker.port, influx_port=influxd.port,
        database=DATABASE, routes=routes, fields=names, tags={"spacecraft": "lander"})
    process = bridge.start_bridge(executable, config, work / "bridge.log")
    assert influxd.process is not None
    influxd_pid = influxd.process.pid
    results: list[StepResult] = []
    try:
        async with aiohttp.ClientSession() as session:
            influx = Influx(session, influxd.url)
            for index, rate in steps:
                step = build_step(packet, codec, index, rate, args.seconds, 1.0, args.seed)
                result = await bridge_step(influx, broker, step, codec, names, index, args,
                                           {"bridge": process.pid, "influxd": influxd_pid},
                                           process.pid)
                results.append(result)
                print(row(result), flush=True)
                if not result.sustained or process.poll() is not None:
                    break
    finally:
        bridge.stop_bridge(process)
    return results


def json_messages(step: Step, codec: PacketCodec, names: list[str]) -> list[bytes]:
    """The step's packets decoded to engineering values, one JSON object per packet."""
    batch = decode(codec, b"".join(step.messages))
    columns = [np.asarray(batch.values[n]).tolist() for n in names]
    times = step.times_ns.tolist()
    return [json.dumps({"time": t, **dict(zip(names, row, strict=True))},
                       separators=(",", ":")).encode()
            for t, *row in zip(times, *columns, strict=True)]


async def bridge_step(influx: Influx, broker: MosquittoServer, step: Step, codec: PacketCodec,
                      names: list[str], index: int, args: argparse.Namespace,
                      pids: dict[str, int], bridge_pid: int) -> StepResult:
    messages = json_messages(step, codec, names)
    measurement = f"bridge_step_{index}"
    # mosquitto_pub -l: one message per stdin line, at C speed (aiomqtt publishing one
    # message at a time tops out near 3,000 QoS 1 messages/s here).
    publisher = await asyncio.create_subprocess_exec(
        "mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-t",
        f"bench/json/{index}", "-q", "1", "-l", "-i", f"bench-json-{index}",
        stdin=asyncio.subprocess.PIPE)
    assert publisher.stdin is not None
    stdin = publisher.stdin
    times = step.times_ns.tolist()
    everything = (0, 2**62)

    async def send(i: int) -> None:
        stdin.write(messages[i] + b"\n")
        await stdin.drain()

    async def sampled(i: int) -> bool:
        return await influx.count(measurement, *everything, f"msg_time = '{times[i]}'") >= 1

    async def count_all() -> int:
        return await influx.count(measurement, *everything)

    try:
        return await measure_step(
            items=len(messages), interval=args.seconds / len(messages), send=send,
            sampled=sampled, count_all=count_all, packets=step.packets,
            values_per_second=step.values_per_second, seconds=args.seconds, args=args,
            pids=pids, memory_pid=bridge_pid)
    finally:
        stdin.close()
        await publisher.wait()


# --------------------------------------------------------------------------- report

def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def row(result: StepResult) -> str:
    lag = "-" if result.lag_seconds is None else f"{result.lag_seconds:.2f}"
    verdict = "ok" if result.sustained else "FAIL: " + "; ".join(result.notes)
    cpu = " ".join(f"{result.cpu.get(name, 0):>4.0f}" for name in ("ingest", "influxd")) \
        if "ingest" in result.cpu else " ".join(f"{result.cpu.get(name, 0):>4.0f}"
                                                for name in ("bridge", "influxd"))
    return (f"  {result.values_per_second:>11,.0f} {result.packets_per_second:>9,.0f} "
            f"{result.lost:>7,} {lag:>6} {_ms(result.latency_p50_ms):>6} "
            f"{_ms(result.latency_p99_ms):>6} {_ms(result.latency_max_ms):>7} "
            f"{result.peak_memory_mb:>8.0f} {cpu if result.cpu else '   -    -'}  {verdict}")


HEADER = (f"  {'values/s':>11} {'packets/s':>9} {'lost':>7} {'lag s':>6} {'p50 ms':>6} "
          f"{'p99 ms':>6} {'max ms':>7} {'peak MiB':>8} {'CPU% ingest/bridge, influxd':>9}  "
          f"sustained")


def best(results: list[StepResult]) -> float:
    return max((r.values_per_second for r in results if r.sustained), default=0.0)


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    figures: dict[str, Any] = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                                          f"Python {platform.python_version()}",
                               "seconds_per_step": args.seconds,
                               "message_ms": args.message_ms}
    influxd_cpus = None
    if args.pin:
        # influxd alone on the last core, everything else (this process, the broker, the
        # ingest, the load generators: children inherit it) on the others.
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < 2:
            raise SystemExit("--pin needs two cores")
        os.sched_setaffinity(0, set(cores[:-1]))
        influxd_cpus = str(cores[-1])
        figures["pinned"] = {"influxd": [cores[-1]], "everything else": cores[:-1]}
    with MosquittoServer(work / "mosquitto", free_port()) as broker, \
            InfluxServer(work / "influx", free_port(), cpus=influxd_cpus,
                         data_settings=dict(setting.split("=", 1) for setting in
                                            args.influx_setting)) as influxd:
        async with aiohttp.ClientSession() as session:
            await Influx(session, influxd.url).query(f'CREATE DATABASE "{DATABASE}"')
        print(f"isls ingest, {args.seconds:.0f} s a step, {args.message_ms:.0f} ms of "
              f"packets a message (QoS 1):")
        print(HEADER)
        results, errors = await ours(args, broker, influxd, work)
        figures["ingest"] = [asdict(r) for r in results]
        figures["ingest_errors_logged"] = errors[:20]
        figures["ingest_best_values_per_second"] = best(results)
        print("InfluxDB ceiling (the same lines posted directly, 5,000 a POST):")
        figures["ceiling"] = []
        for index, writers in enumerate((2, 4)):
            result = await ceiling(influxd, args.ceiling_lines, writers, index)
            figures["ceiling"].append(result)
            print(f"  {writers} writers: {result['lines_per_second']:>9,.0f} lines/s "
                  f"{result['values_per_second']:>12,.0f} values/s")
        if args.bridge:
            print("mqtt2influxdb 1.5.2, one JSON message per packet:")
            print(HEADER)
            bridge_results = await bridge_steps(args, broker, influxd, work)
            figures["bridge"] = [asdict(r) for r in bridge_results]
            figures["bridge_best_values_per_second"] = best(bridge_results)
    ceiling_best = max(c["values_per_second"] for c in figures["ceiling"])
    print(f"best sustained: isls ingest {figures['ingest_best_values_per_second']:,.0f} values/s"
          f" = {figures['ingest_best_values_per_second'] / ceiling_best:.2f} of InfluxDB's "
          f"ceiling ({ceiling_best:,.0f})")
    if args.bridge and figures["bridge_best_values_per_second"]:
        ratio = figures["ingest_best_values_per_second"] / figures["bridge_best_values_per_second"]
        figures["ingest_vs_bridge"] = ratio
        print(f"  mqtt2influxdb {figures['bridge_best_values_per_second']:,.0f} values/s: "
              f"the ingest sustains {ratio:.0f}x")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of a step")
    parser.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",")],
                        default=list(DEFAULT_RATES), help="values/s steps, comma-separated")
    parser.add_argument("--bridge-rates", type=lambda s: [float(x) for x in s.split(",")],
                        default=list(BRIDGE_RATES), help="values/s steps for the bridge")
    parser.add_argument("--no-bridge", dest="bridge", action="store_false")
    parser.add_argument("--message-ms", type=float, default=20.0,
                        help="milliseconds of packets per MQTT message")
    parser.add_argument("--probe-every", type=int, default=10,
                        help="measure the latency of every Nth message")
    parser.add_argument("--max-lag", type=float, default=2.0,
                        help="seconds after the last publish by which all must be stored")
    parser.add_argument("--drain-timeout", type=float, default=30.0)
    parser.add_argument("--ceiling-lines", type=int, default=500_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--config", type=Path, default=ROOT / "config" / "isls.toml",
                        help="the ingest's configuration (servers are the benchmark's own)")
    parser.add_argument("--profile", type=Path, help="write py-spy samples of the ingest "
                        "(collapsed stacks) to this file")
    parser.add_argument("--influx-setting", action="append", default=[], metavar="NAME=VALUE",
                        help="an influxd [data] setting instead of the shipped one, VALUE as "
                        "TOML (e.g. cache-snapshot-memory-size='\"25m\"'); repeatable")
    parser.add_argument("--pin", action="store_true", help="influxd alone on the last "
                        "core (taskset), everything else on the others")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="isls-bench-e2e-") as temporary:
        figures = asyncio.run(run(args, Path(temporary)))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=1))
    print(f"written {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
