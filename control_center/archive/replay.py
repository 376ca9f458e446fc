"""Replaying recorded passes, and importing packet files.

``isls replay`` republishes a pass from the archive on ``isls/<spacecraft>/tm/replay``
(QoS 1) with the MQTT 5 user properties ``pass`` and ``shift_ns``; every ingest
subscribes to the replay topics and stores those packets with ``source=replay`` and a
``pass`` tag, so live data is never touched, and replaying a pass again writes the
same points again (InfluxDB keeps one point per measurement, tag set and time):
replays are idempotent. ``--shift-to-now`` moves every time stamp by the same amount
so that the pass starts now, for training sessions that must look live.

``isls import`` decodes files of back-to-back CCSDS packets (the common ``.tlm`` /
``.bin`` layout) in-process at full speed and writes them with ``source=import``.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import aiomqtt

from control_center.archive.recorder import KIND_PACKETS, find_pass, iter_pass_records, pass_info
from control_center.config import Config
from control_center.errors import IslsError
from control_center.storage.contract import format_lines
from control_center.storage.writer import InfluxWriter
from control_center.telemetry.decoder import Decoder, IngestStats
from control_center.telemetry.records import RawMessage
from control_center.telemetry.tmdb import Tmdb, load_tmdbs
from drivers.mqtt import RAW_QOS, replay_properties, replay_topic, with_broker

log = logging.getLogger("isls.replay")
WINDOW = 64
BUNDLE_OCTETS = 256 * 1024


def _bundling_is_exact(config: Config, spacecraft: str) -> bool:
    """Records that are due together may travel in one message, which costs the
    broker and the ingest far less than many small ones. A message has one
    earth-receive time, so this is exact only when every packet type of the spacecraft
    carries its own onboard time."""
    for settings in config.spacecraft:
        if settings.name == spacecraft:
            try:
                tmdb = load_tmdbs([settings.tmdb])[0]
            except IslsError:
                return False
            return all(p.time == "cuc" for p in tmdb.packets)
    return False


class Progress:
    """A progress bar on a terminal; a line every 10 % elsewhere."""

    def __init__(self, total: int, label: str, out: TextIO = sys.stderr) -> None:
        self.total = max(total, 1)
        self.label = label
        self.out = out
        self.tty = out.isatty()
        self._shown = -1
        self.started = time.monotonic()

    def update(self, done: int, detail: str = "") -> None:
        fraction = min(done / self.total, 1.0)
        percent = int(fraction * 100)
        if self.tty:
            if percent == self._shown and done < self.total:
                return
            bar = "#" * int(fraction * 30)
            self.out.write(f"\r{self.label} [{bar:<30}] {percent:3d}% {detail}   ")
            self.out.flush()
        elif percent // 10 != self._shown // 10 or done >= self.total:
            self.out.write(f"{self.label}: {percent}% {detail}\n")
        self._shown = percent

    def finish(self) -> None:
        if self.tty:
            self.out.write("\n")


def parse_time(text: str, start_ns: int) -> int:
    """``+SECONDS`` from the pass start, or an ISO 8601 UTC time."""
    if text.startswith("+"):
        try:
            return start_ns + int(float(text[1:]) * 1e9)
        except ValueError:
            raise IslsError(f"{text!r}: expected +SECONDS or an ISO 8601 time") from None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise IslsError(f"{text!r}: expected +SECONDS or an ISO 8601 time such as "
                        f"2026-11-25T12:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1e9)


@dataclass(slots=True)
class ReplayStats:
    records: int = 0
    octets: int = 0
    seconds: float = 0.0
    pass_seconds: float = 0.0

    @property
    def speedup(self) -> float:
        return self.pass_seconds / self.seconds if self.seconds > 0 else 0.0


async def replay_pass(config: Config, pass_id: str, *, speed: float | None = None,
                      start: str | None = None, end: str | None = None,
                      shift_to_now: bool = False, out: TextIO = sys.stderr,
                      show_progress: bool = True) -> ReplayStats:
    """Publish a recorded pass for the ingest; ``speed=None`` means as fast as possible."""
    root = config.archive_dir
    info = pass_info(root, pass_id)
    directory = find_pass(root, pass_id)
    start_ns = parse_time(start, info.start_ns) if start else info.start_ns
    end_ns = parse_time(end, info.start_ns) if end else info.end_ns
    if end_ns < start_ns:
        raise IslsError(f"--to {end} is before --from {start}")
    shift_ns = time.time_ns() - start_ns if shift_to_now else 0
    stats = ReplayStats(pass_seconds=max(0.0, (min(end_ns, info.end_ns)
                                              - max(start_ns, info.start_ns)) / 1e9))
    progress = Progress(info.octets, f"replay {pass_id}", out) if show_progress else None
    topic = replay_topic(info.spacecraft)
    bundle_limit = BUNDLE_OCTETS if _bundling_is_exact(config, info.spacecraft) else 0
    began = time.monotonic()
    first_ert: int | None = None
    # Up to WINDOW publishes await their PUBACK at once: one at a time, the round trip
    # per QoS 1 message, not the broker, would set the replay speed.
    in_flight: set[asyncio.Future[None]] = set()
    bundle: list[bytes] = []
    bundle_octets = 0
    bundle_head: tuple[int, str] = (0, "")

    async def send(client: aiomqtt.Client) -> None:
        nonlocal bundle, bundle_octets, in_flight
        if not bundle:
            return
        if len(in_flight) >= WINDOW:
            done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # a failed publish stops the replay with its error
        ert, link = bundle_head
        in_flight.add(asyncio.ensure_future(client.publish(
            topic, b"".join(bundle), qos=RAW_QOS,
            properties=replay_properties(ert + shift_ns, link, pass_id, shift_ns))))
        bundle, bundle_octets = [], 0

    async def session(client: aiomqtt.Client) -> None:
        nonlocal first_ert, bundle_head, bundle_octets
        try:
            for record in iter_pass_records(directory, kinds=frozenset({KIND_PACKETS})):
                if not start_ns <= record.ert_ns <= end_ns:
                    continue
                if first_ert is None:
                    first_ert = record.ert_ns
                if speed is not None:
                    # Keep the recorded spacing between records, compressed by the speed.
                    due = began + (record.ert_ns - first_ert) / 1e9 / speed
                    delay = due - time.monotonic()
                    if delay > 0:
                        await send(client)
                        await asyncio.sleep(delay)
                if bundle and (record.link != bundle_head[1]
                               or bundle_octets + len(record.payload) > bundle_limit):
                    await send(client)
                if not bundle:
                    bundle_head = (record.ert_ns, record.link)
                bundle.append(record.payload)
                bundle_octets += len(record.payload)
                stats.records += 1
                stats.octets += len(record.payload)
                if progress is not None:
                    progress.update(stats.octets, f"{stats.records} records")
            await send(client)
            for task in asyncio.as_completed(in_flight):
                await task
        finally:
            for task in in_flight:  # after a failure: the rest cannot succeed either
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)

    # A replay is one shot: a broker that cannot be reached, refuses the account or is
    # lost half-way is an error that names it.
    try:
        await with_broker(config.mqtt, f"isls-replay-{pass_id}", session, retry=False)
    except BaseException:
        if progress is not None:
            progress.finish()  # the error goes on a line of its own
        raise
    if progress is not None:
        progress.update(info.octets, f"{stats.records} records")
        progress.finish()
    stats.seconds = time.monotonic() - began
    return stats


# ------------------------------------------------------------------------- import


@dataclass(slots=True)
class FileImport:
    """What one file gave: packets stored, packets dropped by kind, or why it could not
    be decoded at all (``problem``)."""

    path: Path
    packets: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    problem: str = ""

    @property
    def seen(self) -> int:
        """Packets found in the file, good or bad (a truncated tail counts as one)."""
        return self.packets + sum(self.errors.values())


@dataclass(slots=True)
class ImportSummary:
    files: int = 0
    octets: int = 0
    packets: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    values_written: int = 0
    rejected_lines: int = 0  # lines InfluxDB refused (kept as dead letters)
    dead_letter_lines: int = 0
    by_file: list[FileImport] = field(default_factory=list)

    @property
    def files_without_packets(self) -> list[FileImport]:
        """The files nothing was stored from: the import did not do its job for them."""
        return [f for f in self.by_file if f.packets == 0]


def _whole_packets(buffer: bytes) -> int:
    """Octets of ``buffer`` that hold whole packets; the rest waits for more data.

    Every header's length is followed, whatever its version, as
    :func:`~control_center.telemetry.packets.split_packets` steps over a bad packet by its length:
    the chunks then cut the file where the walk over the whole file would."""
    position, end = 0, len(buffer)
    while position + 6 <= end:
        (length,) = struct.unpack_from(">H", buffer, position + 4)
        if position + 7 + length > end:
            break
        position += 7 + length
    return position


def _choose_spacecraft(head: bytes, tmdbs: list[Tmdb]) -> Tmdb:
    """The spacecraft whose telemetry database knows most of the file's first APIDs.

    Headers of the spacecraft's packet version (0, CCSDS 133.0-B-2 §4.1.3.2, unless its
    TMDB says otherwise) decide; the others only break a tie, so that a file of bad
    packets is still reported against its spacecraft."""
    every: Counter[tuple[int, int]] = Counter()  # (version, APID)
    position = 0
    while position + 6 <= len(head) and every.total() < 1000:
        word1, _, length = struct.unpack_from(">HHH", head, position)
        every[(word1 >> 13, word1 & 0x7FF)] += 1
        position += 7 + length
    scores = []
    for tmdb in tmdbs:
        known = tmdb.by_apid()
        scores.append((sum(n for (version, apid), n in every.items()
                           if apid in known and version == tmdb.packet_version),
                       sum(n for (_, apid), n in every.items() if apid in known)))
    best = max(range(len(tmdbs)), key=lambda i: scores[i])
    if scores[best][1] == 0:
        apids = sorted({apid for _, apid in every})
        listed = ", ".join(str(a) for a in apids[:10]) + (", …" if len(apids) > 10 else "")
        raise IslsError(f"no telemetry database knows its APIDs ({listed or 'none'}); "
                        f"pass --spacecraft or import a definition with "
                        f"`isls tmdb import-csv`")
    return tmdbs[best]


async def import_files(config: Config, tmdbs: list[Tmdb], files: list[Path], *,
                       spacecraft: str | None = None, out: TextIO = sys.stderr,
                       chunk: int = 8 << 20,
                       on_progress: Callable[[int], None] | None = None) -> ImportSummary:
    """Decode and store every file; what each gave is in ``summary.by_file``. A file
    whose spacecraft cannot be told, or that is empty, is reported there and skipped."""
    summary = ImportSummary()
    chosen: Tmdb | None = None
    if spacecraft is not None:
        chosen = next((t for t in tmdbs if t.spacecraft == spacecraft), None)
        if chosen is None:
            raise IslsError(f"--spacecraft {spacecraft!r}: not configured "
                            f"({', '.join(t.spacecraft for t in tmdbs)})")
    total = 0
    for path in files:
        try:
            total += path.stat().st_size
        except OSError as exc:
            raise IslsError(f"{path}: cannot read: {exc.strerror}") from None
    progress = Progress(total, "import", out)
    done = 0

    def advance(octets: int) -> None:
        nonlocal done
        done += octets
        summary.octets += octets
        progress.update(done, f"{sum(summary.packets.values())} packets")
        if on_progress is not None:
            on_progress(done)

    async with InfluxWriter(config.influx) as writer:
        await writer.ensure_database()
        spans: list[tuple[int, int]] = []  # receive-time spans of the files so far
        for path in files:
            summary.files += 1
            file = FileImport(path)
            summary.by_file.append(file)
            mtime_ns = path.stat().st_mtime_ns
            # Files of one run with the same time (unpacked from one archive, copied
            # together) must not stamp receive-time packets onto each other's points.
            for start, end in sorted(spans):
                if start <= mtime_ns < end:
                    mtime_ns = end
            with path.open("rb") as handle:
                head = handle.read(65536)
                if not head:
                    file.problem = "the file is empty"
                    continue
                try:
                    tmdb = chosen or _choose_spacecraft(head, tmdbs)
                except IslsError as exc:
                    # This file gives nothing, and is reported so; the others still go in.
                    file.problem = str(exc)
                    advance(path.stat().st_size)
                    continue
                handle.seek(0)
                stats = IngestStats()
                decoder = Decoder([tmdb], batch_packets=1 << 30, stats=stats)
                tail = b""
                while True:
                    block = handle.read(chunk)
                    data = tail + block
                    cut = _whole_packets(data) if block else len(data)
                    tail = data[cut:]
                    if cut:
                        decoder.feed(RawMessage(tmdb.spacecraft, data[:cut], mtime_ns,
                                                f"import:{path.name}", source="import"))
                    # No onboard time: the decoder stamps the file's time plus each
                    # packet's place among the file's packets of its type, in ns (the
                    # whole file is one message), so every packet stays a distinct point.
                    for batch in decoder.take(force=True):
                        lines = format_lines(batch, {"spacecraft": tmdb.spacecraft,
                                                     "source": "import"})
                        await writer.write(lines, len(batch),
                                           len(batch) * len(batch.packet.parameters))
                        summary.packets[f"{tmdb.spacecraft}/{batch.packet.name}"] += len(batch)
                        file.packets += len(batch)
                    advance(len(block))
                    if not block:
                        break
                summary.errors.update(stats.errors)
                file.errors.update(stats.errors)
                # Ordinals count per packet type: the file's packet count bounds them.
                spans.append((mtime_ns, mtime_ns + file.packets + 1))
    progress.finish()
    summary.values_written = writer.stats.values_written
    summary.rejected_lines = writer.stats.rejected_lines
    summary.dead_letter_lines = writer.stats.dead_letter_lines
    return summary
