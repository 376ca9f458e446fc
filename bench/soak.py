"""Soak: steady telemetry through a sequence of real faults; nothing lost, nothing twice.

    python bench/soak.py [--seconds 300] [--rate 37000] [--memory-mb 400] [--json PATH]

Starts its own Mosquitto and influxd (loopback, temporary directories) and `isls ingest`
as a child process, publishes lander_nav packets at ``--rate`` values/s (every packet its
own onboard time, 20 ms of packets a message, QoS 1, republished by the publisher when
the broker fails before acknowledging), and on the way, at fixed fractions of the run:

- InfluxDB SIGKILLed, back after a pause;
- the broker SIGKILLed, back after a pause (same port and persistence);
- the ingest SIGKILLed, started again (same state directory, same MQTT session);
- the ingest stopped cleanly (SIGTERM) and started again;
- the spool's disk full while InfluxDB is down (a 256 KiB tmpfs mounted on the spool:
  needs root; without it this fault is reported as skipped);
- the database dropped and created again;
- every 10 s a poison message (an earth-receive time past int64 nanoseconds).

It ends with the publisher stopped and a wait for InfluxDB to hold everything, then
checks: every good packet stored exactly once (points = packets published, by
``COUNT("sequence_count")`` over the run's time range), no poison packet stored and
every poison message in the dead-letter store, the ingest's peak memory (sampled RSS)
under ``--memory-mb``, and each fault visible in what the system reports (the
ingest's health points and log). Exit 0 when every check holds. ``tests/test_soak.py``
runs a 60 s version in `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiomqtt  # noqa: E402
import numpy as np  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from control_center.operations.servers import InfluxServer, MosquittoServer, free_port  # noqa: E402
from control_center.storage.dead_letters import DeadLetterStore  # noqa: E402
from control_center.telemetry.codec import PacketCodec  # noqa: E402
from control_center.telemetry.packets import CucTime  # noqa: E402
from control_center.telemetry.tmdb_yaml import load_tmdb  # noqa: E402
from drivers.mqtt import raw_properties, raw_topic  # noqa: E402

PACKET = "lander_nav"
DATABASE = "soak"
START_UNIX = 1_800_000_000  # onboard time of the first good packet
POISON_UNIX = 1_900_000_000  # poison packets carry times here: none may be stored
TICKS_PER_PACKET = 8  # 2**-13 s between packets: unique onboard times


@dataclass
class Run:
    work: Path
    seconds: float
    rate: float
    broker: MosquittoServer
    influx: InfluxServer
    env: dict[str, str]
    ingest: subprocess.Popen[bytes] | None = None
    log_path: Path = Path()
    published_packets: int = 0
    published_messages: int = 0
    republished: int = 0
    poison_sent: int = 0
    rss_peak_mb: float = 0.0
    faults: list[dict[str, Any]] = field(default_factory=list)
    spool_mounted: bool = False
    per_message: int = 1
    paused: bool = False  # the publisher waits (while the database fault is prepared)
    idle: asyncio.Event = field(default_factory=asyncio.Event)  # publisher waits, none in flight
    mark_packets: int = 0  # packets published before the database was dropped
    stored_before_drop: int = 0


def ingest_env(broker: MosquittoServer, influx: InfluxServer, state: Path) -> dict[str, str]:
    return {**os.environ, "ISLS_MQTT_URL": broker.url, "ISLS_INFLUX_URL": influx.url,
            "ISLS_INFLUX_DB": DATABASE, "ISLS_STATE_DIR": str(state),
            "PYTHONPATH": str(ROOT)}


def start_ingest(run: Run) -> None:
    with run.log_path.open("ab") as log:
        run.ingest = subprocess.Popen([sys.executable, "-m", "control_center.cli", "ingest"],
                                      env=run.env, stdout=log, stderr=log, cwd=ROOT)


def stop_ingest(run: Run, signum: int) -> None:
    assert run.ingest is not None
    run.ingest.send_signal(signum)
    try:
        run.ingest.wait(60)
    except subprocess.TimeoutExpired:
        run.ingest.kill()
        run.ingest.wait()


def rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def messages(rate: float, seconds: float) -> tuple[list[bytes], int]:
    """The good messages (20 ms of packets each) and the number of packets."""
    tmdb = load_tmdb(ROOT / "config" / "tmdb" / "lander.yaml")
    packet = tmdb.packet(PACKET)
    codec = PacketCodec(tmdb.spacecraft, packet)
    per_second = rate / len(packet.parameters)
    per_message = max(1, round(per_second * 0.02))
    count = int(seconds / 0.02)
    n = count * per_message
    start = CucTime.from_unix(START_UNIX)
    ticks = np.arange(n, dtype=np.int64) * TICKS_PER_PACKET
    values = {p.name: np.ones(n) for p in packet.parameters if not p.overlay}
    blob = codec.encode(values, coarse=start.coarse + ticks // 65536, fine=ticks % 65536,
                        sequence_counts=np.arange(n) % 16384)
    size = per_message * packet.length
    return [blob[i * size:(i + 1) * size] for i in range(count)], n


def poison_payload() -> bytes:
    tmdb = load_tmdb(ROOT / "config" / "tmdb" / "lander.yaml")
    packet = tmdb.packet(PACKET)
    codec = PacketCodec(tmdb.spacecraft, packet)
    time_code = CucTime.from_unix(POISON_UNIX)
    values = {p.name: np.ones(1) for p in packet.parameters if not p.overlay}
    return codec.encode(values, coarse=[time_code.coarse], fine=[0], sequence_counts=[0])


async def publish(run: Run, payloads: list[bytes], stop_at: float) -> None:
    """Paced QoS 1 publishing that survives the broker's death: a message whose PUBACK
    did not come is published again (the same points: stored once)."""
    interval = 0.02
    poison = poison_payload()
    poison_props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    poison_props.UserProperty = [("ert", "9999-12-31T23:59:59Z"), ("link", "soak")]
    index = 0
    next_poison = time.monotonic() + 10
    started = time.monotonic()
    while index < len(payloads) and time.monotonic() < stop_at:
        try:
            async with aiomqtt.Client("127.0.0.1", run.broker.port, identifier="soak-load",
                                      protocol=aiomqtt.ProtocolVersion.V5,
                                      timeout=5) as client:
                while index < len(payloads) and time.monotonic() < stop_at:
                    while run.paused:
                        run.idle.set()  # no publish in flight: the mark is exact
                        await asyncio.sleep(0.05)
                        started += 0.05  # the pace resumes where it stopped
                    run.idle.clear()
                    due = started + index * interval
                    delay = due - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    ert = time.time_ns() // 1000 * 1000
                    await client.publish(raw_topic("lander"), payloads[index], qos=1,
                                         properties=raw_properties(ert, "soak"))
                    index += 1
                    run.published_messages = index
                    if time.monotonic() >= next_poison:
                        await client.publish(raw_topic("lander"), poison, qos=1,
                                             properties=poison_props)
                        run.poison_sent += 1
                        next_poison += 10
        except aiomqtt.MqttError:
            run.republished += 1
            await asyncio.sleep(0.25)


async def watch_memory(run: Run, done: asyncio.Event) -> None:
    while not done.is_set():
        if run.ingest is not None and run.ingest.poll() is None:
            run.rss_peak_mb = max(run.rss_peak_mb, rss_mb(run.ingest.pid))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 0.25)


def mount_small_spool(spool: Path) -> bool:
    spool.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs",
                             str(spool)], capture_output=True, text=True, check=False)
    return result.returncode == 0


def unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


async def faults(run: Run, started: float) -> None:
    """The fault sequence, at fixed fractions of the run."""
    pause = max(2.0, run.seconds * 0.03)

    async def at(fraction: float) -> None:
        delay = started + run.seconds * fraction - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    def note(name: str, **details: Any) -> None:
        run.faults.append({"fault": name, "at_s": round(time.monotonic() - started, 1),
                           **details})

    await at(0.10)
    note("influxd SIGKILL")
    await asyncio.to_thread(run.influx.kill)
    await asyncio.sleep(pause)
    await asyncio.to_thread(run.influx.start)
    await at(0.25)
    note("broker SIGKILL")
    await asyncio.to_thread(run.broker.kill)
    await asyncio.sleep(pause / 2)
    await asyncio.to_thread(run.broker.start)
    await at(0.40)
    note("ingest SIGKILL")
    await asyncio.to_thread(stop_ingest, run, signal.SIGKILL)
    await asyncio.sleep(pause / 2)
    start_ingest(run)
    await at(0.50)
    note("ingest clean restart")
    await asyncio.to_thread(stop_ingest, run, signal.SIGTERM)
    await asyncio.sleep(pause / 2)
    start_ingest(run)
    await at(0.60)
    if run.spool_mounted:
        note("spool disk full while influxd is down")
        await asyncio.to_thread(run.influx.kill)
        await asyncio.sleep(pause * 1.5)
        await asyncio.to_thread(run.influx.start)
    else:
        note("spool disk full: skipped (cannot mount a tmpfs: not root?)", skipped=True)
    await at(0.75)
    # Dropping the database deletes what it held: first everything published so far
    # must be stored (checked), then the drop, with telemetry flowing into the missing
    # database until it is created again; all of that must be stored in the end.
    run.paused = True
    await run.idle.wait()
    mark = run.published_messages
    before = mark * run.per_message
    stored = await wait_until(lambda: count(run, START_UNIX, packet_unix(before)) >= before,
                              120)
    run.stored_before_drop = count(run, START_UNIX, packet_unix(before))
    run.mark_packets = before
    note("database dropped and created again", stored_before=run.stored_before_drop,
         published_before=before, complete_before=stored)
    await asyncio.to_thread(run.influx.query, f'DROP DATABASE "{DATABASE}"', DATABASE)
    run.paused = False
    await asyncio.sleep(pause / 2)
    await asyncio.to_thread(run.influx.query, f'CREATE DATABASE "{DATABASE}"', DATABASE)


def packet_unix(index: int) -> float:
    """The onboard time (Unix s) just after good packet ``index - 1``."""
    return START_UNIX + index * TICKS_PER_PACKET / 65536


def count(run: Run, first_unix: float, last_unix: float) -> int:
    result = run.influx.query(
        f'SELECT COUNT("sequence_count") FROM "{PACKET}" WHERE time >= '
        f"{int(first_unix * 1e9)} AND time < {int(last_unix * 1e9)}", DATABASE)
    series = result["results"][0].get("series")  # type: ignore[index]
    return int(series[0]["values"][0][1]) if series else 0


def missing_ranges(run: Run, first: int, last: int) -> list[dict[str, Any]]:
    """Which good packets are missing, as runs of packet indices with the second of the
    run at which they were published: to tell which fault lost them."""
    result = run.influx.query(
        f'SELECT "sequence_count" FROM "{PACKET}" WHERE time >= '
        f"{int(packet_unix(first) * 1e9)} AND time < {int((packet_unix(last) + 1) * 1e9)}",
        DATABASE)
    series = result["results"][0].get("series")  # type: ignore[index]
    start_ns = START_UNIX * 1_000_000_000
    step_ns = TICKS_PER_PACKET * 1_000_000_000 / 65536
    present = np.zeros(last, dtype=bool)
    for row in series[0]["values"] if series else []:
        index = round((int(row[0]) - int(row[1]) - start_ns) / step_ns)
        if 0 <= index < last:
            present[index] = True
    absent = np.flatnonzero(~present[first:]) + first
    runs: list[dict[str, Any]] = []
    if absent.size:
        breaks = np.flatnonzero(np.diff(absent) != 1)
        for chunk in np.split(absent, breaks + 1):
            runs.append({"first": int(chunk[0]), "count": int(chunk.size),
                         "published_at_s": round(int(chunk[0]) / run.per_message * 0.02, 2)})
    return runs[:20]


def health_max(run: Run, field_name: str) -> float:
    result = run.influx.query(f'SELECT MAX("{field_name}") FROM "ingest"', DATABASE)
    series = result["results"][0].get("series")  # type: ignore[index]
    value = series[0]["values"][0][1] if series else None
    return float(value) if value is not None else 0.0


async def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(condition):
            return True
        await asyncio.sleep(0.5)
    return False


async def soak(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    broker = MosquittoServer(work / "mosquitto", free_port())
    influx = InfluxServer(work / "influx", free_port())
    broker.start()
    influx.start()
    state = work / "state"
    run = Run(work, args.seconds, args.rate, broker, influx, ingest_env(broker, influx, state))
    run.log_path = work / "ingest.log"
    run.spool_mounted = mount_small_spool(state / "spool")
    payloads, packets = messages(args.rate, args.seconds)
    run.per_message = packets // len(payloads)
    try:
        start_ingest(run)
        ready = await wait_until(lambda: "subscribed" in run.log_path.read_text(errors="replace"),
                                 60)
        if not ready:
            raise RuntimeError(f"the ingest did not subscribe; see {run.log_path}")
        started = time.monotonic()
        done = asyncio.Event()
        memory = asyncio.create_task(watch_memory(run, done))
        fault_task = asyncio.create_task(faults(run, started))
        await publish(run, payloads, started + args.seconds + 60)
        await fault_task
        published = run.published_messages * run.per_message
        run.published_packets = published
        # The database fault deleted what was stored before it (checked complete then):
        # from there on, everything published must be stored.
        first_unix = packet_unix(run.mark_packets)
        last_unix = packet_unix(published) + 1
        expected_after = published - run.mark_packets
        drained = await wait_until(
            lambda: count(run, first_unix, last_unix) >= expected_after, args.drain_timeout)
        stored = run.stored_before_drop + count(run, first_unix, last_unix)
        missing = [] if drained else missing_ranges(run, run.mark_packets, published)
        poison_stored = count(run, POISON_UNIX - 1, POISON_UNIX + 1)
        stop_ingest(run, signal.SIGTERM)
        done.set()
        await memory
        log = run.log_path.read_text(errors="replace")
        letters = [d for d in DeadLetterStore(state / "dead_letters")
                   if "ert '9999" in d.reason]
        visible = {
            "influxd SIGKILL": health_max(run, "write_retries") > 0
            or health_max(run, "spooled_lines") > 0,
            "broker SIGKILL": "unavailable" in log,
            "ingest SIGKILL": log.count("ingest subscribed") >= 3,
            "ingest clean restart": "ingest stopped:" in log,
            "database dropped and created again": health_max(run, "missing_database") > 0
            or "database not found" in log.lower(),
            "poison messages": health_max(run, "poison_messages") > 0,
        }
        if run.spool_mounted:
            visible["spool disk full while influxd is down"] = \
                "spool full" in log.lower() or "cannot write under" in log
        checks = {
            "every good packet stored exactly once": drained and stored == published
            and run.stored_before_drop == run.mark_packets,
            "no poison packet stored": poison_stored == 0,
            "every poison message in the dead-letter store": len(letters) >= run.poison_sent,
            f"peak memory under {args.memory_mb} MB": run.rss_peak_mb < args.memory_mb,
            "every fault visible": all(visible.values()),
        }
        return {"seconds": args.seconds, "rate_values_per_s": args.rate,
                "published_packets": published, "stored_points": stored,
                "republished_after_broker_errors": run.republished,
                "poison_sent": run.poison_sent, "poison_quarantined": len(letters),
                "poison_stored": poison_stored, "ingest_peak_rss_mb": round(run.rss_peak_mb, 1),
                "missing": missing, "faults": run.faults, "visible": visible,
                "checks": checks,
                "ok": all(checks.values()), "log": str(run.log_path)}
    finally:
        if run.ingest is not None and run.ingest.poll() is None:
            run.ingest.kill()
        if run.spool_mounted:
            unmount(state / "spool")
        broker.stop()
        influx.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--rate", type=float, default=37_000.0, help="values per second")
    parser.add_argument("--memory-mb", type=float, default=400.0)
    parser.add_argument("--drain-timeout", type=float, default=120.0)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="isls-soak-"))
    results = asyncio.run(soak(args, work))
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    if not args.keep and results["ok"]:
        subprocess.run(["rm", "-rf", str(work)], check=False)
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
