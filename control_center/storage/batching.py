"""From ``write()`` to posts: the queue of line protocol not yet posted, bounded
(backpressure), cut into batches, and posted up to ``concurrency`` at once.

A write is posted at once while the database is idle; while posts are in flight the
lines that arrive gather into the next batch (up to ``batch_lines`` and the body size
limit), so batches grow with the load and latency stays low when it is light.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from control_center.config import InfluxSettings
from control_center.storage.durability import Acknowledgements
from control_center.storage.health import WriterHealth

log = logging.getLogger("isls.storage")

# Makes one batch durable (body, lines, values); returns only once it is.
Store = Callable[[bytes, int, int], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Batch:
    """Chunks ``first`` to ``last`` (ids in write order), joined into one body."""

    body: bytes
    lines: int
    values: int
    first: int
    last: int


class Batcher:
    """Queues writes (waiting while ``max_pending`` lines are queued), cuts them into
    batches of at most ``batch_lines`` lines and ``max_body`` bytes, hands each to
    ``store`` and tells ``acks`` once it returned."""

    def __init__(self, settings: InfluxSettings, health: WriterHealth, acks: Acknowledgements,
                 store: Store, *, max_pending: int, max_body: int) -> None:
        self._settings = settings
        self._health = health
        self._stats = health.stats
        self._acks = acks
        self._store = store
        self._max_pending = max_pending
        self._max_body = max_body
        # (chunk id, lines, line count, value count), in write order
        self._chunks: deque[tuple[int, bytes, int, int]] = deque()
        self._chunk_lines = 0
        self._space = asyncio.Condition()  # notified whenever pending_lines drops
        self._wake = asyncio.Event()
        self._closing = False
        self._flusher: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(settings.concurrency)

    async def write(self, lines: bytes, line_count: int, value_count: int) -> None:
        """Queue line protocol; returns once it is queued (waits while the queue is full)."""
        if not lines:
            return
        if not lines.endswith(b"\n"):
            lines += b"\n"  # batches are joined: a missing line end would merge two lines
        async with self._space:
            await self._space.wait_for(lambda: self._stats.pending_lines < self._max_pending)
            # The id is taken here, under the lock, so ids follow the queue's order.
            self._chunks.append((self._acks.written(), lines, line_count, value_count))
            self._chunk_lines += line_count
            self._stats.pending_lines += line_count
        # Post at once when the database is idle (low latency at low rates); while
        # posts are in flight, lines gather into bigger batches (throughput at high
        # rates). flush_interval only bounds the wait.
        if self._chunk_lines >= self._settings.batch_lines or not self._inflight:
            self._wake.set()

    def post_now(self) -> None:
        """Post what waits for a batch without waiting for ``flush_interval``."""
        self._wake.set()

    def start(self) -> None:
        self._flusher = self._health.watch(self._flush_loop(), "influx-flush")

    async def finish(self, timeout: float) -> None:
        """Post everything queued, waiting up to ``timeout`` seconds for the database;
        then what is not stored is given up (cancelled) and said so."""
        self._closing = True
        self._wake.set()
        if self._flusher is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._flusher), timeout)
        except TimeoutError:
            log.error("InfluxDB did not accept the last %d lines within %.0f s; they are "
                      "not stored (last error: %s)", self._stats.pending_lines, timeout,
                      self._stats.last_error or "none")
            self._flusher.cancel()
            for task in self._inflight:
                task.cancel()
            await asyncio.gather(self._flusher, *self._inflight, return_exceptions=True)
        except Exception:  # already logged and counted by WriterHealth.observe
            pass
        self._flusher = None

    async def _flush_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.flush_interval)
            self._wake.clear()
            while self._chunks:
                await self._slots.acquire()
                task = self._health.watch(self._post(self._take_batch()), "influx-post")
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
                if self._chunk_lines < self._settings.batch_lines and not self._closing:
                    break
            if self._closing and not self._chunks:
                if self._inflight:
                    await asyncio.wait(set(self._inflight))  # their errors: observe
                if not self._chunks:
                    return

    def _take_batch(self) -> Batch:
        parts: list[bytes] = []
        lines = values = size = 0
        first = self._chunks[0][0]
        last = first
        while self._chunks and (lines == 0 or (
                lines + self._chunks[0][2] <= self._settings.batch_lines
                and size + len(self._chunks[0][1]) <= self._max_body)):
            last, chunk, count, value_count = self._chunks.popleft()
            parts.append(chunk)
            lines += count
            values += value_count
            size += len(chunk)
        self._chunk_lines -= lines
        return Batch(b"".join(parts), lines, values, first, last)

    async def _post(self, batch: Batch) -> None:
        try:
            await self._store(batch.body, batch.lines, batch.values)
            self._acks.complete(batch.first, batch.last)
        finally:
            self._slots.release()
            if self._chunks:
                self._wake.set()
            async with self._space:
                self._stats.pending_lines -= batch.lines
                self._space.notify_all()
