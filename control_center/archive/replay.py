"""Replaying recorded passes.

``isls replay`` republishes a pass from the archive on ``isls/<spacecraft>/tm/replay``
(QoS 1) with the MQTT 5 user properties ``pass`` and ``shift_ns``; every ingest
subscribes to the replay topics and stores those packets with ``source=replay`` and a
``pass`` tag, so live data is never touched, and replaying a pass again writes the
same points again (InfluxDB keeps one point per measurement, tag set and time):
replays are idempotent. ``--shift-to-now`` moves every time stamp by the same amount
so that the pass starts now, for training sessions that must look live.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

import aiomqtt

from control_center.archive.recorder import KIND_PACKETS, find_pass, iter_pass_records, pass_info
from control_center.config import Config
from control_center.errors import IslsError
from control_center.telemetry.tmdb_yaml import load_tmdbs
from control_center.terminal import Progress, utc_text
from drivers.mqtt import RAW_QOS, replay_properties, replay_topic, with_broker

log = logging.getLogger("isls.replay")
WINDOW = 64
BUNDLE_OCTETS = 256 * 1024


def _bundling_is_exact(config: Config, spacecraft: str) -> bool:
    """Records that are due together may travel in one message, which costs the
    broker and the ingest far less than many small ones. A message has one
    earth-receive time, so this is exact only when every packet type of the spacecraft
    carries its own onboard time."""
    for settings in config.spacecraft:
        if settings.name == spacecraft:
            try:
                tmdb = load_tmdbs([settings.tmdb])[0]
            except IslsError:
                return False
            return all(p.time == "cuc" for p in tmdb.packets)
    return False


def parse_time(text: str, start_ns: int) -> int:
    """``+SECONDS`` from the pass start, or an ISO 8601 UTC time."""
    if text.startswith("+"):
        try:
            return start_ns + int(float(text[1:]) * 1e9)
        except ValueError:
            raise IslsError(f"{text!r}: expected +SECONDS or an ISO 8601 time") from None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise IslsError(f"{text!r}: expected +SECONDS or an ISO 8601 time such as "
                        f"2026-11-25T12:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1e9)


@dataclass(slots=True)
class ReplayStats:
    records: int = 0
    octets: int = 0
    seconds: float = 0.0
    pass_seconds: float = 0.0

    @property
    def speedup(self) -> float:
        return self.pass_seconds / self.seconds if self.seconds > 0 else 0.0


async def replay_pass(config: Config, pass_id: str, *, speed: float | None = None,
                      start: str | None = None, end: str | None = None,
                      shift_to_now: bool = False, out: TextIO = sys.stderr,
                      show_progress: bool = True) -> ReplayStats:
    """Publish a recorded pass for the ingest; ``speed=None`` means as fast as possible."""
    root = config.archive_dir
    info = pass_info(root, pass_id)
    directory = find_pass(root, pass_id)
    start_ns = parse_time(start, info.start_ns) if start else info.start_ns
    end_ns = parse_time(end, info.start_ns) if end else info.end_ns
    if end_ns < start_ns:
        raise IslsError(f"--to {end} is before --from {start}")
    if start_ns > info.end_ns or end_ns < info.start_ns:
        # Nothing to replay is a mistake in the window, not a replay of 0 records.
        length = (info.end_ns - info.start_ns) / 1e9
        raise IslsError(f"--from {start or '+0'} --to {end or 'the end'}: the window is "
                        f"outside pass {pass_id}, which runs {utc_text(info.start_ns)} to "
                        f"{utc_text(info.end_ns)} UTC ({length:.0f} s: --from +0 to "
                        f"+{length:.0f})")
    shift_ns = time.time_ns() - start_ns if shift_to_now else 0
    stats = ReplayStats(pass_seconds=max(0.0, (min(end_ns, info.end_ns)
                                              - max(start_ns, info.start_ns)) / 1e9))
    progress = Progress(info.octets, f"replay {pass_id}", out) if show_progress else None
    topic = replay_topic(info.spacecraft)
    bundle_limit = BUNDLE_OCTETS if _bundling_is_exact(config, info.spacecraft) else 0
    began = time.monotonic()
    first_ert: int | None = None
    # Up to WINDOW publishes await their PUBACK at once: one at a time, the round trip
    # per QoS 1 message, not the broker, would set the replay speed.
    in_flight: set[asyncio.Future[None]] = set()
    bundle: list[bytes] = []
    bundle_octets = 0
    bundle_head: tuple[int, str] = (0, "")

    async def send(client: aiomqtt.Client) -> None:
        nonlocal bundle, bundle_octets, in_flight
        if not bundle:
            return
        if len(in_flight) >= WINDOW:
            done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # a failed publish stops the replay with its error
        ert, link = bundle_head
        in_flight.add(asyncio.ensure_future(client.publish(
            topic, b"".join(bundle), qos=RAW_QOS,
            properties=replay_properties(ert + shift_ns, link, pass_id, shift_ns))))
        bundle, bundle_octets = [], 0

    async def session(client: aiomqtt.Client) -> None:
        nonlocal first_ert, bundle_head, bundle_octets
        try:
            for record in iter_pass_records(directory, kinds=frozenset({KIND_PACKETS})):
                if not start_ns <= record.ert_ns <= end_ns:
                    continue
                if first_ert is None:
                    first_ert = record.ert_ns
                if speed is not None:
                    # Keep the recorded spacing between records, compressed by the speed.
                    due = began + (record.ert_ns - first_ert) / 1e9 / speed
                    delay = due - time.monotonic()
                    if delay > 0:
                        await send(client)
                        await asyncio.sleep(delay)
                if bundle and (record.link != bundle_head[1]
                               or bundle_octets + len(record.payload) > bundle_limit):
                    await send(client)
                if not bundle:
                    bundle_head = (record.ert_ns, record.link)
                bundle.append(record.payload)
                bundle_octets += len(record.payload)
                stats.records += 1
                stats.octets += len(record.payload)
                if progress is not None:
                    progress.update(stats.octets, f"{stats.records} records")
            await send(client)
            for task in asyncio.as_completed(in_flight):
                await task
        finally:
            for task in in_flight:  # after a failure: the rest cannot succeed either
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)

    # A replay is one shot: a broker that cannot be reached, refuses the account or is
    # lost half-way is an error that names it.
    try:
        await with_broker(config.mqtt, f"isls-replay-{pass_id}", session, retry=False)
    except BaseException:
        if progress is not None:
            progress.finish()  # the error goes on a line of its own
        raise
    if progress is not None:
        progress.update(info.octets, f"{stats.records} records")
        progress.finish()
    stats.seconds = time.monotonic() - began
    return stats
