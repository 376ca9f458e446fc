"""``isls doctor``: check a deployment before a pass, from the configuration outwards.

Every check prints one line (OK, WARN or FAIL, then what it found and what to do); the
exit status is 1 if any check failed. It writes nothing but a round-trip message on
``isls/doctor/<client>`` and one point in the ``doctor`` measurement.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from typing import TextIO

import aiohttp
import aiomqtt

from control_center.config import Config
from control_center.errors import IslsError, ServerError
from control_center.spool import Spool
from control_center.storage import InfluxWriter, influx_headers
from control_center.tmdb import load_tmdbs
from drivers.mqtt import TOPIC_ROOT, make_client

# Tolerances an operator can act on.
CLOCK_WARN_SECONDS = 2.0  # InfluxDB's Date header has a 1 s resolution
FREE_SPACE_MARGIN = 1 << 30  # beyond the spool's own maximum


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: str  # OK, WARN, FAIL
    detail: str


async def _broker(config: Config) -> Check:
    """Connect, subscribe, publish at QoS 1 and receive it back: reachable, the
    credentials work, and this account may both read and write."""
    topic = f"{TOPIC_ROOT}/doctor/{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    try:
        async with make_client(config.mqtt, f"isls-doctor-{os.getpid()}") as client:
            await client.subscribe(topic, qos=1)
            await client.publish(topic, b"ping", qos=1)
            async with asyncio.timeout(5):
                async for message in client.messages:
                    if message.topic.matches(topic):
                        break
    except TimeoutError:
        return Check("broker", "FAIL", f"{config.mqtt.url}: connected, but a message "
                     f"published to {topic} did not come back within 5 s (ACL?)")
    except aiomqtt.MqttError as exc:
        return Check("broker", "FAIL", f"{config.mqtt.url}: {exc}")
    return Check("broker", "OK", f"{config.mqtt.url}: publish/subscribe round trip in "
                 f"{(time.perf_counter() - started) * 1000:.0f} ms")


async def _influx(config: Config) -> list[Check]:
    settings = config.influx
    checks: list[Check] = []
    timeout = aiohttp.ClientTimeout(total=10)
    try:
        async with aiohttp.ClientSession(timeout=timeout,
                                         headers=influx_headers(settings)) as session:
            before = time.time()
            async with session.get(f"{settings.url}/ping") as response:
                after = time.time()
                version = response.headers.get("X-Influxdb-Version", "unknown version")
                date = response.headers.get("Date")
        checks.append(Check("influxdb", "OK", f"{settings.url}: InfluxDB {version}"))
        if date:
            server = email.utils.parsedate_to_datetime(date).timestamp()
            offset = (before + after) / 2 - server
            status = "OK" if abs(offset) < CLOCK_WARN_SECONDS else "WARN"
            checks.append(Check("clock", status, f"this machine is {offset:+.1f} s from "
                                f"InfluxDB's clock (±1 s resolution); onboard times are "
                                f"converted here, so keep both on NTP"))
        point = f"doctor,host={os.uname().nodename.replace(' ', '_')} ok=true {time.time_ns()}\n"
        async with InfluxWriter(settings) as writer:
            # As the ingest does at start: create the database if this account may.
            await writer.ensure_database(attempts=1)
            outcome, detail = await writer.send(point.encode())
        if outcome == "stored":
            checks.append(Check("influxdb write", "OK",
                                f"database {settings.database!r} takes writes"))
        else:
            checks.append(Check("influxdb write", "FAIL",
                                f"database {settings.database!r}: {detail.strip()}"))
    except ServerError as exc:
        checks.append(Check("influxdb write", "FAIL", str(exc)))
    except (aiohttp.ClientError, TimeoutError) as exc:
        checks.append(Check("influxdb", "FAIL", f"{settings.url}: {exc or type(exc).__name__}"))
    return checks


def _disk(config: Config) -> list[Check]:
    state = config.state_dir
    state.mkdir(parents=True, exist_ok=True)
    probe = state / f".doctor-{os.getpid()}"
    try:
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        return [Check("state directory", "FAIL", f"{state}: not writable ({exc})")]
    free = shutil.disk_usage(state).free
    needed = (config.influx.spool_max_mb << 20) + FREE_SPACE_MARGIN
    status = "OK" if free >= needed else "WARN"
    checks = [Check("disk", status, f"{free / 2**30:.1f} GiB free under {state}; the spool may "
                    f"take {config.influx.spool_max_mb} MiB and the archive grows with every "
                    f"pass")]
    spool = Spool(state / "spool", config.influx.spool_max_mb << 20)
    if len(spool):
        checks.append(Check("spool", "WARN", f"{len(spool)} batches ({spool.lines} lines) "
                            f"wait in {spool.directory} to be written to InfluxDB; the ingest "
                            f"backfills them when it runs and InfluxDB answers"))
    else:
        checks.append(Check("spool", "OK", "empty"))
    return checks


async def doctor(config: Config, out: TextIO = sys.stdout) -> int:
    checks = [Check("config", "OK", str(config.source))]
    try:
        tmdbs = load_tmdbs(config.tmdb_paths)
        checks.append(Check("telemetry databases", "OK", ", ".join(
            f"{t.spacecraft} ({len(t.packets)} packets)" for t in tmdbs)))
    except IslsError as exc:
        checks.append(Check("telemetry databases", "FAIL", str(exc)))
    broker, influx = await asyncio.gather(_broker(config), _influx(config))
    checks += [broker, *influx, *_disk(config)]
    width = max(len(c.name) for c in checks)
    for check in checks:
        print(f"{check.status:<4} {check.name:<{width}}  {check.detail}", file=out)
    failed = sum(c.status == "FAIL" for c in checks)
    warned = sum(c.status == "WARN" for c in checks)
    print(f"{failed} failed, {warned} warnings", file=out)
    return 1 if failed else 0
