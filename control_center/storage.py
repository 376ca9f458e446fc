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
import io
import logging
import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp
import numpy as np
import polars as pl

from control_center.codec import DecodedBatch
from control_center.config import InfluxSettings
from control_center.errors import ServerError
from control_center.spool import Spool

log = logging.getLogger("isls.storage")


def escape_tag(value: str) -> str:
    """Line protocol tag keys/values: escape comma, equals sign and space."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


SEQUENCE_FIELD = "sequence_count"


def _field_template(name: str, kind: str) -> str:
    if kind == "bool":
        return f"{name}=%s"
    if kind == "float":
        return f"{name}=%r"
    if kind == "text":
        return f'{name}="%s"'
    return f"{name}=%di"


def escape_text(value: str) -> str:
    """A line protocol string field value: backslash and double quote escaped (the
    decoder's text holds no line break: :func:`control_center.codec.render_text`)."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _columns(batch: DecodedBatch) -> list[tuple[str, str, np.ndarray[Any, Any]]]:
    """(field name, kind, column) in line order; kind is "float", "int", "bool" or
    "text" (strings, and unsigned 64-bit values as exact decimal text: InfluxDB 1.x
    has no unsigned type and would store those above 2**63 negative)."""
    columns: list[tuple[str, str, np.ndarray[Any, Any]]] = []
    for parameter in batch.packet.parameters:
        column = np.asarray(batch.values[parameter.name])
        if parameter.type == "string":
            columns.append((parameter.name, "text", column))
        elif parameter.is_wide_unsigned:
            columns.append((parameter.name, "text", column.astype(np.uint64).astype(str)))
        elif parameter.is_float_value:
            columns.append((parameter.name, "float", column.astype(np.float64, copy=False)))
        elif column.dtype == np.bool_:
            columns.append((parameter.name, "bool", column))
        else:
            columns.append((parameter.name, "int", column.astype(np.int64, copy=False)))
    for derived in batch.packet.derived:
        columns.append((derived.name, "float",
                        np.asarray(batch.values[derived.name], dtype=np.float64)))
    # Every point carries its packet's CCSDS sequence count: it is what gap analysis
    # needs, and a field on every point makes COUNT("sequence_count") the number of
    # packets stored, even where non-finite values left other fields out.
    columns.append((SEQUENCE_FIELD, "int", batch.sequence_counts.astype(np.int64)))
    return columns


def _prefix(batch: DecodedBatch, tags: Mapping[str, str]) -> str:
    tag_text = ",".join(f"{escape_tag(k)}={escape_tag(v)}" for k, v in sorted(tags.items()))
    return f"{batch.packet.name},{tag_text} " if tag_text else f"{batch.packet.name} "


# Polars costs about 2.5 ms a call to set up: below this many packets (the live 10 Hz
# stream between bursts) the one-packet-at-a-time path is the faster one.
_COLUMNAR_MIN_ROWS = 300


def format_lines(batch: DecodedBatch, tags: Mapping[str, str]) -> bytes:
    """One line per packet: ``packet,spacecraft=..,source=.. p1=..,p2=.. time_ns``.

    Wide lines (a field per parameter) are about four times cheaper for InfluxDB to
    ingest than a line per value. The text is built column by column in polars (Rust):
    numpy has no fast number-to-text kernel, and formatting one Python float at a
    time (``repr``) costs about 1 µs a value, which capped the ingest near 1 M values/s
    on one core (profiled: README, "Performance"). Polars writes floats in their
    shortest round-trip form, as ``repr`` does, so the stored values are the same
    (``format_lines_reference`` is the one-packet-at-a-time version the tests compare
    against). Non-finite floats cannot be stored in InfluxDB; a packet holding one is
    written without that field, through the reference path.
    """
    n = len(batch)
    if n < _COLUMNAR_MIN_ROWS:
        return format_lines_reference(batch, tags)
    columns = _columns(batch)
    if any(kind == "text" for _, kind, _ in columns):
        return format_lines_reference(batch, tags)  # rare: strings, unsigned 64-bit
    finite = np.ones(n, dtype=bool)
    for _, kind, column in columns:
        if kind == "float":
            finite &= np.isfinite(column)
    if not finite.all():
        # Rare (a sensor fault): keep packet order, the odd packets through the reference.
        rows: list[bytes] = [b""] * n
        good = np.flatnonzero(finite)
        if good.size:
            for index, line in zip(good.tolist(),
                                   format_lines(batch.take(good), tags).splitlines(True),
                                   strict=True):
                rows[index] = line
        for index in np.flatnonzero(~finite).tolist():
            rows[index] = format_lines_reference(batch.take(np.array([index])), tags)
        return b"".join(rows)
    prefix = _prefix(batch, tags)
    frame = pl.DataFrame({f"c{i}": column for i, (_, _, column) in enumerate(columns)}
                         | {"time": batch.times_ns.astype(np.int64, copy=False)})
    pieces: list[pl.Expr] = []
    for i, (name, kind, _) in enumerate(columns):
        text = pl.col(f"c{i}").cast(pl.String)
        pieces.append(pl.lit((prefix if i == 0 else ",") + name + "="))
        pieces.append(text)
        if kind == "int":
            pieces.append(pl.lit("i"))
    pieces += [pl.lit(" "), pl.col("time").cast(pl.String)]
    lines = frame.lazy().select(pl.concat_str(pieces).alias("line")).collect()
    out = io.BytesIO()
    lines.write_csv(out, include_header=False, quote_style="never", line_terminator="\n")
    return out.getvalue()


def format_lines_reference(batch: DecodedBatch, tags: Mapping[str, str]) -> bytes:
    """The same lines as ``format_lines``, one C-level ``%`` per packet (Python floats'
    ``repr``); also the path for packets holding non-finite values."""
    if len(batch) == 0:
        return b""
    prefix = _prefix(batch, tags)
    columns = _columns(batch)
    templates = [_field_template(name, kind) for name, kind, _ in columns]
    lists: list[list[Any]] = [
        np.where(column, "true", "false").tolist() if kind == "bool"
        else [escape_text(str(v)) for v in column.tolist()] if kind == "text"
        else column.tolist() for _, kind, column in columns]
    times = batch.times_ns.astype(np.int64).tolist()
    out: list[str] = []
    for row in zip(*lists, times, strict=True):
        fields = [t % v for t, v in zip(templates, row[:-1], strict=True)
                  if not (isinstance(v, float) and not math.isfinite(v))]
        out.append(f"{prefix}{','.join(fields)} {row[-1]}\n")
    return "".join(out).encode()


def influx_headers(settings: InfluxSettings) -> dict[str, str]:
    """The Authorization header for the configured token (2.x/3.x) or account (1.x)."""
    if settings.token:
        return {"Authorization": f"Token {settings.token}"}
    if settings.username and settings.password:
        pair = f"{settings.username}:{settings.password}".encode()
        return {"Authorization": f"Basic {base64.b64encode(pair).decode()}"}
    return {}


@dataclass(slots=True)
class WriterStats:
    lines_written: int = 0
    values_written: int = 0
    batches_written: int = 0
    retries: int = 0
    rejected_lines: int = 0
    pending_lines: int = 0
    last_error: str = ""
    spooled_lines: int = 0  # written to the disk spool while InfluxDB failed
    backfilled_lines: int = 0  # taken from the spool into InfluxDB
    spool_lines: int = 0  # in the spool now
    spool_bytes: int = 0
    spool_full: bool = False


class InfluxWriter:
    """Batches line protocol and posts it to ``/write``, up to ``concurrency`` at once.

    A write is posted at once while the database is idle; while posts are in flight the
    lines that arrive gather into the next batch (up to ``batch_lines``), so batches
    grow with the load and latency stays low when it is light.

    ``write()`` waits when ``max_pending_lines`` are already queued, so a slow database
    slows the pipeline down (backpressure) instead of growing memory without bound.
    A batch that fails for a transient reason (connection refused, 5xx, timeout) is
    retried with exponential back-off until it is stored or the writer is closed;
    a 4xx answer (bad data) is logged, counted and dropped, since retrying cannot fix it.
    """

    def __init__(self, settings: InfluxSettings, *, max_pending_lines: int = 200_000,
                 spool: Spool | None = None,
                 on_stored: Callable[[int], None] | None = None) -> None:
        self.settings = settings
        self.stats = WriterStats()
        # (chunk id, lines, line count, value count), in write order
        self._chunks: list[tuple[int, bytes, int, int]] = []
        self._spool = spool
        self._spool_lock = asyncio.Lock()
        self._spool_wake = asyncio.Event()
        self._backfill: asyncio.Task[None] | None = None
        # Durability bookkeeping: chunk ids are given in write order; every id up to
        # _stored_upto is in InfluxDB or in the spool. mark() tokens fire on_stored once
        # every chunk written before them is.
        self._on_stored = on_stored
        self._next_chunk = 0
        self._stored_upto = -1
        self._done: dict[int, int] = {}  # first id -> last id of finished posts past it
        self._marks: deque[tuple[int, int]] = deque()  # (last chunk id, token)
        self._progress = asyncio.Event()  # set whenever _stored_upto moves
        self._note_spool()
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
        self._flusher = asyncio.create_task(self._flush_loop(), name="influx-flush")
        if self._spool is not None:
            self._backfill = asyncio.create_task(self._backfill_loop(), name="influx-backfill")
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
                          "lost (last error: %s)", self.stats.pending_lines, timeout,
                          self.stats.last_error or "none")
                self._flusher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._flusher
                for task in self._inflight:
                    task.cancel()
            self._flusher = None
        if self._backfill is not None:
            # What is still spooled stays on disk; the next start backfills it.
            self._backfill.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._backfill
            self._backfill = None
        if self._session is not None:
            await self._session.close()
            self._session = None


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

    # ---------------------------------------------------------------- writing

    async def write(self, lines: bytes, line_count: int, value_count: int = 0) -> None:
        """Queue line protocol; returns once it is queued (waits while the queue is full)."""
        if not lines:
            return
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
        """Call ``on_stored(token)`` once everything written so far is in InfluxDB or in
        the spool (at once if it already is). Tokens must not decrease."""
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
                task = asyncio.create_task(self._post(*batch))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
                if self._chunk_lines < self.settings.batch_lines and not self._closing:
                    break
            if self._closing and not self._chunks:
                if self._inflight:
                    await asyncio.gather(*self._inflight)
                if not self._chunks:
                    return

    def _take_batch(self) -> tuple[bytes, int, int, int, int]:
        parts: list[bytes] = []
        lines = values = 0
        first = self._chunks[0][0]
        last = first
        while self._chunks and (lines == 0 or lines + self._chunks[0][2]
                                <= self.settings.batch_lines):
            last, chunk, count, value_count = self._chunks.pop(0)
            parts.append(chunk)
            lines += count
            values += value_count
        self._chunk_lines -= lines
        return b"".join(parts), lines, values, first, last

    async def send(self, body: bytes) -> tuple[str, str]:
        """One POST: ("stored" | "rejected" | "failed", detail)."""
        assert self._session is not None
        params = {"db": self.settings.database, "precision": "ns"}
        try:
            async with self._session.post(f"{self.settings.url}/write", params=params,
                                          data=body) as response:
                if response.status == 204:
                    return "stored", ""
                text = (await response.text())[:500]
                # 4xx: bad data, retrying cannot help (partial writes keep the good points).
                kind = "rejected" if 400 <= response.status < 500 else "failed"
                return kind, f"{response.status}: {text}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return "failed", str(exc) or type(exc).__name__

    def _note_spool(self) -> None:
        if self._spool is not None:
            self.stats.spool_lines, self.stats.spool_bytes = self._spool.lines, self._spool.bytes

    async def _to_spool(self, body: bytes, lines: int, values: int) -> bool:
        spool = self._spool
        if spool is None:
            return False
        async with self._spool_lock:
            if not await asyncio.to_thread(spool.put, body, lines, values):
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

    async def _post(self, body: bytes, lines: int, values: int, first: int, last: int) -> None:
        delay = 0.25
        try:
            # While older batches wait in the spool, newer ones queue behind them: the
            # backfill stores them in order.
            if self._spool is not None and len(self._spool) \
                    and await self._to_spool(body, lines, values):
                self._complete(first, last)
                return
            while True:
                outcome, detail = await self.send(body)
                if outcome == "stored":
                    self.stats.lines_written += lines
                    self.stats.values_written += values
                    self.stats.batches_written += 1
                    self._complete(first, last)
                    return
                self.stats.last_error = detail
                if outcome == "rejected":
                    self.stats.rejected_lines += lines
                    log.error("InfluxDB rejected a batch of %d lines (%s)", lines, detail)
                    self._complete(first, last)
                    return
                if await self._to_spool(body, lines, values):
                    log.warning("InfluxDB write failed (%s); %d lines spooled to disk",
                                detail, lines)
                    self._complete(first, last)
                    return
                self.stats.retries += 1
                log.warning("InfluxDB write failed (%s); retrying %d lines in %.1f s",
                            detail, lines, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.max_retry_delay)
        finally:
            self._slots.release()
            if self._chunks:
                self._wake.set()
            async with self._space:
                self.stats.pending_lines -= lines
                self._space.notify_all()

    async def _backfill_loop(self) -> None:
        """Post spooled batches oldest first whenever InfluxDB takes them."""
        spool = self._spool
        assert spool is not None
        delay = 0.25
        while True:
            entry = spool.oldest()
            if entry is None:
                self._spool_wake.clear()
                await self._spool_wake.wait()
                continue
            batch, body = entry
            outcome, detail = await self.send(body)
            if outcome == "failed":
                self.stats.last_error = detail
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._spool_wake.wait(), delay)
                self._spool_wake.clear()
                delay = min(delay * 2, self.settings.max_retry_delay)
                continue
            delay = 0.25
            async with self._spool_lock:
                spool.remove_oldest()
                self._note_spool()
            if outcome == "stored":
                self.stats.backfilled_lines += batch.lines
                self.stats.lines_written += batch.lines
                self.stats.values_written += batch.values
                if not len(spool):
                    log.info("spool emptied: every spooled batch is in InfluxDB")
            else:
                self.stats.rejected_lines += batch.lines
                log.error("InfluxDB rejected a spooled batch of %d lines (%s)",
                          batch.lines, detail)

