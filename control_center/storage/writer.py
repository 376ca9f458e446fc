"""InfluxDB storage: the batching, retrying async writer of line protocol.

Why not ``influxdb-client``: it is the InfluxDB 2.x client and writes to
``/api/v2/write``, which the InfluxDB 1.x server we run here answers with 404. The
v1 endpoints ``POST /write`` (line protocol) and ``/query`` (InfluxQL) are served by
1.x, and by 2.x and 3.x through their v1 compatibility layer (token in an
``Authorization: Token`` header), so the writer speaks exactly those with aiohttp
(:mod:`~control_center.storage.posting`).

Contract (docs/contracts.md, "InfluxDB contract"): one measurement per packet type named after
the packet; tags ``spacecraft`` and ``source``; one field per parameter holding the
engineering value; the point time is the packet's onboard time in UTC (ns).

:class:`InfluxWriter` is the facade; each job is its own module:

- :mod:`~control_center.storage.batching`: the write queue, batches, concurrent posts;
- :mod:`~control_center.storage.storing`: one batch made durable, or retried;
- :mod:`~control_center.storage.delivery`: pieces posted, refused lines dead-lettered;
- :mod:`~control_center.storage.answers`, :mod:`~control_center.storage.refusals`,
  :mod:`~control_center.storage.bodies`: what an answer means, which lines it refused,
  how a batch is cut into bodies;
- :mod:`~control_center.storage.backfill`: the spool taken and posted back;
- :mod:`~control_center.storage.durability`: what may be acknowledged;
- :mod:`~control_center.storage.health`: the stats and alarms.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from typing import Any

from control_center.config import InfluxSettings
from control_center.storage.backfill import SpoolBackfill
from control_center.storage.batching import Batcher
from control_center.storage.bodies import MAX_BODY_BYTES
from control_center.storage.delivery import Delivery
from control_center.storage.durability import Acknowledgements
from control_center.storage.health import WriterHealth, WriterStats
from control_center.storage.posting import InfluxHttp
from control_center.storage.spool import DeadLetters, Spool
from control_center.storage.storing import BatchStore


class InfluxWriter:
    """Batches line protocol and posts it to ``/write``, up to ``concurrency`` at once.

    A write is posted at once while the database is idle; while posts are in flight the
    lines that arrive gather into the next batch (up to ``batch_lines`` and
    ``max_body_bytes``), so batches grow with the load and latency stays low when it is
    light.

    ``write()`` waits when ``max_pending_lines`` are already queued, so a slow database
    slows the pipeline down (backpressure) instead of growing memory without bound.

    Every answer is classified (:class:`~control_center.storage.answers.Answer`). Only
    lines InfluxDB proved bad are given up: exactly those
    (:func:`~control_center.storage.refusals.plan_refusal`), kept in the dead-letter files
    under the spool (:class:`~control_center.storage.spool.DeadLetters`) and counted in
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
        if dead_letters is None and spool is not None:
            dead_letters = DeadLetters(spool.directory / "dead_letters")
        self.dead_letters = dead_letters
        max_body = max(1, max_body_bytes)
        self._health = WriterHealth(self.stats, settings, _disk_directory(spool, dead_letters))
        self._influx = InfluxHttp(settings)
        delivery = Delivery(self._influx, self._health, dead_letters)
        self._spool = None if spool is None else SpoolBackfill(
            spool, delivery, self._health, max_body=max_body,
            max_retry_delay=settings.max_retry_delay)
        store = BatchStore(delivery, self._spool, self._health, max_body=max_body,
                           max_retry_delay=settings.max_retry_delay)
        # Durability bookkeeping: mark() tokens fire on_stored once every chunk written
        # before them is in InfluxDB, in the spool or a dead letter.
        self._acks = Acknowledgements(on_stored)
        self._batcher = Batcher(settings, self._health, self._acks, store.store,
                                max_pending=max_pending_lines, max_body=max_body)
        self._backfill: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> InfluxWriter:
        self._influx.open()
        self._batcher.start()
        if self._spool is not None:
            self._backfill = self._health.watch(self._spool.run(), "influx-backfill")
        return self

    async def __aexit__(self, kind: type[BaseException] | None, value: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()

    async def close(self, timeout: float = 60.0) -> None:
        """Flush everything queued, waiting up to ``timeout`` seconds for the database."""
        await self._batcher.finish(timeout)
        if self._backfill is not None:
            # What is still spooled stays on disk; the next start backfills it.
            self._backfill.cancel()
            await asyncio.gather(self._backfill, return_exceptions=True)
            self._backfill = None
        await self._influx.close()
        self._health.summary(self.dead_letters)

    # ---------------------------------------------------------------- queries

    async def query(self, influxql: str, *, method: str = "GET") -> dict[str, Any]:
        return await self._influx.query(influxql, method=method)

    async def ensure_database(self, *, attempts: int | None = None) -> None:
        """Create the database if needed, retrying with back-off while unreachable."""
        await self._influx.ensure_database(attempts=attempts)

    # ---------------------------------------------------------------- writing

    async def write(self, lines: bytes, line_count: int, value_count: int = 0) -> None:
        """Queue line protocol; returns once it is queued (waits while the queue is full)."""
        await self._batcher.write(lines, line_count, value_count)

    def mark(self, token: int) -> None:
        """Call ``on_stored(token)`` once everything written so far is in InfluxDB, in
        the spool or a dead letter (at once if it already is). Tokens must not decrease."""
        self._acks.mark(token)

    async def drained(self, timeout: float) -> bool:
        """Wait until everything written so far is stored or spooled; False on timeout."""
        return await self._acks.drained(timeout, hurry=self._batcher.post_now)

    async def send(self, body: bytes) -> tuple[str, str]:
        """One POST: ("stored" | "rejected" | "failed", detail); "rejected" only when
        InfluxDB proved the data bad (:func:`~control_center.storage.answers.classify`)."""
        answer = await self._influx.write(body)
        kind = {"stored": "stored", "bad_data": "rejected"}.get(answer.kind, "failed")
        return kind, answer.detail[:500]


def _disk_directory(spool: Spool | None, dead_letters: DeadLetters | None) -> str:
    """Where the writer writes to disk, named when the disk refuses it."""
    if spool is not None:
        return str(spool.directory)
    return str(dead_letters.directory) if dead_letters is not None else "?"
