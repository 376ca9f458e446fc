"""``isls alarms``: the operator's view of the alarms, and acknowledging or shelving one.

The ingest that monitors a spacecraft publishes every alarm change on
``isls/<spacecraft>/alarms`` and the list of active alarms, retained, on
``isls/<spacecraft>/alarms/active``. Operator commands travel on ``isls/alarms/command``;
the ingest holding the alarm applies them and publishes the resulting change, which
is how this command knows it worked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

from control_center.config import MqttSettings
from control_center.errors import IslsError
from control_center.terminal import LiveText
from drivers.mqtt import ALARM_COMMAND_TOPIC, TOPIC_ROOT, make_client


def _utc(ns: object) -> str:
    if not isinstance(ns, int):
        return ""
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%H:%M:%S")


def render(alarms: list[dict[str, Any]]) -> str:
    if not alarms:
        return "no active alarms"
    rows = [("alarm", "severity", "state", "value", "raised (UTC)", "ack", "shelved")]
    for alarm in alarms:
        state = "returned" if alarm.get("returned") else "active"
        shelved = _utc(alarm.get("shelved_until_ns")) if alarm.get("shelved_until_ns") else ""
        value = alarm.get("value")
        rows.append((str(alarm.get("alarm_id")), str(alarm.get("severity", "")).upper(), state,
                     f"{value:.3f}" if isinstance(value, float) else "",
                     _utc(alarm.get("raised_ns")),
                     f"yes ({alarm.get('by')})" if alarm.get("acknowledged") else "NO",
                     f"until {shelved}" if shelved else ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


async def list_alarms(mqtt: MqttSettings, *, once: bool, wait: float = 2.0,
                      out: TextIO = sys.stdout) -> int:
    by_spacecraft: dict[str, list[dict[str, Any]]] = {}
    view = LiveText(out)
    async with make_client(mqtt, f"isls-alarms-{time.monotonic_ns()}") as client:
        await client.subscribe(f"{TOPIC_ROOT}/+/alarms/active", qos=1)
        messages = aiter(client.messages)
        next_draw = time.monotonic() + (wait if once else 0.5)
        while True:
            with contextlib.suppress(TimeoutError):
                message = await asyncio.wait_for(anext(messages),
                                                 max(0.0, next_draw - time.monotonic()))
                spacecraft = message.topic.value.split("/")[1]
                with contextlib.suppress(ValueError, TypeError):
                    payload = message.payload if isinstance(message.payload, bytes) else b"[]"
                    by_spacecraft[spacecraft] = list(json.loads(payload))
                continue
            alarms = sorted((a for v in by_spacecraft.values() for a in v),
                            key=lambda a: (a.get("severity") != "red", a.get("raised_ns", 0)))
            text = render(alarms)
            if once:
                out.write(text + "\n")
                return 0
            view.show(text)
            next_draw = time.monotonic() + 1.0


async def command_alarm(mqtt: MqttSettings, action: str, alarm_id: str, by: str, note: str,
                        minutes: float = 0.0, timeout: float = 10.0,
                        out: TextIO = sys.stdout) -> int:
    if not by:
        raise IslsError("--by NAME is required: the log records who acted")
    command = {"action": action, "alarm_id": alarm_id, "by": by, "note": note,
               "minutes": minutes}
    expected = {"ack": ("acknowledged",), "shelve": ("shelved",)}[action]
    async with make_client(mqtt, f"isls-alarm-command-{time.monotonic_ns()}") as client:
        await client.subscribe(f"{TOPIC_ROOT}/+/alarms", qos=1)
        await client.publish(ALARM_COMMAND_TOPIC, json.dumps(command).encode(), qos=1)
        try:
            async with asyncio.timeout(timeout):
                async for message in client.messages:
                    with contextlib.suppress(ValueError, TypeError):
                        change = json.loads(message.payload if isinstance(
                            message.payload, bytes) else b"{}")
                        if change.get("alarm_id") == alarm_id and \
                                change.get("transition") in expected:
                            out.write(f"{alarm_id}: {change['transition']} by {by}: "
                                      f"{change.get('message', '')}\n")
                            return 0
        except TimeoutError:
            what = "acknowledged" if action == "ack" else "shelved"
            raise IslsError(f"alarm {alarm_id!r} was not {what} within {timeout:.0f} s: "
                            f"unknown alarm id, already in that state, or no ingest "
                            f"running (see `isls alarms`)") from None
    return 1
