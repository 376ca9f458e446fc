"""Monitoring: limits, alarms, stale data and events, computed on every decoded batch.

The stage sits after the decoder in the ingest. For every parameter (and derived
parameter) with limits it runs a :class:`LimitChecker` (persistence, deadband, limit
sets chosen by mode), feeds level changes to the :class:`AlarmManager`, turns changes
of parameters marked ``event: true`` (descent phase, power mode, eclipse...) into
events, raises a stale alarm when a packet type stops arriving while its spacecraft
is in contact, and records contact loss and acquisition as events. Everything it
produces is a plain record; the ingest publishes and stores it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from control_center.monitoring.alarms import AlarmChange, AlarmManager
from control_center.monitoring.limits import LimitChecker, limit_value
from control_center.telemetry.records import DecodedBatch
from control_center.telemetry.tmdb import Monitoring, Tmdb


@dataclass(frozen=True, slots=True)
class Event:
    spacecraft: str
    kind: str  # "mode" | "alarm" | "operator" | "contact"
    subject: str
    message: str
    time_ns: int
    value: str = ""


class _Watched:
    def __init__(self, monitoring: Monitoring) -> None:
        self.monitoring = monitoring
        sets = [monitoring.limits, *(m.limits for m in monitoring.limit_sets)]
        self.checker = LimitChecker(sets, persistence=monitoring.persistence,
                                    deadband=monitoring.deadband)
        self.sets = sets


class Monitor:
    """Limits, alarms, stale packets and events for every spacecraft of the ingest."""

    def __init__(self, tmdbs: Iterable[Tmdb], *, stale_periods: float = 5.0,
                 contact_silence: float = 60.0, state_path: Path | None = None) -> None:
        self.stale_periods = stale_periods
        self.contact_silence_ns = int(contact_silence * 1e9)
        self.state_path = state_path
        self.alarms = AlarmManager()
        if state_path is not None and state_path.exists():
            try:
                self.alarms = AlarmManager.from_json(json.loads(state_path.read_text()))
            except (ValueError, KeyError, TypeError):
                self.alarms = AlarmManager()  # an unreadable state file must not stop ingest
        self._watched: dict[tuple[str, str, str], _Watched] = {}
        self._events: dict[tuple[str, str, str], tuple[Any, dict[int, str]]] = {}
        self._periods: dict[tuple[str, str], float] = {}
        for tmdb in tmdbs:
            for packet in tmdb.packets:
                if packet.period:
                    self._periods[(tmdb.spacecraft, packet.name)] = packet.period
                for parameter in packet.parameters:
                    if parameter.monitoring.checked:
                        self._watched[(tmdb.spacecraft, packet.name, parameter.name)] = \
                            _Watched(parameter.monitoring)
                    if parameter.monitoring.event:
                        self._events[(tmdb.spacecraft, packet.name, parameter.name)] = \
                            (None, dict(parameter.states))
                for derived in packet.derived:
                    if derived.monitoring.checked:
                        self._watched[(tmdb.spacecraft, packet.name, derived.name)] = \
                            _Watched(derived.monitoring)
        self._modes: dict[tuple[str, str], int] = {}  # latest raw value of each enum
        self._last_seen: dict[tuple[str, str], int] = {}  # (spacecraft, packet) -> ns
        self._stale: set[tuple[str, str]] = set()
        self._in_contact: dict[str, int] = {}  # spacecraft -> last data (receive clock)

    # ---------------------------------------------------------------- batches

    def on_batch(self, batch: DecodedBatch, now_ns: int) -> tuple[list[AlarmChange],
                                                                  list[Event]]:
        if batch.source != "live" or len(batch) == 0:
            return [], []  # replays and imports never raise live alarms
        changes: list[AlarmChange] = []
        events: list[Event] = []
        spacecraft, packet = batch.spacecraft, batch.packet.name
        if spacecraft not in self._in_contact or \
                now_ns - self._in_contact[spacecraft] > self.contact_silence_ns:
            events.append(Event(spacecraft, "contact", spacecraft,
                                f"{spacecraft} acquisition of signal", now_ns))
        self._in_contact[spacecraft] = now_ns
        self._last_seen[(spacecraft, packet)] = now_ns
        if (spacecraft, packet) in self._stale:
            self._stale.discard((spacecraft, packet))
            changes += self.alarms.on_stale(spacecraft, packet, False, now_ns)
        for parameter in batch.packet.parameters:
            if parameter.type == "enum":
                column = np.asarray(batch.values[parameter.name])
                self._modes[(spacecraft, parameter.name)] = int(column[-1])
        for name, column in batch.values.items():
            key = (spacecraft, packet, name)
            if key in self._events:
                events += self._mode_events(key, np.asarray(column), batch.times_ns)
            watched = self._watched.get(key)
            if watched is not None:
                changes += self._check(watched, spacecraft, name, np.asarray(column,
                                                                             dtype=float),
                                       batch)
        for change in changes:
            events.append(Event(spacecraft, "alarm", change.subject, change.message,
                                change.time_ns, change.transition))
        return changes, events

    def _set_index(self, watched: _Watched, spacecraft: str, batch: DecodedBatch
                   ) -> np.ndarray | None:
        if not watched.monitoring.limit_sets:
            return None
        n = len(batch)
        index = np.zeros(n, dtype=np.int64)
        for position, mode_limits in enumerate(watched.monitoring.limit_sets, start=1):
            # The mode from the same packet, sample by sample, else its latest value.
            if mode_limits.mode in batch.values:
                modes = np.asarray(batch.values[mode_limits.mode]).astype(np.int64)
            else:
                latest = self._modes.get((spacecraft, mode_limits.mode))
                if latest is None:
                    continue
                modes = np.full(n, latest, dtype=np.int64)
            index[(index == 0) & np.isin(modes, mode_limits.states)] = position
        return index

    def _check(self, watched: _Watched, spacecraft: str, name: str, values: np.ndarray,
               batch: DecodedBatch) -> list[AlarmChange]:
        set_index = self._set_index(watched, spacecraft, batch)
        before = watched.checker.state
        levels = watched.checker.check(values, set_index)
        changed = np.flatnonzero(np.diff(np.concatenate(([before], levels))) != 0)
        changes: list[AlarmChange] = []
        for i in changed:
            level = int(levels[i])
            limits = watched.sets[int(set_index[i]) if set_index is not None else 0]
            changes += self.alarms.on_level(spacecraft, name, level, float(values[i]),
                                            int(batch.times_ns[i]),
                                            limit=limit_value(limits, level))
        return changes

    def _mode_events(self, key: tuple[str, str, str], column: np.ndarray,
                     times: np.ndarray) -> list[Event]:
        previous, states = self._events[key]
        spacecraft, _, name = key
        series = np.concatenate(([previous], column)) if previous is not None else column
        offset = 1 if previous is not None else 0
        events = []
        for i in np.flatnonzero(series[1:] != series[:-1]) + 1:
            value = series[i]
            label = states.get(int(value), str(bool(value)).lower() if not states
                               else str(int(value)))
            old = states.get(int(series[i - 1]), str(series[i - 1]))
            events.append(Event(spacecraft, "mode", name,
                                f"{spacecraft} {name}: {old} -> {label}",
                                int(times[i - offset]), label))
        self._events[key] = (column[-1], states)
        return events

    # ---------------------------------------------------------------- time

    def tick(self, now_ns: int) -> tuple[list[AlarmChange], list[Event]]:
        """Stale packets, loss of contact and shelving expiries, once a second."""
        changes = self.alarms.tick(now_ns)
        events: list[Event] = []
        for spacecraft, last in list(self._in_contact.items()):
            if now_ns - last > self.contact_silence_ns:
                del self._in_contact[spacecraft]
                events.append(Event(spacecraft, "contact", spacecraft,
                                    f"{spacecraft} loss of signal", now_ns))
        for (spacecraft, packet), seen in self._last_seen.items():
            period = self._periods.get((spacecraft, packet))
            if period is None or spacecraft not in self._in_contact:
                continue
            late = now_ns - seen > self.stale_periods * period * 1e9
            if late and (spacecraft, packet) not in self._stale:
                self._stale.add((spacecraft, packet))
                changes += self.alarms.on_stale(spacecraft, packet, True, now_ns)
        for change in changes:
            events.append(Event(change.spacecraft, "alarm", change.subject, change.message,
                                change.time_ns, change.transition))
        return changes, events

    def save(self) -> None:
        if self.state_path is None:
            return
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.state_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.alarms.to_json()))
        os.replace(temporary, self.state_path)


# ------------------------------------------------------------------ output formats


def alarm_json(change: AlarmChange) -> bytes:
    return json.dumps(asdict(change), separators=(",", ":")).encode()


def event_json(event: Event) -> bytes:
    return json.dumps(asdict(event), separators=(",", ":")).encode()
