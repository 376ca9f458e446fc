"""Real servers for the test suite: one Mosquitto and one influxd per session, each on a
free loopback port with a temporary data directory, stopped at the end.

Tests that write to InfluxDB use their own database (the ``database`` fixture), so they
do not see each other's points while sharing one server.

Two kinds of tests, by folder: ``tests/unit`` (pure, in-process, no server and no
subprocess: ``make test-fast``) and ``tests/integration`` (real servers, ptys, the
``isls`` command). Each test gets the marker of its kind automatically, and a unit test
that asks for a server fixture is an error at collection, so the fast half stays fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import aiomqtt
import numpy as np
import pytest

from control_center.config import Config, MqttSettings, load_config
from control_center.grafana.dashboards import DashboardSet, build_dashboards
from control_center.operations.servers import InfluxServer, MosquittoServer, free_port
from control_center.pipeline.service import IngestService, ingest_client_id, wait_subscribed
from control_center.telemetry.tmdb import Tmdb
from control_center.telemetry.tmdb_yaml import load_tmdbs
from drivers.mqtt import make_client
from simulators.runner import PacketGenerator, SimulatorService, make_model

PROJECT = Path(__file__).resolve().parent.parent
CONFIG = PROJECT / "config" / "isls.toml"
ISLS = [sys.executable, "-m", "control_center.cli"]


def start_isls(args: list[str], env: dict[str, str], *, until: str = "subscribed",
               stdout: int | None = None) -> subprocess.Popen[str]:
    """Start ``isls ARGS`` and return once its log says ``until``. The rest of its log
    is drained by a thread, so a chatty process never blocks on a full pipe."""
    process = subprocess.Popen([*ISLS, *args], env=env, stdout=stdout, stderr=subprocess.PIPE,
                               text=True)
    assert process.stderr is not None
    seen = ""
    while until not in seen:
        line = process.stderr.readline()
        if not line:
            process.kill()
            raise AssertionError(f"isls {' '.join(args)} ended before logging {until!r}:\n"
                                 f"{seen}")
        seen += line
    threading.Thread(target=process.stderr.read, daemon=True).start()
    return process


def crc16_reference(data: bytes, crc: int = 0xFFFF) -> int:
    """Bit-by-bit CRC-16-CCITT (poly 0x1021, MSB first, no reflection, no final XOR)."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


SERVER_FIXTURES = frozenset({"mosquitto", "influxd", "database", "config"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``unit`` or ``integration`` on every test, from its folder; a unit test that needs
    a server is a collection error naming the fixture."""
    for item in items:
        folder = item.path.parent.name
        servers = sorted(SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())))
        if folder == "integration":
            item.add_marker(pytest.mark.integration)
        elif folder == "unit":
            if servers:
                raise pytest.UsageError(
                    f"{item.nodeid} is a unit test but uses the server fixture(s) "
                    f"{', '.join(servers)}: move it to tests/integration/")
            item.add_marker(pytest.mark.unit)
        else:
            raise pytest.UsageError(f"{item.nodeid}: tests live in tests/unit/ or "
                                    f"tests/integration/")


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoServer]:
    server = MosquittoServer(tmp_path_factory.mktemp("mosquitto"), free_port())
    with server:
        yield server


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxServer]:
    server = InfluxServer(tmp_path_factory.mktemp("influxd"), free_port())
    with server:
        yield server


@pytest.fixture
def database(influxd: InfluxServer) -> Iterator[str]:
    name = f"test_{uuid.uuid4().hex[:12]}"
    yield name
    influxd.query(f'DROP DATABASE "{name}"')


@pytest.fixture(scope="session")
def tmdbs() -> list[Tmdb]:
    return load_tmdbs([PROJECT / "config/tmdb/lander.yaml", PROJECT / "config/tmdb/orbiter.yaml"])


@pytest.fixture(scope="session")
def offline_config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """The shipped configuration, pointing at no server and starting none: for the tests
    that only need a ``Config`` (building dashboards, reports, security files)."""
    return load_config(CONFIG, {"ISLS_STATE_DIR": str(tmp_path_factory.mktemp("state"))})


@pytest.fixture(scope="module")
def built(offline_config: Config, tmdbs: list[Tmdb]) -> DashboardSet:
    """The dashboards built from the shipped configuration and TMDBs."""
    return build_dashboards(offline_config, tmdbs)


@pytest.fixture
def config(mosquitto: MosquittoServer, influxd: InfluxServer, database: str,
           tmp_path: Path) -> Iterator[Config]:
    """The shipped configuration pointed at the test servers, as a user would with
    ISLS_MQTT_URL / ISLS_INFLUX_URL / ISLS_INFLUX_DB."""
    environ = {
        "ISLS_MQTT_URL": mosquitto.url,
        "ISLS_INFLUX_URL": influxd.url,
        "ISLS_INFLUX_DB": database,
        "ISLS_STATE_DIR": str(tmp_path / "state"),
    }
    loaded = load_config(CONFIG, environ)
    # A short flush interval keeps the tests quick; behaviour is otherwise the shipped one.
    yield replace(loaded, influx=replace(loaded.influx, flush_interval=0.05))
    # The test's ingest left a persistent session (an hour's expiry) subscribed to every
    # raw topic: end it, or the shared broker would queue every later test's telemetry
    # for it, and its save-on-every-change persistence would rewrite that backlog at
    # each message (the suite took twice as long).
    asyncio.run(end_session(loaded.mqtt, ingest_client_id(loaded.state_dir)))


async def end_session(settings: MqttSettings, identifier: str) -> None:
    """Connect as ``identifier`` with a clean start and no expiry: the broker drops
    that client's session and everything it held for it."""
    with contextlib.suppress(aiomqtt.MqttError):
        async with make_client(settings, identifier, clean_start=True, session_expiry=0):
            pass


def wait_for(condition: Callable[[], bool], timeout: float = 20.0, interval: float = 0.05,
             message: str = "condition") -> None:
    """Poll ``condition`` until it holds; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {message}")


async def wait_for_async(condition: Callable[[], bool], timeout: float = 20.0,
                         message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {message}")


def count_points(influxd: InfluxServer, database: str, measurement: str,
                 where: str = "") -> int:
    """Points in a packet measurement: every point carries ``sequence_count``."""
    result = influxd.query(f'SELECT COUNT("sequence_count") FROM "{measurement}" {where}',
                           database)
    series = result["results"][0].get("series")  # type: ignore[index]
    if not series:
        return 0
    count = series[0]["values"][0][1]
    # No point in the window: InfluxDB answers a row whose count is null, not 0.
    return int(count) if count is not None else 0


async def run_pipeline(config: Config, tmdbs: list[Tmdb], duration: float, speed: float, *,
                       seed: int = 7, start_unix: float | None = 1_800_000_000.0
                       ) -> tuple[IngestService, list[SimulatorService]]:
    """The live chain for ``duration`` wall seconds: an ingest, and a simulator per
    telemetry database at ``speed``; returns once the ingest has stored everything."""
    stop = asyncio.Event()
    ingest = IngestService.from_config(config, tmdbs)
    ingest_task = asyncio.create_task(ingest.run(stop))
    await wait_subscribed(ingest)
    simulators = [
        SimulatorService(PacketGenerator(make_model(t.spacecraft, seed=seed), t,
                                         start_unix=start_unix),
                         config.mqtt, speed=speed, publish_interval=0.1)
        for t in tmdbs
    ]
    await asyncio.gather(*(s.run(asyncio.Event(), duration) for s in simulators))
    stop.set()
    await ingest_task
    return ingest, simulators


def lander_nav_messages(tmdb: Tmdb, count: int, per_message: int,
                        first: int = 0) -> list[bytes]:
    """``count`` messages of ``per_message`` lander_nav packets, every packet its own
    onboard time (2^-13 s apart, from the ``first`` message's), values steady."""
    from control_center.telemetry.codec import PacketCodec
    from control_center.telemetry.packets import CucTime

    packet = tmdb.packet("lander_nav")
    codec = PacketCodec(tmdb.spacecraft, packet)
    n = count * per_message
    start = CucTime.from_unix(1_800_000_000)
    ticks = (np.arange(n, dtype=np.int64) + first * per_message) * 8
    values = {p.name: np.ones(n) for p in packet.parameters if not p.overlay}
    blob = codec.encode(values, coarse=start.coarse + ticks // 65536, fine=ticks % 65536,
                        sequence_counts=np.arange(n) % 16384)
    size = per_message * packet.length
    return [blob[i * size:(i + 1) * size] for i in range(count)]
