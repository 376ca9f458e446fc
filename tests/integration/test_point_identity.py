"""Every packet its own InfluxDB point, on the live MQTT path against the real servers.

InfluxDB keeps one point per measurement, tag set and timestamp: packets that share a
timestamp silently merge (issue "Real mission telemetry, exactly"). These tests send
exactly the packets that used to merge — no onboard time, a coarse onboard clock, a
NaN in the last packet of a message — and count the points InfluxDB holds.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import numpy as np
import pytest

from control_center.config import Config
from control_center.operations.servers import InfluxServer
from control_center.pipeline.service import IngestService, wait_subscribed
from control_center.telemetry.codec import PacketCodec
from control_center.telemetry.packets import CucTime
from control_center.telemetry.tmdb import Tmdb
from control_center.telemetry.tmdb_yaml import parse_tmdb
from drivers.mqtt import make_client, raw_properties, raw_topic
from tests.conftest import count_points, wait_for_async

PROBE: dict[str, Any] = {
    "spacecraft": "probe",
    "packets": [
        {"name": "probe_rx", "apid": 0x20, "time": "receive", "error_control": "none",
         "parameters": [
             {"name": "level", "type": "float", "bit_length": 32},
             {"name": "counter", "type": "unsigned", "bit_length": 64},
             {"name": "label", "type": "string", "bit_length": 64},
             {"name": "mode", "type": "enum", "bit_length": 8,
              "states": {0: "OFF", "[1,9]": "LOW", "[10,255]": "HIGH"}},
         ]},
        {"name": "probe_coarse", "apid": 0x21,
         "parameters": [
             {"name": "v", "type": "float", "bit_length": 64},
             {"name": "w", "type": "float", "bit_length": 64},
         ]},
    ],
}


@pytest.fixture
def probe() -> Tmdb:
    return parse_tmdb(PROBE, "probe.yaml")


def rx_packets(tmdb: Tmdb, first: int, count: int) -> bytes:
    codec = PacketCodec("probe", tmdb.packet("probe_rx"))
    index = np.arange(first, first + count)
    return codec.encode({"level": index * 0.5,
                         "counter": np.full(count, (1 << 64) - 2, dtype=np.uint64),
                         "label": [f"pk{i}" for i in index.tolist()],
                         "mode": index % 256},
                        coarse=0, fine=0, sequence_counts=np.zeros(count, dtype=np.int64),
                        raw=True)


def coarse_packets(tmdb: Tmdb, v: list[float], w: list[float], first_count: int) -> bytes:
    """Packets that all carry the same onboard time, a whole second (a coarse clock)."""
    codec = PacketCodec("probe", tmdb.packet("probe_coarse"))
    n = len(v)
    time = CucTime.from_unix(1_800_000_000)
    return codec.encode({"v": np.array(v), "w": np.array(w)}, coarse=np.full(n, time.coarse),
                        fine=np.zeros(n, dtype=np.int64),
                        sequence_counts=np.arange(first_count, first_count + n))


async def publish_and_store(config: Config, tmdb: Tmdb, messages: list[tuple[bytes, int]],
                            influxd: InfluxServer, database: str, measurement: str,
                            expected: int, decoded: int | None = None) -> IngestService:
    """Publish (payload, ert ns) messages to the probe's raw topic through a real
    Mosquitto into a real ingest; return once ``expected`` points are in InfluxDB."""
    stop = asyncio.Event()
    ingest = IngestService.from_config(config, [tmdb])
    task = asyncio.create_task(ingest.run(stop))
    try:
        await wait_subscribed(ingest)
        async with make_client(config.mqtt, "test-point-identity") as client:
            for payload, ert in messages:
                await client.publish(raw_topic("probe"), payload, qos=1,
                                     properties=raw_properties(ert, "test"))
        await wait_for_async(lambda: ingest.stats.packets["probe"] >= (decoded or expected))
    finally:
        stop.set()
        await task
    assert count_points(influxd, database, measurement) == expected
    return ingest


def test_packets_without_onboard_time_in_one_message_are_each_a_point(
        config: Config, probe: Tmdb, influxd: InfluxServer, database: str) -> None:
    ert = 1_800_000_000_000_000_000
    messages = [(rx_packets(probe, 0, 40), ert), (rx_packets(probe, 40, 40), ert + 1_000_000)]
    ingest = asyncio.run(publish_and_store(config, probe, messages, influxd, database,
                                           "probe_rx", 80))
    assert ingest.stats.errors.total() == 0
    result = influxd.query('SELECT "level", "counter", "label", "mode" FROM "probe_rx"',
                           database)
    rows = result["results"][0]["series"][0]["values"]  # type: ignore[index]
    assert [row[1] for row in rows] == [i * 0.5 for i in range(80)]
    # InfluxDB 1.x has no unsigned type: 2**64 - 2 is kept exact as decimal text.
    assert {row[2] for row in rows} == {str((1 << 64) - 2)}
    assert [row[3] for row in rows] == [f"pk{i}" for i in range(80)]
    assert [row[4] for row in rows] == [i % 256 for i in range(80)]
    # The first packet of a message sits on its earth-receive time, the others 1 ns apart.
    assert [row[0] for row in rows] == [ert + i for i in range(40)] \
        + [ert + 1_000_000 + i for i in range(40)]


def test_same_coarse_onboard_time_in_separate_messages_stays_apart(
        config: Config, probe: Tmdb, influxd: InfluxServer, database: str) -> None:
    ert = 1_800_000_000_500_000_000
    messages = [(coarse_packets(probe, [float(i)], [0.0], i), ert + i * 1000)
                for i in range(10)]
    asyncio.run(publish_and_store(config, probe, messages, influxd, database,
                                  "probe_coarse", 10))
    result = influxd.query('SELECT "v" FROM "probe_coarse"', database)
    rows = result["results"][0]["series"][0]["values"]  # type: ignore[index]
    assert [row[1] for row in rows] == [float(i) for i in range(10)]
    # One coarse second for all: the sequence count, in ns, keeps them apart.
    assert [row[0] for row in rows] == [1_800_000_000_000_000_000 + i for i in range(10)]


def test_nan_in_the_last_packet_never_shows_another_packets_value(
        config: Config, probe: Tmdb, influxd: InfluxServer, database: str) -> None:
    ert = 1_800_000_001_000_000_000
    nan = math.nan
    payload = coarse_packets(probe, [1.0, 2.0, nan, nan], [10.0, 20.0, 30.0, nan], 100)
    asyncio.run(publish_and_store(config, probe, [(payload, ert)], influxd, database,
                                  "probe_coarse", 4))
    result = influxd.query('SELECT "v", "w", "sequence_count" FROM "probe_coarse"', database)
    rows = result["results"][0]["series"][0]["values"]  # type: ignore[index]
    assert [row[1:] for row in rows] == [[1.0, 10.0, 100], [2.0, 20.0, 101],
                                         [None, 30.0, 102], [None, None, 103]]


def test_the_same_packet_twice_is_one_point(
        config: Config, probe: Tmdb, influxd: InfluxServer, database: str) -> None:
    """A redelivered message, or a packet heard by two stations: same packet, same point."""
    payload = coarse_packets(probe, [1.0, 2.0, 3.0], [0.0, 0.0, 0.0], 7)
    messages = [(payload, 1_800_000_002_000_000_000), (payload, 1_800_000_002_700_000_000)]
    ingest = asyncio.run(publish_and_store(config, probe, messages, influxd, database,
                                           "probe_coarse", 3, decoded=6))
    assert ingest.stats.packets["probe"] == 6
