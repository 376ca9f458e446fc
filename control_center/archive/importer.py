"""``isls import``: files of back-to-back CCSDS packets (the common ``.tlm`` / ``.bin``
layout) decoded in-process at full speed and written with ``source=import``.
"""

from __future__ import annotations

import logging
import struct
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from control_center.config import Config
from control_center.errors import IslsError
from control_center.storage.contract import format_lines_off_loop
from control_center.storage.writer import InfluxWriter
from control_center.telemetry.decoder import Decoder, IngestStats
from control_center.telemetry.packets import same_length_run
from control_center.telemetry.records import RawMessage
from control_center.telemetry.tmdb import Tmdb
from control_center.terminal import Progress

log = logging.getLogger("isls.import")


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
    the chunks then cut the file where the walk over the whole file would. A run of
    packets of the first one's length (a file of one packet type) is stepped over with
    numpy: the loop over an 8 MiB chunk was 11 % of an import's samples."""
    size, run = same_length_run(buffer)
    position, end = size * len(run), len(buffer)
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
                # Decoded a chunk (8 MiB of packets) at a time, handed on in batches of
                # one POST (influx.batch_lines): one write of a whole chunk's 190,000
                # lines went out as 8 MiB POSTs of 35,000 lines and held the chunk's
                # 90 MB of text at once (bench/bulk.py: peak 830 MiB, now 330; the
                # speed did not change beyond the noise).
                decoder = Decoder([tmdb], batch_packets=1 << 30, stats=stats,
                                  max_batch=config.influx.batch_lines)
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
                        lines = await format_lines_off_loop(
                            batch, {"spacecraft": tmdb.spacecraft, "source": "import"})
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
