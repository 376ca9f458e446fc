"""The ingest service: raw telemetry from MQTT, decoded with numpy, stored in InfluxDB.

Stages, each a task in a module of its own, joined by bounded queues of the records in
control_center/telemetry/records.py::

    sources.py              decode_store.py                 alarm_stage.py
    MqttReader ───┐         DecodeStore                     AlarmStage
                  ├─intake─▶ archive, split, batch ─batch──▶ monitor (batches, clock),
    SerialIntake ─┘ queue    per APID, decode       queue    operator alarm commands
        │        (Received)   │                │  (Decoded-    │                 │
        │                     ▼                │   Batch)      ▼                 │
        │      InfluxWriter, then acknowledge  │      InfluxWriter: alarms, events
        ▼                                      ▼                                 ▼
    publisher.py: outbox ──▶ broker: raw (marked stored), tm/param, alarms, events, link
    health.py: LinkReporter (link points, isls/<sc>/link), HealthReporter (ingest points)
    quarantine.py: the poison-message policy of the reader and the decoder

The reader subscribes plainly (the broker keeps the subscription across its restarts);
with ``mqtt.shared_group`` set, several ingest processes share the load instead.
Packets from a serial link go straight to the decoder, so they are stored even when
the broker is down; they are also republished on the raw topic for other consumers,
marked ``stored`` so that no ingest stores them a second time.
Bad input (unknown APID, wrong length, bad CRC, truncated or foreign data, unknown
spacecraft) is counted by kind, logged the first time each kind is seen, and
skipped; it never stops the service.

:class:`IngestService` only wires the stages: it builds them around the collaborators
it is given, starts their tasks, stops them in order and drains what was taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from pathlib import Path

import aiomqtt

from control_center.archive.recorder import ArchiveWriter
from control_center.config import Config, LinkSettings
from control_center.monitoring.monitor import Monitor
from control_center.pipeline.alarm_stage import AlarmStage, monitor_from_config
from control_center.pipeline.decode_store import DecodeStore
from control_center.pipeline.health import (
    HealthReporter,
    LinkReporter,
    dead_letters_lost,
    stop_summary,
)
from control_center.pipeline.publisher import Publisher
from control_center.pipeline.quarantine import Quarantine
from control_center.pipeline.sources import Intake, MqttReader, SerialIntake
from control_center.storage.dead_letters import DeadLetterStore
from control_center.storage.health import WriterStats
from control_center.storage.spool import Spool
from control_center.storage.writer import InfluxWriter
from control_center.telemetry.decoder import Decoder, IngestStats
from control_center.telemetry.tmdb import Tmdb
from drivers.mqtt import finished_unless_given_up
from drivers.serial import SerialLinkSource

log = logging.getLogger("isls.ingest")


def ingest_client_id(state_dir: Path) -> str:
    """The ingest's MQTT client id: stable across restarts (the broker keeps its session
    and what it holds for it), one per state directory."""
    return "isls-ingest-" + hashlib.sha1(str(state_dir).encode()).hexdigest()[:10]


def archive_from_config(config: Config) -> ArchiveWriter | None:
    """The shipped archive of everything received, in the archive directory; none when
    the archive is disabled."""
    if not config.archive.enabled:
        return None
    return ArchiveWriter(config.archive_dir, silence=config.archive.silence,
                         max_segment_bytes=config.archive.max_segment_mb << 20)


class IngestService:
    """Runs the stages until ``stop`` is set, then drains.

    ``archive``: where live telemetry is recorded as received (None: not recorded);
    ``monitor``: limit and state monitoring, with the operators' alarm commands (None:
    no alarms). :meth:`from_config` builds the ones the configuration asks for."""

    def __init__(self, config: Config, tmdbs: list[Tmdb], *, archive: ArchiveWriter | None,
                 monitor: Monitor | None, identifier: str | None = None,
                 drain_quiet: float = 0.5, drain_limit: float = 10.0,
                 links: tuple[LinkSettings, ...] | None = None,
                 link_interval: float = 1.0) -> None:
        self.config = config
        self.archive = archive
        self.monitor = monitor
        # Stable across restarts (the broker keeps this client's session and what it
        # holds for it), distinct per state directory: one ingest per state directory.
        self.identifier = identifier or ingest_client_id(config.state_dir)
        self.spool = Spool(config.state_dir / "spool", config.influx.spool_max_mb << 20)
        self.dead_letters = DeadLetterStore(config.state_dir / "dead_letters")
        self.stats = IngestStats()
        self.decoder = Decoder(tmdbs, batch_packets=config.ingest.batch_packets,
                               batch_interval=config.ingest.batch_interval, stats=self.stats)
        self.writer: InfluxWriter | None = None  # while running
        # After a stop: whether InfluxDB took the last writes within drain_limit (if
        # not, their messages stay unacknowledged and the broker sends them again).
        self.drained: bool | None = None
        self._drain_limit = drain_limit
        # The sources' messages, each with its acknowledgement, for the decoder.
        self._queue: Intake = asyncio.Queue(config.ingest.queue_messages)
        quarantine = Quarantine(self.dead_letters, self.decoder, archive)
        self.publisher = Publisher(config.mqtt, f"{self.identifier}-publisher", self.stats)
        self.alarm_stage = AlarmStage(monitor, self.publisher, self.stats) \
            if monitor is not None else None
        self.reader = MqttReader(
            config.mqtt, self.identifier, self._queue, decoder=self.decoder, stats=self.stats,
            quarantine=quarantine, session_expiry=config.mqtt.session_expiry,
            commands=self.alarm_stage.commands if self.alarm_stage is not None else None,
            drain_quiet=drain_quiet, drain_limit=drain_limit)
        self.serial = SerialIntake(config.links if links is None else links, self._queue,
                                   self.publisher, archive)
        self.decode_store = DecodeStore(
            config.ingest, self._queue, self.decoder, stats=self.stats, quarantine=quarantine,
            archive=archive, publisher=self.publisher,
            batches=self.alarm_stage.batches if self.alarm_stage is not None else None)
        self.link_reporter = LinkReporter(self.serial.links, self.publisher, link_interval)
        self.health = HealthReporter(self.identifier, self.stats, self.decoder, self.reader,
                                     self.dead_letters, link_interval)

    @classmethod
    def from_config(cls, config: Config, tmdbs: list[Tmdb], *, identifier: str | None = None,
                    drain_quiet: float = 0.5, drain_limit: float = 10.0,
                    links: tuple[LinkSettings, ...] | None = None,
                    link_interval: float = 1.0) -> IngestService:
        """The ingest as shipped: the archive and the monitor the configuration asks for."""
        return cls(config, tmdbs, archive=archive_from_config(config),
                   monitor=monitor_from_config(config, tmdbs), identifier=identifier,
                   drain_quiet=drain_quiet, drain_limit=drain_limit, links=links,
                   link_interval=link_interval)

    @property
    def ready(self) -> asyncio.Event:
        """Set once the reader has subscribed."""
        return self.reader.ready

    @property
    def links(self) -> list[SerialLinkSource]:
        return self.serial.links

    @property
    def broker_figures(self) -> dict[str, int]:
        """The broker's own figures ($SYS), where its ACL lets the ingest read them."""
        return self.reader.broker_figures

    @property
    def unread_messages(self) -> int:
        """Messages the MQTT client holds that the reader has not taken yet."""
        return self.reader.unread_messages

    def _command(self, payload: bytes) -> None:
        """An alarm command as the reader receives it (the fuzz tests feed it directly)."""
        self.reader.command(payload)

    async def run(self, stop: asyncio.Event) -> None:
        async with InfluxWriter(self.config.influx, spool=self.spool,
                                on_stored=self.decode_store.stored) as writer:
            self.writer = writer
            if not await _database_ready(writer, stop):
                log.warning("stopped before InfluxDB at %s answered: nothing was taken from "
                            "the broker, which keeps the telemetry for the next ingest",
                            self.config.influx.url)
                return
            stop_reading = asyncio.Event()  # the MQTT sessions end (reader, publisher)
            links_stop = asyncio.Event()  # the links, their reports, the alarm clock
            health_stop = asyncio.Event()
            reader = asyncio.create_task(self.reader.run(stop_reading), name="ingest-reader")
            decoder = asyncio.create_task(self.decode_store.run(writer), name="ingest-decoder")
            publisher = asyncio.create_task(self.publisher.run(stop_reading),
                                            name="ingest-publisher")
            links = asyncio.create_task(self.serial.run(links_stop), name="ingest-links")
            link_reports = asyncio.create_task(self.link_reporter.run(writer, links_stop)) \
                if self.links else None
            alarms = asyncio.create_task(self.alarm_stage.run(writer, links_stop)) \
                if self.alarm_stage is not None else None
            health = asyncio.create_task(self.health.run(writer, health_stop))
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({stopper, reader, decoder}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            links_stop.set()
            await links
            if link_reports is not None:
                await link_reports
            await self.reader.stop_taking(reader)
            await self._queue.put(None)
            await decoder
            if alarms is not None:
                await alarms  # the monitor's verdict on the last batches
            drained = self.drained = await writer.drained(self._drain_limit)
            if not drained:
                log.warning("InfluxDB did not take the last writes within %.0f s; the "
                            "broker will send the unacknowledged telemetry again",
                            self._drain_limit)
            stop_reading.set()
            try:
                await asyncio.wait_for(reader, 5)
            except asyncio.CancelledError:
                pass
            except TimeoutError:
                log.warning("the MQTT session did not close within 5 s; left to the "
                            "broker's keepalive")
            health_stop.set()
            await health
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(publisher, 5)
        if self.archive is not None:
            self.archive.close()
        log.info("%s", self.stop_summary(writer.stats, drained))

    def dead_letters_lost(self, writer: WriterStats) -> int:
        """Quarantined messages and refused lines the dead-letter stores could not keep."""
        return dead_letters_lost(self.dead_letters, writer)

    def stop_summary(self, writer: WriterStats, drained: bool) -> str:
        """The last line: what was decoded, where it is, and what was dropped."""
        return stop_summary(self.stats, self.dead_letters, writer, drained,
                            self.spool.directory)


async def _database_ready(writer: InfluxWriter, stop: asyncio.Event) -> bool:
    """Create the database, retrying while InfluxDB is unreachable, until ``stop``: False
    if ``stop`` came first (Ctrl-C must not wait for a server that may never come)."""
    ready = asyncio.ensure_future(writer.ensure_database())
    if not await finished_unless_given_up(ready, stop, grace=0.0):
        return False
    ready.result()  # a refusal (401) is the caller's error to report
    return True


async def wait_subscribed(service: IngestService, timeout: float = 15.0) -> None:
    try:
        await asyncio.wait_for(service.ready.wait(), timeout)
    except TimeoutError:
        raise aiomqtt.MqttError("ingest did not subscribe within "
                                f"{timeout:.0f} s") from None
