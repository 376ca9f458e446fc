"""The ingest service: raw telemetry from MQTT, decoded with numpy, stored in InfluxDB.

Stages, each a task, joined by bounded queues::

    MQTT reader ──────┐
                      ├─queue─▶ decoder (split, batch per APID, decode) ──▶ InfluxWriter
    serial links ─────┘                          └──▶ publisher (tm/param, link, raw)
    (deframed)  └──▶ publisher (isls/<sc>/tm/raw, marked stored)

The reader uses a shared subscription so several ingest processes share the load.
Packets from a serial link go straight to the decoder, so they are stored even when
the broker is down; they are also republished on the raw topic for other consumers,
marked ``stored`` so that no ingest stores them a second time.
Bad input (unknown APID, wrong length, bad CRC, truncated or foreign data, unknown
spacecraft) is counted by kind, logged the first time each kind is seen, and
skipped; it never stops the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import aiomqtt
import numpy as np
import orjson

from control_center.archive.recorder import KIND_LINK_OCTETS, ArchiveWriter
from control_center.config import Config, LinkSettings
from control_center.monitoring.alarms import AlarmChange
from control_center.monitoring.monitor import Event, Monitor, alarm_json, event_json
from control_center.pipeline.health import peak_memory_mb
from control_center.storage.contract import (
    alarm_line,
    event_line,
    format_lines,
    health_line,
    link_line,
)
from control_center.storage.dead_letters import DeadLetterStore
from control_center.storage.spool import Spool
from control_center.storage.writer import InfluxWriter, WriterStats
from control_center.telemetry.decoder import Decoder, IngestStats
from control_center.telemetry.records import DecodedBatch, RawMessage
from control_center.telemetry.tmdb import Tmdb
from drivers.mqtt import (
    ALARM_COMMAND_TOPIC,
    RAW_QOS,
    GatedClient,
    ack,
    active_alarms_topic,
    alarms_topic,
    events_topic,
    link_topic,
    make_client,
    param_topic,
    raw_properties,
    raw_subscription,
    raw_topic,
    to_raw_message,
    with_reconnect,
)
from drivers.serial import PacketSink, SerialLinkSource

log = logging.getLogger("isls.ingest")

# Unacknowledged QoS 1 messages the broker may send one ingest. Messages are
# acknowledged once stored, so this is the whole pipeline's depth: 20 s of a 20 ms-message
# stream, 250 MiB at most of 256 KiB replay bundles. Beyond it the backlog waits at the
# broker.
RECEIVE_MAXIMUM = 1000
# Mosquitto's $SYS figures the ingest keeps in its health point (published every
# sys_interval, 10 s by default): messages it dropped (a full queue, max_queued_messages)
# and messages it holds.
BROKER_FIGURES = {"$SYS/broker/publish/messages/dropped": "broker_dropped",
                  "$SYS/broker/store/messages/count": "broker_stored"}
# Live output (tm/param, alarms, events) waiting for the broker, at most.
OUTBOX_MAX_BYTES = 16 << 20


def ingest_client_id(state_dir: Path) -> str:
    """The ingest's MQTT client id: stable across restarts (the broker keeps its session
    and what it holds for it), one per state directory."""
    return "isls-ingest-" + hashlib.sha1(str(state_dir).encode()).hexdigest()[:10]


def param_message(batch: DecodedBatch) -> bytes:
    """JSON for ``isls/<spacecraft>/tm/param``: the batch's engineering values by column.

    orjson writes numpy arrays in C (non-finite floats as ``null``): the stdlib encoder
    walking Python lists took 60 % of the ingest's time at 400,000 values/s (README,
    "Performance"). Float32 columns go out as float64, the values InfluxDB stores.
    """
    values: dict[str, np.ndarray[Any, Any] | list[Any]] = {}
    for name, column in batch.values.items():
        array = np.asarray(column)
        if array.dtype.kind == "f":
            array = array.astype(np.float64, copy=False)
        elif array.dtype == np.uint64:
            values[name] = array.tolist()  # exact above 2**63 (orjson writes any uint64)
            continue
        elif array.dtype.kind in "iu":
            array = array.astype(np.int64, copy=False)
        elif array.dtype.kind in "OUS":
            values[name] = [str(v) for v in array.tolist()]  # strings
            continue
        values[name] = np.ascontiguousarray(array)
    return orjson.dumps({
        "spacecraft": batch.spacecraft, "packet": batch.packet.name,
        "time_ns": np.ascontiguousarray(batch.times_ns, dtype=np.int64), "values": values,
    }, option=orjson.OPT_SERIALIZE_NUMPY)


class IngestService:
    """Runs the reader, decoder, writer and publisher until ``stop`` is set, then drains."""

    def __init__(self, config: Config, tmdbs: list[Tmdb], *, source: str = "live",
                 identifier: str | None = None, drain_quiet: float = 0.5,
                 drain_limit: float = 10.0, links: tuple[LinkSettings, ...] | None = None,
                 link_interval: float = 1.0, archive: bool = True,
                 monitor: bool = True) -> None:
        self.config = config
        self.source = source
        # Stable across restarts (the broker keeps this client's session and what it
        # holds for it), distinct per state directory: one ingest per state directory.
        self.identifier = identifier or ingest_client_id(config.state_dir)
        self.spool = Spool(config.state_dir / "spool", config.influx.spool_max_mb << 20)
        self.dead_letters = DeadLetterStore(config.state_dir / "dead_letters")
        self.broker_figures: dict[str, int] = {}
        self._seq = 0  # messages accepted so far
        self._unacked: deque[tuple[int, Callable[[], None]]] = deque()
        self.stats = IngestStats()
        self.decoder = Decoder(tmdbs, batch_packets=config.ingest.batch_packets,
                               batch_interval=config.ingest.batch_interval, stats=self.stats)
        self.writer: InfluxWriter | None = None
        self.ready = asyncio.Event()  # set once subscribed
        # Each message travels with its acknowledgement, sent when the decoder takes it.
        self._queue: asyncio.Queue[tuple[RawMessage, Callable[[], None] | None] | None] = \
            asyncio.Queue(
            config.ingest.queue_messages)
        self._outbox: asyncio.Queue[_Outgoing] = asyncio.Queue(1000)
        self._outbox_bytes = 0
        self._commands: list[dict[str, Any]] = []
        self.monitor: Monitor | None = None
        if monitor and config.alarms.enabled:
            self.monitor = Monitor(tmdbs, stale_periods=config.alarms.stale_periods,
                                   contact_silence=config.archive.silence,
                                   state_path=config.state_dir / "alarms.json")
        self.archive: ArchiveWriter | None = None
        if archive and config.archive.enabled:
            self.archive = ArchiveWriter(config.archive_dir, silence=config.archive.silence,
                                         max_segment_bytes=config.archive.max_segment_mb << 20)
        self.links = [SerialLinkSource(link, self._sink_for(link.name),
                                       octet_sink=self._octets_for(link))
                      for link in (config.links if links is None else links)]
        self._link_interval = link_interval
        self._drain_quiet = drain_quiet
        self._drain_limit = drain_limit
        self._last_message = time.monotonic()
        self._mqtt: aiomqtt.Client | None = None
        self._leave = asyncio.Event()  # leave the shared group (stop, shared only)
        self._stop_taking = asyncio.Event()  # stop reading messages (stop, plain)
        self._taking_stopped = asyncio.Event()

    @property
    def unread_messages(self) -> int:
        """Messages the MQTT client holds that the reader has not taken yet (at most
        about ``RECEIVE_MAXIMUM``: the rest of a backlog waits at the broker)."""
        return 0 if self._mqtt is None else len(self._mqtt.messages)

    async def run(self, stop: asyncio.Event) -> None:
        async with InfluxWriter(self.config.influx, spool=self.spool,
                                on_stored=self._stored) as writer:
            self.writer = writer
            await writer.ensure_database()
            stop_reading = asyncio.Event()
            reader = asyncio.create_task(
                with_reconnect("ingest", self.config.mqtt,
                               lambda: self._read_session(stop_reading), stop_reading),
                name="ingest-reader")
            decoder = asyncio.create_task(self._decode_loop(writer), name="ingest-decoder")
            publisher = asyncio.create_task(
                with_reconnect("publisher", self.config.mqtt,
                               lambda: self._publish_session(stop_reading), stop_reading),
                name="ingest-publisher")
            links_stop = asyncio.Event()
            link_tasks = [asyncio.create_task(link.run(links_stop), name=f"link-{link.state.name}")
                          for link in self.links]
            link_stats = asyncio.create_task(self._link_stats_loop(writer, links_stop)) \
                if self.links else None
            monitor_task = asyncio.create_task(self._monitor_loop(writer, links_stop)) \
                if self.monitor is not None else None
            health_stop = asyncio.Event()
            health = asyncio.create_task(self._health_loop(writer, health_stop))
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({stopper, reader, decoder}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            links_stop.set()
            await asyncio.gather(*link_tasks)
            if link_stats is not None:
                await link_stats
            if monitor_task is not None:
                await monitor_task
            if self.config.mqtt.shared_group:
                # Drain: leave the shared group (the broker sends the others what comes
                # next), keep reading until the broker has been quiet for a moment,
                # store it, acknowledge it, and only then disconnect.
                self._leave.set()
                deadline = time.monotonic() + self._drain_limit
                while time.monotonic() < deadline and not reader.done():
                    quiet = time.monotonic() - self._last_message
                    if quiet >= self._drain_quiet and self._queue.empty():
                        break
                    await asyncio.sleep(0.05)
            else:
                # A plain subscription is kept: the broker goes on queueing for this
                # persistent session while the ingest is stopped (mqtt.session_expiry).
                # Stop taking messages; what was received and not taken stays
                # unacknowledged and comes again at the next start. What was taken is
                # stored and acknowledged below, before disconnecting.
                self._stop_taking.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._taking_stopped.wait(), 5)
            await self._queue.put(None)
            await decoder
            drained = await writer.drained(self._drain_limit)
            if not drained:
                log.warning("InfluxDB did not take the last writes within %.0f s; the "
                            "broker will send the unacknowledged telemetry again",
                            self._drain_limit)
            stop_reading.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(reader, 5)
            health_stop.set()
            await health
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(publisher, 5)
        if self.archive is not None:
            self.archive.close()
        log.info("%s", self.stop_summary(writer.stats, drained))

    def dead_letters_lost(self, writer: WriterStats) -> int:
        """Quarantined messages and refused lines the dead-letter stores could not keep
        (a full store's oldest file, a disk that refused the write)."""
        return self.dead_letters.stats.dropped + self.dead_letters.stats.failures \
            + writer.dead_letters_discarded

    def stop_summary(self, writer: WriterStats, drained: bool) -> str:
        """The last line: what was decoded, where it is, and everything dropped or
        refused on the way ("none" only when nothing was)."""
        dropped: dict[str, int] = dict(self.stats.errors)
        if writer.rejected_lines:
            dropped["rejected_by_influxdb"] = writer.rejected_lines
        lost_letters = self.dead_letters_lost(writer)
        if lost_letters:
            dropped["dead_letters_lost"] = lost_letters
        # Trouble that was retried (nothing lost by it), said apart from what was dropped.
        retried = {kind: count for kind, count in writer.problems().items()
                   if kind not in ("rejected_lines", "dead_letters_discarded")}
        if not drained:
            where = "not all stored: the broker sends the unacknowledged messages again"
        elif writer.spool_lines:
            where = (f"{writer.spool_lines} lines wait in the disk spool for InfluxDB, the "
                     f"rest stored")
        else:
            where = "all stored in InfluxDB"
        shown = ", ".join(f"{kind} {count}" for kind, count in sorted(dropped.items()))
        trouble = ", ".join(f"{kind} {count}" for kind, count in sorted(retried.items()))
        return (f"ingest stopped: {sum(self.stats.packets.values())} packets decoded, {where}; "
                f"dropped or refused: {shown or 'none'}"
                + (f"; InfluxDB trouble, retried: {trouble}" if trouble else ""))

    async def _read_session(self, stop_reading: asyncio.Event) -> None:
        # No limit on aiomqtt's own queue (at its limit it would discard messages): the
        # broker sends at most RECEIVE_MAXIMUM unacknowledged ones, and this ingest
        # acknowledges only what it has stored.
        client = make_client(self.config.mqtt, self.identifier, manual_ack=True,
                             receive_maximum=RECEIVE_MAXIMUM, clean_start=False,
                             session_expiry=self.config.mqtt.session_expiry,
                             read_limit=RECEIVE_MAXIMUM)
        async with client:
            self._mqtt = client
            await client.subscribe(raw_subscription(self.config.mqtt.shared_group), qos=RAW_QOS)
            await client.subscribe(raw_subscription(self.config.mqtt.shared_group, "replay"),
                                   qos=RAW_QOS)
            if self.monitor is not None:
                # Not shared: every ingest hears every command; the one that holds the
                # alarm answers.
                await client.subscribe(ALARM_COMMAND_TOPIC, qos=1)
            for topic in BROKER_FIGURES:
                await client.subscribe(topic, qos=0)
            self.ready.set()
            log.info("ingest subscribed to %s on %s",
                     raw_subscription(self.config.mqtt.shared_group), self.config.mqtt.url)
            reading = asyncio.create_task(self._read_messages(client))
            leaving = asyncio.create_task(self._unsubscribe_on_leave(client))
            stopping = asyncio.create_task(stop_reading.wait())
            halting = asyncio.create_task(self._stop_taking.wait())
            try:
                await asyncio.wait({reading, stopping, halting},
                                   return_when=asyncio.FIRST_COMPLETED)
                if halting.done() and not reading.done():
                    # Stop taking, but stay connected until what was taken is stored
                    # and acknowledged (``stop_reading``).
                    reading.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reading
                    self._taking_stopped.set()
                    await stopping
            finally:
                stopping.cancel()
                leaving.cancel()
                halting.cancel()
                if not reading.done():
                    reading.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reading
                self._taking_stopped.set()
            if reading.done() and not reading.cancelled() and reading.exception() is not None:
                raise reading.exception()  # type: ignore[misc]

    async def _unsubscribe_on_leave(self, client: aiomqtt.Client) -> None:
        await self._leave.wait()
        await client.unsubscribe([raw_subscription(self.config.mqtt.shared_group),
                                  raw_subscription(self.config.mqtt.shared_group, "replay")])

    async def _read_messages(self, client: aiomqtt.Client) -> None:
        gate = client if isinstance(client, GatedClient) else None
        async for message in client.messages:
            if gate is not None:
                gate.taken()
            if message.topic.value.startswith("$SYS/"):
                # The broker's own figures: what it dropped and holds (README, "Operating
                # it"); readable where the ACL lets this account read $SYS.
                self._broker_figure(message.topic.value, message.payload)
                ack(client, message)
                continue
            if message.topic.matches(ALARM_COMMAND_TOPIC):
                ack(client, message)
                self._command(message.payload if isinstance(message.payload, bytes) else b"")
                continue
            raw = to_raw_message(message)
            self._last_message = time.monotonic()
            if raw is None:
                ack(client, message)
                self.decoder.count_error("foreign_topic", 1, "message on a topic "
                                          "outside isls/<spacecraft>/tm/raw")
                continue
            if raw.problem:
                self._quarantine(raw, raw.problem, archive=True)
                ack(client, message)  # it is on disk in the dead-letter store
                continue
            if raw.stored:
                ack(client, message)
                continue  # a serial link's ingest stored it already
            # Waits when the decoder is behind; unacknowledged, the broker holds the rest.
            await self._queue.put((raw, functools.partial(ack, client, message)))
            self.stats.queue_depth = self._queue.qsize()

    def _broker_figure(self, topic: str, payload: object) -> None:
        name = BROKER_FIGURES.get(topic)
        if name is None or not isinstance(payload, bytes | str):
            return
        with contextlib.suppress(ValueError):
            self.broker_figures[name] = int(payload)

    def _accept(self, message: RawMessage, acknowledge: Callable[[], None] | None) -> None:
        # Recording comes first: the archive keeps what arrived even if decoding it fails.
        try:
            # Only configured spacecraft: the name comes from the topic, and the archive
            # makes a directory of it (a topic "isls/../tm/raw" must not write above it).
            if self.archive is not None and message.source == "live" \
                    and self.decoder.knows(message.spacecraft):
                self.archive.record(message.spacecraft, message.receive_ns, message.link,
                                    message.payload)
            self.decoder.feed(message, seq=self._seq + 1)
        except Exception as exc:
            # Whatever a message holds, the service goes on: the message is kept in the
            # dead-letter store and acknowledged, and the ones behind it are stored.
            log.exception("message from %s via %s could not be taken", message.spacecraft,
                          message.link)
            self._quarantine(message, f"processing failed: {type(exc).__name__}: {exc}",
                             archive=False)
            if acknowledge is not None:
                acknowledge()
            return
        self._seq += 1
        if acknowledge is not None:
            # Acknowledged once its packets are in InfluxDB or in the spool (_stored).
            self._unacked.append((self._seq, acknowledge))

    def _quarantine(self, message: RawMessage, reason: str, *, archive: bool) -> None:
        """The poison-message policy: counted, archived as received, kept in the
        dead-letter store (to list and replay), never decoded."""
        self.decoder.count_error("poison_message", 1,
                                 f"{message.spacecraft} via {message.link}: {reason} "
                                 f"(kept in {self.dead_letters.directory})")
        if archive and self.archive is not None and message.source == "live" \
                and self.decoder.knows(message.spacecraft):
            with contextlib.suppress(Exception):
                self.archive.record(message.spacecraft, message.receive_ns, message.link,
                                    message.payload)
        self.dead_letters.put(reason, topic=message.topic or f"isls/{message.spacecraft}/tm/raw",
                              spacecraft=message.spacecraft, payload=message.payload,
                              properties=dict(message.properties))

    def _stored(self, seq: int) -> None:
        """Every message up to ``seq`` is stored or spooled: acknowledge them, in order."""
        while self._unacked and self._unacked[0][0] <= seq:
            self._unacked.popleft()[1]()

    async def _decode_loop(self, writer: InfluxWriter) -> None:
        interval = self.config.ingest.batch_interval
        tags_cache: dict[tuple[str, str, str], dict[str, str]] = {}
        finished = False
        while not finished:
            try:
                item = await asyncio.wait_for(self._queue.get(), interval)
                if item is None:
                    finished = True
                else:
                    self._accept(*item)
                    # Take what is already queued before decoding (bigger batches), up
                    # to a few batches' worth, so writes and acknowledgements keep flowing.
                    while not self._queue.empty() \
                            and self.decoder.waiting < self.decoder.max_batch:
                        more = self._queue.get_nowait()
                        if more is None:
                            finished = True
                            break
                        self._accept(*more)
            except TimeoutError:
                pass
            self.stats.queue_depth = self._queue.qsize()
            if self.archive is not None:
                self.archive.tick()
            batches = self.decoder.take(force=finished)
            for spacecraft, reason, packets in self.decoder.failed:
                self.dead_letters.put(reason, topic=f"isls/{spacecraft}/tm/raw",
                                      spacecraft=spacecraft, payload=packets)
            self.decoder.failed.clear()
            for batch in batches:
                source = self.source if batch.source == "live" else batch.source
                key = (batch.spacecraft, source, batch.pass_id)
                tags = tags_cache.get(key)
                if tags is None:
                    tags = tags_cache[key] = {"spacecraft": batch.spacecraft, "source": source}
                    if batch.pass_id:
                        tags["pass"] = batch.pass_id
                lines = format_lines(batch, tags)
                await writer.write(lines, len(batch), len(batch) * len(batch.packet.parameters))
                if self.config.ingest.publish_params and batch.source == "live":
                    self._offer_param(batch)
                if self.monitor is not None:
                    await self._emit(writer, *self.monitor.on_batch(batch, time.time_ns()))
            # Messages whose packets have all been written (none still wait in the
            # decoder) are acknowledged once those writes are stored.
            oldest = self.decoder.oldest_seq()
            writer.mark(self._seq if oldest is None else oldest - 1)

    async def _emit(self, writer: InfluxWriter, changes: list[AlarmChange],
                    events: list[Event]) -> None:
        """Alarm changes and events: to InfluxDB, to MQTT, and the alarm state to disk."""
        if not changes and not events:
            return
        lines: list[str] = []
        # Changes at the same instant (acknowledged, then cleared) stay distinct points.
        for offset, change in enumerate(changes):
            lines.append(alarm_line(replace(change, time_ns=change.time_ns + offset)))
            self._offer(_Outgoing(alarms_topic(change.spacecraft), alarm_json(change), qos=1))
        for offset, event in enumerate(events):
            lines.append(event_line(replace(event, time_ns=event.time_ns + offset)))
            self._offer(_Outgoing(events_topic(event.spacecraft), event_json(event), qos=1))
        await writer.write("".join(lines).encode(), len(lines), 0)
        if changes and self.monitor is not None:
            for spacecraft in {c.spacecraft for c in changes}:
                active = [asdict(a) for a in self.monitor.alarms.active()
                          if a.spacecraft == spacecraft]
                self._offer(_Outgoing(active_alarms_topic(spacecraft),
                                      json.dumps(active).encode(), qos=1, retain=True))
            self.monitor.save()
        self.stats.alarm_changes += len(changes)
        self.stats.events += len(events)

    async def _monitor_loop(self, writer: InfluxWriter, stop: asyncio.Event) -> None:
        assert self.monitor is not None
        while not stop.is_set():
            await self._emit(writer, *self.monitor.tick(time.time_ns()))
            if self._commands:
                commands, self._commands = self._commands, []
                for command in commands:
                    await self._emit(writer, *self._apply(command))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)

    def _command(self, payload: bytes) -> None:
        try:
            command = json.loads(payload)
            if not isinstance(command, dict):
                raise ValueError("not an object")
        except ValueError:
            self.decoder.count_error("bad_command", 1, "an alarm command that is not JSON")
            return
        self._commands.append(command)

    def _apply(self, command: dict[str, Any]) -> tuple[list[AlarmChange], list[Event]]:
        """An operator's acknowledge or shelve; an event records who did what."""
        assert self.monitor is not None
        alarm_id, by = str(command.get("alarm_id", "")), str(command.get("by", ""))
        note, action = str(command.get("note", "")), command.get("action")
        now = time.time_ns()
        try:
            if action == "ack":
                changes = self.monitor.alarms.acknowledge(alarm_id, by, note, now)
            elif action == "shelve":
                minutes = float(command.get("minutes", 0))
                changes = self.monitor.alarms.shelve(alarm_id, now + int(minutes * 60e9), by,
                                                     note, now)
            else:
                return [], []
        except (KeyError, ValueError, TypeError):
            return [], []  # another ingest may hold this alarm
        spacecraft = changes[0].spacecraft if changes else ""
        what = "acknowledged" if action == "ack" else "shelved"
        events = [Event(spacecraft, "operator", alarm_id,
                        f"{by} {what} {alarm_id}" + (f": {note}" if note else ""), now, what)]
        return changes, events

    def _offer_param(self, batch: DecodedBatch) -> None:
        self._offer(_Outgoing(param_topic(batch.spacecraft), param_message(batch)))

    def _offer(self, message: _Outgoing) -> None:
        # Publishing is best effort (storage never waits on the broker): when the
        # publisher is behind or the broker away, the oldest message goes.
        # Bounded in bytes too: at a million values/s the tm/param JSON alone is tens of
        # MB/s, and a queue of 1,000 such messages held 600 MB.
        while not self._outbox.empty() and (
                self._outbox.full()
                or self._outbox_bytes + len(message.payload) > OUTBOX_MAX_BYTES):
            dropped = self._outbox.get_nowait()
            self._outbox_bytes -= len(dropped.payload)
            self.stats.errors["publish_dropped"] += 1
        self._outbox.put_nowait(message)
        self._outbox_bytes += len(message.payload)

    def _octets_for(self, link: LinkSettings) -> Callable[[bytes, int], None] | None:
        archive = self.archive
        if archive is None:
            return None

        def record(octets: bytes, receive_ns: int) -> None:
            archive.record(link.spacecraft, receive_ns, link.name, octets, KIND_LINK_OCTETS)
        return record

    def _sink_for(self, link: str) -> PacketSink:
        async def sink(spacecraft: str, packets: bytes, receive_ns: int) -> None:
            await self._from_link(spacecraft, packets, receive_ns, link)
        return sink

    async def _from_link(self, spacecraft: str, packets: bytes, receive_ns: int,
                         name: str) -> None:
        """Packets deframed from a serial link: stored locally, and republished."""
        await self._queue.put((RawMessage(spacecraft, packets, receive_ns, name, stored=True),
                               None))
        self._offer(_Outgoing(raw_topic(spacecraft), packets, qos=RAW_QOS,
                              properties=(receive_ns, name)))

    async def _link_stats_loop(self, writer: InfluxWriter, stop: asyncio.Event) -> None:
        """Once a second: a ``link`` point per link, and its state on isls/<sc>/link."""
        while True:
            done = stop.is_set()
            lines: list[str] = []
            now_ns = time.time_ns()
            for link in self.links:
                figures = link.snapshot()
                self._offer(_Outgoing(link_topic(link.settings.spacecraft),
                                      json.dumps(figures).encode(), retain=True))
                lines.append(link_line(figures, now_ns))
            await writer.write("".join(lines).encode(), len(lines), 0)
            if done:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._link_interval)

    async def _health_loop(self, writer: InfluxWriter, stop: asyncio.Event) -> None:
        """Once a second, and once more after the drain: an ``ingest`` point about this
        ingest itself (what it took, stored, dropped and holds), so its load and its
        losses are visible in Grafana next to the telemetry it serves."""
        while True:
            done = stop.is_set()
            extra = {"dead_letters": self.dead_letters.stats.stored,
                     "dead_letters_lost": self.dead_letters_lost(writer.stats),
                     "poison_messages": self.stats.errors["poison_message"],
                     "read_pauses": self._mqtt.paused
                     if isinstance(self._mqtt, GatedClient) else 0,
                     **self.broker_figures}
            await writer.write(health_line(self.identifier, self.stats, self.decoder.waiting,
                                           self.unread_messages, writer.stats,
                                           time.time_ns(), extra,
                                           peak_memory_mb=peak_memory_mb()).encode(), 1, 0)
            if done:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._link_interval)

    async def _publish_session(self, stop_reading: asyncio.Event) -> None:
        async with make_client(self.config.mqtt, f"{self.identifier}-publisher") as client:
            while True:
                if stop_reading.is_set() and self._outbox.empty():
                    return
                try:
                    message = await asyncio.wait_for(self._outbox.get(), 0.2)
                    self._outbox_bytes -= len(message.payload)
                except TimeoutError:
                    continue
                properties = None
                if message.properties is not None:
                    properties = raw_properties(message.properties[0], message.properties[1],
                                                stored=True)
                await client.publish(message.topic, message.payload, qos=message.qos,
                                     retain=message.retain, properties=properties)


@dataclass(frozen=True, slots=True)
class _Outgoing:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: tuple[int, str] | None = None  # (earth-receive ns, link) of raw telemetry


async def wait_subscribed(service: IngestService, timeout: float = 15.0) -> None:
    try:
        await asyncio.wait_for(service.ready.wait(), timeout)
    except TimeoutError:
        raise aiomqtt.MqttError("ingest did not subscribe within "
                                f"{timeout:.0f} s") from None
