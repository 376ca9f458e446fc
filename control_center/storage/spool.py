"""A disk queue of line-protocol batches for while InfluxDB is down or failing, and the
dead-letter store for the lines InfluxDB refused.

The writer spools a batch it could not store, acknowledges the telemetry behind it (the
spool is on disk, fsynced), and a backfill task posts the spooled batches in order once
the database answers again, deleting each file only after InfluxDB confirmed it (204).
A crash between the confirmation and the delete posts that batch again on restart: the
same points (series, time, values) overwrite themselves, so nothing is stored twice.

Bounded by size: when it is full the writer stops acknowledging, and the backlog waits
at the broker (docs/operating.md). A write that fails (disk full, read-only,
permissions) raises ``OSError`` and leaves nothing behind: the writer keeps that batch
in memory, unacknowledged, and tries again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger("isls.spool")


@dataclass(frozen=True, slots=True)
class SpooledBatch:
    path: Path
    lines: int
    values: int
    size: int


def _fsync_directory(directory: Path) -> None:
    """Make a file's creation, rename or removal in ``directory`` survive a power cut."""
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _private(path: Path, flags: int) -> BinaryIO:
    """Open for writing, readable by this account only (telemetry stays private)."""
    return os.fdopen(os.open(path, flags, 0o600), "ab" if flags & os.O_APPEND else "wb")


def describe(error: OSError) -> str:
    """``No space left on device: /var/lib/isls/spool/…`` (strerror and the file)."""
    where = error.filename if error.filename is not None else ""
    return f"{error.strerror or error}: {where}" if where else str(error.strerror or error)


class Spool:
    """Files ``<sequence>-<lines>-<values>.lp`` in ``directory``, oldest first."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._batches: deque[SpooledBatch] = deque()
        self.bytes = 0
        self._next = 0
        # Why the directory could not be used at start ("" when it could). An unusable
        # spool does not stop the ingest: while InfluxDB works it is not needed, and
        # while it fails the writer reports the spool error and holds the backlog.
        self.problem = ""
        try:
            self._load()
        except OSError as exc:
            self.problem = describe(exc)
            log.error("spool: cannot use %s (%s); while InfluxDB fails, telemetry will wait "
                      "at the broker instead", directory, self.problem)

    def _load(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for path in sorted(self.directory.glob("*.lp")):
            try:
                sequence, lines, values = (int(x) for x in path.stem.split("-"))
            except ValueError:
                log.warning("spool: ignoring %s (not a spool file name)", path)
                continue
            size = path.stat().st_size
            self._batches.append(SpooledBatch(path, lines, values, size))
            self.bytes += size
            self._next = max(self._next, sequence + 1)
        for leftover in self.directory.glob("*.tmp"):
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
        """Append a batch, durably; False (and nothing written) when it would not fit.

        Raises ``OSError`` when the disk refuses (full, read-only, permissions), after
        removing what it had written: the batch is then not in the spool at all."""
        if not self.has_room(len(body)):
            return False
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.directory / f"{self._next:016d}-{lines}-{values}.lp"
        temporary = path.with_suffix(".tmp")
        try:
            with _private(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC) as out:
                out.write(body)
                out.flush()
                os.fsync(out.fileno())
            temporary.rename(path)
            _fsync_directory(self.directory)  # the rename itself survives a power cut
        except OSError:
            # A half-written file would fill the disk further, and a renamed one whose
            # rename may not be durable is not promised to anybody: remove both.
            for leftover in (temporary, path):
                with contextlib.suppress(OSError):
                    leftover.unlink()
            raise
        self._next += 1
        self._batches.append(SpooledBatch(path, lines, values, len(body)))
        self.bytes += len(body)
        self.problem = ""
        return True

    def probe(self) -> None:
        """Write, fsync and remove a small file: raises ``OSError`` while the disk
        still refuses writes (how the writer learns that a failed spool works again)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        probe = self.directory / f".probe-{os.getpid()}.tmp"
        try:
            with _private(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC) as out:
                out.write(b"probe\n" * 512)
                out.flush()
                os.fsync(out.fileno())
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()

    def oldest(self) -> tuple[SpooledBatch, bytes] | None:
        if not self._batches:
            return None
        batch = self._batches[0]
        return batch, batch.path.read_bytes()

    def remove_oldest(self) -> None:
        """Forget the oldest batch (InfluxDB has it). Raises ``OSError`` if its file
        cannot be deleted; it is forgotten all the same (a restart would post it again,
        which overwrites the same points with the same values)."""
        batch = self._batches.popleft()
        self.bytes -= batch.size
        batch.path.unlink(missing_ok=True)


class DeadLetters:
    """Lines InfluxDB refused (unparsable, a field type conflict, too large for it),
    kept as line protocol so they can be fixed and posted again.

    Each group of lines follows a comment naming when and why, which InfluxDB itself
    skips: ``# 2026-11-30T02:44:43.123Z refused by InfluxDB (400): unable to parse …``.
    Files ``<sequence>.lp`` in ``directory`` are appended to, fsynced, and rotated at
    ``file_bytes``; past ``max_bytes`` in all, the oldest file is deleted (and logged and
    counted in ``discarded_lines``): the newest show what goes wrong now.
    """

    def __init__(self, directory: Path, *, max_bytes: int = 256 << 20,
                 file_bytes: int = 16 << 20) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.file_bytes = min(file_bytes, max_bytes)
        self.lines = 0  # written by this process
        self.discarded_lines = 0  # deleted with the oldest files to stay under max_bytes
        self._lock = threading.Lock()  # add() runs in worker threads
        self._files: deque[tuple[Path, int]] = deque()  # (path, size), oldest first
        self._next = 0
        with contextlib.suppress(OSError):  # created on first use if it cannot be now
            for path in sorted(directory.glob("*.lp")):
                with contextlib.suppress(ValueError):
                    self._next = max(self._next, int(path.stem) + 1)
                    self._files.append((path, path.stat().st_size))

    @property
    def size(self) -> int:
        """Bytes in the dead-letter files."""
        return sum(size for _, size in self._files)

    def add(self, groups: Sequence[tuple[str, Sequence[bytes]]]) -> None:
        """Append (reason, lines) groups durably. Raises ``OSError`` when the disk
        refuses; what was written of this call is then cut off again."""
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        parts: list[bytes] = []
        count = 0
        for reason, lines in groups:
            if not lines:
                continue
            one_line = " | ".join(reason.split("\n")).replace("\r", " ")
            if len(one_line) > 1000:
                one_line = one_line[:1000] + "…"
            parts.append(f"# {stamp} {one_line}\n".encode())
            parts.extend(line.rstrip(b"\n") + b"\n" for line in lines)
            count += len(lines)
        if not count:
            return
        payload = b"".join(parts)
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            created = not self._files or self._files[-1][1] + len(payload) > self.file_bytes
            if created:
                path, size = self.directory / f"{self._next:016d}.lp", 0
            else:
                path, size = self._files[-1]
            with _private(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND) as out:
                try:
                    out.write(payload)
                    out.flush()
                    os.fsync(out.fileno())
                except OSError:
                    with contextlib.suppress(OSError):
                        out.truncate(size)  # no torn group left behind
                    raise
            if created:
                self._next += 1
                self._files.append((path, len(payload)))
                _fsync_directory(self.directory)
            else:
                self._files[-1] = (path, size + len(payload))
            self.lines += count
            self._trim()

    def _trim(self) -> None:
        while len(self._files) > 1 and self.size > self.max_bytes:
            path, _ = self._files.popleft()
            try:
                with open(path, "rb") as handle:
                    lost = sum(1 for line in handle if line.strip() and
                               not line.startswith(b"#"))
                path.unlink()
            except OSError as exc:
                log.error("dead letters: cannot delete %s (%s)", path, describe(exc))
                continue
            self.discarded_lines += lost
            log.error("dead letters: over %.0f MB under %s; deleted the oldest file %s "
                      "(%d refused lines)", self.max_bytes / 1e6, self.directory, path.name,
                      lost)
