"""The pass archive: every octet received, as it arrived, append-only and crash-safe.

Layout under ``<state>/archive/``::

    <spacecraft>/<pass id>/pass.json        summary, rewritten atomically (tmp + rename)
    <spacecraft>/<pass id>/seg-0000.isla     segments, rotated at a size limit

A segment starts with ``ISLSARC1`` and holds records::

    magic   2  A5 5A
    kind    1  1 = raw packets (one MQTT message or a serial link's extracted packets)
               2 = link octets (a serial link's bytes exactly as read, noise included)
    flags   1  0
    length  4  payload octets (big-endian)
    ert     8  earth-receive time, UTC ns since 1970 (big-endian, signed)
    linklen 1  then the link name (UTF-8)
    payload
    crc32   4  over kind..payload

Each record is one ``write()`` on an ``O_APPEND`` descriptor, with no buffering in the
process, so a ``kill -9`` can lose at most the record being written; the reader stops
at a torn record at the end of a segment and resynchronises past a damaged one in the
middle (by magic and CRC). Power loss is another matter: segments are fsynced when a
pass closes and every ``fsync_interval`` seconds.

A pass is a continuous contact with one spacecraft: acquisition of signal (AOS) at the
first data after ``silence`` seconds without any, loss of signal (LOS) once ``silence``
seconds pass without data; its end is the last data's receive time.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from control_center.errors import IslsError

FILE_MAGIC = b"ISLSARC1"
RECORD_MAGIC = b"\xa5\x5a"
KIND_PACKETS = 1
KIND_LINK_OCTETS = 2
_HEAD = struct.Struct(">2sBBIqB")  # magic, kind, flags, length, ert, link length
_CRC = struct.Struct(">I")
MAX_RECORD = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ArchiveRecord:
    kind: int
    ert_ns: int
    link: str
    payload: bytes


@dataclass(slots=True)
class PassInfo:
    id: str
    spacecraft: str
    start_ns: int
    end_ns: int
    packets: int = 0
    octets: int = 0
    records: int = 0
    gaps: int = 0  # packets missing by APID sequence count
    segments: int = 1
    closed: bool = False
    links: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


def encode_record(kind: int, ert_ns: int, link: str, payload: bytes) -> bytes:
    name = link.encode()[:255]
    body = _HEAD.pack(RECORD_MAGIC, kind, 0, len(payload), ert_ns, len(name)) + name + payload
    return body + _CRC.pack(zlib.crc32(body[2:]))


@dataclass(slots=True)
class ReadStats:
    records: int = 0
    damaged: int = 0  # damaged records skipped in the middle of a segment
    torn_tail: bool = False  # the segment ends in a partial record (a crash mid-write)
    octets_skipped: int = 0


def read_segment(path: Path, stats: ReadStats | None = None) -> Iterator[ArchiveRecord]:
    """Every whole, valid record of one segment, in order.

    The segment is memory-mapped, not read: a reader of a 256 MB segment holds one
    record at a time, and the kernel pages the file in and out as it goes."""
    stats = stats if stats is not None else ReadStats()
    with path.open("rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            return
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            yield from _records(path, mapped, stats)


def _records(path: Path, data: mmap.mmap, stats: ReadStats) -> Iterator[ArchiveRecord]:
    if data[:len(FILE_MAGIC)] != FILE_MAGIC:
        if len(data) < len(FILE_MAGIC):  # the file was created, then the writer died
            stats.torn_tail = bool(data)
            return
        raise IslsError(f"{path}: not an ISLS archive segment")
    position = len(FILE_MAGIC)
    end = len(data)
    while position < end:
        if end - position < _HEAD.size + _CRC.size:
            stats.torn_tail = True
            stats.octets_skipped += end - position
            return
        magic, kind, _flags, length, ert_ns, link_length = _HEAD.unpack_from(data, position)
        total = _HEAD.size + link_length + length + _CRC.size
        valid = magic == RECORD_MAGIC and length <= MAX_RECORD
        if valid and position + total > end:
            stats.torn_tail = True
            stats.octets_skipped += end - position
            return
        if valid:
            body_end = position + total - _CRC.size
            (crc,) = _CRC.unpack_from(data, body_end)
            valid = zlib.crc32(data[position + 2:body_end]) == crc
        if not valid:
            # Damage inside the segment: find the next record that validates.
            stats.damaged += 1
            following = data.find(RECORD_MAGIC, position + 1)
            skip_to = following if following >= 0 else end
            stats.octets_skipped += skip_to - position
            position = skip_to
            continue
        link_start = position + _HEAD.size
        payload_start = link_start + link_length
        stats.records += 1
        yield ArchiveRecord(kind, ert_ns,
                            data[link_start:payload_start].decode(errors="replace"),
                            data[payload_start:payload_start + length])
        position += total


def pass_id_for(spacecraft: str, start_ns: int) -> str:
    stamp = datetime.fromtimestamp(start_ns / 1e9, UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{spacecraft}-{stamp}"


def _write_json_atomically(path: Path, document: dict[str, object]) -> None:
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(document, indent=1))
    os.replace(temporary, path)


class _OpenPass:
    def __init__(self, directory: Path, info: PassInfo, max_segment: int) -> None:
        self.directory = directory
        self.info = info
        self.max_segment = max_segment
        self.last_sequence: dict[int, int] = {}
        directory.mkdir(parents=True, exist_ok=True)
        self.fd = -1
        self.segment_octets = 0
        self._open_segment()

    def _open_segment(self) -> None:
        if self.fd >= 0:
            os.fsync(self.fd)
            os.close(self.fd)
        path = self.directory / f"seg-{self.info.segments - 1:04d}.isla"
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        if os.fstat(self.fd).st_size == 0:
            os.write(self.fd, FILE_MAGIC)
        self.segment_octets = os.fstat(self.fd).st_size

    def append(self, record: bytes) -> None:
        if self.segment_octets + len(record) > self.max_segment \
                and self.segment_octets > len(FILE_MAGIC):
            self.info.segments += 1
            self._open_segment()
        os.write(self.fd, record)
        self.segment_octets += len(record)

    def save(self) -> None:
        _write_json_atomically(self.directory / "pass.json", asdict(self.info))

    def close(self) -> None:
        self.info.closed = True
        if self.fd >= 0:
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = -1
        self.save()


class ArchiveWriter:
    """Records raw telemetry into passes; one per ingest process and state directory."""

    def __init__(self, root: Path, *, silence: float = 60.0,
                 max_segment_bytes: int = 256 * 1024 * 1024,
                 save_interval: float = 2.0) -> None:
        self.root = root
        self.silence_ns = int(silence * 1e9)
        self.max_segment = max_segment_bytes
        self.save_interval = save_interval
        self._open: dict[str, _OpenPass] = {}
        self._last_save = time.monotonic()
        root.mkdir(parents=True, exist_ok=True)

    def record(self, spacecraft: str, ert_ns: int, link: str, payload: bytes,
               kind: int = KIND_PACKETS) -> str:
        """Append one record to the spacecraft's current pass; return the pass id."""
        current = self._open.get(spacecraft)
        if current is not None and ert_ns - current.info.end_ns > self.silence_ns:
            current.close()  # loss of signal: a new contact starts a new pass
            current = None
        if current is None:
            info = PassInfo(id=pass_id_for(spacecraft, ert_ns), spacecraft=spacecraft,
                            start_ns=ert_ns, end_ns=ert_ns)
            directory = self.root / spacecraft / info.id
            if directory.exists():  # the same second again (a restart): keep it unique
                info.id = f"{info.id}-{int(ert_ns % 1_000_000_000):09d}"
                directory = self.root / spacecraft / info.id
            current = self._open[spacecraft] = _OpenPass(directory, info, self.max_segment)
            current.save()
        current.append(encode_record(kind, ert_ns, link, payload))
        info = current.info
        info.end_ns = max(info.end_ns, ert_ns)
        info.records += 1
        info.octets += len(payload)
        if link not in info.links:
            info.links.append(link)
        if kind == KIND_PACKETS:
            self._count_packets(current, payload)
        if time.monotonic() - self._last_save > self.save_interval:
            self.save()
        return info.id

    @staticmethod
    def _count_packets(current: _OpenPass, payload: bytes) -> None:
        position, end = 0, len(payload)
        while position + 6 <= end:
            word1, word2, length = struct.unpack_from(">HHH", payload, position)
            apid, sequence = word1 & 0x7FF, word2 & 0x3FFF
            if apid != 0x7FF:
                current.info.packets += 1
                previous = current.last_sequence.get(apid)
                if previous is not None:
                    missing = (sequence - previous - 1) % 16384
                    # A jump of more than half the 14-bit counter is a packet out of order
                    # (or repeated), not thousands of lost ones.
                    if missing < 8192:
                        current.info.gaps += missing
                current.last_sequence[apid] = sequence
            position += 7 + length

    def tick(self, now_ns: int | None = None) -> None:
        """Close passes that have been silent for longer than the silence (LOS)."""
        now = time.time_ns() if now_ns is None else now_ns
        for spacecraft, current in list(self._open.items()):
            if now - current.info.end_ns > self.silence_ns:
                current.close()
                del self._open[spacecraft]
        if time.monotonic() - self._last_save > self.save_interval:
            self.save()

    def save(self) -> None:
        for current in self._open.values():
            current.save()
        self._last_save = time.monotonic()

    def close(self) -> None:
        for current in self._open.values():
            current.close()
        self._open.clear()


# ------------------------------------------------------------------------ reading


def _scan(directory: Path) -> PassInfo:
    """Recompute a pass's summary from its segments (after a crash left pass.json stale)."""
    info = PassInfo(**json.loads((directory / "pass.json").read_text()))
    probe = _OpenPass.__new__(_OpenPass)
    probe.info = PassInfo(id=info.id, spacecraft=info.spacecraft, start_ns=info.start_ns,
                          end_ns=info.start_ns, closed=info.closed,
                          segments=len(list(directory.glob("seg-*.isla"))) or 1)
    probe.last_sequence = {}
    for record in iter_pass_records(directory):
        probe.info.records += 1
        probe.info.octets += len(record.payload)
        probe.info.end_ns = max(probe.info.end_ns, record.ert_ns)
        if record.link not in probe.info.links:
            probe.info.links.append(record.link)
        if record.kind == KIND_PACKETS:
            ArchiveWriter._count_packets(probe, record.payload)
    return probe.info


def list_passes(root: Path, *, rescan_open: bool = True) -> list[PassInfo]:
    """Every recorded pass, oldest first. A pass not marked closed is rescanned, since
    its writer may have died after the last summary."""
    passes: list[PassInfo] = []
    for summary in sorted(root.glob("*/*/pass.json")):
        info = PassInfo(**json.loads(summary.read_text()))
        if rescan_open and not info.closed:
            info = _scan(summary.parent)
        passes.append(info)
    return sorted(passes, key=lambda p: (p.start_ns, p.spacecraft))


def find_pass(root: Path, pass_id: str) -> Path:
    for summary in root.glob(f"*/{pass_id}/pass.json"):
        return summary.parent
    known = ", ".join(p.id for p in list_passes(root, rescan_open=False)[-5:]) or "none"
    raise IslsError(f"no pass {pass_id!r} in {root} (latest: {known}); see `isls passes`")


def pass_info(root: Path, pass_id: str) -> PassInfo:
    directory = find_pass(root, pass_id)
    info = PassInfo(**json.loads((directory / "pass.json").read_text()))
    return info if info.closed else _scan(directory)


def iter_pass_records(directory: Path, stats: ReadStats | None = None,
                      kinds: frozenset[int] = frozenset({KIND_PACKETS, KIND_LINK_OCTETS})
                      ) -> Iterator[ArchiveRecord]:
    for segment in sorted(directory.glob("seg-*.isla")):
        for record in read_segment(segment, stats):
            if record.kind in kinds:
                yield record
