"""Getting one batch durable: posted into InfluxDB (or its proven-bad lines dead
letters), else spooled to disk, else kept in memory and retried with back-off. Only
cancelling stops it, and then the batch is not durable (nor acknowledged)."""

from __future__ import annotations

import asyncio
import logging

from control_center.storage.backfill import SpoolBackfill
from control_center.storage.bodies import as_pieces
from control_center.storage.delivery import Delivery
from control_center.storage.health import WriterHealth

log = logging.getLogger("isls.storage")


class BatchStore:
    """Stores batches through ``delivery``, spooling into ``spool`` (if there is one)
    while InfluxDB is in trouble."""

    def __init__(self, delivery: Delivery, spool: SpoolBackfill | None, health: WriterHealth,
                 *, max_body: int, max_retry_delay: float) -> None:
        self._delivery = delivery
        self._spool = spool
        self._health = health
        self._max_body = max_body
        self._max_retry_delay = max_retry_delay

    async def store(self, body: bytes, lines: int, values: int) -> None:
        """Return once the batch is in InfluxDB, in the spool or a dead letter; until
        then retry with back-off (only cancelling stops it: then it is not stored)."""
        pending = as_pieces(body, lines, values, self._max_body)
        spool = self._spool
        # While older batches wait in the spool, newer ones queue behind them: the
        # backfill stores them in order.
        if spool is not None and spool.holds_backlog and await spool.take(pending):
            return
        delay = 0.25
        while True:
            try:
                answer = await self._delivery.deliver(pending, self._health.stored)
            except Exception as exc:  # a bug must not wedge the acknowledgements
                answer = self._health.internal(exc, "influx-post")
            if answer is None:
                return
            if spool is not None and await spool.take(pending):
                log.warning("InfluxDB write failed (%s); %d lines spooled to disk",
                            answer.detail, sum(piece.lines for piece in pending))
                return
            self._health.stats.retries += 1
            log.warning("InfluxDB write failed (%s); retrying %d lines in %.1f s",
                        answer.detail, sum(piece.lines for piece in pending), delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_retry_delay)
