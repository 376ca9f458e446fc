"""Accounts and rights, checked by a real Mosquitto and a real influxd."""

from __future__ import annotations

import asyncio
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import aiomqtt
import pytest

from control_center.config import Config, InfluxSettings
from control_center.errors import ConfigError, ServerError
from control_center.security import (
    INGEST,
    OPERATOR,
    account_settings,
    accounts,
    agency_account,
    provision_influx,
    simulator_account,
    write_broker_security,
)
from control_center.servers import InfluxServer, MosquittoServer, free_port
from control_center.storage import InfluxWriter
from control_center.tmdb import Tmdb
from drivers.mqtt import make_client
from tests.conftest import ISLS


def _passwords(tmdbs: list[Tmdb], config: Config) -> dict[str, str]:
    names = [a.name for a in accounts(config, tmdbs)]
    return {"ISLS_MQTT_PASSWORD_" + n.upper().replace("-", "_"): f"secret-{n}" for n in names}


def test_agencies_read_only_their_missions_and_what_is_shared(
        config: Config, tmdbs: list[Tmdb]) -> None:
    by_name = {a.name: a for a in accounts(config, tmdbs)}
    # The orbiter's TMDB says agency cnsa, the lander's roscosmos.
    assert by_name[agency_account("cnsa")].read == ("isls/orbiter/#",)
    assert by_name[agency_account("roscosmos")].read == ("isls/lander/#",)
    assert by_name[agency_account("cnsa")].write == ()
    assert by_name[simulator_account("lander")].write == ("isls/lander/tm/raw",)
    assert by_name[simulator_account("lander")].read == ()
    shared = replace(config, spacecraft=tuple(
        replace(s, shared_with=("cnsa",)) if s.name == "lander" else s
        for s in config.spacecraft))
    granted = {a.name: a for a in accounts(shared, tmdbs)}[agency_account("cnsa")].read
    assert granted == ("isls/lander/#", "isls/orbiter/#")


def test_a_secrets_file_readable_by_others_is_refused(config: Config, tmdbs: list[Tmdb]) -> None:
    secrets = config.state_dir / "secrets"
    secrets.mkdir(parents=True)
    (secrets / INGEST).write_text("hunter2\n")
    os.chmod(secrets / INGEST, 0o644)
    with pytest.raises(ConfigError) as error:
        account_settings(config, INGEST, env={})
    assert str(secrets / INGEST) in str(error.value) and "chmod 600" in str(error.value)
    os.chmod(secrets / INGEST, 0o600)
    settings = account_settings(config, INGEST, env={})
    assert settings.username == INGEST and settings.password == "hunter2"


def test_the_broker_enforces_the_generated_accounts(
        config: Config, tmdbs: list[Tmdb], tmp_path: Path) -> None:
    env = _passwords(tmdbs, config)
    security = write_broker_security(tmp_path / "security", config, tmdbs, env)
    assert security is not None
    password_file, acl_file = security
    assert "user agency-cnsa\ntopic read isls/orbiter/#" in acl_file.read_text()
    assert "secret-" not in password_file.read_text()  # hashed
    broker = MosquittoServer(tmp_path / "mosquitto", free_port(), security=security)
    broker.start()
    base = replace(config.mqtt, port=broker.port)

    def as_account(name: str, secret: str | None = None) -> aiomqtt.Client:
        password = secret or env["ISLS_MQTT_PASSWORD_" + name.upper().replace("-", "_")]
        return make_client(replace(base, username=name, password=password), f"test-{name}")

    async def scenario() -> None:
        # No anonymous clients, no wrong passwords.
        with pytest.raises(aiomqtt.MqttError):
            async with make_client(replace(base, username=None, password=None), "anon"):
                pass
        with pytest.raises(aiomqtt.MqttError):
            async with as_account(INGEST, "wrong"):
                pass
        async with as_account(agency_account("cnsa")) as cnsa, \
                as_account(OPERATOR) as operator, \
                as_account(simulator_account("lander")) as lander_sim, \
                as_account(simulator_account("orbiter")) as orbiter_sim:
            # CNSA (orbiter) asks for everything; the broker delivers only the orbiter.
            await cnsa.subscribe("isls/#", qos=1)
            await operator.subscribe("isls/#", qos=1)
            # A simulator may publish its own spacecraft's telemetry only: the forbidden
            # message is dropped, the allowed one after it arrives.
            await lander_sim.publish("isls/orbiter/tm/raw", b"forged", qos=1)
            await lander_sim.publish("isls/lander/tm/raw", b"lander", qos=1)
            async with asyncio.timeout(10):
                message = await anext(aiter(operator.messages))
            assert str(message.topic) == "isls/lander/tm/raw" and message.payload == b"lander"
            # The lander message went out before this one: CNSA's first is the orbiter's.
            await orbiter_sim.publish("isls/orbiter/tm/raw", b"orbiter", qos=1)
            async with asyncio.timeout(10):
                message = await anext(aiter(cnsa.messages))
            assert str(message.topic) == "isls/orbiter/tm/raw" and message.payload == b"orbiter"

    try:
        asyncio.run(scenario())
    finally:
        broker.stop()


def test_influxdb_accounts_write_only_read_only_and_a_wrong_password(
        config: Config, tmp_path: Path) -> None:
    server = InfluxServer(tmp_path / "influx", free_port(), auth=True)
    server.start()
    users = {"admin": ("admin", "admin-pw"), "ingest": ("isls_ingest", "ingest-pw"),
             "reader": ("grafana", "reader-pw")}
    try:
        provision_influx(server.query, "secure", users)
        provision_influx(server.query, "secure", users)  # again, as at every start
        ingest = replace(config.influx, url=server.url, database="secure",
                         username="isls_ingest", password="ingest-pw")

        async def write_then_read(settings: InfluxSettings) -> None:
            async with InfluxWriter(settings) as writer:
                await writer.ensure_database()  # 403 for a write-only account: fine
                await writer.write(b"probe value=1 1700000000000000000\n", 1, 1)
            async with InfluxWriter(settings) as reader:
                await reader.query("SELECT * FROM probe")

        with pytest.raises(ServerError) as refused_read:
            asyncio.run(write_then_read(ingest))  # writes, then may not read
        assert "403" in str(refused_read.value)
        result = server.query("SELECT count(value) FROM probe", "secure",
                              account=("grafana", "reader-pw"))
        assert result["results"][0]["series"][0]["values"][0][1] == 1  # type: ignore[index]

        wrong = replace(ingest, password="wrong")
        with pytest.raises(ServerError) as refused:
            asyncio.run(_ensure(wrong))
        assert "refused the credentials (401)" in str(refused.value)
        assert "ISLS_INFLUX_PASSWORD" in str(refused.value)
        # The same from the command line: one clear line, no traceback.
        env = {**os.environ, "ISLS_INFLUX_URL": server.url, "ISLS_INFLUX_DB": "secure",
               "ISLS_INFLUX_USER": "isls_ingest", "ISLS_INFLUX_PASSWORD": "wrong",
               "ISLS_MQTT_URL": "mqtt://127.0.0.1:1", "ISLS_STATE_DIR": str(tmp_path / "s")}
        result_cli = subprocess.run([*ISLS, "ingest", "--duration", "5"], env=env,
                                    capture_output=True, text=True, timeout=60, check=False)
        assert result_cli.returncode != 0
        assert "refused the credentials (401)" in result_cli.stderr
        assert "Traceback" not in result_cli.stderr
    finally:
        server.stop()


async def _ensure(settings: InfluxSettings) -> None:
    async with InfluxWriter(settings) as writer:
        await writer.ensure_database()
