"""Ctrl-C and SIGTERM stop every long-running command within 2 s, in every state: while
a server it needs cannot be reached (connecting, retrying), and while draining with a
server that died; and it says what it could not deliver and where that is kept.

Real processes, real servers (or a loopback port nothing listens on)."""

from __future__ import annotations

import os
import signal
import socket
import urllib.request
from pathlib import Path

import pytest

from control_center.operations.servers import InfluxServer, MosquittoServer, free_port
from tests.conftest import PROJECT, count_points, wait_for
from tests.support.processes import Running

STOP_WITHIN = 2.0  # seconds, the promise of the README


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISLS_")}
    env.update(ISLS_STATE_DIR=str(tmp_path / "state"), **extra)
    return env


def _nothing_listens() -> str:
    """A loopback port no server listens on (connection refused at once)."""
    return str(free_port())


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_simulator_without_a_broker_stops_at_once(tmp_path: Path, signum: int) -> None:
    running = Running(["sim", "lander"], _env(
        tmp_path, ISLS_MQTT_URL=f"mqtt://127.0.0.1:{_nothing_listens()}"))
    running.wait_log("reconnecting in")
    code, took = running.stop(signum)
    assert code == 0, running.log
    assert took < STOP_WITHIN, f"{took:.1f} s:\n{running.log}"
    assert "simulator stopped" in running.log


def test_an_ingest_waiting_for_influxdb_stops_at_once(tmp_path: Path,
                                                      mosquitto: MosquittoServer) -> None:
    running = Running(["ingest"], _env(
        tmp_path, ISLS_MQTT_URL=mosquitto.url,
        ISLS_INFLUX_URL=f"http://127.0.0.1:{_nothing_listens()}"))
    running.wait_log("retrying in")
    code, took = running.stop(signal.SIGTERM)
    assert code == 0, running.log
    assert took < STOP_WITHIN, f"{took:.1f} s:\n{running.log}"
    assert "stopped before InfluxDB at" in running.log
    assert "nothing was taken from the broker" in running.log


def test_an_ingest_waiting_for_the_broker_stops_at_once(tmp_path: Path,
                                                        influxd: InfluxServer) -> None:
    running = Running(["ingest"], _env(
        tmp_path, ISLS_MQTT_URL=f"mqtt://127.0.0.1:{_nothing_listens()}",
        ISLS_INFLUX_URL=influxd.url, ISLS_INFLUX_DB="stop_signals"))
    running.wait_log("reconnecting in")
    code, took = running.stop(signal.SIGINT)
    assert code == 0, running.log
    assert took < STOP_WITHIN, f"{took:.1f} s:\n{running.log}"
    assert "ingest stopped: 0 packets decoded" in running.log


def test_an_ingest_whose_influxdb_died_stops_at_once_and_says_where_the_rest_is(
        tmp_path: Path, mosquitto: MosquittoServer) -> None:
    """Telemetry taken while InfluxDB is gone goes to the disk spool (and is then
    acknowledged): the stop names how much waits there and the directory."""
    with InfluxServer(tmp_path / "influxd", free_port()) as influx:
        env = _env(tmp_path, ISLS_MQTT_URL=mosquitto.url, ISLS_INFLUX_URL=influx.url)
        ingest = Running(["ingest"], env)
        ingest.wait_log("subscribed")
        simulator = Running(["sim", "lander"], env)
        wait_for(lambda: count_points(influx, "isls", "lander_power") > 0, 30,
                 message="telemetry stored")
        influx.stop()  # InfluxDB dies under load
        ingest.wait_log("spooled to disk")
        code, took = ingest.stop(signal.SIGINT)
        simulator.stop(signal.SIGTERM)
    assert code == 0, ingest.log
    assert took < STOP_WITHIN, f"{took:.1f} s:\n{ingest.log}"
    spool = tmp_path / "state" / "spool"
    assert f"lines wait in the disk spool ({spool}) for InfluxDB" in ingest.log, ingest.log
    assert any(spool.iterdir())


def test_isls_servers_runs_the_local_servers_until_ctrl_c(tmp_path: Path) -> None:
    """Only the broker and InfluxDB, for services started by hand: it prints how to reach
    them, they answer, and Ctrl-C stops them (the ports are free again)."""
    mqtt_port, influx_port = free_port(), free_port()
    config = tmp_path / "isls.toml"
    shipped = (PROJECT / "config" / "isls.toml").read_text()
    assert "port = 18830\n" in shipped and "port = 18086\n" in shipped
    config.write_text(shipped.replace("port = 18830\n", f"port = {mqtt_port}\n")
                      .replace("port = 18086\n", f"port = {influx_port}\n")
                      .replace('tmdb = "tmdb/', f'tmdb = "{PROJECT}/config/tmdb/'))
    running = Running(["servers", "--config", str(config)], _env(tmp_path))
    running.wait_log("export ISLS_MQTT_URL=")
    assert f"export ISLS_MQTT_URL=mqtt://127.0.0.1:{mqtt_port} " \
           f"ISLS_INFLUX_URL=http://127.0.0.1:{influx_port}" in running.log
    with socket.create_connection(("127.0.0.1", mqtt_port), timeout=5), \
            urllib.request.urlopen(f"http://127.0.0.1:{influx_port}/ping", timeout=5):
        pass
    code, took = running.stop(signal.SIGINT)
    assert code == 0, running.log
    assert took < STOP_WITHIN, f"{took:.1f} s:\n{running.log}"
    assert "servers stopped" in running.log
    for port in (mqtt_port, influx_port):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
