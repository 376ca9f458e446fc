"""The dead-letter store: messages the ingest could not take, kept for the operator.

One poison-message policy for everything a message carries (docs/operating.md):
a message whose properties cannot be trusted (an earth-receive time outside any
plausible range, a replay shift that would overflow a timestamp, ...) or whose
processing failed is counted, archived as received where possible, written here, and
acknowledged. The service never exits because of what a message holds, and the
messages queued behind a poison one are stored as usual.

The store is a directory of JSON-lines files (``dead-letters-<n>.jsonl``), one record a
line: when, why, which topic and spacecraft, the MQTT user properties as received, and
the payload in base64. Each record is fsynced before the message is acknowledged.
The store is bounded (``max_bytes``): when full, the oldest file goes, and the loss is
counted and logged. ``isls dead-letters list`` shows what is there; ``isls dead-letters
replay`` publishes the payloads again on their raw topic with a fresh, valid
earth-receive time (the original properties stay in the store).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("isls.dead_letters")

_FILE_BYTES = 4 << 20  # a new file every 4 MiB, so the oldest can go as a whole


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One quarantined message."""

    id: str  # "<file number>:<line number>", stable while the file exists
    quarantined_ns: int
    reason: str
    topic: str
    spacecraft: str
    properties: dict[str, str]
    payload: bytes


@dataclass(slots=True)
class DeadLetterStats:
    stored: int = 0  # written since start
    dropped: int = 0  # records lost because the store was full (oldest first)
    failures: int = 0  # records that could not be written at all
    last_reason: str = ""


@dataclass(slots=True)
class DeadLetterStore:
    directory: Path
    max_bytes: int = 64 << 20
    stats: DeadLetterStats = field(default_factory=DeadLetterStats)

    def put(self, reason: str, *, topic: str, spacecraft: str, payload: bytes,
            properties: dict[str, str] | None = None) -> bool:
        """Quarantine one message; True once it is on disk (fsynced)."""
        record = {"quarantined_ns": time.time_ns(), "reason": reason, "topic": topic,
                  "spacecraft": spacecraft, "properties": properties or {},
                  "payload": base64.b64encode(payload).decode("ascii")}
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            path = self._current(len(line))
            descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(descriptor, line)
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        except OSError as exc:
            self.stats.failures += 1
            log.error("dead-letter store %s: cannot write (%s): the message is dropped "
                      "(reason: %s)", self.directory, exc.strerror or exc, reason)
            return False
        self.stats.stored += 1
        self.stats.last_reason = reason
        return True

    def _files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        numbered = []
        for path in self.directory.glob("dead-letters-*.jsonl"):
            stem = path.stem.removeprefix("dead-letters-")
            if stem.isdigit():
                numbered.append((int(stem), path))
        return [path for _, path in sorted(numbered)]

    def _current(self, adding: int) -> Path:
        files = self._files()
        if not files or files[-1].stat().st_size + adding > _FILE_BYTES:
            number = int(files[-1].stem.removeprefix("dead-letters-")) + 1 if files else 1
            files.append(self.directory / f"dead-letters-{number:06d}.jsonl")
        # Bounded: the oldest whole files go first, and the loss is said.
        total = sum(p.stat().st_size for p in files if p.exists()) + adding
        while total > self.max_bytes and len(files) > 1:
            oldest = files.pop(0)
            lost = sum(1 for _ in oldest.open("rb"))
            total -= oldest.stat().st_size
            oldest.unlink()
            self.stats.dropped += lost
            log.error("dead-letter store %s full (%d MiB): %d oldest records dropped",
                      self.directory, self.max_bytes >> 20, lost)
        return files[-1]

    def __iter__(self) -> Iterator[DeadLetter]:
        for path in self._files():
            number = path.stem.removeprefix("dead-letters-")
            with path.open("rb") as handle:
                for index, line in enumerate(handle, start=1):
                    try:
                        record = json.loads(line)
                        yield DeadLetter(
                            id=f"{int(number)}:{index}",
                            quarantined_ns=int(record["quarantined_ns"]),
                            reason=str(record["reason"]), topic=str(record["topic"]),
                            spacecraft=str(record["spacecraft"]),
                            properties={str(k): str(v)
                                        for k, v in dict(record["properties"]).items()},
                            payload=base64.b64decode(record["payload"]))
                    except (ValueError, KeyError, TypeError):
                        # A torn last line (power cut mid-write): skipped, not fatal.
                        log.warning("%s:%d: unreadable dead-letter record skipped", path,
                                    index)
