"""The alarm state machine: limit and stale alarms, acknowledgement and shelving.

Pure and synchronous: every call returns the list of ``AlarmChange`` records to publish
and store, in order (empty when nothing changed). There is at most one live alarm per
(spacecraft, kind, subject); its ``alarm_id`` is ``"{spacecraft}.{subject}.{n}"`` for a
limit alarm and ``"{spacecraft}.{subject}.stale.{n}"`` for a stale alarm, ``n`` counting
the alarms raised for that key (1, 2, ...).

==========================  =================================  ==========================
State                       Event                              Result
==========================  =================================  ==========================
no alarm                    level OK / not stale               nothing
no alarm                    non-OK level / stale               ``raised`` (unacknowledged)
listed, out of limits       same level again / stale again     nothing (no spam)
listed, out of limits       more severe level (yellow->red)    ``escalated``, ack reset
listed, out of limits       other side, same severity          ``escalated``, ack reset
listed, out of limits       less severe level (red->yellow)    ``deescalated``, ack kept
out of limits, acked        level OK / not stale               ``cleared`` (removed)
out of limits, unacked      level OK / not stale               ``returned`` (still listed,
                                                               returned=True, severity
                                                               "none")
out of limits, unacked      acknowledge                        ``acknowledged``
out of limits, acked        acknowledge                        nothing
returned (unacked)          acknowledge                        ``acknowledged`` then
                                                               ``cleared`` (removed)
returned (unacked)          non-OK level / stale               ``raised`` again, same
                                                               alarm_id, returned=False
returned (unacked)          level OK / not stale               nothing
listed                      shelve(until)                      ``shelved``
shelved                     tick(now >= until)                 ``unshelved``
any                         unknown alarm_id                   ``KeyError``
==========================  =================================  ==========================

Shelving belongs to the alarm's key (spacecraft, kind, subject) until ``until_ns``:
while shelved, level changes still update the alarm and are emitted with
``shelved_until_ns`` set (displays hide them), and an alarm raised again for the same
key during the shelving period is born shelved. ``tick(now)`` ends expired shelvings
(``unshelved`` for a listed alarm, silently otherwise).

Stale alarms (``on_stale``) have severity ``"yellow"``, level 0 and value ``None``; the
subject is the packet name. ``to_json``/``from_json`` keep the whole state (listed
alarms, counters, shelvings) across a restart.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from control_center.monitoring.limits import OK, level_name, severity, severity_rank

Key = tuple[str, str, str]  # spacecraft, kind, subject

_SEVERITY_ORDER = {"red": 0, "yellow": 1, "none": 2}
_SEVERITY_RANK = {"none": 0, "yellow": 1, "red": 2}
JSON_VERSION = 1


@dataclass(frozen=True, slots=True)
class AlarmChange:
    """What is published and stored on every change of an alarm."""

    alarm_id: str
    spacecraft: str
    subject: str  # parameter name (limit alarms) or packet name (stale alarms)
    kind: str  # "limit" | "stale"
    transition: str  # raised escalated deescalated returned cleared acknowledged shelved
    # unshelved
    severity: str  # current: "yellow" | "red" | "none"
    level: int  # limits level code (0 for stale)
    value: float | None
    time_ns: int
    acknowledged: bool
    shelved_until_ns: int | None
    by: str = ""  # operator, for acknowledged / shelved
    note: str = ""
    message: str = ""  # human one-liner


@dataclass(slots=True)
class Alarm:
    """The live record of a listed alarm."""

    alarm_id: str
    spacecraft: str
    subject: str
    kind: str
    severity: str
    level: int
    value: float | None
    raised_ns: int
    updated_ns: int
    acknowledged: bool = False
    returned: bool = False  # back in limits but not acknowledged yet
    shelved_until_ns: int | None = None
    by: str = ""
    note: str = ""

    @property
    def key(self) -> Key:
        return (self.spacecraft, self.kind, self.subject)


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return str(x)
    s = f"{x:.6g}"
    return s if any(c in s for c in ".e") else s + ".0"


class AlarmManager:
    """Every listed alarm of the control center (see the module docstring)."""

    def __init__(self) -> None:
        self._alarms: dict[Key, Alarm] = {}
        self._by_id: dict[str, Key] = {}
        self._counters: dict[Key, int] = {}
        self._shelves: dict[Key, int] = {}  # key -> shelved until (ns)

    # ----------------------------------------------------------------- helpers

    def _change(self, alarm: Alarm, transition: str, time_ns: int, *, by: str = "",
                note: str = "", message: str = "") -> AlarmChange:
        return AlarmChange(
            alarm_id=alarm.alarm_id, spacecraft=alarm.spacecraft, subject=alarm.subject,
            kind=alarm.kind, transition=transition, severity=alarm.severity,
            level=alarm.level, value=alarm.value, time_ns=time_ns,
            acknowledged=alarm.acknowledged, shelved_until_ns=alarm.shelved_until_ns,
            by=by, note=note, message=message,
        )

    @staticmethod
    def _describe(alarm: Alarm, limit: float | None) -> str:
        head = f"{alarm.spacecraft} {alarm.subject}"
        if alarm.kind == "stale":
            return f"{head} packet STALE" if not alarm.returned else f"{head} packet fresh"
        value = "" if alarm.value is None else f" {_fmt(alarm.value)}"
        if alarm.returned or alarm.level == OK:
            return f"{head} back in limits{value}"
        tail = "" if limit is None else f" (limit {_fmt(limit)})"
        return f"{head} {level_name(alarm.level)}{value}{tail}"

    def _remove(self, alarm: Alarm) -> None:
        del self._alarms[alarm.key]
        del self._by_id[alarm.alarm_id]

    def _update(self, key: Key, spacecraft: str, subject: str, kind: str, level: int,
                sev: str, out: bool, value: float | None, time_ns: int,
                limit: float | None) -> list[AlarmChange]:
        """The common state machine of limit and stale alarms."""
        alarm = self._alarms.get(key)
        if alarm is None:
            if not out:
                return []
            n = self._counters.get(key, 0) + 1
            self._counters[key] = n
            suffix = f".stale.{n}" if kind == "stale" else f".{n}"
            alarm = Alarm(alarm_id=f"{spacecraft}.{subject}{suffix}", spacecraft=spacecraft,
                          subject=subject, kind=kind, severity=sev, level=level, value=value,
                          raised_ns=time_ns, updated_ns=time_ns,
                          shelved_until_ns=self._shelves.get(key))
            self._alarms[key] = alarm
            self._by_id[alarm.alarm_id] = key
            return [self._change(alarm, "raised", time_ns,
                                 message=self._describe(alarm, limit))]
        if alarm.returned:
            if not out:
                return []
            alarm.returned, alarm.acknowledged = False, False
            transition = "raised"
        elif not out:
            if alarm.acknowledged:
                transition = "cleared"
                self._remove(alarm)
            else:
                alarm.returned = True
                transition = "returned"
            sev, level = "none", OK
        elif level == alarm.level and sev == alarm.severity:
            return []
        elif _SEVERITY_RANK[sev] < _SEVERITY_RANK[alarm.severity]:
            transition = "deescalated"
        else:  # more severe, or the other side at the same severity
            transition = "escalated"
            alarm.acknowledged = False
        alarm.severity, alarm.level, alarm.value, alarm.updated_ns = sev, level, value, time_ns
        return [self._change(alarm, transition, time_ns, message=self._describe(alarm, limit))]

    def _get(self, alarm_id: str) -> Alarm:
        return self._alarms[self._by_id[alarm_id]]  # KeyError for an unknown id

    # ----------------------------------------------------------------- events

    def on_level(self, spacecraft: str, parameter: str, level: int, value: float,
                 time_ns: int, limit: float | None = None) -> list[AlarmChange]:
        """A parameter's checked level (``control_center.monitoring.limits`` code); ``limit`` is the
        limit it is beyond, for the message."""
        sev = severity(level)
        return self._update((spacecraft, "limit", parameter), spacecraft, parameter, "limit",
                            level, sev, level != OK, float(value), time_ns, limit)

    def on_stale(self, spacecraft: str, packet: str, stale: bool,
                 time_ns: int) -> list[AlarmChange]:
        """A packet went stale (``True``) or is fresh again (``False``)."""
        return self._update((spacecraft, "stale", packet), spacecraft, packet, "stale", OK,
                            "yellow", stale, None, time_ns, None)

    def acknowledge(self, alarm_id: str, by: str, note: str,
                    time_ns: int) -> list[AlarmChange]:
        """An operator saw the alarm. A returned alarm is then cleared (both emitted)."""
        alarm = self._get(alarm_id)
        if alarm.acknowledged:
            return []
        alarm.acknowledged, alarm.by, alarm.note, alarm.updated_ns = True, by, note, time_ns
        head = f"{alarm.spacecraft} {alarm.subject}"
        changes = [self._change(alarm, "acknowledged", time_ns, by=by, note=note,
                                message=f"{head} acknowledged by {by}"
                                        + (f": {note}" if note else ""))]
        if alarm.returned:
            self._remove(alarm)
            changes.append(self._change(alarm, "cleared", time_ns,
                                        message=self._describe(alarm, None)))
        return changes

    def shelve(self, alarm_id: str, until_ns: int, by: str, note: str,
               time_ns: int) -> list[AlarmChange]:
        """Hide the alarm (and alarms raised again for its subject) until ``until_ns``."""
        alarm = self._get(alarm_id)
        if until_ns <= time_ns:
            raise ValueError(f"shelve until {until_ns} is not after {time_ns}")
        self._shelves[alarm.key] = until_ns
        alarm.shelved_until_ns, alarm.by, alarm.note, alarm.updated_ns = \
            until_ns, by, note, time_ns
        head = f"{alarm.spacecraft} {alarm.subject}"
        return [self._change(alarm, "shelved", time_ns, by=by, note=note,
                             message=f"{head} shelved by {by}"
                                     + (f": {note}" if note else ""))]

    def tick(self, now_ns: int) -> list[AlarmChange]:
        """End the shelvings that expired at or before ``now_ns``."""
        changes: list[AlarmChange] = []
        for key, until in sorted(self._shelves.items(), key=lambda kv: (kv[1], kv[0])):
            if until > now_ns:
                continue
            del self._shelves[key]
            alarm = self._alarms.get(key)
            if alarm is not None:
                alarm.shelved_until_ns, alarm.updated_ns = None, now_ns
                changes.append(self._change(alarm, "unshelved", now_ns,
                                            message=f"{alarm.spacecraft} {alarm.subject}"
                                                    " unshelved"))
        return changes

    # ----------------------------------------------------------------- queries

    def get(self, alarm_id: str) -> Alarm:
        """The listed alarm ``alarm_id`` (``KeyError`` if not listed)."""
        return self._get(alarm_id)

    def same_alarm(self, key: Key, raised_ns: int) -> str | None:
        """The id of the listed alarm of ``key`` raised at ``raised_ns``, if any.

        Another control center numbers its alarms itself (``n`` counts what that center
        has seen), so its id for an alarm may name another alarm here, or none; the key
        and the time of the sample that raised it (the packet's own time) are the same
        at every center that decoded the same packets. Stale alarms are raised by each
        center's own clock and are matched by id only."""
        alarm = self._alarms.get(key)
        return alarm.alarm_id if alarm is not None and alarm.raised_ns == raised_ns else None

    def active(self) -> list[Alarm]:
        """Every listed alarm (out of limits, or returned but unacknowledged): red first,
        then yellow, then returned, each oldest first."""
        return sorted(self._alarms.values(),
                      key=lambda a: (_SEVERITY_ORDER[a.severity], a.raised_ns, a.alarm_id))

    # ----------------------------------------------------------------- persistence

    def to_json(self) -> dict[str, Any]:
        """The whole state as JSON-compatible data."""
        return {
            "version": JSON_VERSION,
            "alarms": [asdict(a) for a in self.active()],
            "counters": [[*key, n] for key, n in sorted(self._counters.items())],
            "shelves": [[*key, until] for key, until in sorted(self._shelves.items())],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AlarmManager:
        """The manager saved by ``to_json`` (``ValueError`` on an unknown version)."""
        if data.get("version") != JSON_VERSION:
            raise ValueError(f"unsupported alarm state version {data.get('version')!r}")
        manager = cls()
        for row in data["alarms"]:
            alarm = Alarm(**row)
            if alarm.severity not in _SEVERITY_ORDER:
                raise ValueError(f"bad severity in {row!r}")
            severity_rank(alarm.level)  # validates the level code
            manager._alarms[alarm.key] = alarm
            manager._by_id[alarm.alarm_id] = alarm.key
        for sc, kind, subject, n in data["counters"]:
            manager._counters[(sc, kind, subject)] = int(n)
        for sc, kind, subject, until in data["shelves"]:
            manager._shelves[(sc, kind, subject)] = int(until)
        return manager
