"""Line protocol and the InfluxDB writer, against a real influxd."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import numpy as np

from control_center.config import InfluxSettings
from control_center.operations.servers import InfluxServer, free_port
from control_center.storage.contract import format_lines
from control_center.storage.writer import InfluxWriter
from tests.conftest import count_points, wait_for_async
from tests.support.storage import _EDGES, _EDGES32, COLUMNAR_ROWS, _batch


def test_extreme_floats_are_stored_exactly(influxd: InfluxServer, database: str) -> None:
    """InfluxDB parses every float text the formatter writes (exponents, subnormals,
    negative zero) back to the same value: a float64 field's exactly, a float32
    parameter's ("ratio": its shortest float32 text) to a double that narrows back to
    exactly the float32, for the edge values and 20,000 random float32 bit patterns."""
    n = 20_000  # the columnar path
    edges = np.resize(np.concatenate([_EDGES, -np.array(_EDGES)]), n)
    random = np.random.default_rng(5).integers(0, 1 << 32, 2 * n, dtype=np.uint64)
    float32s = random.astype(np.uint32).view(np.float32)
    float32s = np.resize(np.concatenate([_EDGES32, float32s[np.isfinite(float32s)]]), n)
    batch = replace(_batch(n), values={**_batch(n).values, "voltage": edges,
                                       "ratio": float32s.astype(np.float64)})
    assert n > COLUMNAR_ROWS
    settings = InfluxSettings(url=influxd.url, database=database, flush_interval=0.05)

    async def scenario() -> dict[str, object]:
        async with InfluxWriter(settings) as writer:
            await writer.ensure_database()
            await writer.write(format_lines(batch, {"spacecraft": "probe"}), n, 5 * n)
        async with InfluxWriter(settings) as reader:
            return await reader.query("SELECT voltage, ratio FROM probe_hk")

    body = asyncio.run(scenario())
    rows = body["results"][0]["series"][0]["values"]  # type: ignore[index]
    assert [row[1] for row in rows] == edges.tolist()
    # InfluxDB's JSON writes a whole float without a point ("2", "-0"): json gives an int.
    stored = np.array([row[2] for row in rows], dtype=np.float64)
    assert (stored.astype(np.float32) == float32s).all()


def test_writer_stores_every_line(influxd: InfluxServer, database: str) -> None:
    settings = InfluxSettings(url=influxd.url, database=database, batch_lines=700,
                              flush_interval=0.05)

    async def scenario() -> int:
        async with InfluxWriter(settings) as writer:
            await writer.ensure_database()
            for start in range(0, 5000, 250):
                batch = _batch(250)
                shifted = replace(batch, times_ns=batch.times_ns + start * 1_000_000_000)
                await writer.write(format_lines(shifted, {"spacecraft": "probe"}), 250, 1250)
        return writer.stats.batches_written

    batches = asyncio.run(scenario())
    assert count_points(influxd, database, "probe_hk") == 5000
    assert batches >= 5000 // 700  # batched by size, not one POST per write


def test_writer_retries_until_the_database_comes_back_and_bounds_memory(
        tmp_path: Path) -> None:
    port = free_port()
    settings = InfluxSettings(url=f"http://127.0.0.1:{port}", database="isls",
                              batch_lines=100, flush_interval=0.05, max_retry_delay=0.5)

    async def scenario() -> None:
        async with InfluxWriter(settings, max_pending_lines=300) as writer:
            lines = format_lines(_batch(300), {"spacecraft": "probe"})
            await writer.write(lines, 300, 1500)
            await wait_for_async(lambda: writer.stats.retries >= 2, 10, "failed attempts")
            # The queue is full: a further write must wait (backpressure) ...
            blocked = asyncio.create_task(writer.write(
                format_lines(replace(_batch(1), times_ns=np.array([5], dtype=np.int64)),
                             {"spacecraft": "probe"}), 1, 5))
            await asyncio.sleep(0)
            assert not blocked.done()
            assert writer.stats.pending_lines == 300
            # ... until the database appears and takes the backlog.
            server = InfluxServer(tmp_path / "influx", port)
            await asyncio.to_thread(server.start)
            try:
                async with InfluxWriter(settings) as admin:
                    await admin.ensure_database()
                await asyncio.wait_for(blocked, 20)
                await wait_for_async(lambda: writer.stats.lines_written == 301, 20,
                                     "the backlog to be written")
                assert count_points(server, "isls", "probe_hk") == 301
            finally:
                await writer.close()
                await asyncio.to_thread(server.stop)

    asyncio.run(scenario())


def test_rejected_lines_are_counted_not_retried(influxd: InfluxServer, database: str) -> None:
    settings = InfluxSettings(url=influxd.url, database=database, flush_interval=0.05)

    async def scenario() -> tuple[int, int]:
        async with InfluxWriter(settings) as writer:
            await writer.ensure_database()
            await writer.write(b"probe_hk counter=1i 1\n", 1)
            await wait_for_async(lambda: writer.stats.lines_written == 1, 10, "first write")
            # The same field as a float conflicts with its integer type: a 400.
            await writer.write(b"probe_hk counter=1.5 2\n", 1)
            await wait_for_async(lambda: writer.stats.rejected_lines == 1, 10, "rejection")
        return writer.stats.retries, writer.stats.rejected_lines

    retries, rejected = asyncio.run(scenario())
    assert retries == 0 and rejected == 1
