"""InfluxDB storage: line protocol formatting and a batching, retrying async writer.

Why not ``influxdb-client``: it is the InfluxDB 2.x client and writes to
``/api/v2/write``, which the InfluxDB 1.x server we run here answers with 404. The
v1 endpoints ``POST /write`` (line protocol) and ``/query`` (InfluxQL) are served by
1.x, and by 2.x and 3.x through their v1 compatibility layer (token in an
``Authorization: Token`` header), so the writer speaks exactly those with aiohttp.

Contract (README, "InfluxDB contract"): one measurement per packet type named after
the packet; tags ``spacecraft`` and ``source``; one field per parameter holding the
engineering value; the point time is the packet's onboard time in UTC (ns).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import aiohttp

from control_center.config import InfluxSettings
from control_center.errors import ServerError
from control_center.storage.spool import DeadLetters, Spool, describe

log = logging.getLogger("isls.storage")


def influx_headers(settings: InfluxSettings) -> dict[str, str]:
    """The Authorization header for the configured token (2.x/3.x) or account (1.x)."""
    if settings.token:
        return {"Authorization": f"Token {settings.token}"}
    if settings.username and settings.password:
        pair = f"{settings.username}:{settings.password}".encode()
        return {"Authorization": f"Basic {base64.b64encode(pair).decode()}"}
    return {}


# ---------------------------------------------------------------- InfluxDB's answers

# No POST body above this: InfluxDB 1.x refuses bodies over its ``max-body-size`` (25 MB
# by default, and an administrator may set less) with 413, and a big body also holds a
# big allocation in both processes. A single line longer than this is posted alone.
MAX_BODY_BYTES = 8 << 20

AnswerKind = Literal["stored", "bad_data", "too_large", "missing_database", "auth", "server",
                     "unreachable", "disk", "internal"]

# What only data can cause (InfluxDB 1.x wording; 2.x and 3.x keep it in their v1 API).
_BAD_DATA_SIGNS = ("unable to parse", "field type conflict", "partial write",
                   "points beyond retention policy")


@dataclass(frozen=True, slots=True)
class Answer:
    """InfluxDB's answer to one ``POST /write``, classified.

    Only ``bad_data`` (a 400 or 422 whose text says the line protocol is unparsable, a
    field's type conflicts, or a partial write refused some points) and ``too_large``
    (413: split and try again) are about the data. Everything else (a missing database,
    refused credentials, a server error, no answer at all) is not the data's fault and
    is retried: nothing is acknowledged and dropped because of it."""

    kind: AnswerKind
    status: int = 0  # HTTP status; 0 when there was no answer
    message: str = ""  # InfluxDB's error text (the JSON ``error`` or ``message``)

    @property
    def detail(self) -> str:
        return f"{self.status}: {self.message}" if self.status else self.message


def error_text(body: str) -> str:
    """The error InfluxDB put in its JSON answer (1.x ``error``, 2.x ``message``)."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()
    if isinstance(data, dict):
        for key in ("error", "message"):
            value = data.get(key)
            if isinstance(value, str):
                return value
    return body.strip()


def classify(status: int, body: str) -> Answer:
    """Sort an HTTP answer to ``POST /write`` into an :class:`Answer` kind."""
    if 200 <= status < 300:
        return Answer("stored", status)
    message = error_text(body)
    if status in (400, 422) and any(sign in message for sign in _BAD_DATA_SIGNS):
        return Answer("bad_data", status, message)
    if status in (401, 403):
        return Answer("auth", status, message)
    if status == 404 and "not found" in message and ("database" in message
                                                     or "bucket" in message):
        return Answer("missing_database", status, message)
    if status == 413:
        return Answer("too_large", status, message or "request entity too large")
    return Answer("server", status, message)


_UNPARSABLE = "unable to parse '"
_CONFLICT = re.compile(r'field type conflict: input field "(?P<field>.*?)" on measurement '
                       r'"(?P<measurement>.*?)" is type (?P<kind>\w+)')
_DROPPED = re.compile(r"\s*dropped=(\d+)\s*$")


@dataclass(frozen=True, slots=True)
class Refusal:
    """What InfluxDB 1.x says in a 400 about the lines it refused. Measured on 1.6.7:

    * unparsable lines are named one by one, and the others are stored:
      ``partial write: unable to parse 'm v=oops= 4': invalid boolean\\nunable to parse
      'bad line': invalid field format dropped=0`` (without ``partial write`` when no line
      parsed: then nothing was stored);
    * a field type conflict names only the measurement, the field and the type of the
      first conflict, and how many points it dropped:
      ``partial write: field type conflict: input field "v" on measurement "m" is type
      integer, already exists as type float dropped=1``; unparsable lines in the same
      body are then not mentioned at all.
    """

    unparsable: dict[bytes, str]  # quoted line -> InfluxDB's words about it
    parse_errors: int  # how many "unable to parse" it lists
    conflict: tuple[str, str, str] | None  # (measurement, field, type of the input)
    dropped: int | None
    partial: bool
    only_parse_errors: bool


def read_refusal(message: str) -> Refusal:
    partial = message.startswith("partial write: ")
    text = message.removeprefix("partial write: ")
    dropped_match = _DROPPED.search(text)
    dropped = int(dropped_match.group(1)) if dropped_match else None
    if dropped_match:
        text = text[:dropped_match.start()]
    unparsable: dict[bytes, str] = {}
    segments = text.split("\n")
    parse_errors = 0
    for segment in segments:
        if not segment.startswith(_UNPARSABLE):
            continue
        parse_errors += 1
        quoted = segment[len(_UNPARSABLE):]
        # The line ends at a "': " (a line may hold that too: every cut is a candidate;
        # only one can be a line of the body).
        cut = quoted.find("': ")
        while cut >= 0:
            unparsable.setdefault(quoted[:cut].encode(), segment)
            cut = quoted.find("': ", cut + 1)
        if quoted.endswith("'"):
            unparsable.setdefault(quoted[:-1].encode(), segment)
    conflict = _CONFLICT.search(text)
    return Refusal(
        unparsable=unparsable, parse_errors=parse_errors,
        conflict=None if conflict is None else (conflict["measurement"], conflict["field"],
                                                conflict["kind"]),
        dropped=dropped, partial=partial,
        only_parse_errors=parse_errors > 0 and parse_errors == sum(1 for s in segments if s))


def _scan(line: str, start: int, stops: str) -> int:
    """Index of the first unescaped character of ``stops`` at or after ``start``."""
    index = start
    while index < len(line):
        char = line[index]
        if char == "\\":
            index += 2
            continue
        if char in stops:
            return index
        index += 1
    return len(line)


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def line_fields(line: bytes) -> tuple[str, dict[str, str]]:
    """A line protocol line's measurement and its fields as written (``"text"``,
    ``12i``, ``true``, ``1.5``), names unescaped."""
    text = line.decode(errors="replace").lstrip()
    key_end = _scan(text, 0, " ")
    measurement = _unescape(text[:min(_scan(text, 0, ","), key_end)])
    fields: dict[str, str] = {}
    index = key_end + 1
    while index < len(text):
        equals = _scan(text, index, "=")
        name = _unescape(text[index:equals])
        start = equals + 1
        if text.startswith('"', start):
            end = start + 1
            while end < len(text) and text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            end += 1
        else:
            end = start
            while end < len(text) and text[end] not in ", ":
                end += 1
        fields[name] = text[start:end]
        if end >= len(text) or text[end] == " ":
            break
        index = end + 1
    return measurement, fields


def value_type(value: str) -> str:
    """InfluxDB's name for the type a field value is written as."""
    if value.startswith('"'):
        return "string"
    if value in ("t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"):
        return "boolean"
    if value.endswith("i"):
        return "integer"
    if value.endswith("u"):
        return "unsigned"
    return "float"


def _conflicts(line: bytes, measurement: str, field: str, kind: str) -> bool:
    name, fields = line_fields(line)
    value = fields.get(field)
    return name == measurement and value is not None and value_type(value) == kind


@dataclass(frozen=True, slots=True)
class RefusalPlan:
    """What to do with a piece InfluxDB answered 400: lines proven refused (with why),
    how many lines it did store, and groups of lines to post again to learn more."""

    dead: list[tuple[str, list[bytes]]]
    stored: int
    repost: list[list[bytes]]


def plan_refusal(lines: list[bytes], answer: Answer) -> RefusalPlan:
    """Find exactly which lines InfluxDB refused, from its words where they prove it,
    else by posting smaller groups again (a point written twice with the same values
    is the same point, so posting stored lines again changes nothing). Every step makes
    the groups smaller, so it ends, at worst with single lines."""
    refusal = read_refusal(answer.message)
    reason = f"refused by InfluxDB ({answer.status}): {answer.message}"
    dead: list[tuple[str, list[bytes]]] = []
    rest: list[bytes] = []
    for line in lines:
        why = refusal.unparsable.get(line.lstrip())
        if why is None:
            rest.append(line)
        else:
            dead.append((f"refused by InfluxDB ({answer.status}): {why}", [line]))
    named = len(lines) - len(rest)
    if refusal.partial and refusal.only_parse_errors and refusal.dropped in (0, None) \
            and named == refusal.parse_errors:
        return RefusalPlan(dead, len(rest), [])  # it named every bad line, stored the rest
    if not rest:
        return RefusalPlan(dead, 0, [])
    if refusal.dropped is not None and refusal.dropped == len(rest):
        # It dropped as many points as there are lines left: it refused every one.
        return RefusalPlan([*dead, (reason, rest)], 0, [])
    if refusal.conflict is not None:
        matching = [_conflicts(line, *refusal.conflict) for line in rest]
        if any(matching) and not all(matching):
            # Post the others, and those writing the named field with the named type
            # apart: their own answer then proves they are refused (dropped == count).
            return RefusalPlan(dead, 0, [
                [line for line, hit in zip(rest, matching, strict=True) if not hit],
                [line for line, hit in zip(rest, matching, strict=True) if hit]])
    if named:
        return RefusalPlan(dead, 0, [rest])
    if len(rest) == 1:
        return RefusalPlan([(reason, rest)], 0, [])
    half = len(rest) // 2
    return RefusalPlan(dead, 0, [rest[:half], rest[half:]])


def split_body(body: bytes, max_bytes: int) -> list[bytes]:
    """Cut line protocol at line ends into pieces of at most ``max_bytes`` (a single
    longer line is a piece of its own)."""
    pieces: list[bytes] = []
    start = 0
    while len(body) - start > max_bytes:
        cut = body.rfind(b"\n", start, start + max_bytes) + 1
        if cut <= start:
            cut = body.find(b"\n", start + max_bytes) + 1 or len(body)
        pieces.append(body[start:cut])
        start = cut
    if start < len(body):
        pieces.append(body[start:])
    return pieces


def _shares(total: int, weights: list[int]) -> list[int]:
    """``total`` split in proportion to ``weights``, summing exactly to ``total``."""
    whole = sum(weights) or 1
    out: list[int] = []
    done = seen = 0
    for weight in weights:
        seen += weight
        share = total * seen // whole - done
        out.append(share)
        done += share
    return out


@dataclass(slots=True)
class _Piece:
    """Lines of one batch still to be stored, posted together."""

    body: bytes
    lines: int
    values: int

    def split(self, groups: list[list[bytes]]) -> list[_Piece]:
        values = _shares(self.values, [len(group) for group in groups])
        return [_Piece(b"".join(line + b"\n" for line in group), len(group), share)
                for group, share in zip(groups, values, strict=True) if group]


# ---------------------------------------------------------------- the writer

@dataclass(slots=True)
class WriterStats:
    lines_written: int = 0
    values_written: int = 0
    batches_written: int = 0
    retries: int = 0
    rejected_lines: int = 0  # lines InfluxDB refused (unparsable, type conflict, too big)
    dead_letter_lines: int = 0  # of those, kept in the dead-letter files
    dead_letters_discarded: int = 0  # deleted with the oldest dead-letter file (bound)
    pending_lines: int = 0
    last_error: str = ""
    trouble: str = ""  # the kind of InfluxDB trouble now ("auth", …); "" while it works
    auth_failures: int = 0  # 401/403 answers: credentials or privileges
    missing_database: int = 0  # 404 database not found (re-created, then retried)
    too_large: int = 0  # 413 answers (the batch was halved)
    server_errors: int = 0  # 5xx and other unexpected answers
    unreachable: int = 0  # no answer: connection refused, reset, timeout
    task_failures: int = 0  # unexpected exceptions in the writer's own tasks
    spooled_lines: int = 0  # written to the disk spool while InfluxDB failed
    backfilled_lines: int = 0  # taken from the spool into InfluxDB
    spool_lines: int = 0  # in the spool now
    spool_bytes: int = 0
    spool_full: bool = False  # at its size limit now
    spool_failed: bool = False  # the disk refused the last spool or dead-letter write
    spool_error: str = ""  # why, e.g. "No space left on device: /…/spool/…"
    spool_write_failures: int = 0

    def problems(self) -> dict[str, int]:
        """The counters that say something went wrong (empty when nothing did): for an
        exit line or a health check, so a run with refused lines never reads clean."""
        names = ("rejected_lines", "dead_letters_discarded", "auth_failures",
                 "missing_database", "too_large", "server_errors", "unreachable",
                 "task_failures", "spool_write_failures")
        found = {name: int(getattr(self, name)) for name in names if getattr(self, name)}
        if self.spool_full:
            found["spool_full"] = 1
        if self.spool_failed:
            found["spool_failed"] = 1
        return found


class InfluxWriter:
    """Batches line protocol and posts it to ``/write``, up to ``concurrency`` at once.

    A write is posted at once while the database is idle; while posts are in flight the
    lines that arrive gather into the next batch (up to ``batch_lines`` and
    ``max_body_bytes``), so batches grow with the load and latency stays low when it is
    light.

    ``write()`` waits when ``max_pending_lines`` are already queued, so a slow database
    slows the pipeline down (backpressure) instead of growing memory without bound.

    Every answer is classified (:class:`Answer`). Only lines InfluxDB proved bad are
    given up: exactly those (:func:`plan_refusal`), kept in the dead-letter files under
    the spool (:class:`~control_center.storage.spool.DeadLetters`) and counted in
    ``rejected_lines``. A 413 halves the batch until it fits (a single line too big is a
    dead letter). A missing database is created again and the write retried. Anything
    else (credentials, server errors, no answer) is retried with exponential back-off,
    the batch spooled to disk meanwhile if there is a spool, and reported in the stats
    (``last_error``, ``trouble`` and a counter per kind). A spool the disk refuses is
    reported (``spool_failed``, ``spool_error``) and the batch stays in memory,
    unacknowledged, until InfluxDB or the disk takes it.
    """

    def __init__(self, settings: InfluxSettings, *, max_pending_lines: int = 200_000,
                 spool: Spool | None = None,
                 on_stored: Callable[[int], None] | None = None,
                 max_body_bytes: int = MAX_BODY_BYTES,
                 dead_letters: DeadLetters | None = None) -> None:
        self.settings = settings
        self.stats = WriterStats()
        # (chunk id, lines, line count, value count), in write order
        self._chunks: list[tuple[int, bytes, int, int]] = []
        self._spool = spool
        if dead_letters is None and spool is not None:
            dead_letters = DeadLetters(spool.directory / "dead_letters")
        self.dead_letters = dead_letters
        self._max_body = max(1, max_body_bytes)
        self._spool_lock = asyncio.Lock()
        self._spool_wake = asyncio.Event()
        self._spool_refused = 0  # size of the batch the full spool could not take
        self._backfill: asyncio.Task[None] | None = None
        # Durability bookkeeping: chunk ids are given in write order; every id up to
        # _stored_upto is in InfluxDB, in the spool or a dead letter. mark() tokens fire
        # on_stored once every chunk written before them is.
        self._on_stored = on_stored
        self._next_chunk = 0
        self._stored_upto = -1
        self._done: dict[int, int] = {}  # first id -> last id of finished posts past it
        self._marks: deque[tuple[int, int]] = deque()  # (last chunk id, token)
        self._progress = asyncio.Event()  # set whenever _stored_upto moves
        self._note_spool()
        if spool is not None and spool.problem:
            self.stats.spool_failed, self.stats.spool_error = True, spool.problem
        self._chunk_lines = 0
        self._space = asyncio.Condition()
        self._max_pending = max_pending_lines
        self._wake = asyncio.Event()
        self._closing = False
        self._session: aiohttp.ClientSession | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(settings.concurrency)

    # ---------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> InfluxWriter:
        timeout = aiohttp.ClientTimeout(total=30)
        self._session = aiohttp.ClientSession(timeout=timeout,
                                              headers=influx_headers(self.settings))
        self._flusher = self._task(self._flush_loop(), "influx-flush")
        if self._spool is not None:
            self._backfill = self._task(self._backfill_loop(), "influx-backfill")
        return self

    async def __aexit__(self, kind: type[BaseException] | None, value: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()

    async def close(self, timeout: float = 60.0) -> None:
        """Flush everything queued, waiting up to ``timeout`` seconds for the database."""
        self._closing = True
        self._wake.set()
        if self._flusher is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._flusher), timeout)
            except TimeoutError:
                log.error("InfluxDB did not accept the last %d lines within %.0f s; they are "
                          "not stored (last error: %s)", self.stats.pending_lines, timeout,
                          self.stats.last_error or "none")
                self._flusher.cancel()
                for task in self._inflight:
                    task.cancel()
                await asyncio.gather(self._flusher, *self._inflight, return_exceptions=True)
            except Exception:  # already logged and counted by _observe
                pass
            self._flusher = None
        if self._backfill is not None:
            # What is still spooled stays on disk; the next start backfills it.
            self._backfill.cancel()
            await asyncio.gather(self._backfill, return_exceptions=True)
            self._backfill = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        problems = self.stats.problems()
        if problems:
            log.warning("InfluxDB writer: %s%s", ", ".join(f"{k} {v}" for k, v in
                                                         problems.items()),
                        f" (refused lines kept in {self.dead_letters.directory})"
                        if self.dead_letters is not None and self.stats.dead_letter_lines
                        else "")

    def _task(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(work, name=name)
        task.add_done_callback(self._observe)
        return task

    def _observe(self, task: asyncio.Task[None]) -> None:
        """Every task's end is looked at: an exception becomes a log line and a count,
        never "Task exception was never retrieved"."""
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self._internal(error, task.get_name())

    def _internal(self, error: BaseException, where: str) -> Answer:
        self.stats.task_failures += 1
        message = f"internal error in {where}: {type(error).__name__}: {error}"
        self.stats.last_error = message
        log.error("%s (the writer carries on)", message,
                  exc_info=(type(error), error, error.__traceback__))
        return Answer("internal", 0, message)

    # ---------------------------------------------------------------- queries

    async def query(self, influxql: str, *, method: str = "GET") -> dict[str, Any]:
        assert self._session is not None, "use InfluxWriter as an async context manager"
        params = {"q": influxql, "db": self.settings.database, "epoch": "ns"}
        async with self._session.request(method, f"{self.settings.url}/query",
                                         params=params) as response:
            if response.status == 401:
                raise ServerError(f"InfluxDB at {self.settings.url} refused the credentials "
                                  f"(401); check ISLS_INFLUX_USER / ISLS_INFLUX_PASSWORD or "
                                  f"ISLS_INFLUX_TOKEN")
            body: dict[str, Any] = await response.json(content_type=None)
            if response.status >= 400:
                raise ServerError(f"InfluxDB query failed ({response.status}): "
                                  f"{body.get('error', body)}")
            return body

    async def ensure_database(self, *, attempts: int | None = None) -> None:
        """Create the database if needed, retrying with back-off while unreachable."""
        delay = 0.25
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.query(f'CREATE DATABASE "{self.settings.database}"', method="POST")
                return
            except ServerError as exc:
                if "(403)" in str(exc):
                    # A write-only account (as it should be) may not create databases;
                    # the administrator did. A wrong password is 401 and stops here.
                    log.info("InfluxDB account %s may not create databases; using %r as it "
                             "is", self.settings.username, self.settings.database)
                    return
                raise
            except (aiohttp.ClientError, TimeoutError) as exc:
                if attempts is not None and attempt >= attempts:
                    raise ServerError(f"InfluxDB at {self.settings.url} is unreachable after "
                                      f"{attempt} attempts: {exc}") from None
                log.warning("InfluxDB at %s unreachable (%s); retrying in %.1f s",
                            self.settings.url, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.max_retry_delay)

    async def _recreate_database(self) -> bool:
        """After a 404 "database not found": create it again; False if that failed."""
        database = self.settings.database
        try:
            await self.query(f'CREATE DATABASE "{database}"', method="POST")
        except ServerError as exc:
            log.error("InfluxDB has no database %r and this account cannot create it (%s): "
                      "an administrator must run CREATE DATABASE \"%s\"; writes are retried "
                      "until then", database, exc, database)
            return False
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("InfluxDB has no database %r; creating it failed (%s)", database,
                        str(exc) or type(exc).__name__)
            return False
        log.warning("InfluxDB had no database %r (dropped?): created it again; the writes "
                    "that found it missing are retried", database)
        return True

    # ---------------------------------------------------------------- writing

    async def write(self, lines: bytes, line_count: int, value_count: int = 0) -> None:
        """Queue line protocol; returns once it is queued (waits while the queue is full)."""
        if not lines:
            return
        if not lines.endswith(b"\n"):
            lines += b"\n"  # batches are joined: a missing line end would merge two lines
        async with self._space:
            await self._space.wait_for(lambda: self.stats.pending_lines < self._max_pending)
            self._chunks.append((self._next_chunk, lines, line_count, value_count))
            self._next_chunk += 1
            self._chunk_lines += line_count
            self.stats.pending_lines += line_count
        # Post at once when the database is idle (low latency at low rates); while
        # posts are in flight, lines gather into bigger batches (throughput at high
        # rates). flush_interval only bounds the wait.
        if self._chunk_lines >= self.settings.batch_lines or not self._inflight:
            self._wake.set()

    def mark(self, token: int) -> None:
        """Call ``on_stored(token)`` once everything written so far is in InfluxDB, in
        the spool or a dead letter (at once if it already is). Tokens must not decrease."""
        self._marks.append((self._next_chunk - 1, token))
        self._release_marks()

    async def drained(self, timeout: float) -> bool:
        """Wait until everything written so far is stored or spooled; False on timeout."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._stored_upto < self._next_chunk - 1:
            self._progress.clear()
            self._wake.set()  # post what waits for a batch now
            try:
                await asyncio.wait_for(self._progress.wait(),
                                       deadline - asyncio.get_running_loop().time())
            except TimeoutError:
                return False
        return True

    def _complete(self, first: int, last: int) -> None:
        self._done[first] = last
        while self._stored_upto + 1 in self._done:
            self._stored_upto = self._done.pop(self._stored_upto + 1)
        self._progress.set()
        self._release_marks()

    def _release_marks(self) -> None:
        while self._marks and self._marks[0][0] <= self._stored_upto:
            token = self._marks.popleft()[1]
            if self._on_stored is not None:
                self._on_stored(token)

    async def _flush_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.flush_interval)
            self._wake.clear()
            while self._chunks:
                await self._slots.acquire()
                batch = self._take_batch()
                task = self._task(self._post(*batch), "influx-post")
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
                if self._chunk_lines < self.settings.batch_lines and not self._closing:
                    break
            if self._closing and not self._chunks:
                if self._inflight:
                    await asyncio.wait(set(self._inflight))  # their errors: _observe
                if not self._chunks:
                    return

    def _take_batch(self) -> tuple[bytes, int, int, int, int]:
        parts: list[bytes] = []
        lines = values = size = 0
        first = self._chunks[0][0]
        last = first
        while self._chunks and (lines == 0 or (
                lines + self._chunks[0][2] <= self.settings.batch_lines
                and size + len(self._chunks[0][1]) <= self._max_body)):
            last, chunk, count, value_count = self._chunks.pop(0)
            parts.append(chunk)
            lines += count
            values += value_count
            size += len(chunk)
        self._chunk_lines -= lines
        return b"".join(parts), lines, values, first, last

    def _pieces(self, body: bytes, lines: int, values: int) -> deque[_Piece]:
        """A batch as POST bodies of at most ``max_body_bytes``."""
        if len(body) <= self._max_body:
            return deque([_Piece(body, lines, values)])
        parts = split_body(body, self._max_body)
        counts = [part.count(b"\n") for part in parts]
        return deque(_Piece(part, count, share) for part, count, share
                     in zip(parts, counts, _shares(values, counts), strict=True))

    async def _answer(self, body: bytes) -> Answer:
        """One POST, classified."""
        assert self._session is not None, "use InfluxWriter as an async context manager"
        params = {"db": self.settings.database, "precision": "ns"}
        try:
            async with self._session.post(f"{self.settings.url}/write", params=params,
                                          data=body) as response:
                if response.status == 204:
                    return Answer("stored", 204)
                return classify(response.status, await response.text(errors="replace"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Answer("unreachable", 0, str(exc) or type(exc).__name__)

    async def send(self, body: bytes) -> tuple[str, str]:
        """One POST: ("stored" | "rejected" | "failed", detail); "rejected" only when
        InfluxDB proved the data bad (:func:`classify`)."""
        answer = await self._answer(body)
        kind = {"stored": "stored", "bad_data": "rejected"}.get(answer.kind, "failed")
        return kind, answer.detail[:500]

    def _explain(self, answer: Answer) -> str:
        where = f"InfluxDB at {self.settings.url}"
        database = self.settings.database
        match answer.kind:
            case "auth":
                account = self.settings.username or ("a token" if self.settings.token
                                                     else "no account")
                return (f"{where} refused writes to {database!r} by {account} "
                        f"({answer.detail}): check ISLS_INFLUX_USER / ISLS_INFLUX_PASSWORD "
                        f"/ ISLS_INFLUX_TOKEN and the account's WRITE privilege; retrying, "
                        f"nothing is dropped")
            case "missing_database":
                return (f"{where} has no database {database!r} ({answer.detail}); creating "
                        f"it again and retrying")
            case "unreachable":
                return f"{where} unreachable ({answer.message}); retrying"
            case "server":
                return f"{where} failed the write ({answer.detail}); retrying"
            case _:
                return answer.message

    def _note_trouble(self, answer: Answer) -> None:
        counters = {"auth": "auth_failures", "missing_database": "missing_database",
                    "server": "server_errors", "unreachable": "unreachable"}
        counter = counters.get(answer.kind)
        if counter is not None:
            setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        self.stats.last_error = self._explain(answer)
        if self.stats.trouble != answer.kind:
            self.stats.trouble = answer.kind
            log.error("ALARM %s", self.stats.last_error)

    def _stored(self, lines: int, values: int, *, backfill: bool) -> None:
        self.stats.lines_written += lines
        self.stats.values_written += values
        self.stats.batches_written += 1
        if backfill:
            self.stats.backfilled_lines += lines
        if self.stats.trouble:
            log.info("InfluxDB takes writes again (after %s trouble)", self.stats.trouble)
            self.stats.trouble = ""

    async def _deliver(self, pending: deque[_Piece], *, backfill: bool) -> Answer | None:
        """Post ``pending`` in order until every line is stored or a dead letter (None),
        or until trouble that is not the data's: that answer, ``pending`` holding what
        is left to store."""
        recreated = False
        while pending:
            piece = pending[0]
            answer = await self._answer(piece.body)
            if answer.kind == "stored":
                pending.popleft()
                self._stored(piece.lines, piece.values, backfill=backfill)
                continue
            if answer.kind in ("bad_data", "too_large"):
                failure = await self._refused(pending, answer, backfill=backfill)
                if failure is not None:
                    return failure
                continue
            self._note_trouble(answer)
            if answer.kind == "missing_database" and not recreated:
                recreated = True  # once: a 404 that creating does not cure is waited out
                if await self._recreate_database():
                    continue
            return answer
        return None

    async def _refused(self, pending: deque[_Piece], answer: Answer, *,
                       backfill: bool) -> Answer | None:
        """Replace the first piece by what its refusal leaves to post; None, or the
        disk's answer when the dead letters could not be written (the piece stays)."""
        piece = pending[0]
        lines = piece.body.split(b"\n")
        if lines and not lines[-1]:
            lines.pop()
        if answer.kind == "too_large":
            self.stats.too_large += 1
            if len(lines) > 1:
                log.warning("InfluxDB refused a body of %d bytes as too large (%s); posting "
                            "it in halves", len(piece.body), answer.detail)
                half = len(lines) // 2
                plan = RefusalPlan([], 0, [lines[:half], lines[half:]])
            else:
                plan = RefusalPlan([(f"refused by InfluxDB ({answer.detail}): a single line "
                                     f"of {len(piece.body)} bytes is over its max-body-size",
                                     lines)], 0, [])
        else:
            plan = plan_refusal(lines, answer)
        if plan.dead:
            try:
                await self._dead_letter(plan.dead)
            except OSError as exc:
                return self._disk_failure(exc)
        pending.popleft()
        if plan.stored:
            self._stored(plan.stored, _shares(piece.values, [plan.stored, len(lines)])[0],
                         backfill=backfill)
        pending.extendleft(reversed(piece.split(plan.repost)))
        return None

    async def _dead_letter(self, groups: list[tuple[str, list[bytes]]]) -> None:
        count = sum(len(lines) for _, lines in groups)
        if self.dead_letters is not None:
            await asyncio.to_thread(self.dead_letters.add, groups)
            self.stats.dead_letter_lines += count
            self.stats.dead_letters_discarded = self.dead_letters.discarded_lines
        where = (f"kept in {self.dead_letters.directory}" if self.dead_letters is not None
                 else "given up (no dead-letter store)")
        for reason, lines in groups[:5]:
            log.error("%s: %d %s %s; the first: %.200r", reason, len(lines),
                      "line" if len(lines) == 1 else "lines", where, lines[0])
        if len(groups) > 5:
            log.error("… and %d more lines refused for other reasons, %s",
                      sum(len(lines) for _, lines in groups[5:]), where)
        self.stats.rejected_lines += count
        self.stats.last_error = groups[0][0]

    def _disk_failure(self, error: OSError) -> Answer:
        """The disk refused a spool or dead-letter write: alarm once, count every time."""
        self.stats.spool_write_failures += 1
        message = f"cannot write under {self._spool_directory()}: {describe(error)}"
        self.stats.spool_error = message
        self.stats.last_error = message
        if not self.stats.spool_failed:
            self.stats.spool_failed = True
            log.error("ALARM %s: telemetry is no longer acknowledged; the broker holds the "
                      "backlog until InfluxDB takes writes or the disk is fixed", message)
        return Answer("disk", 0, message)

    def _spool_directory(self) -> str:
        if self._spool is not None:
            return str(self._spool.directory)
        return str(self.dead_letters.directory) if self.dead_letters is not None else "?"

    def _disk_works(self) -> None:
        if self.stats.spool_failed:
            log.info("the spool under %s takes writes again", self._spool_directory())
            self.stats.spool_failed = False
            self.stats.spool_error = ""

    def _note_spool(self) -> None:
        if self._spool is not None:
            self.stats.spool_lines, self.stats.spool_bytes = self._spool.lines, self._spool.bytes

    async def _to_spool(self, pending: deque[_Piece]) -> bool:
        spool = self._spool
        if spool is None:
            return False
        body = b"".join(piece.body for piece in pending)
        lines = sum(piece.lines for piece in pending)
        values = sum(piece.values for piece in pending)
        async with self._spool_lock:
            try:
                taken = await asyncio.to_thread(spool.put, body, lines, values)
            except OSError as exc:
                self._disk_failure(exc)
                return False
            self._disk_works()
            if not taken:
                self._spool_refused = len(body)
                if not self.stats.spool_full:
                    log.error("ALARM spool full (%.0f MB of %.0f MB under %s): telemetry is no "
                              "longer acknowledged; the broker holds the backlog until "
                              "InfluxDB takes writes again", spool.bytes / 1e6,
                              spool.max_bytes / 1e6, spool.directory)
                self.stats.spool_full = True
                return False
            self.stats.spool_full = False
            self.stats.spooled_lines += lines
            self._note_spool()
        self._spool_wake.set()
        return True

    def _spool_has_room(self) -> None:
        """``spool_full`` ends as soon as the batch it refused would fit."""
        spool = self._spool
        if spool is not None and self.stats.spool_full \
                and (not len(spool) or spool.has_room(self._spool_refused)):
            self.stats.spool_full = False
            log.info("spool has room again (%.0f MB of %.0f MB)", spool.bytes / 1e6,
                     spool.max_bytes / 1e6)

    async def _post(self, body: bytes, lines: int, values: int, first: int, last: int) -> None:
        try:
            await self._store(body, lines, values)
            self._complete(first, last)
        finally:
            self._slots.release()
            if self._chunks:
                self._wake.set()
            async with self._space:
                self.stats.pending_lines -= lines
                self._space.notify_all()

    async def _store(self, body: bytes, lines: int, values: int) -> None:
        """Return once the batch is in InfluxDB, in the spool or a dead letter; until
        then retry with back-off (only cancelling stops it: then it is not stored)."""
        pending = self._pieces(body, lines, values)
        # While older batches wait in the spool, newer ones queue behind them: the
        # backfill stores them in order.
        if self._spool is not None and len(self._spool) and await self._to_spool(pending):
            return
        delay = 0.25
        while True:
            try:
                answer = await self._deliver(pending, backfill=False)
            except Exception as exc:  # a bug must not wedge the acknowledgements
                answer = self._internal(exc, "influx-post")
            if answer is None:
                return
            if await self._to_spool(pending):
                log.warning("InfluxDB write failed (%s); %d lines spooled to disk",
                            answer.detail, sum(piece.lines for piece in pending))
                return
            self.stats.retries += 1
            log.warning("InfluxDB write failed (%s); retrying %d lines in %.1f s",
                        answer.detail, sum(piece.lines for piece in pending), delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.settings.max_retry_delay)

    async def _backfill_loop(self) -> None:
        """Post spooled batches oldest first whenever InfluxDB takes them."""
        spool = self._spool
        assert spool is not None
        delay = 0.25
        while True:
            try:
                entry = spool.oldest()
                if entry is None:
                    self._spool_wake.clear()
                    if not self.stats.spool_failed:
                        await self._spool_wake.wait()
                        continue
                    # Learn that a failed disk works again even while nothing needs it.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._spool_wake.wait(),
                                               self.settings.max_retry_delay)
                    if self.stats.spool_failed:
                        await asyncio.to_thread(spool.probe)
                        self._disk_works()
                    continue
                batch, body = entry
                pending = self._pieces(body, batch.lines, batch.values)
                while (answer := await self._deliver(pending, backfill=True)) is not None:
                    log.debug("backfill waits: %s", answer.detail)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._spool_wake.wait(), delay)
                    self._spool_wake.clear()
                    delay = min(delay * 2, self.settings.max_retry_delay)
                delay = 0.25
                async with self._spool_lock:
                    try:
                        spool.remove_oldest()
                    finally:
                        self._note_spool()
                        self._spool_has_room()
                if not len(spool):
                    log.info("spool emptied: every spooled batch is in InfluxDB")
            except OSError as exc:
                self._disk_failure(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.max_retry_delay)
            except Exception as exc:  # a bug must not stop the backfill
                self._internal(exc, "influx-backfill")
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.max_retry_delay)
