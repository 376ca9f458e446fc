"""Posting the pieces of one batch in order until each line is in InfluxDB or, when
InfluxDB proved it bad, a dead letter; stopping at the first trouble that is not the
data's (and handing that answer back, the pieces left to post kept)."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from control_center.storage.answers import Answer
from control_center.storage.bodies import Piece, shares
from control_center.storage.health import WriterHealth
from control_center.storage.posting import InfluxHttp
from control_center.storage.refusals import plan_refusal, plan_too_large
from control_center.storage.spool import DeadLetters

log = logging.getLogger("isls.storage")

# Told how many lines (and values) InfluxDB took: live ones or backfilled ones.
Record = Callable[[int, int], None]


class Delivery:
    """Posts pieces through ``influx``; refused lines go to ``dead_letters`` (or are only
    counted and logged without a store); what happens is reported to ``health``."""

    def __init__(self, influx: InfluxHttp, health: WriterHealth,
                 dead_letters: DeadLetters | None) -> None:
        self._influx = influx
        self._health = health
        self._dead_letters = dead_letters

    async def deliver(self, pending: deque[Piece], record: Record) -> Answer | None:
        """Post ``pending`` in order until every line is stored or a dead letter (None),
        or until trouble that is not the data's: that answer, ``pending`` holding what
        is left to store. ``record`` is told each time InfluxDB took lines."""
        recreated = False
        while pending:
            piece = pending[0]
            answer = await self._influx.write(piece.body)
            if answer.kind == "stored":
                pending.popleft()
                record(piece.lines, piece.values)
                continue
            if answer.kind in ("bad_data", "too_large"):
                failure = await self._refused(pending, answer, record)
                if failure is not None:
                    return failure
                continue
            self._health.trouble(answer)
            if answer.kind == "missing_database" and not recreated:
                recreated = True  # once: a 404 that creating does not cure is waited out
                if await self._influx.recreate_database():
                    continue
            return answer
        return None

    async def _refused(self, pending: deque[Piece], answer: Answer,
                       record: Record) -> Answer | None:
        """Replace the first piece by what its refusal leaves to post; None, or the
        disk's answer when the dead letters could not be written (the piece stays)."""
        piece = pending[0]
        lines = piece.each_line()
        if answer.kind == "too_large":
            self._health.stats.too_large += 1
            if len(lines) > 1:
                log.warning("InfluxDB refused a body of %d bytes as too large (%s); posting "
                            "it in halves", len(piece.body), answer.detail)
            plan = plan_too_large(lines, answer, len(piece.body))
        else:
            plan = plan_refusal(lines, answer)
        if plan.dead:
            try:
                await self._dead_letter(plan.dead)
            except OSError as exc:
                return self._health.disk_refused(exc)
        pending.popleft()
        if plan.stored:
            record(plan.stored, shares(piece.values, [plan.stored, len(lines)])[0])
        pending.extendleft(reversed(piece.split(plan.repost)))
        return None

    async def _dead_letter(self, groups: list[tuple[str, list[bytes]]]) -> None:
        if self._dead_letters is not None:
            await asyncio.to_thread(self._dead_letters.add, groups)
        self._health.dead_lettered(groups, self._dead_letters)
