"""Issue 13, item 6: the ingest's memory stays bounded however the broker sends.

Mosquitto 2.0.11 sends more than the client's Receive Maximum once acknowledgements
flow, so a publisher faster than the ingest used to fill aiomqtt's unbounded queue
(59,801 unread messages, 546 MB). The ingest now stops reading its socket at
RECEIVE_MAXIMUM unread messages: the backlog waits at the broker, and all of it is
stored in the end.
"""

from __future__ import annotations

import asyncio
import struct
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from control_center.config import Config
from control_center.operations.servers import InfluxServer, MosquittoServer, free_port
from control_center.pipeline.service import IngestService, wait_subscribed
from control_center.pipeline.sources import RECEIVE_MAXIMUM
from control_center.telemetry.tmdb import Tmdb
from drivers.mqtt import raw_topic
from tests.conftest import PROJECT, count_points, lander_nav_messages, wait_for_async

MESSAGES = 30_000


def one_packet_messages(tmdb: Tmdb, count: int) -> bytes:
    """``count`` one-packet messages for tests/support/flood_publisher.py, length-prefixed."""
    return b"".join(struct.pack(">I", len(p)) + p for p in lander_nav_messages(tmdb, count, 1))


def test_unread_messages_stay_bounded_when_the_broker_ignores_receive_maximum(
        config: Config, tmdbs: list[Tmdb], influxd: InfluxServer, database: str,
        tmp_path: Path) -> None:
    # A broker of its own without persistence: the bound is about delivery, and saving
    # the backlog on every change (the shipped setting) would slow the flood itself.
    mosquitto = MosquittoServer(tmp_path / "broker", free_port(), persistence=False)
    mosquitto.start()
    config = replace(config, mqtt=replace(config.mqtt, port=mosquitto.port))
    flood = tmp_path / "flood.bin"
    flood.write_bytes(one_packet_messages(tmdbs[0], MESSAGES))

    async def scenario() -> tuple[IngestService, list[int]]:
        stop = asyncio.Event()
        ingest = IngestService(config, tmdbs, archive=None, monitor=None)
        task = asyncio.create_task(ingest.run(stop))
        await wait_subscribed(ingest)
        unread: list[int] = []
        # A separate process, so that the flood is not slowed by the ingest's loop.
        publisher = await asyncio.create_subprocess_exec(
            sys.executable, str(PROJECT / "tests" / "support" / "flood_publisher.py"),
            str(mosquitto.port), raw_topic("lander"), str(flood))

        def sampled() -> bool:
            unread.append(ingest.unread_messages)
            return ingest.stats.packets["lander"] >= MESSAGES

        await wait_for_async(sampled, timeout=120, message="every flooded packet decoded")
        assert await publisher.wait() == 0
        stop.set()
        await task
        return ingest, unread

    try:
        _, unread = asyncio.run(scenario())
    finally:
        mosquitto.stop()
    assert count_points(influxd, database, "lander_nav") == MESSAGES
    # One message may arrive in the read that reaches the limit.
    assert max(unread) <= RECEIVE_MAXIMUM + 1, f"peak {max(unread)} unread messages"
    assert float(np.mean(unread)) > 0  # the flood did reach the ingest's queue


def test_an_ingest_resumes_a_session_holding_more_than_it_reads_at_once(
        config: Config, tmdbs: list[Tmdb], influxd: InfluxServer, database: str,
        tmp_path: Path) -> None:
    """Issue 16: a center's broker back from an outage holds thousands of messages for the
    ingest's session. On reconnect the broker sends RECEIVE_MAXIMUM of them before the
    SUBACKs; the ingest used to stop reading its socket at that many unread (before
    anything read them), never saw its SUBACK, timed out after 10 s and reconnected, for
    ever. Now the read limit holds only once the session is subscribed and being read."""
    mosquitto = MosquittoServer(tmp_path / "broker", free_port(), persistence=False)
    mosquitto.start()
    config = replace(config, mqtt=replace(config.mqtt, port=mosquitto.port))
    count = 3 * RECEIVE_MAXIMUM
    flood = tmp_path / "flood.bin"
    flood.write_bytes(one_packet_messages(tmdbs[0], count))

    async def run_until(ingest: IngestService, done: Callable[[], bool]) -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(ingest.run(stop))
        try:
            await wait_for_async(done, timeout=60, message="the ingest's condition")
        finally:
            stop.set()
            await task

    async def scenario() -> IngestService:
        # A first run leaves the ingest's persistent session (and its subscriptions) at
        # the broker; the flood waits in it while no ingest runs.
        first = IngestService(config, tmdbs, archive=None, monitor=None)
        await run_until(first, first.ready.is_set)
        publisher = await asyncio.create_subprocess_exec(
            sys.executable, str(PROJECT / "tests" / "support" / "flood_publisher.py"),
            str(mosquitto.port), raw_topic("lander"), str(flood))
        assert await publisher.wait() == 0
        second = IngestService(config, tmdbs, archive=None, monitor=None)
        assert second.identifier == first.identifier
        await run_until(second, lambda: second.stats.packets["lander"] >= count)
        return second

    try:
        ingest = asyncio.run(scenario())
    finally:
        mosquitto.stop()
    assert count_points(influxd, database, "lander_nav") == count
    # Only the live parameter stream (QoS 0, bounded, shed under load) may have dropped.
    assert not {k: v for k, v in ingest.stats.errors.items() if k != "publish_dropped"}
