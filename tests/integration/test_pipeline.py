"""End to end against the real servers: simulators → Mosquitto → ingest → influxd."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import numpy as np
import pytest

from control_center.config import Config
from control_center.operations.servers import InfluxServer
from control_center.pipeline.service import IngestService, wait_subscribed
from control_center.telemetry.codec import PacketCodec
from control_center.telemetry.packets import CucTime, build_packet
from control_center.telemetry.tmdb import Tmdb
from drivers.mqtt import make_client, param_topic, raw_properties, raw_topic
from tests.conftest import count_points, run_pipeline, wait_for_async

# Physical ranges a plausible flight stays in, per measurement and field.
PHYSICAL_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "lander_nav": {"altitude": (0.0, 20_000.0), "horizontal_velocity": (0.0, 1_800.0),
                   "vertical_velocity": (-200.0, 200.0), "throttle": (0.0, 100.0)},
    "lander_power": {"battery_soc": (0.0, 100.0), "battery_voltage": (20.0, 36.0),
                     "bus_voltage": (26.0, 30.5), "propellant_mass": (0.0, 3_000.0)},
    "lander_thermal": {"battery_temperature": (-40.0, 60.0),
                       "engine_temperature": (-150.0, 400.0)},
    "orbiter_orbit": {"altitude": (80.0, 120.0), "velocity_x": (-2.0, 2.0),
                      "velocity_y": (-2.0, 2.0), "velocity_z": (-2.0, 2.0)},
    "orbiter_power": {"battery_soc": (0.0, 100.0), "bus_voltage": (26.0, 30.5)},
    "orbiter_thermal": {"panel_temperature": (-150.0, 130.0),
                        "battery_temperature": (-20.0, 50.0)},
    "orbiter_relay": {"relay_signal_strength": (-150.0, -40.0)},
}


def test_simulators_to_influxdb_every_packet_type_stored(
        config: Config, tmdbs: list[Tmdb], influxd: InfluxServer, database: str) -> None:
    duration, speed = 4.0, 5.0
    ingest, simulators = asyncio.run(run_pipeline(config, tmdbs, duration, speed))
    assert ingest.stats.errors == {}, ingest.stats.errors
    by_name = {t.spacecraft: t for t in tmdbs}
    for simulator in simulators:
        tmdb = by_name[simulator.spacecraft]
        for packet in tmdb.packets:
            assert packet.period is not None
            published = simulator.stats.packets[packet.name]
            expected = duration * speed / packet.period
            # ± one period of the packet type around what the rate predicts...
            assert abs(published - expected) <= 1, (packet.name, published, expected)
            # ...and every published packet is in InfluxDB, no more, no fewer.
            stored = count_points(influxd, database, packet.name,
                                  f"WHERE spacecraft='{tmdb.spacecraft}' AND source='live'")
            assert stored == published, (packet.name, stored, published)
    # The ingest's own health point, written once more after the drain, holds its totals.
    health = influxd.query('SELECT LAST("packets"), LAST("lines_written"), LAST("errors"), '
                           'LAST("pending_lines") FROM "ingest" GROUP BY "ingest"', database)
    series = health["results"][0]["series"]  # type: ignore[index]
    assert [s["tags"]["ingest"] for s in series] == [ingest.identifier]
    packets, lines, errors, pending = series[0]["values"][0][1:]
    assert packets == sum(ingest.stats.packets.values()) == sum(
        sum(s.stats.packets.values()) for s in simulators)
    assert lines + pending >= packets and errors == 0  # stored, or queued at that moment
    for measurement, fields in PHYSICAL_RANGES.items():
        selection = ", ".join(f'MIN("{f}"), MAX("{f}")' for f in fields)
        result = influxd.query(f'SELECT {selection} FROM "{measurement}"', database)
        row = result["results"][0]["series"][0]["values"][0][1:]  # type: ignore[index]
        for index, (field, (low, high)) in enumerate(fields.items()):
            minimum, maximum = row[2 * index], row[2 * index + 1]
            assert low <= minimum <= maximum <= high, (measurement, field, minimum, maximum)


def test_point_time_is_onboard_time_in_utc(
        config: Config, tmdbs: list[Tmdb], influxd: InfluxServer, database: str) -> None:
    asyncio.run(run_pipeline(config, [tmdbs[1]], 1.0, 1.0))
    result = influxd.query('SELECT FIRST("altitude") FROM "orbiter_orbit"', database)
    first_ns = result["results"][0]["series"][0]["values"][0][0]  # type: ignore[index]
    # The generator starts at Unix 1.8e9 s; the first packet is stamped at t = 0.
    assert first_ns == 1_800_000_000 * 1_000_000_000


def _good_packets(tmdb: Tmdb, packet_name: str, count: int, first: int) -> list[bytes]:
    packet = tmdb.packet(packet_name)
    codec = PacketCodec(tmdb.spacecraft, packet)
    values = {p.name: np.zeros(count) for p in packet.parameters if not p.overlay}
    values["battery_soc"] = np.linspace(50, 60, count)
    times = [CucTime.from_unix(1_800_000_000 + first + i) for i in range(count)]
    blob = codec.encode(values, coarse=[t.coarse for t in times], fine=[t.fine for t in times],
                        sequence_counts=np.arange(first, first + count))
    return [blob[i * packet.length:(i + 1) * packet.length] for i in range(count)]


async def _publish_and_ingest(config: Config, tmdbs: list[Tmdb],
                              payloads: list[tuple[str, bytes]]) -> IngestService:
    stop = asyncio.Event()
    ingest = IngestService.from_config(config, tmdbs)
    task = asyncio.create_task(ingest.run(stop))
    await wait_subscribed(ingest)
    async with make_client(config.mqtt, "test-publisher") as client:
        for topic, payload in payloads:
            await client.publish(topic, payload, qos=1,
                                 properties=raw_properties(1_800_000_000_000_000_000, "test"))
    await wait_for_async(lambda: ingest.stats.messages >= len(payloads), 15,
                         "the ingest to read every message")
    stop.set()
    await task
    return ingest


def test_corrupt_and_unknown_packets_counted_and_skipped_good_ones_stored(
        config: Config, tmdbs: list[Tmdb], influxd: InfluxServer, database: str) -> None:
    lander = tmdbs[0]
    good = _good_packets(lander, "lander_power", 6, 0)
    corrupt = bytearray(good[2])
    corrupt[14] ^= 0x10  # one bit flipped inside the parameters: the CRC must catch it
    unknown = build_packet(0x555, 0, b"\x00" * 20, time=CucTime(0, 0))
    idle = build_packet(0x7FF, 0, b"\xff" * 10, time=None, error_control=False)
    first = good[0] + good[1] + bytes(corrupt) + unknown + idle + good[3]
    # A second message ends in garbage (version 6, a length that fits): the packets
    # before it are still good, and the garbage is one bad packet.
    second = good[4] + good[5] + b"\xde\xad\xbe\xef\x00\x01\x02\x03"
    ingest = asyncio.run(_publish_and_ingest(config, tmdbs, [
        (raw_topic("lander"), first), (raw_topic("lander"), second),
        (raw_topic("mars_rover"), good[0]), (raw_topic("lander"), b""),
    ]))
    assert ingest.stats.errors["bad_crc"] == 1
    assert ingest.stats.errors["unknown_apid"] == 1
    assert ingest.stats.errors["bad_header"] == 1
    assert ingest.stats.errors["unknown_spacecraft"] == 1
    assert ingest.stats.errors["empty_message"] == 1
    assert count_points(influxd, database, "lander_power") == 5
    result = influxd.query('SELECT "battery_soc" FROM "lander_power"', database)
    stored = [row[1] for row in result["results"][0]["series"][0]["values"]]  # type: ignore[index]
    expected = np.linspace(50, 60, 6)[[0, 1, 3, 4, 5]]
    assert np.allclose(stored, expected, atol=0.005)


def test_ingest_waits_for_an_unreachable_broker_and_reports_it(
        config: Config, tmdbs: list[Tmdb], caplog: pytest.LogCaptureFixture) -> None:
    from control_center.operations.servers import free_port

    unreachable = replace(config, mqtt=replace(config.mqtt, port=free_port()))

    async def scenario() -> None:
        stop = asyncio.Event()
        ingest = IngestService.from_config(unreachable, tmdbs, drain_limit=0.5)
        task = asyncio.create_task(ingest.run(stop))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ingest.ready.wait(), 1.5)
        stop.set()
        await asyncio.wait_for(task, 15)

    asyncio.run(scenario())
    text = caplog.text
    assert "MQTT broker" in text and "reconnecting in" in text


def test_two_ingests_share_the_load_without_duplicates(
        config: Config, tmdbs: list[Tmdb]) -> None:
    """Two ingest services in one shared group split the messages: none twice."""
    config = replace(config, mqtt=replace(config.mqtt, shared_group="isls-ingest"))

    async def scenario() -> tuple[int, int, int]:
        stop = asyncio.Event()
        first = IngestService.from_config(config, tmdbs, identifier="ingest-a")
        second = IngestService.from_config(config, tmdbs, identifier="ingest-b")
        tasks = [asyncio.create_task(s.run(stop)) for s in (first, second)]
        await wait_subscribed(first)
        await wait_subscribed(second)
        packets = _good_packets(tmdbs[0], "lander_power", 40, 0)
        async with make_client(config.mqtt, "test-shared-publisher") as client:
            for packet in packets:
                await client.publish(raw_topic("lander"), packet, qos=1)
        await wait_for_async(
            lambda: sum(first.stats.packets.values()) + sum(second.stats.packets.values())
            >= 40, 15, "both ingests to decode all packets")
        stop.set()
        await asyncio.gather(*tasks)
        return (sum(first.stats.packets.values()), sum(second.stats.packets.values()),
                first.stats.messages + second.stats.messages)

    a, b, messages = asyncio.run(scenario())
    assert a + b == 40 and messages == 40
    assert a > 0 and b > 0, "a shared subscription should give both members work"


def test_engineering_values_are_republished_for_live_consumers(
        config: Config, tmdbs: list[Tmdb]) -> None:
    import json

    async def scenario() -> dict[str, object]:
        async with make_client(config.mqtt, "test-param-listener") as listener:
            await listener.subscribe(param_topic("lander"), qos=0)
            stop = asyncio.Event()
            ingest = IngestService.from_config(config, tmdbs)
            task = asyncio.create_task(ingest.run(stop))
            await wait_subscribed(ingest)
            async with make_client(config.mqtt, "test-param-publisher") as client:
                await client.publish(raw_topic("lander"),
                                     b"".join(_good_packets(tmdbs[0], "lander_power", 3, 0)),
                                     qos=1)
            message = await asyncio.wait_for(anext(aiter(listener.messages)), 15)
            stop.set()
            await task
            assert isinstance(message.payload, bytes)
            decoded: dict[str, object] = json.loads(message.payload)
            return decoded

    document = asyncio.run(scenario())
    assert document["packet"] == "lander_power" and document["spacecraft"] == "lander"
    values = document["values"]
    assert isinstance(values, dict)
    assert np.allclose(values["battery_soc"], [50.0, 55.0, 60.0], atol=0.005)
    # The point times InfluxDB holds: onboard time plus the sequence count in ns
    # (docs/contracts.md, "InfluxDB contract").
    assert document["time_ns"] == [1_800_000_000_000_000_000 + i * 1_000_000_000 + i
                                   for i in range(3)]
