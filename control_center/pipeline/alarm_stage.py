"""The alarm stage: limit and state monitoring of the decoded telemetry, and the
operators' alarm commands.

It takes the decode stage's batches off its queue, in order, and passes them to the
:class:`Monitor` (limits, persistence, mode changes); five times a second, while the
links run, it lets the monitor look at the clock (stale packets, contact loss) and
applies the operators' acknowledge and shelve commands (sources.py takes them off the
broker). Every alarm change and event goes to InfluxDB (``alarms``, ``events``) and to
the broker (``isls/<spacecraft>/alarms``, ``.../events``, and the active alarms,
retained, on ``.../alarms/active``); the alarm state is saved to disk with each change.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, replace
from typing import Any

from control_center.config import Config
from control_center.monitoring.alarms import AlarmChange
from control_center.monitoring.monitor import Event, Monitor, alarm_json, event_json
from control_center.pipeline.publisher import Outgoing, Publisher
from control_center.storage.contract import alarm_line, event_line
from control_center.storage.writer import InfluxWriter
from control_center.telemetry.decoder import IngestStats
from control_center.telemetry.records import DecodedBatch
from control_center.telemetry.tmdb import Tmdb
from drivers.mqtt import active_alarms_topic, alarms_topic, events_topic

# Seconds between looks at the clock (and at the operators' commands).
TICK = 0.2
# Operator commands waiting for the next tick, at most.
COMMANDS_MAX = 1000
# Decoded batches waiting for the monitor: it keeps up with the decoder, which waits
# for it beyond this.
BATCHES_MAX = 16


def monitor_from_config(config: Config, tmdbs: list[Tmdb]) -> Monitor | None:
    """The shipped monitor: every TMDB's limits, the alarm state kept in the state
    directory; none when alarms are disabled."""
    if not config.alarms.enabled:
        return None
    return Monitor(tmdbs, stale_periods=config.alarms.stale_periods,
                   contact_silence=config.archive.silence,
                   state_path=config.state_dir / "alarms.json")


class AlarmStage:
    """Runs the monitor over the decoded batches and the clock, and applies commands."""

    def __init__(self, monitor: Monitor, publisher: Publisher, stats: IngestStats) -> None:
        self.monitor = monitor
        self.publisher = publisher
        self.stats = stats
        self.batches: asyncio.Queue[DecodedBatch | None] = asyncio.Queue(BATCHES_MAX)
        self.commands: asyncio.Queue[dict[str, Any]] = asyncio.Queue(COMMANDS_MAX)

    async def run(self, writer: InfluxWriter, stop_ticking: asyncio.Event) -> None:
        """Until ``None`` comes off the batch queue (the decoder has finished); the
        clock and the commands only until ``stop_ticking`` is set (the links stop)."""
        next_tick = time.monotonic()
        while True:
            if not stop_ticking.is_set() and time.monotonic() >= next_tick:
                await self._tick(writer)
                next_tick = time.monotonic() + TICK
            wait = TICK if stop_ticking.is_set() else max(0.0, next_tick - time.monotonic())
            try:
                batch = await asyncio.wait_for(self.batches.get(), wait)
            except TimeoutError:
                continue
            if batch is None:
                return
            await self.emit(writer, *self.monitor.on_batch(batch, time.time_ns()))

    async def _tick(self, writer: InfluxWriter) -> None:
        await self.emit(writer, *self.monitor.tick(time.time_ns()))
        while not self.commands.empty():
            await self.emit(writer, *self.apply(self.commands.get_nowait()))

    async def emit(self, writer: InfluxWriter, changes: list[AlarmChange],
                   events: list[Event]) -> None:
        """Alarm changes and events: to InfluxDB, to MQTT, and the alarm state to disk."""
        if not changes and not events:
            return
        lines: list[str] = []
        # Changes at the same instant (acknowledged, then cleared) stay distinct points.
        for offset, change in enumerate(changes):
            lines.append(alarm_line(replace(change, time_ns=change.time_ns + offset)))
            self.publisher.offer(Outgoing(alarms_topic(change.spacecraft), alarm_json(change),
                                          qos=1))
        for offset, event in enumerate(events):
            lines.append(event_line(replace(event, time_ns=event.time_ns + offset)))
            self.publisher.offer(Outgoing(events_topic(event.spacecraft), event_json(event),
                                          qos=1))
        await writer.write("".join(lines).encode(), len(lines), 0)
        if changes:
            for spacecraft in {c.spacecraft for c in changes}:
                active = [asdict(a) for a in self.monitor.alarms.active()
                          if a.spacecraft == spacecraft]
                self.publisher.offer(Outgoing(active_alarms_topic(spacecraft),
                                              json.dumps(active).encode(), qos=1, retain=True))
            self.monitor.save()
        self.stats.alarm_changes += len(changes)
        self.stats.events += len(events)

    def local_id(self, command: dict[str, Any]) -> str:
        """The id here of the alarm a command names. ``isls alarms`` sends the alarm's key
        and raise time with its id (``raised``): a command given at another control
        center names the alarm by that center's id, which may be another alarm's here,
        so the key and raise time decide, when they are given; none matching, the
        command is for no alarm here (an empty id)."""
        raised = command.get("raised")
        if not isinstance(raised, dict):
            return str(command.get("alarm_id", ""))
        try:
            key = (str(raised["spacecraft"]), str(raised["kind"]), str(raised["subject"]))
            found = self.monitor.alarms.same_alarm(key, int(raised["raised_ns"]))
        except (KeyError, TypeError, ValueError):
            found = None
        return found if found is not None else ""

    def apply(self, command: dict[str, Any]) -> tuple[list[AlarmChange], list[Event]]:
        """An operator's acknowledge or shelve; an event records who did what."""
        alarm_id, by = self.local_id(command), str(command.get("by", ""))
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
