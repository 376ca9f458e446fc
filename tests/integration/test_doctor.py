"""`isls doctor` against the real servers, healthy and broken."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import time
from dataclasses import replace
from pathlib import Path

from control_center.config import Config
from control_center.operations.doctor import doctor
from control_center.operations.security import (
    OPERATOR,
    account_settings,
    accounts,
    write_broker_security,
)
from control_center.operations.servers import InfluxServer, MosquittoServer, free_port
from control_center.telemetry.tmdb import Tmdb
from tests.conftest import ISLS


def _run(config: Config) -> tuple[int, dict[str, str]]:
    out = io.StringIO()
    status = asyncio.run(doctor(config, out))
    lines = out.getvalue().splitlines()
    by_name = {}
    for line in lines[:-1]:
        verdict, rest = line.split(" ", 1)
        by_name[rest.strip().split("  ")[0]] = verdict
    return status, by_name


def test_a_healthy_deployment_passes(config: Config) -> None:
    status, checks = _run(config)
    assert status == 0, checks
    for name in ("config", "telemetry databases", "broker", "influxdb", "influxdb write",
                 "clock", "disk", "spool"):
        assert checks[name] in ("OK", "WARN"), (name, checks)
    assert checks["broker"] == checks["influxdb write"] == "OK"


def test_unreachable_servers_fail_with_the_reason(config: Config) -> None:
    dead = free_port()
    broken = replace(config, mqtt=replace(config.mqtt, port=dead),
                     influx=replace(config.influx, url=f"http://127.0.0.1:{dead}"))
    out = io.StringIO()
    status = asyncio.run(doctor(broken, out))
    text = out.getvalue()
    assert status == 1
    assert "FAIL broker" in text and f"127.0.0.1:{dead}" in text
    assert "FAIL influxdb" in text
    assert "2 failed" in text


def test_doctor_from_the_command_line(mosquitto: MosquittoServer, influxd: InfluxServer,
                                      database: str, config: Config) -> None:
    env = {**os.environ, "ISLS_MQTT_URL": mosquitto.url, "ISLS_INFLUX_URL": influxd.url,
           "ISLS_INFLUX_DB": database, "ISLS_STATE_DIR": str(config.state_dir)}
    result = subprocess.run([*ISLS, "doctor"], env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 failed" in result.stdout
    assert "Traceback" not in result.stderr
    # The queue probe keeps a hundred publishes in flight on purpose: no warning per
    # publish about it (there were 1,350 lines of them).
    assert "pending publish calls" not in result.stderr


def _locked_broker(config: Config, tmdbs: list[Tmdb], directory: Path
                   ) -> tuple[MosquittoServer, Config, dict[str, str]]:
    """A started broker with the generated accounts and ACL; the configuration using it."""
    names = [a.name for a in accounts(config, tmdbs)]
    env = {"ISLS_MQTT_PASSWORD_" + n.upper().replace("-", "_"): f"pw-{n}" for n in names}
    env["ISLS_MQTT_PARTNER_PORT"] = str(free_port())
    port = free_port()
    local = replace(config, mqtt=replace(config.mqtt, port=port, external=False))
    security = write_broker_security(directory / "security", local, tmdbs, env)
    broker = MosquittoServer(directory / "mosquitto", port, security=security)
    broker.start()
    return broker, local, env


def test_doctor_passes_on_a_locked_broker_as_the_operator(
        config: Config, tmdbs: list[Tmdb], tmp_path: Path) -> None:
    """Issue 13, item 9: with the generated ACL the operator's round trip works (on
    isls/doctor/isls-operator/#), it reads the broker's $SYS counters, and the broker
    keeps a burst for a client that is away."""
    broker, local, env = _locked_broker(config, tmdbs, tmp_path)
    try:
        operator = replace(local, mqtt=account_settings(local, OPERATOR, env))
        status, checks = _run(operator)
        assert checks["broker"] == "OK", checks
        assert checks["broker statistics"] == "OK" and checks["broker queue"] == "OK", checks
        assert status == 0, checks
    finally:
        broker.stop()


class _DefaultsBroker(MosquittoServer):
    """Mosquitto as installed (max_queued_messages 1000), with $SYS every second."""

    def write_config(self) -> None:
        self.config_path.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                                    f"sys_interval 1\n")


def test_doctor_warns_about_an_external_broker_with_mosquittos_defaults(
        config: Config, tmp_path: Path) -> None:
    broker = _DefaultsBroker(tmp_path / "mosquitto", free_port())
    broker.start()
    try:
        external = replace(config, mqtt=replace(config.mqtt, port=broker.port, external=True))
        out = io.StringIO()
        assert asyncio.run(doctor(external, out)) == 0  # warnings, not failures
        text = out.getvalue()
        assert "WARN broker queue" in text, text
        assert "kept 1000 of 1500" in text and "max_queued_messages" in text, text
        # The probe's own tail was dropped: the broker's counter says so at the next run.
        time.sleep(1.5)
        out = io.StringIO()
        asyncio.run(doctor(external, out))
        assert "WARN broker statistics" in out.getvalue(), out.getvalue()
        assert "has dropped 500 messages" in out.getvalue(), out.getvalue()
    finally:
        broker.stop()
