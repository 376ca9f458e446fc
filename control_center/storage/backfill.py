"""The writer's side of the disk spool: it takes the batches InfluxDB cannot (so their
telemetry may be acknowledged), and a backfill task posts them back oldest first once
InfluxDB takes writes again, deleting each only after InfluxDB stored it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from control_center.storage.bodies import Piece, as_pieces
from control_center.storage.delivery import Delivery
from control_center.storage.health import WriterHealth
from control_center.storage.spool import Spool

log = logging.getLogger("isls.storage")


class SpoolBackfill:
    """Spools batches into ``spool`` and backfills them through ``delivery`` (run
    :meth:`run` as a task); ``max_body`` bounds the bodies posted, ``max_retry_delay``
    the back-off while InfluxDB or the disk still fails."""

    def __init__(self, spool: Spool, delivery: Delivery, health: WriterHealth, *,
                 max_body: int, max_retry_delay: float) -> None:
        self._spool = spool
        self._delivery = delivery
        self._health = health
        self._stats = health.stats
        self._max_body = max_body
        self._max_retry_delay = max_retry_delay
        self._lock = asyncio.Lock()  # a put and the backfill's delete never interleave
        self._wake = asyncio.Event()  # something was spooled, or the disk may work again
        self._refused = 0  # size of the batch the full spool could not take
        health.spool_now(spool)
        if spool.problem:
            self._stats.spool_failed, self._stats.spool_error = True, spool.problem

    @property
    def holds_backlog(self) -> bool:
        """Older batches wait in the spool: newer ones must queue behind them."""
        return bool(len(self._spool))

    async def take(self, pending: deque[Piece]) -> bool:
        """Spool what is left of a batch; False if the spool is full or the disk refused
        it (then the batch stays with the caller, unacknowledged)."""
        spool = self._spool
        body = b"".join(piece.body for piece in pending)
        lines = sum(piece.lines for piece in pending)
        values = sum(piece.values for piece in pending)
        async with self._lock:
            try:
                taken = await asyncio.to_thread(spool.put, body, lines, values)
            except OSError as exc:
                self._health.disk_refused(exc)
                return False
            self._health.disk_works()
            if not taken:
                self._refused = len(body)
                if not self._stats.spool_full:
                    log.error("ALARM spool full (%.0f MB of %.0f MB under %s): telemetry is no "
                              "longer acknowledged; the broker holds the backlog until "
                              "InfluxDB takes writes again", spool.bytes / 1e6,
                              spool.max_bytes / 1e6, spool.directory)
                self._stats.spool_full = True
                return False
            self._stats.spool_full = False
            self._stats.spooled_lines += lines
            self._health.spool_now(spool)
        self._wake.set()
        return True

    async def run(self) -> None:
        """Post spooled batches oldest first whenever InfluxDB takes them."""
        spool = self._spool
        delay = 0.25
        while True:
            try:
                entry = spool.oldest()
                if entry is None:
                    self._wake.clear()
                    if not self._stats.spool_failed:
                        await self._wake.wait()
                        continue
                    # Learn that a failed disk works again even while nothing needs it.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self._max_retry_delay)
                    if self._stats.spool_failed:
                        await asyncio.to_thread(spool.probe)
                        self._health.disk_works()
                    continue
                batch, body = entry
                pending = as_pieces(body, batch.lines, batch.values, self._max_body)
                while (answer := await self._delivery.deliver(
                        pending, self._health.backfilled)) is not None:
                    log.debug("backfill waits: %s", answer.detail)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), delay)
                    self._wake.clear()
                    delay = min(delay * 2, self._max_retry_delay)
                delay = 0.25
                async with self._lock:
                    try:
                        spool.remove_oldest()
                    finally:
                        self._health.spool_now(spool)
                        self._has_room()
                if not len(spool):
                    log.info("spool emptied: every spooled batch is in InfluxDB")
            except OSError as exc:
                self._health.disk_refused(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_retry_delay)
            except Exception as exc:  # a bug must not stop the backfill
                self._health.internal(exc, "influx-backfill")
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_retry_delay)

    def _has_room(self) -> None:
        """``spool_full`` ends as soon as the batch it refused would fit."""
        spool = self._spool
        if self._stats.spool_full and (not len(spool) or spool.has_room(self._refused)):
            self._stats.spool_full = False
            log.info("spool has room again (%.0f MB of %.0f MB)", spool.bytes / 1e6,
                     spool.max_bytes / 1e6)
