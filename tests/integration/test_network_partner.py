"""What crosses between the ground network's control centers and partners, on real
Mosquitto 2.0.11 brokers configured as control_center/network generates them:

- a partner's broker admits its accounts only, and its own account reads exactly its
  share: a wider subscription is granted but delivers nothing more;
- a center's bridge brings the partner exactly its agreement (spacecraft and kinds of
  data), and the partner's broker refuses what a misconfigured bridge pushes beyond it;
- an operator's alarm command given at one center reaches every center exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import aiomqtt
import numpy as np
import pytest
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.reasoncodes import ReasonCode

from control_center.config import Config, MqttSettings
from control_center.monitoring.alarms import Alarm, AlarmManager
from control_center.monitoring.limits import OK, RED_HIGH
from control_center.network.accounts import PartnerBroker, partner_broker
from control_center.network.bridges import bridge_name, center_bridges
from control_center.network.sites import Network, load_network
from control_center.operations.alarm_console import command_alarm
from control_center.operations.security import password_file_text
from control_center.operations.servers import (
    InfluxServer,
    MosquittoServer,
    free_port,
    write_private,
)
from control_center.pipeline.service import IngestService, wait_subscribed
from control_center.telemetry.codec import PacketCodec
from control_center.telemetry.packets import CucTime
from control_center.telemetry.tmdb import Tmdb
from drivers.mqtt import ALARM_COMMAND_TOPIC, alarms_topic, make_client, param_topic, raw_topic
from drivers.paho_adapter import publish_refusals
from tests.conftest import wait_for_async
from tests.support.network import agreement_toml, site_toml, spacecraft_toml, write_network

# Blanks and a '#' inside: a password travels whole through the bridge's config line.
PASSWORDS = {"ISLS_NETWORK_PASSWORD_PARTNER_ESA": "esa pass #1",
             "ISLS_NETWORK_PASSWORD_BRIDGE_MOSCOW": "moscow pass #2",
             "ISLS_NETWORK_PASSWORD_BRIDGE_BEIJING": "beijing pass #3"}
# A test-only account at the partner's broker that reads and writes everything: it shows
# what entered the broker at all, so that a refused write is told from a refused read.
OBSERVER, OBSERVER_PASSWORD = "test-observer", "observer"
SPACECRAFT = ("lander-1", "orbiter-1", "lander-2")
KINDS: dict[str, Callable[[str], str]] = {"raw": raw_topic, "param": param_topic,
                                          "alarms": alarms_topic}
END = b"end"  # published last on a shared topic: everything before it has been decided
ANSWER = 1.0  # s: a probe's wait for the far sides before the next probe


def network_of(tmp_path: Path, *tables: str) -> Network:
    return load_network(write_network(tmp_path, spacecraft_toml(SPACECRAFT), *tables,
                                      state_dir=tmp_path / "state"))


def site(name: str, kind: str) -> str:
    """A site of its own agency, on free ports."""
    return site_toml(name, kind, name, free_port(),
                     None if kind == "station" else free_port())


def partner_network(tmp_path: Path) -> Network:
    """Moscow shares lander-1's raw packets and alarms, Beijing orbiter-1's parameters;
    nobody shares lander-2."""
    return network_of(tmp_path, site("moscow", "center"), site("beijing", "center"),
                      site("partner-esa", "partner"),
                      agreement_toml("moscow", "partner-esa", ["lander-1"], ["raw", "alarms"]),
                      agreement_toml("beijing", "partner-esa", ["orbiter-1"], ["param"]))


def locked_partner(network: Network, tmp_path: Path) -> PartnerBroker:
    """The partner's broker as generated, plus the test's observer account."""
    broker = partner_broker(network, network.site("partner-esa"), tmp_path / "partner-esa",
                            PASSWORDS)
    write_private(broker.password_file, broker.password_file.read_text()
                  + password_file_text({OBSERVER: OBSERVER_PASSWORD}))
    write_private(broker.acl_file, broker.acl_file.read_text()
                  + f"user {OBSERVER}\ntopic readwrite #\n")
    return broker


def account(port: int, username: str | None = None, password: str | None = None
            ) -> MqttSettings:
    return MqttSettings(port=port, username=username, password=password, keepalive=5)


def partner_account(broker: MosquittoServer) -> MqttSettings:
    return account(broker.port, "partner-esa", PASSWORDS["ISLS_NETWORK_PASSWORD_PARTNER_ESA"])


def observer(broker: MosquittoServer) -> MqttSettings:
    return account(broker.port, OBSERVER, OBSERVER_PASSWORD)


class Listener:
    """A client that records (topic, payload) of everything delivered to it."""

    def __init__(self, settings: MqttSettings, identifier: str, filters: list[str]) -> None:
        self.settings, self.identifier, self.filters = settings, identifier, filters
        self.granted: list[int] = []
        self.received: list[tuple[str, bytes]] = []
        self.changed = asyncio.Event()  # set at each message

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Listener]:
        async with make_client(self.settings, self.identifier) as client:
            for topic in self.filters:
                codes = await client.subscribe(topic, qos=1)
                self.granted += [code.value if isinstance(code, ReasonCode) else int(code)
                                 for code in codes]
            reader = asyncio.create_task(self._read(client))
            try:
                yield self
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            self.received.append((message.topic.value, payload))
            self.changed.set()

    async def until(self, done: Callable[[list[tuple[str, bytes]]], bool],
                    timeout: float) -> bool:
        """Whether ``done`` holds of what was received, within ``timeout`` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not done(self.received):
                    self.changed.clear()
                    await self.changed.wait()
        return done(self.received)

    async def until_end(self) -> set[tuple[str, bytes]]:
        if not await self.until(lambda got: any(payload == END for _, payload in got), 10):
            raise AssertionError(f"{self.identifier}: no end marker within 10 s; got "
                                 f"{self.received}")
        return set(self.received)


async def publish_all(settings: MqttSettings, identifier: str,
                      messages: list[tuple[str, bytes]]) -> list[int]:
    """Publish at QoS 1 in order; the reason codes of the PUBACKs that refused."""
    async with make_client(settings, identifier) as client:
        with publish_refusals(client) as refused:
            for topic, payload in messages:
                await client.publish(topic, payload, qos=1)
        return [code.value for code in refused]


def every_message() -> list[tuple[str, bytes]]:
    """Each kind of data of each spacecraft, then the end marker on a shared topic."""
    return [(topic_of(sc), f"{sc} {kind}".encode()) for sc in SPACECRAFT
            for kind, topic_of in KINDS.items()] + [(raw_topic("lander-1"), END)]


SHARE = {(raw_topic("lander-1"), b"lander-1 raw"), (alarms_topic("lander-1"), b"lander-1 alarms"),
         (param_topic("orbiter-1"), b"orbiter-1 param"), (raw_topic("lander-1"), END)}
GRANTED_QOS_1 = 1
NOT_AUTHORIZED = 0x87


def test_a_partner_broker_admits_its_accounts_only_and_the_partner_reads_its_share(
        tmp_path: Path) -> None:
    network = partner_network(tmp_path)
    broker = locked_partner(network, tmp_path)

    async def scenario() -> None:
        for who, password in ((None, None), ("partner-esa", "wrong"),
                              ("bridge-moscow", PASSWORDS["ISLS_NETWORK_PASSWORD_PARTNER_ESA"])):
            with pytest.raises(MqttConnectError) as refused:
                async with make_client(account(broker.port, who, password), "intruder"):
                    pass
            assert int(getattr(refused.value.rc, "value", -1)) == NOT_AUTHORIZED, who
        wide = Listener(partner_account(broker), "partner-wide", ["isls/#"])
        # Another spacecraft's topic, a kind outside the share, and the end marker's.
        narrow = Listener(partner_account(broker), "partner-narrow",
                          [raw_topic("lander-2"), raw_topic("orbiter-1"), raw_topic("lander-1")])
        everything = Listener(observer(broker), "observer", ["#"])
        async with wide.running(), narrow.running(), everything.running():
            # Mosquitto 2.0.11 grants every subscription and filters at delivery.
            assert wide.granted == narrow.granted[:1] == [GRANTED_QOS_1]
            assert narrow.granted == [GRANTED_QOS_1] * 3
            # The partner writes nothing, not even on its share's topics.
            assert await publish_all(partner_account(broker), "partner-writer",
                                     [(raw_topic("lander-1"), b"forged")]) == [NOT_AUTHORIZED]
            assert await publish_all(observer(broker), "observer-writer", every_message()) == []
            assert await everything.until_end() == set(every_message())  # all got in
            assert await wide.until_end() == SHARE
            assert await narrow.until_end() == {(raw_topic("lander-1"), b"lander-1 raw"),
                                                (raw_topic("lander-1"), END)}

    with broker:
        asyncio.run(scenario())


async def bridge_up(center: MosquittoServer, name: str) -> bool:
    """Whether the center's broker says its bridge ``name`` is connected (retained)."""
    async with make_client(account(center.port), f"probe-{name}") as client:
        await client.subscribe(f"$SYS/broker/connection/{name}/state", qos=1)
        async with asyncio.timeout(2):
            async for message in client.messages:
                return message.payload == b"1"
    return False


async def wait_bridge(center: MosquittoServer, name: str, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while True:
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                if await bridge_up(center, name):
                    return
            await asyncio.sleep(0.1)


# What a misconfigured Moscow bridge pushes beyond its agreement: a spacecraft nobody
# shares, Beijing's share, a kind of lander-1 outside the agreement.
OVERREACH = ["topic isls/lander-2/tm/raw out 1", "topic isls/orbiter-1/tm/param out 1",
             "topic isls/lander-1/tm/param out 1"]


@pytest.mark.parametrize("extra", [[], OVERREACH], ids=["as-generated", "overreaching"])
def test_a_center_brings_a_partner_exactly_its_agreement(tmp_path: Path,
                                                         extra: list[str]) -> None:
    network = partner_network(tmp_path)
    moscow_site, partner_site = network.site("moscow"), network.site("partner-esa")
    partner = locked_partner(network, tmp_path)
    lines = center_bridges(network, moscow_site, PASSWORDS)
    name = bridge_name(moscow_site, partner_site)
    assert lines[0] == f"connection {name}" and lines.count(lines[0]) == 1
    # Moscow is the command hub: its partner connection is its only one, so lines added
    # at the end belong to it.
    assert sum(line.startswith("connection ") for line in lines) == 1
    center = MosquittoServer(tmp_path / "moscow", moscow_site.mqtt_port,
                             bridges=(*lines, *extra))

    async def scenario() -> None:
        await wait_bridge(center, name)
        wide = Listener(partner_account(partner), "partner-wide", ["isls/#"])
        everything = Listener(observer(partner), "observer", ["#"])
        async with wide.running(), everything.running():
            assert await publish_all(account(center.port), "moscow-ingest",
                                     every_message()) == []
            agreed = {(raw_topic("lander-1"), b"lander-1 raw"),
                      (alarms_topic("lander-1"), b"lander-1 alarms"),
                      (raw_topic("lander-1"), END)}
            assert await wide.until_end() == agreed
            # Nothing else entered the partner's broker: the bridge account may write
            # Moscow's agreement only, whatever its bridge carries.
            assert await everything.until_end() == agreed

    with partner, center:
        asyncio.run(scenario())


def centers_network(tmp_path: Path) -> Network:
    return network_of(tmp_path, site("moscow", "center"), site("beijing", "center"),
                      site("delhi", "center"))


def command(action: str, alarm_id: str, by: str) -> bytes:
    """An operator's command as `isls alarm ack|shelve` publishes it (alarm_console.py)."""
    return json.dumps({"action": action, "alarm_id": alarm_id, "by": by, "note": "",
                       "minutes": 30.0 if action == "shelve" else 0.0}).encode()


def has(payload: bytes) -> Callable[[list[tuple[str, bytes]]], bool]:
    return lambda got: (ALARM_COMMAND_TOPIC, payload) in got


def test_an_alarm_command_reaches_every_center_exactly_once(tmp_path: Path) -> None:
    network = centers_network(tmp_path)
    centers = network.of_kind("center")
    bridges = {c.name: tuple(center_bridges(network, c, {})) for c in centers}
    brokers = {c.name: MosquittoServer(tmp_path / c.name, c.mqtt_port, bridges=bridges[c.name])
               for c in centers}
    listeners = {name: Listener(account(b.port), f"ingest-{name}", [ALARM_COMMAND_TOPIC])
                 for name, b in brokers.items()}
    sent = {"moscow": command("ack", "lander-1/BATT_V/red", "ivanov@moscow"),
            "beijing": command("shelve", "orbiter-1/TEMP/yellow", "li@beijing"),
            "delhi": command("ack", "lander-2/PRESS/red", "rao@delhi")}

    async def reaches_everyone(origin: str, payloads: list[bytes]) -> None:
        """Publish ``payloads`` at ``origin`` one by one, each until every center has it:
        probes, while the bridges' subscriptions settle."""
        for payload in payloads:
            await publish_all(account(brokers[origin].port), f"operator-{origin}",
                              [(ALARM_COMMAND_TOPIC, payload)])
            arrived = await asyncio.gather(*(listener.until(has(payload), ANSWER)
                                             for listener in listeners.values()))
            if all(arrived):
                return
        seen = {name: len(listener.received) for name, listener in listeners.items()}
        raise AssertionError(f"commands published at {origin} did not reach every center; "
                             f"commands received so far: {seen}")

    async def scenario() -> None:
        async with contextlib.AsyncExitStack() as stack:
            for listener in listeners.values():
                await stack.enter_async_context(listener.running())
            # Every connection up, not just a path from each center to every other: a
            # loop closes only with the last one.
            for name, lines in bridges.items():
                for line in lines:
                    if line.startswith("connection "):
                        await wait_bridge(brokers[name], line.split()[1])
            for origin in brokers:
                await reaches_everyone(origin, [f"probe {origin} {k}".encode()
                                                for k in range(10)])
            for origin, payload in sent.items():
                assert await publish_all(account(brokers[origin].port), f"operator-{origin}",
                                         [(ALARM_COMMAND_TOPIC, payload)]) == []
            # Then one more round from every center: a command that looped would have
            # come round again before these.
            for origin in brokers:
                await reaches_everyone(origin, [f"last {origin}".encode()])
        for name, listener in listeners.items():
            counts = {origin: listener.received.count((ALARM_COMMAND_TOPIC, payload))
                      for origin, payload in sent.items()}
            assert counts == {origin: 1 for origin in sent}, f"at {name}: {counts}"

    with contextlib.ExitStack() as servers:
        for broker in brokers.values():  # the hub (first center) first
            servers.enter_context(broker)
        asyncio.run(scenario())


def nav_packets(lander: Tmdb, yaw: np.ndarray) -> list[bytes]:
    """One lander_nav packet per message, a second apart, imu_rate_z = ``yaw``."""
    packet = lander.packet("lander_nav")
    n = len(yaw)
    values = {p.name: np.zeros(n) for p in packet.parameters if not p.overlay}
    values["imu_rate_z"] = yaw
    start = CucTime.from_unix(1_800_000_000)
    blob = PacketCodec(lander.spacecraft, packet).encode(
        values, coarse=start.coarse + np.arange(n), fine=np.zeros(n, dtype=np.int64),
        sequence_counts=np.arange(n))
    return [blob[i * packet.length:(i + 1) * packet.length] for i in range(n)]


def test_an_acknowledgement_at_one_center_is_seen_at_the_other(
        tmp_path: Path, config: Config, tmdbs: list[Tmdb], influxd: InfluxServer) -> None:
    """Two centers' ingests decode the same lander packets; Beijing had seen two earlier
    alarms of the parameter, so it numbers the same alarm 3 where Moscow numbers it 1.
    ``isls alarms ack`` at Moscow, by Moscow's id, acknowledges it at both."""
    network = network_of(tmp_path, site("moscow", "center"), site("beijing", "center"))
    centers = network.of_kind("center")
    brokers = {c.name: MosquittoServer(tmp_path / c.name, c.mqtt_port,
                                       bridges=tuple(center_bridges(network, c, {})))
               for c in centers}
    lander = tmdbs[0]
    configs = {}
    for name, broker in brokers.items():
        database = f"test_{name}_{uuid.uuid4().hex[:8]}"
        influxd.query(f'CREATE DATABASE "{database}"')
        configs[name] = replace(config, mqtt=replace(config.mqtt, port=broker.port),
                                influx=replace(config.influx, database=database),
                                state_dir=tmp_path / f"state-{name}")
    earlier = AlarmManager()
    for k in range(2):
        earlier.on_level("lander", "imu_rate_z", RED_HIGH, 40.0, k * 10)
        earlier.on_level("lander", "imu_rate_z", OK, 0.0, k * 10 + 1)
        earlier.acknowledge(earlier.active()[0].alarm_id, "li@beijing", "", k * 10 + 2)
    configs["beijing"].state_dir.mkdir(parents=True)
    write_private(configs["beijing"].state_dir / "alarms.json", json.dumps(earlier.to_json()))
    yaw = np.zeros(40)
    yaw[10:] = 40.0  # deg/s: red from the tenth packet on (persistence 3), still red
    messages = nav_packets(lander, yaw)

    async def scenario() -> dict[str, list[Alarm]]:
        stop = asyncio.Event()
        ingests = {name: IngestService.from_config(c, [lander]) for name, c in configs.items()}
        tasks = [asyncio.create_task(i.run(stop)) for i in ingests.values()]
        try:
            for ingest in ingests.values():
                await wait_subscribed(ingest)
            for name in brokers:  # as the station's bridge brings them to each center
                await publish_all(account(brokers[name].port), f"station-{name}",
                                  [(raw_topic("lander"), m) for m in messages])

            def listed(name: str) -> list[Alarm]:
                """The yaw alarm at ``name`` (lander_nav may go stale meanwhile: another
                alarm, not this test's)."""
                monitor = ingests[name].monitor
                return [] if monitor is None else [
                    a for a in monitor.alarms.active()
                    if (a.kind, a.subject) == ("limit", "imu_rate_z")]

            await wait_for_async(lambda: all(listed(n) for n in ingests), 20,
                                 "the yaw alarm at both centers")
            ids = {name: listed(name)[0].alarm_id for name in ingests}
            assert ids == {"moscow": "lander.imu_rate_z.1", "beijing": "lander.imu_rate_z.3"}
            out = io.StringIO()
            # Until the bridge to the hub is up, a command would reach Moscow only.
            for broker in brokers.values():
                for line in broker.bridges:
                    if line.startswith("connection "):
                        await wait_bridge(broker, line.split()[1])
            assert await command_alarm(configs["moscow"].mqtt, "ack", ids["moscow"],
                                       "ivanov@moscow", "yaw jet closed", out=out) == 0
            await wait_for_async(lambda: all(listed(n) and listed(n)[0].acknowledged
                                             for n in ingests), 20,
                                 "the acknowledgement at both centers")
            return {name: listed(name) for name in ingests}
        finally:
            stop.set()
            await asyncio.gather(*tasks)

    with contextlib.ExitStack() as servers:
        for broker in brokers.values():
            servers.enter_context(broker)
        alarms = asyncio.run(scenario())
    for name, (alarm,) in alarms.items():
        assert (alarm.acknowledged, alarm.by, alarm.note) == \
            (True, "ivanov@moscow", "yaw jet closed"), name
        assert alarm.raised_ns == alarms["moscow"][0].raised_ns
