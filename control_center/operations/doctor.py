"""``isls doctor``: check a deployment before a pass, from the configuration outwards.

Every check prints one line (OK, WARN or FAIL, then what it found and what to do); the
exit status is 1 if any check failed. It writes nothing but its probes on
``isls/doctor/<account>/…`` (the one subtree the generated ACL lets each of the control
center's accounts round-trip on) and one point in the ``doctor`` measurement.

The broker checks, beyond the round trip:

* ``broker statistics``: ``$SYS/broker/publish/messages/dropped`` (messages the broker
  dropped since it started: a full client queue, a QoS 0 reader too slow) and
  ``$SYS/broker/store/messages/count``, when the account may read ``$SYS/broker/#``;
* ``broker queue``: how many QoS 1 messages the broker keeps for a client that is away.
  A probe session subscribes and leaves, ``QUEUE_PROBE_MESSAGES`` messages are
  published, and the probe counts what it is given when it comes back (then its
  session is removed). Mosquitto's default ``max_queued_messages 1000`` drops the tail
  of a burst published while the ingest restarts, silently (issue 13, item 6).
"""

from __future__ import annotations

import asyncio
import contextlib
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

from control_center.config import Config, MqttSettings
from control_center.errors import IslsError, ServerError
from control_center.operations.security import doctor_topic, is_partner
from control_center.operations.servers import private_directory
from control_center.storage.posting import influx_headers
from control_center.storage.spool import Spool
from control_center.storage.writer import InfluxWriter
from control_center.telemetry.tmdb_yaml import load_tmdbs
from drivers.mqtt import make_client

# Tolerances an operator can act on.
CLOCK_WARN_SECONDS = 2.0  # InfluxDB's Date header has a 1 s resolution
FREE_SPACE_MARGIN = 1 << 30  # beyond the spool's own maximum
# More than Mosquitto's default max_queued_messages (1000), few enough to take about a
# second; a broker configured as `isls up`'s (100,000) keeps them all.
QUEUE_PROBE_MESSAGES = 1500
STATISTICS_WAIT = 1.0  # s for the retained $SYS values after the round trip
DROPPED = "$SYS/broker/publish/messages/dropped"
STORED = "$SYS/broker/store/messages/count"
VERSION = "$SYS/broker/version"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: str  # OK, WARN, FAIL
    detail: str


async def _broker(config: Config) -> list[Check]:
    """Connect, subscribe, publish at QoS 1 and receive it back: reachable, the
    credentials work, and this account may both read and write. Then the broker's own
    counters, and how much it queues for a client that is away."""
    settings = config.mqtt
    topic = f"{doctor_topic(settings.username)}/{uuid.uuid4().hex[:8]}"
    statistics: dict[str, str] = {}
    started = time.perf_counter()
    try:
        async with make_client(settings, f"isls-doctor-{os.getpid()}") as client:
            await client.subscribe(topic, qos=1)
            for name in (VERSION, DROPPED, STORED):
                await client.subscribe(name, qos=0)
            await client.publish(topic, b"ping", qos=1)
            round_trip: float | None = None
            loop = asyncio.get_running_loop()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0) as deadline:
                    async for message in client.messages:
                        if message.topic.matches(topic):
                            round_trip = time.perf_counter() - started
                            # Back: wait for the retained $SYS values a little longer.
                            deadline.reschedule(loop.time() + STATISTICS_WAIT)
                        elif isinstance(message.payload, bytes | bytearray):
                            statistics[message.topic.value] = bytes(message.payload).decode(
                                errors="replace")
                        if round_trip is not None and len(statistics) == 3:
                            break
    except aiomqtt.MqttError as exc:
        return [Check("broker", "FAIL", f"{settings.url}: {exc}")]
    if round_trip is None:
        return [Check("broker", "FAIL", f"{settings.url}: connected, but a message "
                      f"published to {topic} did not come back within 5 s: this account "
                      f"({settings.username or 'anonymous'}) may not write and read "
                      f"{doctor_topic(settings.username)}/# (the broker's ACL)")]
    checks = [Check("broker", "OK", f"{settings.url}: publish/subscribe round trip in "
                    f"{round_trip * 1000:.0f} ms")]
    checks.append(_statistics(statistics))
    if settings.username and is_partner(settings.username):
        # On the partner port a client's id is its user name: the probe would take this
        # account's own session and empty its queue.
        checks.append(Check("broker queue", "WARN", f"not probed as the partner account "
                            f"{settings.username}; run isls doctor as the operator"))
    else:
        checks.append(await _queue(settings))
    return checks


def _statistics(values: dict[str, str]) -> Check:
    if not values:
        return Check("broker statistics", "WARN", "nothing from $SYS/broker/#: this account "
                     "may not read it (grant `topic read $SYS/broker/#`) or the broker "
                     "publishes none; messages it drops stay unseen")
    version = values.get(VERSION, "a broker")
    stored = values.get(STORED, "?")
    # Mosquitto publishes the counter once it changes: none yet means none dropped.
    text = values.get(DROPPED, "0").strip()
    dropped = int(text) if text.isdigit() else 0
    if dropped:
        return Check("broker statistics", "WARN", f"{version} has dropped {dropped} messages "
                     f"since it started ({DROPPED}): a client's queue was full "
                     f"(max_queued_messages) or a QoS 0 reader was too slow; "
                     f"{stored} messages stored")
    return Check("broker statistics", "OK", f"{version}: no message dropped since it "
                 f"started, {stored} messages stored")


async def _queue(settings: MqttSettings) -> Check:
    """What the broker keeps for a persistent session that is away."""
    identifier = f"isls-doctor-queue-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    topic = f"{doctor_topic(settings.username)}/queue-{uuid.uuid4().hex[:8]}"
    payload = b"q"
    received = 0
    try:
        async with make_client(settings, identifier, clean_start=False,
                               session_expiry=300) as probe:
            await probe.subscribe(topic, qos=1)
        async with make_client(settings, f"{identifier}-publisher") as publisher:
            # A hundred in flight on purpose: not aiomqtt's "pending publish calls" warning
            # (past 10 it logged a line per publish, 1,350 lines in one doctor run).
            publisher.pending_calls_threshold = 200
            # A hundred in flight at a time: a broker that saves its store after every
            # pass that queued something (autosave_on_changes, as isls configures it)
            # then saves once per hundred, not once per message, each save rewriting the
            # whole queue: seconds instead of half a minute, and little disk wear.
            for start in range(0, QUEUE_PROBE_MESSAGES, 100):
                await asyncio.gather(*(publisher.publish(topic, payload, qos=1) for _ in
                                       range(min(100, QUEUE_PROBE_MESSAGES - start))))
        # Back with the session, which ends (expiry 0) when this connection closes.
        async with make_client(settings, identifier, clean_start=False) as probe:
            with contextlib.suppress(TimeoutError):
                while received < QUEUE_PROBE_MESSAGES:
                    async with asyncio.timeout(2.0):
                        message = await anext(aiter(probe.messages))
                    if message.topic.matches(topic):
                        received += 1
    except aiomqtt.MqttError as exc:
        return Check("broker queue", "WARN", f"the queue probe failed: {exc}")
    where = "this external broker" if settings.external else "the broker"
    if received < QUEUE_PROBE_MESSAGES:
        return Check("broker queue", "WARN", f"{where} kept {received} of "
                     f"{QUEUE_PROBE_MESSAGES} QoS 1 messages for a client that was away: "
                     f"telemetry published while the ingest restarts beyond that is "
                     f"dropped silently (Mosquitto's default max_queued_messages is "
                     f"1000); set max_queued_messages 100000 and max_queued_bytes 0, as "
                     f"in deploy/mosquitto.conf")
    note = ("; its persistence cannot be seen from here: use autosave_on_changes true "
            "and autosave_interval 1 so a broker crash keeps what it acknowledged"
            if settings.external else "")
    return Check("broker queue", "OK", f"{where} keeps at least {QUEUE_PROBE_MESSAGES} "
                 f"QoS 1 messages for a client that is away{note}")


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
    if not state.exists():
        private_directory(state)
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
    checks += [*broker, *influx, *_disk(config)]
    width = max(len(c.name) for c in checks)
    for check in checks:
        print(f"{check.status:<4} {check.name:<{width}}  {check.detail}", file=out)
    failed = sum(c.status == "FAIL" for c in checks)
    warned = sum(c.status == "WARN" for c in checks)
    print(f"{failed} failed, {warned} warnings", file=out)
    return 1 if failed else 0
