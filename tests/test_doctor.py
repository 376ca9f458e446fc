"""`isls doctor` against the real servers, healthy and broken."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
from dataclasses import replace

from control_center.config import Config
from control_center.doctor import doctor
from control_center.servers import InfluxServer, MosquittoServer, free_port
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
