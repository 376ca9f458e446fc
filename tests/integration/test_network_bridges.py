"""The ground network's store and forward, on real Mosquitto brokers bridged as
control_center/network/bridges.py generates them: a station keeps receiving while a
center is unreachable and delivers everything, in order, with the earth-receive time and
link the station stamped, once the center is back. What crosses to partners and between
centers: test_network_partner.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiomqtt

from control_center.config import MqttSettings
from control_center.network.bridges import bridge_name, station_bridges
from control_center.network.sites import Network, load_network
from control_center.operations.servers import MosquittoServer, free_port
from drivers.mqtt import make_client, parse_ert, raw_properties, raw_topic
from tests.support.network import site_toml, spacecraft_toml, write_network

ERT_NS = 1_800_000_000_000_000_000
MESSAGES = 400


def network_file(tmp_path: Path) -> Network:
    return load_network(write_network(
        tmp_path, spacecraft_toml(["lander-1"], simulator="lander"),
        site_toml("bear-lakes", "station", "roscosmos", free_port(), hears=["lander-1"]),
        site_toml("moscow", "center", "roscosmos", free_port(), free_port()),
        site_toml("beijing", "center", "cnsa", free_port(), free_port()),
        state_dir=tmp_path / "state"))


def settings(port: int) -> MqttSettings:
    return MqttSettings(host="127.0.0.1", port=port, keepalive=5)


async def bridge_up(station: MosquittoServer, name: str) -> bool:
    """Whether the station's broker says its bridge ``name`` is connected."""
    async with make_client(settings(station.port), f"probe-{name}") as client:
        await client.subscribe(f"$SYS/broker/connection/{name}/state", qos=1)
        async with asyncio.timeout(2):
            async for message in client.messages:  # retained: comes at once
                return message.payload == b"1"
    return False


async def collect(port: int, identifier: str, count: int, timeout: float
                  ) -> list[tuple[bytes, int | None, str]]:
    """(payload, ert, link) of ``count`` messages from a persistent session, in order."""
    got: list[tuple[bytes, int | None, str]] = []
    async with asyncio.timeout(timeout), \
            make_client(settings(port), identifier, clean_start=False,
                        session_expiry=3600) as client:
        await client.subscribe(raw_topic("lander-1"), qos=1)
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            user = dict(getattr(message.properties, "UserProperty", None) or [])
            got.append((message.payload, parse_ert(user.get("ert", "")),
                        user.get("link", "")))
            if len(got) >= count:
                break
    return got


async def subscribe_once(port: int, identifier: str) -> None:
    """Open a persistent session that the center's broker keeps for the ingest."""
    async with make_client(settings(port), identifier, clean_start=False,
                           session_expiry=3600) as client:
        await client.subscribe(raw_topic("lander-1"), qos=1)


def test_a_station_holds_the_backlog_while_a_center_is_down_and_delivers_it_in_order(
        tmp_path: Path) -> None:
    network = network_file(tmp_path)
    station_site, moscow, beijing = (network.site(n) for n in
                                     ("bear-lakes", "moscow", "beijing"))
    centers = {site.name: MosquittoServer(tmp_path / site.name, site.mqtt_port)
               for site in (moscow, beijing)}
    station = MosquittoServer(tmp_path / station_site.name, station_site.mqtt_port,
                              max_queued=station_site.queue_limit,
                              bridges=tuple(station_bridges(network, station_site, {})))

    async def scenario() -> dict[str, list[tuple[bytes, int | None, str]]]:
        for name, server in centers.items():
            await subscribe_once(server.port, f"ingest-{name}")
        names = [bridge_name(station_site, network.site(n)) for n in centers]
        for name in names:
            await wait_until_async(lambda n=name: bridge_up(station, n),  # type: ignore[misc]
                                   20, f"bridge {name} to connect")
        centers["beijing"].stop()  # the WAN link to Beijing's broker is gone
        await wait_until_async(lambda: bridge_down(station, names[1]), 20,
                               "the station to see the Beijing bridge down")
        async with make_client(settings(station.port), "station-frontend") as client:
            for k in range(MESSAGES):
                await client.publish(raw_topic("lander-1"), f"frame {k:05d}".encode(), qos=1,
                                     properties=raw_properties(ERT_NS + k * 1000,
                                                               "bear-lakes/x-band"))
        centers["beijing"].start()  # the same data directory: its sessions come back
        return {name: await collect(server.port, f"ingest-{name}", MESSAGES, 60)
                for name, server in centers.items()}

    with centers["moscow"], centers["beijing"], station:
        got = asyncio.run(scenario())
    expected = [(f"frame {k:05d}".encode(), ERT_NS + k * 1000, "bear-lakes/x-band")
                for k in range(MESSAGES)]
    for name, messages in got.items():
        assert messages == expected, f"{name}: {len(messages)} messages, first differing " \
            f"{next((m for m, e in zip(messages, expected, strict=False) if m != e), None)}"


async def wait_until_async(check: Callable[[], Awaitable[bool]], timeout: float,
                           message: str) -> None:
    """Poll an async predicate until it holds, within ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            if await check():
                return
        except (aiomqtt.MqttError, TimeoutError):
            pass
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        await asyncio.sleep(0.2)


async def bridge_down(station: MosquittoServer, name: str) -> bool:
    return not await bridge_up(station, name)
