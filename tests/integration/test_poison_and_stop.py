"""Issue 13, items 1 and 2, against the real broker and InfluxDB: a poison message is
quarantined and never stops the ingest; a clean stop keeps the subscription, so what is
published while the ingest is stopped is stored when it comes back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import warnings
from collections.abc import AsyncIterator, Sequence

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from control_center.config import Config
from control_center.operations.servers import InfluxServer, MosquittoServer
from control_center.pipeline.service import IngestService, wait_subscribed
from control_center.storage.dead_letters import DeadLetterStore
from control_center.telemetry.tmdb import Tmdb
from drivers.mqtt import make_client, raw_properties, raw_topic, replay_topic
from tests.conftest import ISLS, count_points, lander_nav_messages, wait_for_async

PER_MESSAGE = 20


def properties(**user: str) -> Properties:
    result = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    result.UserProperty = list(user.items())
    return result


@contextlib.asynccontextmanager
async def running_ingest(config: Config, tmdbs: list[Tmdb]) -> AsyncIterator[IngestService]:
    """An ingest, subscribed; stopped cleanly (as SIGTERM does) on leaving."""
    stop = asyncio.Event()
    ingest = IngestService.from_config(config, tmdbs)
    task = asyncio.create_task(ingest.run(stop))
    try:
        await wait_subscribed(ingest)
        yield ingest
    finally:
        stop.set()
        await task


async def run_ingest(config: Config, tmdbs: list[Tmdb], until_packets: int,
                     publish: Sequence[tuple[str, bytes, Properties | None]]
                     ) -> IngestService:
    async with running_ingest(config, tmdbs) as ingest:
        async with make_client(config.mqtt, "test-poison-publisher") as client:
            for topic, payload, props in publish:
                await client.publish(topic, payload, qos=1, properties=props)
        await wait_for_async(lambda: ingest.stats.packets["lander"] >= until_packets
                             and ingest.stats.errors["poison_message"] >= 2)
    return ingest


def test_a_poison_message_is_quarantined_and_the_ingest_goes_on(
        config: Config, tmdbs: list[Tmdb], influxd: InfluxServer, database: str) -> None:
    """An ert beyond int64 nanoseconds once crashed the archive and, redelivered, every
    restart: now it is counted, archived, kept in the dead-letter store and
    acknowledged, and the good messages around it are stored."""
    good = lander_nav_messages(tmdbs[0], 6, PER_MESSAGE)
    poison = (raw_topic("lander"), good[0], properties(ert="9999-12-31T23:59:59Z", link="x"))
    shifted = (replay_topic("lander"), good[1], properties(
        ert="2027-01-15T08:00:00Z", link="x", shift_ns="100000000000000000000", **{
            "pass": "lander-20270115T080000Z"}))
    plain = [(raw_topic("lander"), m, raw_properties(1_800_000_000_000_000_000 + i, "test"))
             for i, m in enumerate(good[2:])]
    publish = [plain[0], poison, plain[1], shifted, plain[2], plain[3]]
    ingest = asyncio.run(run_ingest(config, tmdbs, 4 * PER_MESSAGE, publish))
    assert ingest.stats.errors["poison_message"] == 2
    assert count_points(influxd, database, "lander_nav") == 4 * PER_MESSAGE
    letters = list(DeadLetterStore(config.state_dir / "dead_letters"))
    assert [(d.topic, d.spacecraft, d.payload) for d in letters] == [
        (raw_topic("lander"), "lander", good[0]), (replay_topic("lander"), "lander", good[1])]
    assert "ert '9999-12-31T23:59:59Z'" in letters[0].reason
    assert letters[0].properties["ert"] == "9999-12-31T23:59:59Z"
    assert "shift_ns '100000000000000000000'" in letters[1].reason
    # Restarted on the same session, nothing is redelivered to crash it again.
    again = asyncio.run(run_ingest(config, tmdbs, 0, [poison, poison]))
    assert again.stats.errors["poison_message"] == 2
    assert len(list(DeadLetterStore(config.state_dir / "dead_letters"))) == 4


def test_a_clean_stop_keeps_the_subscription(
        config: Config, tmdbs: list[Tmdb], influxd: InfluxServer, database: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """Published while the ingest is stopped (cleanly, as SIGTERM does): stored once it
    is back. Before the fix a clean stop unsubscribed and 0 of them were stored."""
    messages = lander_nav_messages(tmdbs[0], 100, PER_MESSAGE)

    async def scenario() -> tuple[IngestService, IngestService]:
        async with make_client(config.mqtt, "test-stop-publisher") as client:
            async with running_ingest(config, tmdbs) as first:
                for payload in messages[:20]:
                    await client.publish(raw_topic("lander"), payload, qos=1)
                await wait_for_async(
                    lambda: first.stats.packets["lander"] >= 20 * PER_MESSAGE)
            # The ingest is down: the broker must keep these for its session.
            for payload in messages[20:]:
                await client.publish(raw_topic("lander"), payload, qos=1)
        async with running_ingest(config, tmdbs) as second:
            await wait_for_async(lambda: second.stats.packets["lander"] >= 80 * PER_MESSAGE)
            # Run until every packet is in InfluxDB, not until 80 messages were decoded:
            # were one of the first 20 delivered again, the last new one could still
            # wait at the broker when this ingest stops.
            await wait_for_async(
                lambda: count_points(influxd, database, "lander_nav") >= 100 * PER_MESSAGE,
                20, "every packet in InfluxDB")
        return first, second

    with caplog.at_level(logging.WARNING, logger="isls"):
        first, second = asyncio.run(scenario())
    # The first ingest stored all it took, acknowledged it and had the broker confirm
    # the acknowledgements before it left (the round trip of
    # MqttReader._confirm_acknowledgements).
    assert first.drained is True
    assert first.decode_store.unacknowledged == 0
    assert first.reader.acknowledgements_confirmed
    assert count_points(influxd, database, "lander_nav") == 100 * PER_MESSAGE
    redelivered = second.stats.packets["lander"] - 80 * PER_MESSAGE
    assert 0 <= redelivered <= 20 * PER_MESSAGE
    if redelivered:
        # Seen twice in CI before the confirmation round trip (3 and 5 of the first 20
        # messages, on a loaded machine), never locally: stored once all the same (point
        # identity), but a defect. Reported, with what the ingests logged, so that a
        # CI log names its cause if the round trip did not cure it (docs/operating.md).
        warnings.warn(f"{redelivered // PER_MESSAGE} of the first ingest's stored messages "
                      f"came again; logged: {[r.getMessage() for r in caplog.records]}",
                      stacklevel=1)


def test_a_topic_never_writes_outside_the_archive(
        config: Config, tmdbs: list[Tmdb], influxd: InfluxServer, database: str) -> None:
    """The spacecraft name comes from the topic: ``isls/../tm/raw`` must not make the
    archive write a directory above its own."""
    good = lander_nav_messages(tmdbs[0], 2, PER_MESSAGE)

    async def scenario() -> None:
        async with running_ingest(config, tmdbs) as ingest:
            async with make_client(config.mqtt, "test-traversal") as client:
                await client.publish("isls/../tm/raw", good[0], qos=1)
                await client.publish(raw_topic("lander"), good[1], qos=1)
            await wait_for_async(lambda: ingest.stats.packets["lander"] >= PER_MESSAGE
                                 and ingest.stats.errors["unknown_spacecraft"] >= 1)

    asyncio.run(scenario())
    archive = config.archive_dir.resolve()
    assert sorted(p.name for p in archive.iterdir()) == ["lander"]
    assert not any((archive.parent / name).exists() for name in ("tm", "raw"))
    assert not list(archive.parent.glob("*/pass.json"))


def test_dead_letters_are_listed_and_published_again(
        config: Config, tmdbs: list[Tmdb], influxd: InfluxServer, database: str,
        mosquitto: MosquittoServer) -> None:
    """`isls dead-letters` lists the quarantined messages with their reason; `replay`
    publishes a payload again with a valid earth-receive time, and it is stored."""
    good = lander_nav_messages(tmdbs[0], 1, PER_MESSAGE)
    poison = (raw_topic("lander"), good[0], properties(ert="10000-01-01T00:00:00Z"))
    asyncio.run(run_ingest(config, tmdbs, 0, [poison, poison]))
    assert count_points(influxd, database, "lander_nav") == 0
    env = {**os.environ, "ISLS_MQTT_URL": mosquitto.url, "ISLS_INFLUX_URL": influxd.url,
           "ISLS_INFLUX_DB": database, "ISLS_STATE_DIR": str(config.state_dir)}
    listed = subprocess.run([*ISLS, "dead-letters"], env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.splitlines()
    assert len(rows) == 2 and all("isls/lander/tm/raw" in r and "ert '10000-01-01" in r
                                  for r in rows), listed.stdout
    first = rows[0].split()[0]

    async def replay_into_ingest() -> None:
        async with running_ingest(config, tmdbs) as ingest:
            replayed = await asyncio.to_thread(
                subprocess.run, [*ISLS, "dead-letters", "replay", first], env=env,
                capture_output=True, text=True, timeout=60, check=False)
            assert replayed.returncode == 0, replayed.stderr
            assert "published 1 dead letter(s) again" in replayed.stdout
            await wait_for_async(lambda: ingest.stats.packets["lander"] >= PER_MESSAGE)

    asyncio.run(replay_into_ingest())
    assert count_points(influxd, database, "lander_nav") == PER_MESSAGE
    unknown = subprocess.run([*ISLS, "dead-letters", "replay", "99:1"], env=env,
                             capture_output=True, text=True, timeout=60, check=False)
    assert unknown.returncode != 0 and "no dead letter 99:1" in unknown.stderr
    assert "Traceback" not in unknown.stderr
