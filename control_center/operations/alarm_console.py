"""``isls alarms``: the operator's view of the alarms, and acknowledging or shelving one.

The ingest that monitors a spacecraft publishes every alarm change on
``isls/<spacecraft>/alarms`` and the list of active alarms, retained, on
``isls/<spacecraft>/alarms/active``. Operator commands travel on ``isls/alarms/command``;
the ingest holding the alarm applies them and publishes the resulting change, which
is how this command knows it worked.

Every operator tool meets the broker through :func:`with_broker`: a broker that cannot
be reached, or that refuses the account, is one line naming the broker and the reason,
never a traceback; the live views retry until Ctrl-C, the one-shot commands stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator
from typing import Any, TextIO

import aiomqtt

from control_center.config import MqttSettings
from control_center.errors import IslsError
from control_center.terminal import LiveText, utc_text
from drivers.mqtt import ALARM_COMMAND_TOPIC, TOPIC_ROOT, active_alarms_topic, with_broker
from drivers.paho_adapter import account_name, publish_refusals


async def publish_confirmed(client: aiomqtt.Client, topic: str, payload: bytes) -> None:
    """Publish at QoS 1 and fail on a refusing PUBACK.

    The broker answers a publish the account may not make (its ACL) with PUBACK reason
    code 0x87 "not authorized" (MQTT 5 §3.4.2.1) and drops the message; aiomqtt 2.5
    returns from ``publish`` as if it had been accepted, but paho, underneath, passes
    the reason code on (:func:`drivers.paho_adapter.publish_refusals`)."""
    with publish_refusals(client) as refused:
        await client.publish(topic, payload, qos=1)
    if refused:
        reason = str(refused[0].getName()).lower()
        account = account_name(client)
        who = f"account {account!r}" if account is not None else "this account"
        raise IslsError(f"the broker refused the command on {topic}: {reason} ({who} may "
                        f"not publish there; operators use the isls-operator account)")


def render(alarms: list[dict[str, Any]]) -> str:
    if not alarms:
        return "no active alarms"
    rows = [("alarm", "severity", "state", "value", "raised (UTC)", "ack", "shelved")]
    for alarm in alarms:
        state = "returned" if alarm.get("returned") else "active"
        shelved = utc_text(alarm.get("shelved_until_ns") or None, date=False)
        value = alarm.get("value")
        rows.append((str(alarm.get("alarm_id")), str(alarm.get("severity", "")).upper(), state,
                     f"{value:.3f}" if isinstance(value, float) else "",
                     utc_text(alarm.get("raised_ns"), date=False),
                     f"yes ({alarm.get('by')})" if alarm.get("acknowledged") else "NO",
                     f"until {shelved}" if shelved else ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


async def list_alarms(mqtt: MqttSettings, *, once: bool, wait: float = 2.0,
                      out: TextIO = sys.stdout) -> int:
    by_spacecraft: dict[str, list[dict[str, Any]]] = {}
    view = LiveText(out)

    async def session(client: aiomqtt.Client) -> int:
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

    return await with_broker(mqtt, "isls-alarms", session, retry=not once)


async def raise_of(client: aiomqtt.Client, messages: AsyncIterator[aiomqtt.Message],
                   alarm_id: str, wait: float = 1.0) -> dict[str, Any] | None:
    """The key and raise time of the listed alarm ``alarm_id``, from its spacecraft's
    retained active list here; None if it is not listed (within ``wait`` seconds).

    A command travels to every control center (docs/network.md), and each numbers its
    alarms itself: the key and raise time let the other centers find the same alarm
    (:meth:`AlarmStage.local_id <control_center.pipeline.alarm_stage.AlarmStage.local_id>`)."""
    spacecraft = alarm_id.split(".", 1)[0]
    if not spacecraft or any(c in spacecraft for c in "+#/"):
        return None  # not an id of ours; the ingest ignores it
    await client.subscribe(active_alarms_topic(spacecraft), qos=1)
    try:
        async with asyncio.timeout(wait):
            async for message in messages:
                payload = message.payload if isinstance(message.payload, bytes) else b"[]"
                with contextlib.suppress(ValueError, TypeError):
                    for alarm in json.loads(payload):
                        if isinstance(alarm, dict) and alarm.get("alarm_id") == alarm_id:
                            return {name: alarm.get(name) for name in
                                    ("spacecraft", "kind", "subject", "raised_ns")}
                return None  # the list came, without this alarm
    except TimeoutError:
        pass
    finally:
        await client.unsubscribe(active_alarms_topic(spacecraft))
    return None


async def command_alarm(mqtt: MqttSettings, action: str, alarm_id: str, by: str, note: str,
                        minutes: float = 0.0, timeout: float = 10.0,
                        out: TextIO = sys.stdout) -> int:
    if not by:
        raise IslsError("--by NAME is required: the log records who acted")
    command = {"action": action, "alarm_id": alarm_id, "by": by, "note": note,
               "minutes": minutes}
    expected = {"ack": ("acknowledged",), "shelve": ("shelved",)}[action]

    async def session(client: aiomqtt.Client) -> int:
        messages = aiter(client.messages)
        raised = await raise_of(client, messages, alarm_id)
        await client.subscribe(f"{TOPIC_ROOT}/+/alarms", qos=1)
        if raised is not None:
            command["raised"] = raised
        await publish_confirmed(client, ALARM_COMMAND_TOPIC, json.dumps(command).encode())
        try:
            async with asyncio.timeout(timeout):
                async for message in messages:
                    if not message.topic.matches(f"{TOPIC_ROOT}/+/alarms"):
                        continue
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

    return await with_broker(mqtt, "isls-alarm-command", session, retry=False)
