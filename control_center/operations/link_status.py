"""``isls link status``: every serial link's state, live, from ``isls/<spacecraft>/link``.

The ingest that owns a link publishes its statistics once a second, retained, so this
command shows the last known state at once and then follows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

import aiomqtt

from control_center.config import MqttSettings
from control_center.terminal import LiveText
from drivers.mqtt import TOPIC_ROOT, with_broker

COLUMNS = ("link", "spacecraft", "state", "frames good", "bad", "gaps", "sync losses",
           "bit rate", "last frame")


def _state(figures: dict[str, Any]) -> str:
    if not figures.get("connected"):
        return "NO DEVICE"
    return "LOCKED" if figures.get("locked") else "SEARCHING"


def _last_frame(figures: dict[str, Any]) -> str:
    last = figures.get("last_frame_ns")
    if not isinstance(last, int):
        return "never"
    stamp = datetime.fromtimestamp(last / 1e9, UTC).strftime("%H:%M:%S")
    return f"{stamp} ({max(0.0, time.time() - last / 1e9):.1f} s ago)"


def render(links: dict[tuple[str, str], dict[str, Any]]) -> str:
    rows = [COLUMNS]
    for (_, _), figures in sorted(links.items()):
        rows.append((
            str(figures.get("link")), str(figures.get("spacecraft")), _state(figures),
            str(figures.get("frames_good", 0)), str(figures.get("frames_bad", 0)),
            str(figures.get("frames_gap", 0)), str(figures.get("sync_losses", 0)),
            f"{float(figures.get('bit_rate', 0.0)) / 1000:.1f} kbit/s", _last_frame(figures),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths,
                                                                        strict=True)).rstrip()
                     for row in rows)


async def link_status(mqtt: MqttSettings, *, once: bool, wait: float = 3.0,
                      out: TextIO = sys.stdout) -> int:
    links: dict[tuple[str, str], dict[str, Any]] = {}
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
                    figures = json.loads(message.payload if isinstance(message.payload, bytes)
                                         else b"{}")
                    links[(str(figures["spacecraft"]), str(figures["link"]))] = figures
                except (ValueError, KeyError, TypeError):
                    pass
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
