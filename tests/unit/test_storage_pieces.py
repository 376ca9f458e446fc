"""The pieces of the InfluxDB writer on their own, in process: body cutting, the 413
plan, the acknowledgement tracker, the health counters and alarms, the batcher's
queue and backpressure, and a batch spooled while InfluxDB does not answer."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from control_center.config import InfluxSettings
from control_center.operations.servers import free_port
from control_center.storage.answers import Answer
from control_center.storage.backfill import SpoolBackfill
from control_center.storage.batching import Batcher
from control_center.storage.bodies import Piece, as_pieces, shares, split_body
from control_center.storage.delivery import Delivery
from control_center.storage.durability import Acknowledgements
from control_center.storage.health import WriterHealth, WriterStats
from control_center.storage.posting import InfluxHttp
from control_center.storage.refusals import plan_too_large
from control_center.storage.spool import Spool
from control_center.storage.storing import BatchStore


def lines(count: int, first: int = 0) -> list[bytes]:
    return [b"m v=%d %d" % (i, i) for i in range(first, first + count)]


def health_of(settings: InfluxSettings, directory: str = "/spool") -> WriterHealth:
    return WriterHealth(WriterStats(), settings, directory)


# ---------------------------------------------------------------- bodies and refusals

def test_bodies_are_cut_at_line_ends_within_the_limit() -> None:
    body = b"".join(line + b"\n" for line in lines(100))
    pieces = split_body(body, 64)
    assert b"".join(pieces) == body
    assert all(len(piece) <= 64 and piece.endswith(b"\n") for piece in pieces)
    long = b'm note="' + b"x" * 200 + b'" 1\n'
    assert split_body(b"a v=1 1\n" + long + b"b v=2 2\n", 64) \
        == [b"a v=1 1\n", long, b"b v=2 2\n"]  # a longer line is a piece of its own


def test_pieces_carry_exact_shares_of_the_counts() -> None:
    assert shares(10, [1, 1, 1]) == [3, 3, 4]
    body = b"".join(line + b"\n" for line in lines(50))
    pieces = as_pieces(body, 50, 777, 100)
    assert b"".join(piece.body for piece in pieces) == body
    assert sum(piece.lines for piece in pieces) == 50
    assert sum(piece.values for piece in pieces) == 777
    assert list(as_pieces(body, 50, 7, len(body))) == [Piece(body, 50, 7)]
    piece = Piece(b"a v=1 1\nb v=2 2\nc v=3 3\n", 3, 9)
    assert piece.each_line() == [b"a v=1 1", b"b v=2 2", b"c v=3 3"]
    halves = piece.split([[b"a v=1 1"], [], [b"b v=2 2", b"c v=3 3"]])
    assert halves == [Piece(b"a v=1 1\n", 1, 3), Piece(b"b v=2 2\nc v=3 3\n", 2, 6)]


def test_a_413_halves_the_body_and_gives_up_a_single_line() -> None:
    answer = Answer("too_large", 413, "Request Entity Too Large")
    plan = plan_too_large(lines(5), answer, 1000)
    assert plan.dead == [] and plan.stored == 0
    assert plan.repost == [lines(2), lines(3, 2)]
    single = plan_too_large(lines(1), answer, 6000)
    assert single.repost == []
    [(reason, dead)] = single.dead
    assert dead == lines(1) and "413" in reason and "6000 bytes" in reason


# ---------------------------------------------------------------- acknowledgements

def test_marks_fire_in_order_once_everything_before_them_is_durable() -> None:
    acked: list[int] = []
    acks = Acknowledgements(acked.append)
    acks.mark(1)  # nothing written yet: at once
    assert acked == [1]
    first, second = acks.written(), acks.written()
    acks.mark(2)
    third = acks.written()
    acks.mark(3)
    acks.complete(third, third)  # a later batch finished first: nothing yet
    assert acked == [1] and not acks.settled
    acks.complete(first, second)
    assert acked == [1, 2, 3] and acks.settled


def test_drained_hurries_the_batcher_and_times_out() -> None:
    async def scenario() -> tuple[bool, bool, int]:
        acks = Acknowledgements()
        chunk = acks.written()
        hurried = 0

        def hurry() -> None:
            nonlocal hurried
            hurried += 1

        timed_out = await acks.drained(0.05, hurry)
        loop = asyncio.get_running_loop()

        def finish_later() -> None:
            loop.call_soon(acks.complete, chunk, chunk)

        done = await acks.drained(5, finish_later)
        return timed_out, done, hurried

    timed_out, done, hurried = asyncio.run(scenario())
    assert (timed_out, done) == (False, True) and hurried >= 1


# ---------------------------------------------------------------- health

def test_trouble_is_counted_every_time_and_alarmed_once(
        caplog: pytest.LogCaptureFixture) -> None:
    health = health_of(InfluxSettings(url="http://influx:8086", database="isls",
                                      username="ingest"))
    refused = Answer("auth", 403, "not authorized")
    with caplog.at_level(logging.INFO, logger="isls.storage"):
        health.trouble(refused)
        health.trouble(refused)
        assert health.stats.auth_failures == 2 and health.stats.trouble == "auth"
        assert "WRITE privilege" in health.stats.last_error and "ingest" in caplog.text
        assert caplog.text.count("ALARM") == 1
        health.backfilled(10, 30)
    assert health.stats.trouble == "" and "takes writes again" in caplog.text
    assert (health.stats.lines_written, health.stats.values_written,
            health.stats.backfilled_lines, health.stats.batches_written) == (10, 30, 10, 1)


def test_a_refused_disk_is_alarmed_once_and_cleared() -> None:
    health = health_of(InfluxSettings(), "/var/lib/isls/spool")
    full = OSError(28, "No space left on device", "/var/lib/isls/spool/1.lp")
    answer = health.disk_refused(full)
    health.disk_refused(full)
    stats = health.stats
    assert answer.kind == "disk" and stats.spool_failed and stats.spool_write_failures == 2
    assert stats.spool_error.startswith("cannot write under /var/lib/isls/spool")
    assert "No space left on device" in stats.spool_error
    assert stats.problems() == {"spool_write_failures": 2, "spool_failed": 1}
    health.disk_works()
    assert not stats.spool_failed and stats.spool_error == ""


def test_refused_lines_without_a_store_are_counted_not_kept() -> None:
    health = health_of(InfluxSettings())
    health.dead_lettered([("refused by InfluxDB (400): bad", lines(3))], None)
    assert health.stats.rejected_lines == 3 and health.stats.dead_letter_lines == 0
    assert health.stats.last_error == "refused by InfluxDB (400): bad"


def test_a_failing_task_is_counted_never_unobserved() -> None:
    health = health_of(InfluxSettings())

    async def broken() -> None:
        raise RuntimeError("a bug")

    async def scenario() -> None:
        task = health.watch(broken(), "influx-post")
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)  # the done callbacks run

    asyncio.run(scenario())
    assert health.stats.task_failures == 1
    assert health.stats.last_error == "internal error in influx-post: RuntimeError: a bug"


# ---------------------------------------------------------------- batching

def test_the_batcher_holds_writes_back_while_the_queue_is_full() -> None:
    settings = InfluxSettings(batch_lines=3, flush_interval=0.01, concurrency=1)
    health = health_of(settings)
    acked: list[int] = []
    acks = Acknowledgements(acked.append)
    stored: list[tuple[bytes, int, int]] = []
    gate = asyncio.Event()

    async def store(body: bytes, count: int, values: int) -> None:
        await gate.wait()
        stored.append((body, count, values))

    async def scenario() -> bool:
        batcher = Batcher(settings, health, acks, store, max_pending=4, max_body=1000)
        batcher.start()
        for index, line in enumerate(lines(4)):
            await batcher.write(line, 1, 2)  # no line end: the batcher adds it
            acks.mark(index)
        fifth = asyncio.create_task(batcher.write(lines(1, 4)[0], 1, 2))
        await asyncio.sleep(0.1)
        held = not fifth.done() and health.stats.pending_lines == 4 and acked == []
        gate.set()
        await fifth
        acks.mark(4)
        assert await acks.drained(5, batcher.post_now)
        await batcher.finish(5)
        return held

    assert asyncio.run(scenario())
    assert acked == [0, 1, 2, 3, 4]
    assert b"".join(body for body, _, _ in stored) == b"".join(line + b"\n" for line in lines(5))
    assert all(count <= 3 for _, count, _ in stored)
    assert sum(values for _, _, values in stored) == 10
    assert health.stats.pending_lines == 0


def test_batches_stay_within_the_body_limit() -> None:
    settings = InfluxSettings(flush_interval=0.01)
    health = health_of(settings)
    acks = Acknowledgements()
    bodies: list[bytes] = []

    async def store(body: bytes, count: int, values: int) -> None:
        bodies.append(body)

    async def scenario() -> None:
        batcher = Batcher(settings, health, acks, store, max_pending=1000, max_body=20)
        for line in lines(10):
            await batcher.write(line + b"\n", 1, 0)
        batcher.start()
        await batcher.finish(5)

    asyncio.run(scenario())
    assert b"".join(bodies) == b"".join(line + b"\n" for line in lines(10))
    assert all(len(body) <= 20 for body in bodies) and len(bodies) > 1


# ---------------------------------------------------------------- storing

def test_a_batch_is_spooled_while_influxdb_does_not_answer(tmp_path: Path) -> None:
    """Nothing listens on the port: the first batch is spooled after one try, and the next
    queues behind it in the spool without being posted."""
    settings = InfluxSettings(url=f"http://127.0.0.1:{free_port()}", max_retry_delay=0.05)
    health = health_of(settings, str(tmp_path / "spool"))

    async def scenario() -> None:
        influx = InfluxHttp(settings)
        influx.open()
        delivery = Delivery(influx, health, None)
        spool = SpoolBackfill(Spool(tmp_path / "spool", 1 << 20), delivery, health,
                              max_body=1 << 20, max_retry_delay=0.05)
        store = BatchStore(delivery, spool, health, max_body=1 << 20, max_retry_delay=0.05)
        try:
            await store.store(b"m v=1 1\nm v=2 2\n", 2, 2)
            await store.store(b"m v=3 3\n", 1, 1)
        finally:
            await influx.close()

    asyncio.run(scenario())
    stats = health.stats
    assert stats.spooled_lines == 3 and stats.spool_lines == 3
    assert stats.unreachable == 1 and stats.trouble == "unreachable"
    assert stats.retries == 0 and stats.lines_written == 0


def test_without_a_spool_a_batch_is_retried_until_cancelled() -> None:
    settings = InfluxSettings(url=f"http://127.0.0.1:{free_port()}", max_retry_delay=0.05)
    health = health_of(settings)

    async def scenario() -> None:
        influx = InfluxHttp(settings)
        influx.open()
        store = BatchStore(Delivery(influx, health, None), None, health, max_body=1 << 20,
                           max_retry_delay=0.05)
        try:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(store.store(b"m v=1 1\n", 1, 1), 0.5)
        finally:
            await influx.close()

    asyncio.run(scenario())
    assert health.stats.retries >= 2 and health.stats.unreachable >= 2
    assert health.stats.lines_written == 0
