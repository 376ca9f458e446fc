"""InfluxDB's answers, classified against a real influxd: only lines it proves bad are
given up (and kept as dead letters); a missing database, refused credentials, a body too
large and a spool the disk refuses lose nothing and acknowledge nothing early."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from control_center.config import InfluxSettings
from control_center.operations.servers import InfluxServer, free_port
from control_center.storage.spool import Spool
from control_center.storage.writer import InfluxWriter
from tests.conftest import count_points, wait_for_async

BASE_NS = 1_700_000_000_000_000_000


def probe_lines(first: int, count: int) -> bytes:
    """``count`` lines, each its own point (a microsecond apart from the ``first``)."""
    return b"".join(b"probe_hk,spacecraft=probe sequence_count=%di,voltage=%d.5 %d\n"
                    % (i % 16384, i, BASE_NS + i * 1000) for i in range(first, first + count))


def dead_letter_text(directory: Path) -> str:
    return "".join(path.read_text() for path in sorted(directory.glob("*.lp")))


class SmallBodyInfluxServer(InfluxServer):
    """An influxd that refuses bodies over ``max_body`` bytes with 413."""

    def __init__(self, directory: Path, port: int, max_body: int) -> None:
        super().__init__(directory, port)
        self.max_body = max_body

    def write_config(self) -> None:
        super().write_config()
        text = self.config_path.read_text()
        assert "max-body-size = 0" in text
        self.config_path.write_text(text.replace("max-body-size = 0",
                                                 f"max-body-size = {self.max_body}"))


class LoopErrors:
    """What reaches the event loop's exception handler ("Task exception was never
    retrieved" among them)."""

    def __init__(self) -> None:
        self.contexts: list[dict[str, Any]] = []

    def install(self) -> None:
        asyncio.get_running_loop().set_exception_handler(
            lambda _loop, context: self.contexts.append(context))


def test_a_database_dropped_while_writing_loses_nothing(
        influxd: InfluxServer, database: str, tmp_path: Path) -> None:
    """DROP DATABASE in the middle of a stream of writes, CREATE a few hundred ms later:
    every line written after the drop is stored and acknowledged, none is dropped."""
    settings = InfluxSettings(url=influxd.url, database=database, flush_interval=0.02,
                              max_retry_delay=0.5)
    per_batch = 100
    acked: list[int] = []

    async def scenario() -> tuple[InfluxWriter, int, int]:
        spool = Spool(tmp_path / "spool", 1 << 30)
        written = 0
        async with InfluxWriter(settings, spool=spool, on_stored=acked.append) as writer:
            await writer.ensure_database()

            async def produce(batches: int) -> None:
                nonlocal written
                for _ in range(batches):
                    await writer.write(probe_lines(written * per_batch, per_batch), per_batch,
                                       per_batch)
                    written += 1
                    writer.mark(written)
                    await asyncio.sleep(0.005)  # the load's pace

            await produce(20)
            await wait_for_async(lambda: acked[-1:] == [20], 20, "the first writes stored")
            await asyncio.to_thread(influxd.query, f'DROP DATABASE "{database}"')
            boundary = written  # every batch from here on is posted after the drop
            producer = asyncio.create_task(produce(80))
            # A few hundred ms of writes into the missing database, then the operator
            # creates it (the writer may have done so already: then this changes nothing).
            await wait_for_async(lambda: written >= boundary + 40, 20, "writes after the drop")
            await asyncio.to_thread(influxd.query, f'CREATE DATABASE "{database}"')
            await producer
            assert await writer.drained(30)
        return writer, boundary, written

    writer, boundary, written = asyncio.run(scenario())
    after = count_points(influxd, database, "probe_hk",
                         f"WHERE time >= {BASE_NS + boundary * per_batch * 1000}")
    assert after == (written - boundary) * per_batch  # none of them lost
    assert acked[-1] == written
    assert writer.stats.rejected_lines == 0 and writer.stats.dead_letter_lines == 0
    assert writer.stats.missing_database >= 1
    assert writer.stats.trouble == ""


@pytest.fixture
def read_only_influx(tmp_path: Path) -> Iterator[tuple[InfluxServer, InfluxSettings]]:
    """An influxd with authentication on, a database, and an account that may only read
    it (a privilege changed under a running ingest answers 403 to its writes)."""
    server = InfluxServer(tmp_path / "influx-auth", free_port(), auth=True)
    server.start()
    admin = ("admin", "admin-pw")
    try:
        server.query("CREATE USER admin WITH PASSWORD 'admin-pw' WITH ALL PRIVILEGES")
        server.query('CREATE DATABASE "secure"', account=admin)
        server.query("CREATE USER ingest WITH PASSWORD 'ingest-pw'", account=admin)
        server.query('GRANT READ ON "secure" TO ingest', account=admin)
        yield server, InfluxSettings(url=server.url, database="secure", username="ingest",
                                     password="ingest-pw", flush_interval=0.02,
                                     max_retry_delay=0.3)
    finally:
        server.stop()


@pytest.mark.parametrize("spooled", [False, True], ids=["in-memory", "spooled"])
def test_a_403_is_retried_until_the_privilege_returns_and_nothing_is_dropped(
        read_only_influx: tuple[InfluxServer, InfluxSettings], tmp_path: Path,
        spooled: bool) -> None:
    server, settings = read_only_influx
    acked: list[int] = []
    total = 500

    async def scenario() -> InfluxWriter:
        spool = Spool(tmp_path / "spool", 1 << 30) if spooled else None
        async with InfluxWriter(settings, spool=spool, on_stored=acked.append) as writer:
            await writer.write(probe_lines(0, total), total, total)
            writer.mark(1)
            if spooled:
                # Durable on disk: acknowledged, and the backfill keeps trying.
                await wait_for_async(lambda: writer.stats.spooled_lines == total, 20,
                                     "the batch spooled")
                await wait_for_async(lambda: writer.stats.auth_failures >= 3, 20,
                                     "the backfill retrying")
            else:
                await wait_for_async(lambda: bool(acked) or writer.stats.retries >= 3, 20,
                                     "retries")
                assert acked == []  # not acknowledged while it is not stored
            assert writer.stats.rejected_lines == 0
            assert writer.stats.trouble == "auth"
            assert "403" in writer.stats.last_error and "WRITE" in writer.stats.last_error
            await asyncio.to_thread(server.query, 'GRANT WRITE ON "secure" TO ingest',
                                    account=("admin", "admin-pw"))
            await wait_for_async(lambda: writer.stats.lines_written == total, 20,
                                 "the lines stored once the privilege is back")
            assert await writer.drained(10)
        return writer

    writer = asyncio.run(scenario())
    result = server.query("SELECT COUNT(sequence_count) FROM probe_hk", "secure",
                          account=("admin", "admin-pw"))
    assert result["results"][0]["series"][0]["values"][0][1] == total  # type: ignore[index]
    assert acked == [1]
    assert writer.stats.rejected_lines == 0 and writer.stats.auth_failures >= 3
    assert writer.stats.trouble == ""


def test_bodies_too_large_for_the_server_are_split_until_they_fit(tmp_path: Path) -> None:
    """An influxd that takes at most 4 KiB a body: 3,000 lines (about 200 KB) are all
    stored by halving on 413; a line alone over the limit is a dead letter saying so;
    and a writer told the limit never sends a body over it."""
    server = SmallBodyInfluxServer(tmp_path / "influx-small", free_port(), max_body=4096)
    server.start()
    settings = InfluxSettings(url=server.url, database="small", flush_interval=0.02)
    total = 3000
    huge = b'probe_hk,spacecraft=probe sequence_count=1i,note="%s" %d\n' % (
        b"x" * 6000, BASE_NS - 1)

    async def split_on_413() -> InfluxWriter:
        spool = Spool(tmp_path / "spool", 1 << 30)
        async with InfluxWriter(settings, spool=spool) as writer:
            await writer.ensure_database()
            for first in range(0, total, 1000):
                await writer.write(probe_lines(first, 1000), 1000, 1000)
            await writer.write(huge, 1, 1)
            assert await writer.drained(60)
        return writer

    async def within_own_limit() -> InfluxWriter:
        async with InfluxWriter(replace(settings, database="limited"),
                                max_body_bytes=4000) as limited:
            await limited.ensure_database()
            await limited.write(probe_lines(0, total), total, total)
            assert await limited.drained(60)
        return limited

    try:
        writer = asyncio.run(split_on_413())
        assert count_points(server, "small", "probe_hk") == total
        assert writer.stats.lines_written == total
        assert writer.stats.rejected_lines == 1 and writer.stats.dead_letter_lines == 1
        assert writer.stats.too_large > 0
        text = dead_letter_text(tmp_path / "spool" / "dead_letters")
        assert "413" in text and "max-body-size" in text
        assert huge.decode() in text
        limited = asyncio.run(within_own_limit())
        assert count_points(server, "limited", "probe_hk") == total
        assert limited.stats.too_large == 0  # never over its own limit
    finally:
        server.stop()


def test_a_partial_write_refuses_exactly_the_bad_lines_and_keeps_them(
        influxd: InfluxServer, database: str, tmp_path: Path) -> None:
    """InfluxDB stores the good lines of a 400 partial write: only the refused ones are
    counted as rejected, and each is in the dead-letter file with InfluxDB's reason."""
    settings = InfluxSettings(url=influxd.url, database=database, flush_interval=0.02)
    unparsable = b"probe_hk,spacecraft=probe voltage=oops= 1699999999000000001"
    conflict = b"probe_hk,spacecraft=probe sequence_count=1i,voltage=7i 1699999999000000002"
    # One body, four refusals of which InfluxDB names only one: a string, a boolean and an
    # integer where voltage is a float, and an unparsable line it does not mention then.
    mixed = [b'probe_hk,spacecraft=probe sequence_count=1i,voltage="x" 1699999999000000003',
             b"probe_hk,spacecraft=probe sequence_count=1i,voltage=true 1699999999000000004",
             b"probe_hk,spacecraft=probe sequence_count=1i,voltage=9i 1699999999000000005",
             b"probe_hk,spacecraft=probe voltage== 1699999999000000006"]
    acked: list[int] = []

    def with_bad(first: int, bad: list[bytes]) -> bytes:
        good = probe_lines(first, 100).splitlines(keepends=True)
        for index, line in enumerate(bad):
            good.insert(17 + 23 * index, line + b"\n")
        return b"".join(good)

    async def scenario() -> InfluxWriter:
        spool = Spool(tmp_path / "spool", 1 << 30)
        async with InfluxWriter(settings, spool=spool, on_stored=acked.append) as writer:
            await writer.ensure_database()
            await writer.write(probe_lines(0, 1), 1, 1)  # voltage is a float
            assert await writer.drained(10)
            await writer.write(with_bad(1, [unparsable]), 101, 101)
            writer.mark(1)
            assert await writer.drained(30)
            # One bad line among good ones: the good ones are stored, that one refused.
            assert count_points(influxd, database, "probe_hk") == 101
            assert writer.stats.rejected_lines == 1 and writer.stats.dead_letter_lines == 1
            await writer.write(with_bad(101, [conflict]), 101, 101)
            writer.mark(2)
            await writer.write(with_bad(201, mixed), 104, 104)
            writer.mark(3)
            assert await writer.drained(30)
        return writer

    writer = asyncio.run(scenario())
    assert count_points(influxd, database, "probe_hk") == 301  # every good line
    assert writer.stats.rejected_lines == 6  # exactly the bad ones
    assert writer.stats.dead_letter_lines == 6
    assert writer.stats.lines_written == 301
    assert acked == [1, 2, 3]
    text = dead_letter_text(tmp_path / "spool" / "dead_letters")
    kept = [line for line in text.splitlines() if not line.startswith("#")]
    assert sorted(kept) == sorted(line.decode() for line in [unparsable, conflict, *mixed])
    headers = [line for line in text.splitlines() if line.startswith("# ")]
    assert any("unable to parse" in header for header in headers)
    assert any("field type conflict" in header for header in headers)
    assert all(header.split(" ")[1].endswith("Z") for header in headers)  # when, UTC


@contextlib.contextmanager
def tiny_filesystem(directory: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs at ``directory`` (the tests run as root here); where mounting is not
    possible, a path whose parent is a file, which no write can ever succeed under."""
    directory.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs",
                              str(directory)], capture_output=True, check=False).returncode == 0
    try:
        if mounted:
            yield directory / "spool"
        else:
            blocker = directory / "not-a-directory"
            blocker.write_text("a file where the spool's parent directory should be\n")
            yield blocker / "spool"
    finally:
        if mounted:
            subprocess.run(["umount", str(directory)], check=False)


def test_a_spool_on_a_full_disk_holds_the_backlog_and_loses_nothing(tmp_path: Path) -> None:
    """InfluxDB down, the spool's disk full: no task dies, the stats say so, nothing past
    the failed batch is acknowledged; once InfluxDB is back every line is stored, every
    batch acknowledged in order, and the alarm clears."""
    port = free_port()
    settings = InfluxSettings(url=f"http://127.0.0.1:{port}", database="fulldisk",
                              flush_interval=0.02, max_retry_delay=0.3, batch_lines=200)
    batches, per_batch = 60, 100  # about 6 KB a batch: 360 KB, the disk holds 64 KB
    acked: list[int] = []
    errors = LoopErrors()
    server = InfluxServer(tmp_path / "influx", port)

    async def scenario(spool_directory: Path) -> InfluxWriter:
        errors.install()
        spool = Spool(spool_directory, 1 << 30)  # its own limit is far: the disk fills
        try:
            async with InfluxWriter(settings, spool=spool, on_stored=acked.append) as writer:
                for index in range(batches):
                    await writer.write(probe_lines(index * per_batch, per_batch), per_batch,
                                       per_batch)
                    writer.mark(index + 1)
                await wait_for_async(lambda: writer.stats.retries >= 3
                                     or bool(errors.contexts), 20,
                                     "the writer to keep retrying")
                assert [context.get("message") for context in errors.contexts] == []
                assert writer.stats.spool_failed
                assert writer.stats.spool_error and writer.stats.spool_write_failures >= 1
                assert acked == list(range(1, len(acked) + 1))  # in order, then stopped
                assert len(acked) < batches
                held = len(acked)
                await wait_for_async(lambda: writer.stats.retries >= 6, 20, "more retries")
                assert len(acked) == held  # nothing acknowledged while it is not stored
                await asyncio.to_thread(server.start)
                async with InfluxWriter(settings) as admin:
                    await admin.ensure_database()
                await wait_for_async(lambda: acked[-1:] == [batches]
                                     and writer.stats.spool_lines == 0, 60,
                                     "every batch stored once InfluxDB is back")
                await wait_for_async(lambda: not writer.stats.spool_failed, 20,
                                     "the spool alarm to clear")
                assert writer.stats.spool_error == ""
                assert writer.stats.rejected_lines == 0
        finally:
            gc.collect()  # a task that died unobserved would be reported now
            await asyncio.sleep(0)
        return writer

    try:
        with tiny_filesystem(tmp_path / "small") as spool_directory:
            writer = asyncio.run(scenario(spool_directory))
        assert count_points(server, "fulldisk", "probe_hk") == batches * per_batch
        assert acked == list(range(1, batches + 1))
        assert writer.stats.task_failures == 0
        assert [context.get("message") for context in errors.contexts] == []
    finally:
        server.stop()


def test_spool_full_clears_as_soon_as_the_spool_has_room(tmp_path: Path) -> None:
    """The spool fills while InfluxDB is down; once the backfill has made room the alarm
    is off, without waiting for the next outage to spool something."""
    port = free_port()
    settings = InfluxSettings(url=f"http://127.0.0.1:{port}", database="refill",
                              flush_interval=0.02, max_retry_delay=0.3, batch_lines=100)
    batches, per_batch = 12, 100
    acked: list[int] = []
    server = InfluxServer(tmp_path / "influx", port)

    async def scenario() -> InfluxWriter:
        spool = Spool(tmp_path / "spool", 4 * len(probe_lines(0, per_batch)))
        async with InfluxWriter(settings, spool=spool, on_stored=acked.append) as writer:
            for index in range(batches):
                await writer.write(probe_lines(index * per_batch, per_batch), per_batch,
                                   per_batch)
                writer.mark(index + 1)
            await wait_for_async(lambda: writer.stats.spool_full, 20, "the spool to fill")
            assert len(acked) < batches
            await asyncio.to_thread(server.start)
            async with InfluxWriter(settings) as admin:
                await admin.ensure_database()
            await wait_for_async(lambda: acked[-1:] == [batches], 60, "everything stored")
            await wait_for_async(lambda: writer.stats.spool_lines == 0, 20, "the spool empty")
            assert not writer.stats.spool_full
        return writer

    try:
        writer = asyncio.run(scenario())
        assert count_points(server, "refill", "probe_hk") == batches * per_batch
        assert writer.stats.rejected_lines == 0
    finally:
        server.stop()
