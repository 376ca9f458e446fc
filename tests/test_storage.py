"""Line protocol and the InfluxDB writer, against a real influxd."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from control_center.config import InfluxSettings
from control_center.operations.servers import InfluxServer, free_port
from control_center.storage import contract as storage
from control_center.storage.contract import escape_tag, format_lines, format_lines_reference
from control_center.storage.writer import InfluxWriter
from control_center.telemetry.records import DecodedBatch
from control_center.telemetry.tmdb_yaml import parse_tmdb
from tests.conftest import count_points, wait_for_async

PACKET = parse_tmdb({"spacecraft": "probe", "packets": [{
    "name": "probe_hk", "apid": 1, "parameters": [
        {"name": "voltage", "bit_length": 16, "type": "unsigned",
         "calibration": {"polynomial": [0, 0.01]}},
        {"name": "counter", "bit_length": 16, "type": "unsigned"},
        {"name": "mode", "bit_length": 8, "type": "enum", "states": {0: "OFF", 1: "ON"}},
        {"name": "heater", "bit_length": 8, "type": "boolean"},
        {"name": "ratio", "bit_length": 32, "type": "float"},
    ]}]}, "test").packets[0]


def _batch(n: int, ratio: np.ndarray | None = None) -> DecodedBatch:
    return DecodedBatch(
        spacecraft="probe", packet=PACKET,
        times_ns=np.arange(n, dtype=np.int64) * 1_000_000_000 + 1_700_000_000_000_000_000,
        sequence_counts=np.arange(n, dtype=np.uint16),
        values={"voltage": np.linspace(27.0, 28.0, n), "counter": np.arange(n),
                "mode": np.arange(n) % 2, "heater": np.arange(n) % 2 == 0,
                "ratio": np.full(n, 0.5) if ratio is None else ratio},
        raw={})


def test_line_protocol_types_and_tags() -> None:
    lines = format_lines(_batch(2), {"spacecraft": "probe", "source": "live"}).decode()
    first, second = lines.splitlines()
    assert first == ("probe_hk,source=live,spacecraft=probe voltage=27.0,counter=0i,mode=0i,"
                     "heater=true,ratio=0.5,sequence_count=0i 1700000000000000000")
    assert second.startswith("probe_hk,source=live,spacecraft=probe voltage=28.0,counter=1i,"
                             "mode=1i,heater=false")


def test_non_finite_floats_are_left_out_of_their_line_only() -> None:
    ratio = np.array([0.5, np.nan, np.inf, 0.25])
    lines = format_lines(_batch(4, ratio), {"spacecraft": "probe"}).decode().splitlines()
    assert len(lines) == 4
    assert "ratio=0.5" in lines[0] and "ratio=0.25" in lines[3]
    assert "ratio" not in lines[1] and "ratio" not in lines[2]
    assert "nan" not in "".join(lines) and "inf" not in "".join(lines)


def _parsed(text: bytes) -> list[tuple[str, dict[str, object], int]]:
    """Lines as (measurement and tags, field values as numbers/booleans, time)."""
    out: list[tuple[str, dict[str, object], int]] = []
    for line in text.decode().splitlines():
        head, fields, stamp = line.split(" ")
        values: dict[str, object] = {}
        for item in fields.split(","):
            name, value = item.split("=")
            if value in ("true", "false"):
                values[name] = value == "true"
            elif value.endswith("i"):
                values[name] = int(value[:-1])
            else:
                values[name] = float(value)
        out.append((head, values, int(stamp)))
    return sorted(out, key=lambda row: row[2])


COLUMNAR_ROWS = 400  # above storage._COLUMNAR_MIN_ROWS
_FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)
_EDGES = [5e-324, -5e-324, 1.7976931348623157e308, 1e20, 1e16, 1e-7, -0.0, 0.1 + 0.2,
          123456789012345678.0, 2.0**53 + 2]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_FLOATS, st.integers(0, 65535), st.integers(0, 255), st.booleans(),
                          st.sampled_from(_EDGES) | _FLOATS), min_size=1, max_size=40))
def test_columnar_lines_hold_exactly_the_reference_values(
        rows: list[tuple[float, int, int, bool, float]]) -> None:
    """Polars' float text parses back to the same float64 as Python's repr, row by row,
    with non-finite fields left out exactly as the reference does."""
    assert COLUMNAR_ROWS > storage._COLUMNAR_MIN_ROWS
    rows = (rows * (COLUMNAR_ROWS // len(rows) + 1))[:COLUMNAR_ROWS]  # the columnar path
    n = len(rows)
    batch = replace(_batch(n), values={
        "voltage": np.array([r[0] for r in rows]), "counter": np.array([r[1] for r in rows]),
        "mode": np.array([r[2] for r in rows]), "heater": np.array([r[3] for r in rows]),
        "ratio": np.array([r[4] for r in rows])})
    tags = {"spacecraft": "probe", "source": "live"}
    fast = _parsed(format_lines(batch, tags))
    assert fast == _parsed(format_lines_reference(batch, tags))
    for (_, values, _), row in zip(fast, rows, strict=True):
        if np.isfinite(row[4]):
            stored = values["ratio"]
            assert isinstance(stored, float)
            assert np.float64(stored).tobytes() == np.float64(row[4]).tobytes()


def test_extreme_floats_are_stored_exactly(influxd: InfluxServer, database: str) -> None:
    """InfluxDB parses every float text the formatter writes (exponents, subnormals,
    negative zero) back to the same value."""
    edges = np.resize(np.array(_EDGES), COLUMNAR_ROWS)  # the columnar path
    n = len(edges)
    batch = replace(_batch(n), values={**_batch(n).values, "ratio": edges, "voltage": -edges})
    settings = InfluxSettings(url=influxd.url, database=database, flush_interval=0.05)

    async def scenario() -> dict[str, object]:
        async with InfluxWriter(settings) as writer:
            await writer.ensure_database()
            await writer.write(format_lines(batch, {"spacecraft": "probe"}), n, 5 * n)
        async with InfluxWriter(settings) as reader:
            return await reader.query("SELECT voltage, ratio FROM probe_hk")

    body = asyncio.run(scenario())
    rows = body["results"][0]["series"][0]["values"]  # type: ignore[index]
    assert [row[2] for row in rows] == edges.tolist()
    assert [row[1] for row in rows] == (-edges).tolist()


def test_tag_escaping() -> None:
    assert escape_tag("a b,c=d") == "a\\ b\\,c\\=d"


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
