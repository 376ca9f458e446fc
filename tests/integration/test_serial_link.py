"""Serial links end to end: a simulator writes framed telemetry into one end of a real
pseudo-terminal pair (socat), the ingest reads the other end; real broker, real influxd."""

from __future__ import annotations

import asyncio
import io
from dataclasses import replace
from pathlib import Path

import pytest

from control_center.config import Config, LinkSettings
from control_center.operations.link_status import link_status
from control_center.operations.servers import InfluxServer, MosquittoServer, free_port
from control_center.pipeline.service import IngestService
from control_center.telemetry.tmdb import Tmdb
from drivers.mqtt import LINK_STATUS_EXPIRY, make_client, raw_topic
from drivers.serial import silence_limit
from simulators.noise import LinkNoise
from simulators.pty import PtyPair
from simulators.runner import PacketGenerator, make_model
from simulators.serial_link import SerialSimulatorService
from tests.conftest import count_points, wait_for_async


def _link(device: Path, tmdbs: list[Tmdb], framing: str = "tm") -> LinkSettings:
    orbiter = next(t for t in tmdbs if t.spacecraft == "orbiter")
    return LinkSettings(name="bench", spacecraft="orbiter", device=str(device), baud=921600,
                        framing=framing, frame_length=256,
                        spacecraft_id=orbiter.spacecraft_id,
                        virtual_channels=((0, "orbiter"), (1, "lander")))


def _simulator(tmdbs: list[Tmdb], device: Path, *, framing: str = "tm", relay: bool = True,
               noise: LinkNoise | None = None, speed: float = 10.0) -> SerialSimulatorService:
    by_name = {t.spacecraft: t for t in tmdbs}
    channels = [(0, PacketGenerator(make_model("orbiter", 1), by_name["orbiter"],
                                    start_unix=1_800_000_000.0))]
    if relay:
        channels.append((1, PacketGenerator(make_model("lander", 2), by_name["lander"],
                                            start_unix=1_800_000_000.0)))
    return SerialSimulatorService(channels, str(device), 115200, framing=framing,
                                  frame_length=256,
                                  spacecraft_id=by_name["orbiter"].spacecraft_id,
                                  speed=speed, noise=noise)


async def _run(config: Config, tmdbs: list[Tmdb], link: LinkSettings,
               simulator: SerialSimulatorService, duration: float) -> IngestService:
    stop = asyncio.Event()
    ingest = IngestService.from_config(config, tmdbs, links=(link,), link_interval=0.2)
    task = asyncio.create_task(ingest.run(stop))
    await simulator.run(asyncio.Event(), duration)
    expected = sum(simulator.stats.survivors.values())
    await wait_for_async(lambda: sum(ingest.stats.packets.values()) >= expected, 20,
                         f"{expected} packets decoded")
    stop.set()
    await task
    return ingest


def _assert_counts_exact(influxd: InfluxServer, database: str, tmdbs: list[Tmdb],
                         survivors: dict[str, int]) -> None:
    for tmdb in tmdbs:
        for packet in tmdb.packets:
            name = f"{tmdb.spacecraft}/{packet.name}"
            stored = count_points(influxd, database, packet.name,
                                  f"WHERE spacecraft='{tmdb.spacecraft}'")
            assert stored == survivors.get(name, 0), (name, stored, survivors.get(name))


def test_noisy_tm_link_with_relay_stores_exactly_the_packets_in_intact_frames(
        config: Config, tmdbs: list[Tmdb], influxd: InfluxServer, database: str,
        tmp_path: Path) -> None:
    with PtyPair(tmp_path / "sim", tmp_path / "ingest") as pair:
        simulator = _simulator(tmdbs, pair.a, noise=LinkNoise(2e-4, seed=11))
        link = _link(pair.b, tmdbs)
        ingest = asyncio.run(_run(config, tmdbs, link, simulator, 3.0))
    stats = simulator.stats
    assert stats.frames_destroyed >= 3, "the noise should have destroyed some frames"
    sent, survived = sum(stats.packets.values()), sum(stats.survivors.values())
    assert 0 < survived < sent
    _assert_counts_exact(influxd, database, tmdbs, dict(stats.survivors))
    assert sum(ingest.stats.packets.values()) == survived
    # Relayed lander packets are stored under the lander's tag.
    assert count_points(influxd, database, "lander_nav", "WHERE spacecraft='lander'") > 0
    deframer = ingest.links[0].tm
    assert deframer is not None
    assert deframer.stats.frames_bad + deframer.stats.sync_losses > 0
    # Link statistics are in InfluxDB, measurement link, tags spacecraft and link.
    result = influxd.query('SELECT LAST("frames_good"), LAST("frames_bad") FROM "link" '
                           "WHERE spacecraft='orbiter' AND link='bench'", database)
    _, good, bad = result["results"][0]["series"][0]["values"][0]  # type: ignore[index]
    assert good == deframer.stats.frames_good and bad == deframer.stats.frames_bad


def test_cobs_link_counts_exactly(config: Config, tmdbs: list[Tmdb], influxd: InfluxServer,
                                  database: str, tmp_path: Path) -> None:
    with PtyPair(tmp_path / "sim", tmp_path / "ingest") as pair:
        simulator = _simulator(tmdbs, pair.a, framing="cobs", relay=False,
                               noise=LinkNoise(2e-3, seed=3))
        ingest = asyncio.run(_run(config, tmdbs, _link(pair.b, tmdbs, "cobs"), simulator,
                                  2.0))
    assert simulator.stats.frames_destroyed > 0
    _assert_counts_exact(influxd, database, tmdbs, dict(simulator.stats.survivors))
    cobs = ingest.links[0].cobs
    assert cobs is not None and cobs.stats.frames_bad > 0


def test_serial_data_is_stored_while_the_broker_is_down(
        config: Config, tmdbs: list[Tmdb], influxd: InfluxServer, database: str,
        tmp_path: Path) -> None:
    no_broker = replace(config, mqtt=replace(config.mqtt, port=free_port()))
    with PtyPair(tmp_path / "sim", tmp_path / "ingest") as pair:
        simulator = _simulator(tmdbs, pair.a, relay=False)
        asyncio.run(_run(no_broker, tmdbs, _link(pair.b, tmdbs), simulator, 2.0))
    _assert_counts_exact(influxd, database, tmdbs, dict(simulator.stats.survivors))
    assert sum(simulator.stats.survivors.values()) == sum(simulator.stats.packets.values())


def test_device_pulled_and_plugged_back_is_survived(
        config: Config, tmdbs: list[Tmdb], influxd: InfluxServer, database: str,
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pair = PtyPair(tmp_path / "sim", tmp_path / "ingest")
    pair.open()

    async def scenario() -> None:
        stop, sim_stop = asyncio.Event(), asyncio.Event()
        ingest = IngestService.from_config(config, tmdbs, links=(_link(pair.b, tmdbs),))
        task = asyncio.create_task(ingest.run(stop))
        simulator = _simulator(tmdbs, pair.a, relay=False)
        sim_task = asyncio.create_task(simulator.run(sim_stop))
        await wait_for_async(lambda: sum(ingest.stats.packets.values()) > 20, 20,
                             "packets before the pull")
        await asyncio.to_thread(pair.close)  # the cable comes out
        await wait_for_async(lambda: not ingest.links[0].state.connected, 20,
                             "the ingest to notice the pull")
        before = sum(ingest.stats.packets.values())
        await asyncio.to_thread(pair.open)  # and goes back in
        await wait_for_async(lambda: sum(ingest.stats.packets.values()) > before + 20, 30,
                             "packets after the device came back")
        assert ingest.links[0].state.reopens >= 1
        sim_stop.set()
        await sim_task
        stop.set()
        await task

    try:
        asyncio.run(scenario())
    finally:
        pair.close()
    assert "lost" in caplog.text and "is back" in caplog.text
    assert count_points(influxd, database, "orbiter_orbit") > 0


def test_serial_packets_republished_on_mqtt_marked_stored(
        config: Config, tmdbs: list[Tmdb], mosquitto: MosquittoServer, tmp_path: Path) -> None:
    async def scenario() -> tuple[list[tuple[str, str]], str]:
        with PtyPair(tmp_path / "sim", tmp_path / "ingest") as pair:
            async with make_client(config.mqtt, "test-raw-listener") as listener:
                await listener.subscribe(raw_topic("lander"), qos=1)
                await listener.subscribe("isls/orbiter/link", qos=0)
                simulator = _simulator(tmdbs, pair.a)
                await _run(config, tmdbs, _link(pair.b, tmdbs), simulator, 1.0)
                seen: list[tuple[str, str]] = []
                async with asyncio.timeout(10):
                    async for message in listener.messages:
                        if message.topic.matches(raw_topic("lander")):
                            props = dict(message.properties.UserProperty)  # type: ignore[union-attr]
                            seen.append((props.get("link", ""), props.get("stored", "")))
                            break
        out = io.StringIO()
        await link_status(config.mqtt, once=True, out=out)
        return seen, out.getvalue()

    seen, status = asyncio.run(scenario())
    assert seen == [("bench", "true")]
    assert "bench" in status and "orbiter" in status
    assert "frames good" in status



@pytest.mark.parametrize("framing", ["tm", "cobs"])
def test_a_link_gone_quiet_is_searching_and_its_status_expires(
        config: Config, tmdbs: list[Tmdb], framing: str, tmp_path: Path) -> None:
    """The deframer stays locked until it sees a bad frame; a link whose far end simply
    stopped writing must not show LOCKED for ever. And the status the ingest leaves
    retained on the broker expires, so `isls link status` never shows it as live later."""
    link = _link(tmp_path / "unused", tmdbs, framing)
    limit = silence_limit(link)

    async def scenario() -> tuple[float, int | None]:
        with PtyPair(tmp_path / "sim", tmp_path / "ingest") as pair:
            stop, sim_stop = asyncio.Event(), asyncio.Event()
            ingest = IngestService.from_config(config, tmdbs, link_interval=0.2,
                                               links=(replace(link, device=str(pair.b)),))
            task = asyncio.create_task(ingest.run(stop))
            simulator = _simulator(tmdbs, pair.a, framing=framing)
            sim_task = asyncio.create_task(simulator.run(sim_stop))
            source = ingest.links[0]
            try:
                await wait_for_async(lambda: source.snapshot().locked, 20, "the link to lock")
                sim_stop.set()
                await sim_task
                quiet = asyncio.get_running_loop().time()
                await wait_for_async(lambda: not source.snapshot().locked, limit + 10,
                                     "the quiet link to be searching")
                took = asyncio.get_running_loop().time() - quiet
                assert source.snapshot().connected  # the device is still there: SEARCHING
                async with make_client(config.mqtt, "test-link-expiry") as listener:
                    await listener.subscribe("isls/orbiter/link", qos=0)
                    async with asyncio.timeout(10):
                        message = await anext(aiter(listener.messages))
            finally:  # a failure above must not leave the ingest running
                sim_stop.set()
                stop.set()
                await asyncio.wait_for(asyncio.gather(sim_task, task), 30)
            expiry = getattr(message.properties, "MessageExpiryInterval", None)
            return took, expiry

    took, expiry = asyncio.run(scenario())
    assert took <= limit + 2.0
    assert expiry is not None and 0 < expiry <= LINK_STATUS_EXPIRY
