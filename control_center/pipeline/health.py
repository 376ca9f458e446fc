"""The ingest's reports on itself and its links.

- :class:`LinkReporter`: once a second while the links run, and once more as they stop,
  a ``link`` point per link in InfluxDB and its :class:`~drivers.link.LinkStatus`,
  retained, on ``isls/<spacecraft>/link`` (what ``isls link status`` shows);
- :class:`HealthReporter`: once a second, and once more after the drain, an ``ingest``
  point about this ingest itself (what it took, stored, dropped and holds, its peak
  memory), so its load and its losses are visible in Grafana next to the telemetry;
- :func:`stop_summary`: the last line the ingest logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from pathlib import Path

from control_center.pipeline.publisher import Outgoing, Publisher
from control_center.pipeline.sources import MqttReader
from control_center.storage.contract import health_line, link_line
from control_center.storage.dead_letters import DeadLetterStore
from control_center.storage.health import WriterStats
from control_center.storage.writer import InfluxWriter
from control_center.telemetry.decoder import Decoder, IngestStats
from drivers.link import LinkSource
from drivers.mqtt import LINK_STATUS_EXPIRY, link_topic


def peak_memory_mb(pid: int | str = "self") -> float:
    """Peak resident memory (VmHWM) of a process, in MiB; 0 if it is gone or there is
    no /proc."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def dead_letters_lost(dead_letters: DeadLetterStore, writer: WriterStats) -> int:
    """Quarantined messages and refused lines the dead-letter stores could not keep
    (a full store's oldest file, a disk that refused the write)."""
    return dead_letters.stats.dropped + dead_letters.stats.failures \
        + writer.dead_letters_discarded


def stop_summary(stats: IngestStats, dead_letters: DeadLetterStore, writer: WriterStats,
                 drained: bool, spool_dir: Path | None = None) -> str:
    """The last line: what was decoded, where it is, and everything dropped or
    refused on the way ("none" only when nothing was)."""
    dropped: dict[str, int] = dict(stats.errors)
    if writer.rejected_lines:
        dropped["rejected_by_influxdb"] = writer.rejected_lines
    lost_letters = dead_letters_lost(dead_letters, writer)
    if lost_letters:
        dropped["dead_letters_lost"] = lost_letters
    # Trouble that was retried (nothing lost by it), said apart from what was dropped.
    retried = {kind: count for kind, count in writer.problems().items()
               if kind not in ("rejected_lines", "dead_letters_discarded")}
    if not drained:
        where = "not all stored: the broker sends the unacknowledged messages again"
    elif writer.spool_lines:
        kept = f" ({spool_dir})" if spool_dir is not None else ""
        where = (f"{writer.spool_lines} lines wait in the disk spool{kept} for InfluxDB "
                 f"(the next ingest posts them), the rest stored")
    else:
        where = "all stored in InfluxDB"
    shown = ", ".join(f"{kind} {count}" for kind, count in sorted(dropped.items()))
    trouble = ", ".join(f"{kind} {count}" for kind, count in sorted(retried.items()))
    return (f"ingest stopped: {sum(stats.packets.values())} packets decoded, {where}; "
            f"dropped or refused: {shown or 'none'}"
            + (f"; InfluxDB trouble, retried: {trouble}" if trouble else ""))


class LinkReporter:
    """Every ``interval`` s: a ``link`` point per link, and its status on the broker."""

    def __init__(self, links: Sequence[LinkSource], publisher: Publisher,
                 interval: float) -> None:
        self.links = links
        self.publisher = publisher
        self.interval = interval

    async def run(self, writer: InfluxWriter, stop: asyncio.Event) -> None:
        """Until ``stop`` is set, and once more then (the links' last figures)."""
        while True:
            done = stop.is_set()
            lines: list[str] = []
            now_ns = time.time_ns()
            for link in self.links:
                status = link.snapshot()
                self.publisher.offer(Outgoing(link_topic(link.spacecraft), status.to_json(),
                                              retain=True, expiry=LINK_STATUS_EXPIRY))
                lines.append(link_line(status, now_ns))
            await writer.write("".join(lines).encode(), len(lines), 0)
            if done:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)


class HealthReporter:
    """Every ``interval`` s: the ``ingest`` point of ingest ``identifier``."""

    def __init__(self, identifier: str, stats: IngestStats, decoder: Decoder,
                 reader: MqttReader, dead_letters: DeadLetterStore, interval: float) -> None:
        self.identifier = identifier
        self.stats = stats
        self.decoder = decoder
        self.reader = reader
        self.dead_letters = dead_letters
        self.interval = interval

    async def run(self, writer: InfluxWriter, stop: asyncio.Event) -> None:
        """Until ``stop`` is set, and once more then (the figures after the drain)."""
        while True:
            done = stop.is_set()
            extra = {"dead_letters": self.dead_letters.stats.stored,
                     "dead_letters_lost": dead_letters_lost(self.dead_letters, writer.stats),
                     "poison_messages": self.stats.errors["poison_message"],
                     "read_pauses": self.reader.read_pauses,
                     **self.reader.broker_figures}
            await writer.write(health_line(self.identifier, self.stats, self.decoder.waiting,
                                           self.reader.unread_messages, writer.stats,
                                           time.time_ns(), extra,
                                           peak_memory_mb=peak_memory_mb()).encode(), 1, 0)
            if done:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
