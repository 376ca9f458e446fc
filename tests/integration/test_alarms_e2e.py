"""Alarms end to end against the real servers: a simulator fault raises the expected
alarm at the expected time, it is stored and published, an operator acknowledges it
through the CLI, and it clears once the fault clears; derived parameters equal their
formula on the stored values."""

from __future__ import annotations

import asyncio
import json
import os

import numpy as np

from control_center.config import Config
from control_center.operations.servers import InfluxServer
from control_center.pipeline.service import IngestService, wait_subscribed
from control_center.telemetry.tmdb import Tmdb
from drivers.mqtt import make_client
from simulators.runner import PacketGenerator, SimulatorService, make_model
from tests.conftest import ISLS, run_pipeline, wait_for_async

START = 1_800_000_000.0


def _series(influxd: InfluxServer, database: str, query: str) -> list[list[object]]:
    result = influxd.query(query, database)
    series = result["results"][0].get("series")  # type: ignore[index]
    return [] if not series else list(series[0]["values"])


def test_thruster_fault_alarm_lifecycle(config: Config, tmdbs: list[Tmdb],
                                        influxd: InfluxServer, database: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISLS_")}
    env.update(ISLS_MQTT_URL=config.mqtt.url, ISLS_INFLUX_URL=config.influx.url,
               ISLS_INFLUX_DB=database, ISLS_STATE_DIR=str(config.state_dir))

    async def scenario() -> tuple[list[dict[str, object]], str, IngestService]:
        stop = asyncio.Event()
        ingest = IngestService.from_config(config, tmdbs)
        task = asyncio.create_task(ingest.run(stop))
        await wait_subscribed(ingest)
        published: list[dict[str, object]] = []
        async with make_client(config.mqtt, "test-alarm-listener") as listener:
            await listener.subscribe("isls/lander/alarms", qos=1)

            async def listen() -> None:
                async for message in listener.messages:
                    assert isinstance(message.payload, bytes)
                    published.append(json.loads(message.payload))

            listening = asyncio.create_task(listen())
            # The yaw thruster sticks open at 30 s and closes at 90 s of simulated time.
            model = make_model("lander", 3, "thruster-stuck", fault_until=90.0)
            simulator = SimulatorService(PacketGenerator(model, tmdbs[0], start_unix=START),
                                         config.mqtt, speed=25.0)
            await simulator.run(asyncio.Event(), 6.0)  # 150 s of flight
            await wait_for_async(lambda: any(p["transition"] == "returned" for p in published),
                                 20, "the alarm to return to normal")
            alarm_id = str(next(p["alarm_id"] for p in published
                                if p["transition"] == "raised"))
            listing = await asyncio.create_subprocess_exec(
                *ISLS, "alarms", "--once", env=env, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
            listed, _ = await asyncio.wait_for(listing.communicate(), 60)
            row = next(line for line in listed.decode().splitlines() if alarm_id in line)
            assert "returned" in row and row.rstrip().endswith("NO")  # back, not yet acked
            acknowledge = await asyncio.create_subprocess_exec(
                *ISLS, "alarms", "ack", alarm_id, "--by", "flight", "--note", "yaw jet closed",
                env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            stdout, stderr = await asyncio.wait_for(acknowledge.communicate(), 60)
            assert acknowledge.returncode == 0, stderr.decode()
            await wait_for_async(lambda: any(p["transition"] == "cleared" for p in published),
                                 20, "the acknowledged, returned alarm to clear")
            # The simulator has stopped while the lander is in contact: its packets go
            # stale. An operator shelves that alarm for five minutes.
            await wait_for_async(lambda: any(p["kind"] == "stale" for p in published), 20,
                                 "a stale alarm")
            stale_id = str(next(p["alarm_id"] for p in published if p["kind"] == "stale"))
            shelve = await asyncio.create_subprocess_exec(
                *ISLS, "alarms", "shelve", stale_id, "--minutes", "5", "--by", "eps",
                env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            shelved_out, shelve_err = await asyncio.wait_for(shelve.communicate(), 60)
            assert shelve.returncode == 0, shelve_err.decode()
            assert f"{stale_id}: shelved by eps" in shelved_out.decode()
            shelved = next(p for p in published
                           if p["alarm_id"] == stale_id and p["transition"] == "shelved")
            until, at = shelved["shelved_until_ns"], shelved["time_ns"]
            assert isinstance(until, int) and isinstance(at, int)
            assert 299e9 <= until - at <= 301e9
            listening.cancel()
        stop.set()
        await task
        return published, stdout.decode(), ingest

    published, ack_output, ingest = asyncio.run(scenario())
    yaw = [p for p in published if p["subject"] == "imu_rate_z"]
    assert [p["transition"] for p in yaw] == ["raised", "returned", "acknowledged", "cleared"]
    raised = yaw[0]
    assert raised["severity"] == "yellow" and raised["kind"] == "limit"
    assert "acknowledged" in ack_output

    # Expected time: the third consecutive sample beyond 15 deg/s (persistence 3), found
    # independently in the stored telemetry.
    rows = _series(influxd, database, 'SELECT "imu_rate_z" FROM "lander_nav" '
                   "WHERE source='live' ORDER BY time")
    times = np.array([r[0] for r in rows], dtype=np.int64)
    rates = np.array([r[1] for r in rows], dtype=float)
    out = np.abs(rates) > 15.0
    run = np.convolve(out.astype(int), np.ones(3, dtype=int), mode="full")[:len(out)]
    expected_ns = int(times[np.argmax(run >= 3)])
    assert raised["time_ns"] == expected_ns
    assert 40 <= (expected_ns / 1e9 - START) <= 80  # fault at 30 s, spin-up takes a while

    stored = _series(influxd, database, 'SELECT "transition", "alarm_id", "by" FROM "alarms" '
                     "WHERE subject='imu_rate_z' ORDER BY time")
    # Limit changes carry the packets' onboard times, operator actions the wall clock
    # (the simulated flight runs 25 times faster), so compare without the order.
    assert sorted(str(r[1]) for r in stored) == ["acknowledged", "cleared", "raised",
                                                 "returned"]
    assert {r[2] for r in stored} == {raised["alarm_id"]}
    events = _series(influxd, database, 'SELECT "subject", "message" FROM "events" '
                     "WHERE kind='mode' ORDER BY time")
    assert any("ORBIT_COAST -> BRAKING" in str(r[2]) for r in events)
    operator = _series(influxd, database, 'SELECT "message" FROM "events" WHERE kind=\'operator\'')
    assert operator and "flight acknowledged" in str(operator[0][1])
    # The limit alarm is gone. Once the simulator stopped, its packet types went stale
    # while the lander was still in contact: that is right, and all that is left.
    assert ingest.monitor is not None
    assert {a.kind for a in ingest.monitor.alarms.active()} <= {"stale"}
    # No other limit alarm in a nominal descent apart from the fault's.
    assert {p["subject"] for p in published if p["kind"] == "limit"} == {"imu_rate_z"}


def test_derived_parameters_equal_their_formula_on_stored_values(
        config: Config, tmdbs: list[Tmdb], influxd: InfluxServer, database: str) -> None:
    asyncio.run(run_pipeline(config, tmdbs, 2.0, 5.0, seed=2, start_unix=None))
    power = np.array(_series(influxd, database, 'SELECT "bus_power", "bus_voltage", '
                             '"load_current" FROM "lander_power"'))[:, 1:].astype(float)
    assert len(power) >= 5
    # bus_voltage and load_current are float32 engineering values (`engineering:
    # float32`): their stored text narrows back to exactly what the formula used.
    operands = power[:, 1:].astype(np.float32).astype(np.float64)
    assert np.allclose(power[:, 0], operands[:, 0] * operands[:, 1], rtol=1e-12)
    relay = np.array(_series(influxd, database, 'SELECT "one_way_light_time", "earth_range" '
                             'FROM "orbiter_relay"'))[:, 1:].astype(float)
    # earth_range is a float32 parameter: stored as its shortest float32 text, it
    # narrows back to exactly the decoded value the formula used.
    earth_range = relay[:, 1].astype(np.float32).astype(np.float64)
    assert np.allclose(relay[:, 0], earth_range / 299792.458, rtol=1e-12)
    assert np.all((relay[:, 0] > 1.2) & (relay[:, 0] < 1.4))  # about 1.28 s to Earth
    orbit = np.array(_series(influxd, database, 'SELECT "orbit_radius", "position_x", '
                             '"position_y", "position_z" FROM "orbiter_orbit"'))[:, 1:]
    orbit = orbit.astype(float)
    assert np.allclose(orbit[:, 0], np.sqrt((orbit[:, 1:] ** 2).sum(axis=1)), rtol=1e-12)
