"""The broker under faults and hostile clients (issue 13, items 5 and 7), on a real
Mosquitto started for each test: a SIGKILL right after the publisher's PUBACKs, and a
partner account that asks for the ingest's client id."""

from __future__ import annotations

import asyncio
import gc
import shutil
import struct
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import aiomqtt
import pytest

from control_center.config import Config, MqttSettings
from control_center.operations.security import (
    INGEST,
    account_settings,
    accounts,
    agency_account,
    simulator_account,
    write_broker_security,
)
from control_center.operations.servers import MosquittoServer, free_port
from control_center.pipeline.service import IngestService
from control_center.telemetry.tmdb import Tmdb
from drivers.mqtt import make_client, raw_subscription, raw_topic
from tests.conftest import wait_for_async

SUBSCRIBER = "test-persistent-subscriber"


async def _subscribe_and_leave(settings: MqttSettings, identifier: str, topic: str) -> None:
    """A persistent session (as the ingest's: clean start off, an hour's expiry) that
    is subscribed and away: the broker queues for it."""
    async with make_client(settings, identifier, clean_start=False,
                           session_expiry=3600) as client:
        await client.subscribe(topic, qos=1)


async def _receive(settings: MqttSettings, identifier: str, quiet: float = 2.0,
                   clean_start: bool = False) -> list[aiomqtt.Message]:
    """What a client with ``identifier`` is given until ``quiet`` s pass without one."""
    received: list[aiomqtt.Message] = []
    async with make_client(settings, identifier, clean_start=clean_start,
                           session_expiry=3600) as client:
        while True:
            try:
                async with asyncio.timeout(quiet):
                    received.append(await anext(aiter(client.messages)))
            except TimeoutError:
                return received


def test_a_broker_sigkill_right_after_the_pubacks_loses_nothing_acknowledged(
        tmp_path: Path) -> None:
    """Messages queued for a persistent subscriber that is away, each acknowledged to
    the publisher, survive a SIGKILL of the broker 50 ms after the last PUBACK (the
    configuration before issue 13 saved every 10 s and lost them all)."""
    broker = MosquittoServer(tmp_path / "mosquitto", free_port())
    broker.start()
    settings = MqttSettings(port=broker.port)
    count = 400
    topic = raw_topic("lander")

    async def publish() -> None:
        async with make_client(settings, "test-publisher") as client:
            for index in range(count):
                await client.publish(topic, struct.pack(">I", index) + bytes(500), qos=1)

    try:
        asyncio.run(_subscribe_and_leave(settings, SUBSCRIBER, topic))
        asyncio.run(publish())  # returns once the broker has acknowledged the last one
        time.sleep(0.05)
        broker.kill()  # SIGKILL
        broker.start()  # the same port, the same persistence directory
        received = asyncio.run(_receive(settings, SUBSCRIBER))
    finally:
        broker.stop()
    indices = sorted(struct.unpack(">I", _octets(m)[:4])[0] for m in received)
    assert indices == list(range(count)), f"{count - len(set(indices))} of {count} lost"


def _octets(message: aiomqtt.Message) -> bytes:
    assert isinstance(message.payload, bytes)
    return message.payload


@pytest.fixture
def locked_broker(config: Config, tmdbs: list[Tmdb], tmp_path: Path
                  ) -> Iterator[tuple[MosquittoServer, Config, dict[str, str]]]:
    """A broker with the generated accounts and ACL, and the configuration using it."""
    names = [a.name for a in accounts(config, tmdbs)]
    env = {"ISLS_MQTT_PASSWORD_" + n.upper().replace("-", "_"): f"pw-{n}" for n in names}
    port = free_port()
    env["ISLS_MQTT_PARTNER_PORT"] = str(free_port())
    local = replace(config, mqtt=replace(config.mqtt, port=port, external=False))
    security = write_broker_security(tmp_path / "security", local, tmdbs, env)
    broker = MosquittoServer(tmp_path / "mosquitto", port, security=security)
    broker.start()
    yield broker, local, env
    broker.stop()


def test_an_agency_cannot_use_the_ingests_client_id(
        locked_broker: tuple[MosquittoServer, Config, dict[str, str]],
        tmdbs: list[Tmdb]) -> None:
    """Issue 13, item 7: an agency account connecting with the ingest's client id neither
    disconnects the ingest nor is given the telemetry queued for it (its own agency's or
    another's)."""
    _broker, config, env = locked_broker
    ingest_settings = account_settings(config, INGEST, env)
    identifier = IngestService(config, tmdbs, archive=None, monitor=None).identifier
    cnsa = account_settings(config, agency_account("cnsa"), env)  # reads the orbiter
    simulators = {sc: account_settings(config, simulator_account(sc), env)
                  for sc in ("lander", "orbiter")}

    async def publish(count: int) -> None:
        for spacecraft, settings in simulators.items():
            async with make_client(settings, f"test-sim-{spacecraft}") as client:
                for index in range(count):
                    await client.publish(raw_topic(spacecraft), struct.pack(">I", index),
                                         qos=1)

    async def while_the_ingest_is_away() -> None:
        await _subscribe_and_leave(ingest_settings, identifier, raw_subscription(""))
        await publish(20)
        # On its own port, the agency's id becomes its user name: it gets its own
        # (empty) session, not the ingest's 40 queued messages.
        stolen = await _receive(cnsa, identifier, quiet=1.5)
        assert stolen == []
        # On the control center's port, an agency account cannot log in at all.
        with pytest.raises(aiomqtt.MqttError):
            async with make_client(replace(cnsa, port=config.mqtt.port), identifier,
                                   clean_start=False, session_expiry=3600):
                pass
        back = await _receive(ingest_settings, identifier)
        assert sorted(str(m.topic) for m in back) == \
            ["isls/lander/tm/raw"] * 20 + ["isls/orbiter/tm/raw"] * 20

    async def while_the_ingest_is_connected() -> None:
        async with make_client(ingest_settings, identifier, clean_start=False,
                               session_expiry=3600) as ingest:
            await ingest.subscribe(raw_subscription(""), qos=1)
            for _ in range(3):
                async with make_client(cnsa, identifier, clean_start=False,
                                       session_expiry=3600):
                    await asyncio.sleep(0.2)
            await publish(5)
            received = []
            async with asyncio.timeout(10):  # a disconnected client raises instead
                async for message in ingest.messages:
                    received.append(message)
                    if len(received) == 10:
                        break
            assert len(received) == 10

    asyncio.run(while_the_ingest_is_away())
    asyncio.run(while_the_ingest_is_connected())


def test_the_local_brokers_save_interval_comes_from_the_config(tmp_path: Path) -> None:
    """`mqtt.broker_save_every` trades durability for publishing speed (docs/operating.md, "The
    broker: crashes"): it is what `isls up` writes into the broker's config."""
    from control_center.config import load_config
    from control_center.errors import ConfigError

    source = Path(__file__).resolve().parents[2] / "config" / "isls.toml"
    assert load_config(source, {}).mqtt.broker_save_every == 1  # nothing acknowledged lost
    custom = tmp_path / "isls.toml"
    shutil.copytree(source.parent / "tmdb", tmp_path / "tmdb")  # the config's relative paths
    text = source.read_text()
    custom.write_text(text.replace("broker_save_every = 1", "broker_save_every = 50"))
    config = load_config(custom, {})
    assert config.mqtt.broker_save_every == 50
    broker = MosquittoServer(tmp_path / "broker", free_port(),
                             autosave=(True, config.mqtt.broker_save_every))
    broker.directory.mkdir(parents=True)
    broker.write_config()
    written = broker.config_path.read_text()
    assert "autosave_on_changes true" in written and "autosave_interval 50" in written
    custom.write_text(text.replace("broker_save_every = 1", "broker_save_every = 0"))
    with pytest.raises(ConfigError, match=r"mqtt\.broker_save_every"):
        load_config(custom, {})


def test_a_broker_gone_under_an_idle_client_leaves_no_traceback(tmp_path: Path) -> None:
    """A publisher waiting for its next message when its broker goes away: aiomqtt keeps
    the disconnection as a future's exception that nothing reads, and asyncio printed
    "Future exception was never retrieved" with a traceback when it was collected (seen
    in `isls up --network` while a center's broker was down)."""
    broker = MosquittoServer(tmp_path / "broker", free_port(), persistence=False)
    reported: list[str] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: reported.append(context["message"]))
        clients = [make_client(MqttSettings(port=broker.port, keepalive=5), "test-idle")]
        async with clients[0]:
            broker.stop()
            await wait_for_async(lambda: clients[0]._disconnected.done(), 10,
                                 "the client to see its broker gone")
        clients.clear()
        gc.collect()
        await asyncio.sleep(0)  # the collected future's report is a loop callback

    broker.start()
    try:
        asyncio.run(scenario())
    finally:
        broker.stop()
    assert reported == []
