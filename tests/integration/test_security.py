"""Accounts and rights, checked by a real Mosquitto and a real influxd."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import subprocess
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import aiomqtt
import pytest

from control_center.config import Config, InfluxSettings
from control_center.errors import ConfigError, ServerError
from control_center.operations.security import (
    INGEST,
    OPERATOR,
    account_settings,
    accounts,
    agency_account,
    is_partner,
    password_file_text,
    password_hash,
    provision_influx,
    simulator_account,
    write_broker_security,
)
from control_center.operations.servers import InfluxServer, MosquittoServer, free_port, port_open
from control_center.storage.writer import InfluxWriter
from control_center.telemetry.tmdb import Tmdb
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
    assert "user agency-cnsa\ntopic read isls/orbiter/#" in security.acl_file.read_text()
    for password_file in (security.password_file, security.partner_password_file):
        assert "secret-" not in password_file.read_text()  # hashed
    broker = MosquittoServer(tmp_path / "mosquitto", free_port(), security=security)
    broker.start()
    base = replace(config.mqtt, port=broker.port)

    def as_account(name: str, secret: str | None = None) -> aiomqtt.Client:
        password = secret or env["ISLS_MQTT_PASSWORD_" + name.upper().replace("-", "_")]
        # Simulators and agencies log in on the partner port.
        port = security.partner_port if is_partner(name) else broker.port
        return make_client(replace(base, username=name, password=password, port=port),
                           f"test-{name}")

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


def test_the_password_file_is_mosquitto_passwds_own_format(tmp_path: Path) -> None:
    """The hash written here is the one mosquitto_passwd 2.0 writes for the same salt
    ($7$: PBKDF2-HMAC-SHA512, 101 iterations, 12-octet salt, 64-octet hash); the broker
    accepting it is shown by the test above, which only uses files written here."""
    reference = tmp_path / "reference"
    reference.touch(mode=0o600)
    # A throwaway password in a test: the tool's -b is what isls no longer does.
    subprocess.run(["mosquitto_passwd", "-b", str(reference), "alice", "correct horse"],
                   check=True, capture_output=True)
    user, hashed = reference.read_text().strip().split(":", 1)
    _, kind, iterations, salt, _digest = hashed.split("$")
    assert (user, kind, iterations) == ("alice", "7", "101")
    assert password_hash("correct horse", base64.b64decode(salt)) == hashed
    assert password_hash("correct horse") != hashed  # a fresh random salt each time
    text = password_file_text({"alice": "correct horse", "bob": "x"})
    assert text.startswith("alice:$7$101$") and "\nbob:$7$101$" in text


def _command_lines() -> dict[int, bytes]:
    lines = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                lines[int(entry.name)] = (entry / "cmdline").read_bytes()
    return lines


def test_isls_up_puts_no_secret_on_a_command_line_and_keeps_its_state_private(
        tmp_path: Path) -> None:
    """Issue 13, item 8. While `isls up` runs with every credential set, no process's
    command line (world-readable in /proc) holds a password; afterwards every file it
    left under the state directory is 0600 and every directory 0700; its influxd serves
    no /debug/pprof and listens on 127.0.0.1 only."""
    from control_center.config import load_config
    from control_center.telemetry.tmdb_yaml import load_tmdbs
    from tests.integration.test_cli import _env, _local_config

    mqtt_port, influx_port = free_port(), free_port()
    config_path = _local_config(tmp_path, mqtt_port, influx_port)
    loaded = load_config(config_path, {})
    names = [a.name for a in accounts(loaded, load_tmdbs(loaded.tmdb_paths))]
    secrets = {"ISLS_MQTT_PASSWORD_" + n.upper().replace("-", "_"): f"pw-{n}-7f3a"
               for n in names}
    secrets |= {"ISLS_INFLUX_ADMIN_PASSWORD": "admin-pw-7f3a",
                "ISLS_INFLUX_PASSWORD": "ingest-pw-7f3a",
                "ISLS_INFLUX_READER_PASSWORD": "reader-pw-7f3a"}
    env = _env(**secrets, ISLS_INFLUX_USER="isls_ingest",
               ISLS_MQTT_PARTNER_PORT=str(free_port()))
    exposed: dict[int, bytes] = {}
    listening: list[str] = []
    debug: dict[str, int] = {}
    log = tmp_path / "up.log"
    with log.open("wb") as output:
        process = subprocess.Popen([*ISLS, "--config", str(config_path), "up", "--duration",
                                    "6"], env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        while process.poll() is None:
            for pid, line in _command_lines().items():
                if any(secret.encode() in line for secret in secrets.values()):
                    exposed[pid] = line
            if not listening and port_open(influx_port):
                influxd = [pid for pid, line in _command_lines().items()
                           if line.startswith(b"/usr/bin/influxd")
                           and str(tmp_path).encode() in line]
                listening = [address for pid in influxd for address in _listening(pid)]
                for path in ("/debug/pprof/", "/debug/vars"):
                    try:
                        with urllib.request.urlopen(
                                f"http://127.0.0.1:{influx_port}{path}", timeout=5) as answer:
                            debug[path] = answer.status
                    except urllib.error.HTTPError as error:
                        debug[path] = error.code
    finally:
        process.wait(120)
    assert process.returncode == 0, log.read_text()[-3000:]
    assert exposed == {}, exposed
    # influxd 1.6.7: /debug/pprof off; /debug/vars has no switch (counters, no data), hence
    # 127.0.0.1 only.
    assert debug == {"/debug/pprof/": 404, "/debug/vars": 200}
    assert listening and all(address.startswith("127.0.0.1:") for address in listening), \
        listening
    state = tmp_path / "state"
    loose = [f"{oct(path.stat().st_mode & 0o777)} {path}" for path in [state, *state.rglob("*")]
             if not path.is_symlink()
             and path.stat().st_mode & 0o777 != (0o700 if path.is_dir() else 0o600)]
    assert loose == []
    for name in ("mosquitto/security/passwd", "mosquitto/security/partner-passwd",
                 "mosquitto/security/acl", "mosquitto/mosquitto.db",
                 "influxdb/meta/meta.db"):
        assert (state / name).is_file(), name
    assert list(state.glob("archive/*/*/pass.json"))  # the ingest's files are checked too


def _listening(pid: int) -> list[str]:
    """host:port of the TCP sockets ``pid`` listens on (from /proc, no tools needed)."""
    inodes = set()
    for descriptor in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(descriptor)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                host, port = fields[1].split(":")
                if len(host) == 8:
                    address = ".".join(str(b) for b in reversed(bytes.fromhex(host)))
                else:
                    address = f"[{host}]"
                found.append(f"{address}:{int(port, 16)}")
    return found


def test_operator_tools_log_in_as_isls_operator_on_a_locked_broker(tmp_path: Path) -> None:
    """`isls servers` (as `isls up`) locks the broker when its accounts have passwords.
    The operator tools then log in as isls-operator by themselves when that account's
    password is in the environment and no user is named: the URL `isls servers` prints
    is enough. Another account's password alone is refused, with one line."""
    import signal

    from control_center.config import load_config
    from control_center.telemetry.tmdb_yaml import load_tmdbs
    from tests.integration.test_cli import _env, _local_config
    from tests.support.processes import Running

    config_path = _local_config(tmp_path, free_port(), free_port())
    loaded = load_config(config_path, {})
    names = [a.name for a in accounts(loaded, load_tmdbs(loaded.tmdb_paths))]
    secrets = {"ISLS_MQTT_PASSWORD_" + n.upper().replace("-", "_"): f"pw-{n}" for n in names}
    servers = Running(["servers", "--config", str(config_path)],
                      _env(**secrets, ISLS_MQTT_PARTNER_PORT=str(free_port())))
    try:
        servers.wait_log("export ISLS_MQTT_URL=")
        url = servers.log.split("export ISLS_MQTT_URL=")[1].split()[0]
        operator = _env(ISLS_MQTT_URL=url, ISLS_STATE_DIR=str(tmp_path / "operator"),
                        ISLS_MQTT_PASSWORD_ISLS_OPERATOR="pw-isls-operator")
        for command in (["alarms", "--once"], ["link", "status", "--once"]):
            result = subprocess.run([*ISLS, "--config", str(config_path), *command],
                                    env=operator, capture_output=True, text=True, timeout=60)
            assert "not authori" not in result.stderr, result.stderr
            assert result.returncode in (0, 1), result.stderr  # 1: no link is reporting
        anonymous = subprocess.run([*ISLS, "--config", str(config_path), "alarms", "--once"],
                                   env=_env(ISLS_MQTT_URL=url,
                                            ISLS_STATE_DIR=str(tmp_path / "anonymous")),
                                   capture_output=True, text=True, timeout=60)
        assert anonymous.returncode == 2
        assert "refused the connection: not authorized" in anonymous.stderr
    finally:
        servers.stop(signal.SIGINT)
