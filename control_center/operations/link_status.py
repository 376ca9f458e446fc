"""``isls link status``: every serial link's state, live, from ``isls/<spacecraft>/link``.

The ingest that owns a link publishes its statistics once a second, retained, so this
command shows the last known state at once and then follows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from datetime import UTC, datetime
from typing import TextIO

import aiomqtt

from control_center.config import MqttSettings
from control_center.terminal import LiveText
from drivers.link import LinkStatus
from drivers.mqtt import TOPIC_ROOT, with_broker

COLUMNS = ("link", "spacecraft", "state", "frames good", "bad", "gaps", "sync losses",
           "bit rate", "last frame")


def _state(status: LinkStatus) -> str:
    if not status.connected:
        return "NO DEVICE"
    return "LOCKED" if status.locked else "SEARCHING"


def _last_frame(status: LinkStatus) -> str:
    last = status.last_frame_ns
    if last is None:
        return "never"
    stamp = datetime.fromtimestamp(last / 1e9, UTC).strftime("%H:%M:%S")
    return f"{stamp} ({max(0.0, time.time() - last / 1e9):.1f} s ago)"


def render(links: dict[tuple[str, str], LinkStatus]) -> str:
    rows = [COLUMNS]
    for (_, _), status in sorted(links.items()):
        rows.append((
            status.link, status.spacecraft, _state(status), str(status.frames_good),
            str(status.frames_bad), str(status.frames_gap), str(status.sync_losses),
            f"{status.bit_rate / 1000:.1f} kbit/s", _last_frame(status),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths,
                                                                        strict=True)).rstrip()
                     for row in rows)


async def link_status(mqtt: MqttSettings, *, once: bool, wait: float = 3.0,
                      out: TextIO = sys.stdout) -> int:
    links: dict[tuple[str, str], LinkStatus] = {}
    view = LiveText(out)

    async def session(client: aiomqtt.Client) -> int:
        await client.subscribe(f"{TOPIC_ROOT}/+/link", qos=0)
        messages = aiter(client.messages)
        deadline = time.monotonic() + wait
        next_draw = time.monotonic() + (wait if once else 1.0)
        while True:
            timeout = max(0.0, next_draw - time.monotonic())
            with contextlib.suppress(TimeoutError):
                message = await asyncio.wait_for(anext(messages), timeout)
                try:
                    status = LinkStatus.from_json(message.payload if isinstance(
                        message.payload, bytes) else b"{}")
                    links[(status.spacecraft, status.link)] = status
                except (ValueError, KeyError, TypeError):
                    pass  # not a link status: another publisher's, or a garbled one
                if once and links and time.monotonic() < deadline:
                    # Retained states arrive together; give the rest a moment.
                    next_draw = min(next_draw, time.monotonic() + 0.3)
                continue
            text = render(links) if links else "no serial links are reporting"
            if once:
                out.write(text + "\n")
                return 0 if links else 1
            view.show(text)
            next_draw = time.monotonic() + 1.0

    # The live view rides out a broker restart; --once says what is wrong and stops.
    return await with_broker(mqtt, "isls-link-status", session, retry=not once)
