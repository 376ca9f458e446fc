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

The writer of an open pass holds an exclusive ``flock`` on the pass directory for as
long as the pass is open; the kernel drops it when the process dies, however it dies.
That is how a reader tells a pass being recorded (``open``) from one whose writer died
before loss of signal (``interrupted``), and how the next writer knows it may take an
interrupted pass over (see :class:`ArchiveWriter`).

Pass ids are ``<spacecraft>-<YYYYMMDDTHHMMSSZ>`` of the first data, with ``-<ns>``
appended when that second is taken already (:data:`PASS_ID`); they are looked up
literally, never as patterns.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import mmap
import os
import re
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from control_center.errors import IslsError
from control_center.telemetry.packets import same_length_run

FILE_MAGIC = b"ISLSARC1"
RECORD_MAGIC = b"\xa5\x5a"
KIND_PACKETS = 1
KIND_LINK_OCTETS = 2
_HEAD = struct.Struct(">2sBBIqB")  # magic, kind, flags, length, ert, link length
_CRC = struct.Struct(">I")
MAX_RECORD = 64 * 1024 * 1024
# What pass_id_for makes: the spacecraft (a topic level: never "/"), the second of the
# first data, and the nanoseconds when that second was taken already.
PASS_ID = re.compile(r"(?P<spacecraft>[^/\x00]+)-\d{8}T\d{6}Z(?:-\d{9})?")
SEGMENT_NAME = re.compile(r"seg-(\d{4,})\.isla")

log = logging.getLogger("isls.archive")


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
    # What a reader found, never stored in pass.json:
    damage: str = ""  # why the pass is damaged; "" when it is sound
    recording: bool = False  # a live writer holds the pass (it is open, not interrupted)

    @property
    def duration(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def state(self) -> str:
        """``closed`` (loss of signal), ``open`` (being recorded), ``interrupted`` (its
        writer died before loss of signal; the next ingest resumes or closes it) or
        ``damaged`` (its summary or a segment is damaged: see :attr:`damage`)."""
        if self.damage:
            return "damaged"
        if self.closed:
            return "closed"
        return "open" if self.recording else "interrupted"


# The fields of pass.json, with their types; the rest of PassInfo is found by readers.
_SUMMARY_FIELDS: dict[str, type] = {
    "id": str, "spacecraft": str, "start_ns": int, "end_ns": int, "packets": int,
    "octets": int, "records": int, "gaps": int, "segments": int, "closed": bool,
    "links": list,
}
_REQUIRED_FIELDS = ("id", "spacecraft", "start_ns", "end_ns")


def _summary_document(info: PassInfo) -> dict[str, object]:
    return {name: getattr(info, name) for name in _SUMMARY_FIELDS}


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
    bad_headers: int = 0  # segments whose ISLSARC1 header is damaged (records resynced)


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
    position = len(FILE_MAGIC)
    end = len(data)
    if data[:len(FILE_MAGIC)] != FILE_MAGIC:
        if len(data) < len(FILE_MAGIC):  # the file was created, then the writer died
            stats.torn_tail = bool(data)
            return
        # A damaged header says nothing about the records after it, and each record
        # carries its own magic and CRC: resynchronise on the first one, as for a
        # damaged record, instead of giving up the segment.
        stats.bad_headers += 1
        following = data.find(RECORD_MAGIC)
        position = following if following >= 0 else end
        stats.octets_skipped += position
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


def _lock_pass(directory: Path, attempts: int = 20) -> int | None:
    """An exclusive ``flock`` on the pass directory, as its writer; ``None`` when a live
    writer holds it. A reader checking on a pass holds a shared lock for microseconds,
    so a few attempts tell it apart from a writer."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    for attempt in range(attempts):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if attempt + 1 < attempts:
                time.sleep(0.005)
    os.close(fd)
    return None


def _writer_alive(directory: Path) -> bool:
    """Whether a live process holds the pass open for writing (see :func:`_lock_pass`)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # also releases the shared lock, if taken
    return False


def _segment_indexes(directory: Path) -> list[int]:
    indexes = []
    for path in directory.glob("seg-*.isla"):
        match = SEGMENT_NAME.fullmatch(path.name)
        if match:
            indexes.append(int(match.group(1)))
    return sorted(indexes)


class _OpenPass:
    def __init__(self, directory: Path, info: PassInfo, max_segment: int,
                 lock: int | None = None, last_sequence: dict[int, int] | None = None
                 ) -> None:
        """A new pass (``lock`` None: the directory is created and locked here), or an
        interrupted one taken over with its ``lock`` held: its next record starts a new
        segment, so a torn record at the end of the last one stays a torn tail there
        instead of becoming damage in the middle of a segment."""
        self.directory = directory
        self.info = info
        self.max_segment = max_segment
        self.last_sequence: dict[int, int] = last_sequence or {}
        resumed = lock is not None
        if lock is None:
            directory.mkdir(parents=True)
            lock = _lock_pass(directory)
            if lock is None:  # another writer made the same directory in the same instant
                raise IslsError(f"{directory}: another process is recording this pass")
        self.lock = lock
        self.fd = -1
        self.segment_octets = 0
        if not resumed:
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
        if self.fd < 0 or (self.segment_octets + len(record) > self.max_segment
                           and self.segment_octets > len(FILE_MAGIC)):
            self.info.segments += 1
            self._open_segment()
        os.write(self.fd, record)
        self.segment_octets += len(record)

    def save(self) -> None:
        _write_json_atomically(self.directory / "pass.json", _summary_document(self.info))

    def close(self) -> None:
        self.info.closed = True
        if self.fd >= 0:
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = -1
        self.save()
        if self.lock >= 0:
            os.close(self.lock)  # the pass is closed in pass.json before it is let go
            self.lock = -1


class ArchiveWriter:
    """Records raw telemetry into passes; one per ingest process and state directory.

    Start-up after a crash: a pass whose writer died (not closed in its ``pass.json``,
    its directory lock free) is *resumed*, not left open beside a new one. The writer
    takes it over as the spacecraft's current pass, its figures recounted from the
    segments, so the usual rule decides its fate: data of the same spacecraft within
    ``silence`` of its last record continues it (in a new segment), later data closes
    it at that last record and starts a new pass, and so does :meth:`tick` once the
    silence has passed, or :meth:`close`. A restart inside a contact therefore leaves
    one pass, as the contact was one, and no piece stays open. When several
    interrupted passes of one spacecraft exist (left by earlier versions), the newest
    is resumed and the others are closed. A pass whose ``pass.json`` is damaged is left
    as it is (``list_passes`` reports it), and so is one a live writer holds.
    """

    def __init__(self, root: Path, *, silence: float = 60.0,
                 max_segment_bytes: int = 256 * 1024 * 1024,
                 save_interval: float = 2.0, resume: bool = True) -> None:
        self.root = root
        self.silence_ns = int(silence * 1e9)
        self.max_segment = max_segment_bytes
        self.save_interval = save_interval
        self._open: dict[str, _OpenPass] = {}
        self._last_save = time.monotonic()
        root.mkdir(parents=True, exist_ok=True)
        if resume:
            self._resume_interrupted()

    def _resume_interrupted(self) -> None:
        taken: list[_OpenPass] = []
        for directory in _pass_directories(self.root):
            try:
                summary = _read_summary(directory)
            except ValueError:
                continue  # damaged: reported by list_passes, never guessed at here
            if summary.closed:
                continue
            lock: int | None = None
            try:
                lock = _lock_pass(directory)
                if lock is None:
                    continue  # a live writer records it
                info, last_sequence = _recount(directory, summary)
                indexes = _segment_indexes(directory)
                info.segments = indexes[-1] + 1 if indexes else 0  # append opens the next
                info.closed, info.damage = False, ""
                taken.append(_OpenPass(directory, info, self.max_segment, lock,
                                       last_sequence))
            except OSError as exc:
                log.warning("archive: cannot resume the interrupted pass %s: %s",
                            directory, exc.strerror or exc)
                if lock is not None:
                    os.close(lock)
        # The newest interrupted pass of a spacecraft is its current pass; older ones
        # were superseded before this start and end where their data ends.
        for current in sorted(taken, key=lambda p: p.info.start_ns):
            superseded = self._open.get(current.info.spacecraft)
            if superseded is not None:
                self._close_quietly(superseded)
            self._open[current.info.spacecraft] = current
            log.info("archive: resuming pass %s, interrupted at %s records",
                     current.info.id, current.info.records)

    def _new_pass(self, spacecraft: str, ert_ns: int) -> _OpenPass:
        base = pass_id_for(spacecraft, ert_ns)
        pass_id = base
        nanoseconds = ert_ns % 1_000_000_000
        while True:
            try:
                return _OpenPass(self.root / spacecraft / pass_id,
                                 PassInfo(id=pass_id, spacecraft=spacecraft, start_ns=ert_ns,
                                          end_ns=ert_ns), self.max_segment)
            except FileExistsError:  # the same second again: keep the id unique
                pass_id = f"{base}-{nanoseconds:09d}"
                nanoseconds = (nanoseconds + 1) % 1_000_000_000

    @staticmethod
    def _close_quietly(current: _OpenPass) -> None:
        try:
            current.close()
        except OSError as exc:
            log.warning("archive: cannot close pass %s: %s", current.info.id,
                        exc.strerror or exc)

    def record(self, spacecraft: str, ert_ns: int, link: str, payload: bytes,
               kind: int = KIND_PACKETS) -> str:
        """Append one record to the spacecraft's current pass; return the pass id."""
        current = self._open.get(spacecraft)
        if current is not None and ert_ns - current.info.end_ns > self.silence_ns:
            current.close()  # loss of signal: a new contact starts a new pass
            current = None
        if current is None:
            current = self._open[spacecraft] = self._new_pass(spacecraft, ert_ns)
            current.save()
        current.append(encode_record(kind, ert_ns, link, payload))
        info = current.info
        info.end_ns = max(info.end_ns, ert_ns)
        info.records += 1
        info.octets += len(payload)
        if link not in info.links:
            info.links.append(link)
        if kind == KIND_PACKETS:
            _count_packets(info, current.last_sequence, payload)
        if time.monotonic() - self._last_save > self.save_interval:
            self.save()
        return info.id

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


def _count_packets(info: PassInfo, last_sequence: dict[int, int], payload: bytes) -> None:
    """The message's packets and sequence-count gaps, added to the pass's figures."""
    if not _count_uniform(info, last_sequence, payload):
        _count_one_by_one(info, last_sequence, payload)


# Below this many packets a message is counted packet by packet (numpy's set-up costs
# more than the loop).
_UNIFORM_MIN_PACKETS = 64


def _count_uniform(info: PassInfo, last_sequence: dict[int, int], payload: bytes) -> bool:
    """The common case in one go: a message of packets that all have the first one's
    length (a simulator's or a frame's burst of one packet type). False, and nothing
    counted, for anything else. Same figures as :func:`_count_one_by_one` (the loop
    cost about 0.5 us a packet, 3 % of the ingest at 600,000 values/s, profiled; 40 us
    against 330 us for a 706-packet message; below 64 packets the loop is faster)."""
    size, words = same_length_run(payload)
    if len(words) < _UNIFORM_MIN_PACKETS or len(words) * size != len(payload):
        return False
    apids = words[:, 0].astype(np.int64) & 0x7FF
    sequences = words[:, 1].astype(np.int64) & 0x3FFF
    first = int(apids[0])
    one_apid = bool((apids == first).all())
    for apid in [first] if one_apid else np.unique(apids).tolist():
        if apid == 0x7FF:
            continue  # idle packets
        counts = sequences if one_apid else sequences[apids == apid]
        info.packets += len(counts)
        previous = last_sequence.get(apid)
        chain = counts if previous is None else np.concatenate(([previous], counts))
        missing = (np.diff(chain) - 1) % 16384
        # A jump of more than half the 14-bit counter is a packet out of order (or
        # repeated), not thousands of lost ones.
        info.gaps += int(missing[missing < 8192].sum())
        last_sequence[apid] = int(counts[-1])
    return True


def _count_one_by_one(info: PassInfo, last_sequence: dict[int, int], payload: bytes) -> None:
    position, end = 0, len(payload)
    while position + 6 <= end:
        word1, word2, length = struct.unpack_from(">HHH", payload, position)
        apid, sequence = word1 & 0x7FF, word2 & 0x3FFF
        if apid != 0x7FF:
            info.packets += 1
            previous = last_sequence.get(apid)
            if previous is not None:
                missing = (sequence - previous - 1) % 16384
                # A jump of more than half the 14-bit counter is a packet out of order
                # (or repeated), not thousands of lost ones.
                if missing < 8192:
                    info.gaps += missing
            last_sequence[apid] = sequence
        position += 7 + length


# ------------------------------------------------------------------------ reading


def _pass_directories(root: Path) -> list[Path]:
    """Every pass directory under ``root``: one with a summary or a segment."""
    return sorted(directory for directory in root.glob("*/*") if _is_pass(directory))


def _is_pass(directory: Path) -> bool:
    try:
        return directory.is_dir() and ((directory / "pass.json").exists()
                                       or any(directory.glob("seg-*.isla")))
    except OSError:
        return False


def _read_summary(directory: Path) -> PassInfo:
    """The pass's ``pass.json``, checked field by field: :class:`ValueError` saying what
    is wrong with it (missing, unreadable, not JSON, a field missing or of a wrong type,
    or naming another pass than its directory)."""
    try:
        document = json.loads((directory / "pass.json").read_bytes())
    except FileNotFoundError:
        raise ValueError("pass.json is missing") from None
    except OSError as exc:
        raise ValueError(f"pass.json cannot be read: {exc.strerror}") from None
    except ValueError as exc:  # not JSON, or not UTF-8
        raise ValueError(f"pass.json is not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise ValueError("pass.json is not a JSON object")
    values: dict[str, object] = {}
    for name, kind in _SUMMARY_FIELDS.items():
        if name not in document:
            if name in _REQUIRED_FIELDS:
                raise ValueError(f"pass.json has no {name}")
            continue
        value: object = document[name]
        wrong = (not isinstance(value, kind) or (kind is int and isinstance(value, bool))
                 or (isinstance(value, list) and not all(isinstance(v, str) for v in value)))
        if wrong:
            raise ValueError(f"pass.json: {name} is {value!r}, not {kind.__name__}")
        values[name] = list(value) if isinstance(value, list) else value
    info = PassInfo(**values)  # type: ignore[arg-type]
    if info.id != directory.name or info.spacecraft != directory.parent.name:
        raise ValueError(f"pass.json names pass {info.spacecraft}/{info.id}")
    return info


def _recount(directory: Path, summary: PassInfo | None
             ) -> tuple[PassInfo, dict[int, int]]:
    """A pass's figures recomputed from its segments (after a crash left pass.json
    stale, or damaged: then ``summary`` is None and the directory names the pass), with
    the last sequence count per APID; what could not be read is in ``damage``."""
    if summary is None:
        summary = PassInfo(id=directory.name, spacecraft=directory.parent.name,
                           start_ns=0, end_ns=0)
    indexes = _segment_indexes(directory)
    info = PassInfo(id=summary.id, spacecraft=summary.spacecraft, start_ns=summary.start_ns,
                    end_ns=summary.start_ns, closed=summary.closed,
                    segments=len(indexes) or 1)
    last_sequence: dict[int, int] = {}
    stats = ReadStats()
    problems: list[str] = []
    first: int | None = None
    for index in indexes:
        segment = directory / f"seg-{index:04d}.isla"
        try:
            for record in read_segment(segment, stats):
                first = record.ert_ns if first is None else min(first, record.ert_ns)
                info.records += 1
                info.octets += len(record.payload)
                info.end_ns = max(info.end_ns, record.ert_ns)
                if record.link not in info.links:
                    info.links.append(record.link)
                if record.kind == KIND_PACKETS:
                    _count_packets(info, last_sequence, record.payload)
        except (OSError, ValueError) as exc:
            problems.append(f"{segment.name} cannot be read: "
                            f"{getattr(exc, 'strerror', None) or exc}")
    if summary.start_ns == 0 and first is not None:  # no summary to take the start from
        info.start_ns = first
        info.end_ns = max(info.end_ns, first)
    if stats.bad_headers:
        problems.append(f"{stats.bad_headers} damaged segment header(s)")
    if stats.damaged:
        problems.append(f"{stats.damaged} damaged record(s) skipped")
    info.damage = "; ".join(problems)
    return info, last_sequence


def _pass_summary(directory: Path, rescan_open: bool) -> PassInfo:
    """The summary to show for one pass, whatever state its files are in."""
    try:
        info = _read_summary(directory)
    except ValueError as exc:
        info, _ = _recount(directory, None)
        info.damage = "; ".join(filter(None, (
            f"{exc}: figures recomputed from the segments", info.damage)))
        return info
    if not info.closed:
        recording = _writer_alive(directory)
        if rescan_open:
            info, _ = _recount(directory, info)
        info.recording = recording
    return info


def list_passes(root: Path, *, rescan_open: bool = True) -> list[PassInfo]:
    """Every recorded pass, oldest first. A pass not marked closed is rescanned, since
    its writer may have died after the last summary; a pass whose files are damaged is
    listed with its ``damage`` (its figures recomputed from what can be read), and never
    hides the others."""
    passes = [_pass_summary(directory, rescan_open) for directory in _pass_directories(root)]
    return sorted(passes, key=lambda p: (p.start_ns, p.spacecraft, p.id))


def find_pass(root: Path, pass_id: str) -> Path:
    """The directory of the pass ``pass_id``, taken literally: an id is what
    :data:`PASS_ID` matches (as ``isls passes`` lists them), never a pattern."""
    if not PASS_ID.fullmatch(pass_id):
        raise IslsError(f"no pass {pass_id!r} in {root}: a pass id is "
                        f"SPACECRAFT-YYYYMMDDTHHMMSSZ (as `isls passes` lists them), "
                        f"not a pattern")
    with contextlib.suppress(OSError):
        for spacecraft in sorted(root.iterdir()):
            if _is_pass(spacecraft / pass_id):
                return spacecraft / pass_id
    known = ", ".join(p.id for p in list_passes(root, rescan_open=False)[-5:]) or "none"
    raise IslsError(f"no pass {pass_id!r} in {root} (latest: {known}); see `isls passes`")


def pass_info(root: Path, pass_id: str) -> PassInfo:
    return _pass_summary(find_pass(root, pass_id), rescan_open=True)


def iter_pass_records(directory: Path, stats: ReadStats | None = None,
                      kinds: frozenset[int] = frozenset({KIND_PACKETS, KIND_LINK_OCTETS})
                      ) -> Iterator[ArchiveRecord]:
    for index in _segment_indexes(directory):
        segment = directory / f"seg-{index:04d}.isla"
        try:
            for record in read_segment(segment, stats):
                if record.kind in kinds:
                    yield record
        except OSError as exc:
            raise IslsError(f"{segment}: cannot read: {exc.strerror}") from None
