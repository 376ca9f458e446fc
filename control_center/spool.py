"""A disk queue of line-protocol batches for while InfluxDB is down or failing.

The writer spools a batch it could not store, acknowledges the telemetry behind it (the
spool is on disk, fsynced), and a backfill task posts the spooled batches in order once
the database answers again, deleting each file only after InfluxDB confirmed it (204).
A crash between the confirmation and the delete posts that batch again on restart: the
same points (series, time, values) overwrite themselves, so nothing is stored twice.

Bounded by size: when it is full the writer stops acknowledging, and the backlog waits
at the broker (README, "Operating it").
"""

from __future__ import annotations

import logging
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("isls.spool")


@dataclass(frozen=True, slots=True)
class SpooledBatch:
    path: Path
    lines: int
    values: int
    size: int


class Spool:
    """Files ``<sequence>-<lines>-<values>.lp`` in ``directory``, oldest first."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        directory.mkdir(parents=True, exist_ok=True)
        self._batches: deque[SpooledBatch] = deque()
        self.bytes = 0
        self._next = 0
        for path in sorted(directory.glob("*.lp")):
            try:
                sequence, lines, values = (int(x) for x in path.stem.split("-"))
            except ValueError:
                log.warning("spool: ignoring %s (not a spool file name)", path)
                continue
            size = path.stat().st_size
            self._batches.append(SpooledBatch(path, lines, values, size))
            self.bytes += size
            self._next = max(self._next, sequence + 1)
        for leftover in directory.glob("*.tmp"):
            leftover.unlink()  # a write cut short by a crash: its telemetry was not acked
        if self._batches:
            log.warning("spool: %d batches (%d lines, %.1f MB) from an earlier run wait to be "
                        "stored", len(self._batches), self.lines, self.bytes / 1e6)

    def __len__(self) -> int:
        return len(self._batches)

    @property
    def lines(self) -> int:
        return sum(batch.lines for batch in self._batches)

    def has_room(self, size: int) -> bool:
        return self.bytes + size <= self.max_bytes

    def put(self, body: bytes, lines: int, values: int) -> bool:
        """Append a batch, durably; False (and nothing written) when it would not fit."""
        if not self.has_room(len(body)):
            return False
        path = self.directory / f"{self._next:016d}-{lines}-{values}.lp"
        temporary = path.with_suffix(".tmp")
        with open(temporary, "wb") as out:
            out.write(body)
            out.flush()
            os.fsync(out.fileno())
        temporary.rename(path)
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power cut
        finally:
            os.close(directory)
        self._next += 1
        self._batches.append(SpooledBatch(path, lines, values, len(body)))
        self.bytes += len(body)
        return True

    def oldest(self) -> tuple[SpooledBatch, bytes] | None:
        if not self._batches:
            return None
        batch = self._batches[0]
        return batch, batch.path.read_bytes()

    def remove_oldest(self) -> None:
        batch = self._batches.popleft()
        batch.path.unlink(missing_ok=True)
        self.bytes -= batch.size
