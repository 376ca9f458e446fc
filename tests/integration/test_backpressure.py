"""Overload: when InfluxDB stops taking writes, the backlog waits at the broker, not in
the ingest's memory, and all of it is stored once the database is back. The ingest
acknowledges a message only once its packets are stored (or spooled), and the broker
sends at most RECEIVE_MAXIMUM unacknowledged ones."""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import replace
from pathlib import Path

from control_center.config import Config
from control_center.operations.servers import InfluxServer, free_port
from control_center.pipeline.alarm_stage import monitor_from_config
from control_center.pipeline.service import IngestService, wait_subscribed
from control_center.pipeline.sources import RECEIVE_MAXIMUM
from control_center.telemetry.tmdb import Tmdb
from drivers.mqtt import make_client, raw_topic
from tests.conftest import count_points, lander_nav_messages, wait_for_async

MESSAGES = 1_500
PER_MESSAGE = 100  # 150,000 packets in all


def test_a_stalled_database_holds_the_backlog_at_the_broker(
        config: Config, tmdbs: list[Tmdb], tmp_path: Path) -> None:
    server = InfluxServer(tmp_path / "influx", free_port())
    server.start()
    try:
        # No room in the spool: a hung InfluxDB's writes time out after 30 s and would go
        # to disk and be acknowledged; here nothing can be stored anywhere, so nothing
        # may be acknowledged and the broker must hold all but one window.
        settings = replace(config, influx=replace(config.influx, url=server.url,
                                                  database="stalled", spool_max_mb=0),
                           ingest=replace(config.ingest, queue_messages=10))
        messages = lander_nav_messages(tmdbs[0], MESSAGES, PER_MESSAGE)
        assert server.process is not None
        pid = server.process.pid

        async def scenario() -> IngestService:
            stop = asyncio.Event()
            ingest = IngestService(settings, tmdbs, archive=None,
                                   monitor=monitor_from_config(settings, tmdbs))
            task = asyncio.create_task(ingest.run(stop))
            await wait_subscribed(ingest)
            os.kill(pid, signal.SIGSTOP)  # InfluxDB hangs: writes neither succeed nor fail
            try:
                async with make_client(settings.mqtt, "test-overload") as client:
                    for payload in messages:
                        await client.publish(raw_topic("lander"), payload, qos=1)
                # Nothing can be stored, so nothing is acknowledged: the broker sends
                # one window of RECEIVE_MAXIMUM messages and holds the rest.
                def taken() -> int:
                    return ingest.stats.messages + ingest._queue.qsize() \
                        + ingest.unread_messages

                await wait_for_async(lambda: taken() >= RECEIVE_MAXIMUM, 20,
                                     "the broker to send a full window")
                assert taken() == RECEIVE_MAXIMUM
                assert RECEIVE_MAXIMUM < MESSAGES
            finally:
                os.kill(pid, signal.SIGCONT)
            await wait_for_async(lambda: sum(ingest.stats.packets.values())
                                 == MESSAGES * PER_MESSAGE, 120, "every packet decoded")
            stop.set()
            await task
            return ingest

        ingest = asyncio.run(scenario())
        assert ingest.stats.errors == {}
        assert count_points(server, "stalled", "lander_nav") == MESSAGES * PER_MESSAGE
    finally:
        server.stop()
