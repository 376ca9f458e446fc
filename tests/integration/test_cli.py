"""The ``isls`` command as a user runs it: real processes, real servers."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest

from control_center.config import load_config
from control_center.errors import ConfigError
from control_center.operations.servers import InfluxServer, MosquittoServer, free_port, port_open
from tests.conftest import CONFIG, ISLS, PROJECT, count_points, start_isls, wait_for


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISLS_")}
    env.update(extra)
    return env


def _processes_using(path: Path) -> list[str]:
    """Command lines of live processes that mention ``path`` (servers left behind)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(path) in cmdline and "pytest" not in cmdline:
            found.append(cmdline)
    return found


def _local_config(tmp_path: Path, mqtt_port: int, influx_port: int) -> Path:
    config = tmp_path / "isls.toml"
    config.write_text(textwrap.dedent(f"""
        [station]
        state_dir = "{tmp_path / 'state'}"
        [mqtt]
        port = {mqtt_port}
        [influx]
        port = {influx_port}
        flush_interval = 0.1
        [simulator]
        speed = 4.0
        [[spacecraft]]
        name = "lander"
        tmdb = "{PROJECT / 'config/tmdb/lander.yaml'}"
        simulator = "lander"
        [[spacecraft]]
        name = "orbiter"
        tmdb = "{PROJECT / 'config/tmdb/orbiter.yaml'}"
        simulator = "orbiter"
        """))
    return config


def test_up_duration_runs_everything_stores_data_and_leaves_nothing_running(
        tmp_path: Path) -> None:
    mqtt_port, influx_port = free_port(), free_port()
    config = _local_config(tmp_path, mqtt_port, influx_port)
    result = subprocess.run([*ISLS, "--config", str(config), "up", "--duration", "6"],
                            env=_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"127.0.0.1:{mqtt_port}" in result.stdout
    assert "stopped cleanly" in result.stdout
    assert "lander" in result.stdout and "packets/s" in result.stdout
    assert not port_open(mqtt_port) and not port_open(influx_port)
    assert _processes_using(tmp_path) == []
    # The data outlives the run: open the same data directory again and count.
    with InfluxServer(tmp_path / "state" / "influxdb", free_port()) as influxd:
        for measurement in ("lander_nav", "lander_power", "orbiter_orbit", "orbiter_relay"):
            assert count_points(influxd, "isls", measurement) > 0, measurement
        nav = count_points(influxd, "isls", "lander_nav")
        # 6 s at speed 4 of a 10 Hz packet: about 240, all flushed before the stop.
        assert 200 <= nav <= 250, nav


def test_up_with_credentials_locks_both_servers_and_still_runs(tmp_path: Path) -> None:
    """Passwords for every broker account and InfluxDB: `isls up` writes the broker's
    password and ACL files (no anonymous clients), turns on InfluxDB authentication with
    a write-only ingest account and a read-only reader, and the pipeline still runs."""
    from control_center.config import load_config
    from control_center.operations.security import accounts
    from control_center.telemetry.tmdb_yaml import load_tmdbs

    mqtt_port, influx_port = free_port(), free_port()
    config_path = _local_config(tmp_path, mqtt_port, influx_port)
    loaded = load_config(config_path, {})
    names = [a.name for a in accounts(loaded, load_tmdbs(loaded.tmdb_paths))]
    secrets = {"ISLS_MQTT_PASSWORD_" + n.upper().replace("-", "_"): f"pw-{n}" for n in names}
    env = _env(**secrets, ISLS_INFLUX_ADMIN_PASSWORD="admin-pw", ISLS_INFLUX_USER="isls_ingest",
               ISLS_INFLUX_PASSWORD="ingest-pw", ISLS_INFLUX_READER_PASSWORD="reader-pw")
    result = subprocess.run([*ISLS, "--config", str(config_path), "up", "--duration", "4"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "stopped cleanly" in result.stdout
    state = tmp_path / "state"
    acl = (state / "mosquitto" / "security" / "acl").read_text()
    assert "user agency-cnsa\ntopic read isls/orbiter/#" in acl
    passwd = (state / "mosquitto" / "security" / "passwd").read_text()
    assert "pw-" not in passwd and "isls-ingest:" in passwd
    assert "allow_anonymous false" in (state / "mosquitto" / "mosquitto.conf").read_text()
    for secret in [*secrets.values(), "admin-pw", "ingest-pw", "reader-pw"]:
        assert secret not in result.stdout + result.stderr  # never logged
    with InfluxServer(state / "influxdb", free_port(), auth=True) as influxd:
        stored = influxd.query('SELECT count("altitude") FROM "lander_nav"', "isls",
                               account=("grafana", "reader-pw"))
        assert stored["results"][0]["series"][0]["values"][0][1] > 0  # type: ignore[index]


def test_standalone_ingest_and_simulator_processes(
        mosquitto: MosquittoServer, influxd: InfluxServer, database: str,
        tmp_path: Path) -> None:
    env = _env(ISLS_MQTT_URL=mosquitto.url, ISLS_INFLUX_URL=influxd.url,
               ISLS_INFLUX_DB=database, ISLS_STATE_DIR=str(tmp_path / "state"))
    ingest = start_isls(["ingest"], env)
    try:
        sim = subprocess.run([*ISLS, "sim", "orbiter", "--duration", "3", "--speed", "10",
                              "--seed", "3"], env=env, capture_output=True, text=True,
                             timeout=60)
        assert sim.returncode == 0, sim.stderr
        # 3 s at speed 10 of a 1 Hz packet: 30 ± 1.
        wait_for(lambda: count_points(influxd, database, "orbiter_orbit") >= 29, 20,
                 message="orbiter packets in InfluxDB")
    finally:
        ingest.send_signal(signal.SIGINT)
        ingest.wait(30)
    assert ingest.returncode == 0
    assert 29 <= count_points(influxd, database, "orbiter_orbit") <= 31


def test_tmdb_check_accepts_the_shipped_databases() -> None:
    result = subprocess.run([*ISLS, "tmdb", "check"], env=_env(), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "lander.yaml: ok" in result.stdout and "orbiter.yaml: ok" in result.stdout


def test_tmdb_check_reports_every_error_with_file_packet_parameter(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(textwrap.dedent("""
        spacecraft: rover
        packets:
          - name: rover_hk
            apid: 0x300
            parameters:
              - {name: voltage, bit_offset: 96, bit_length: 16, type: unsigned}
              - {name: current, bit_offset: 104, bit_length: 16, type: unsigned}
              - {name: mode, bit_length: 8, type: quaternion}
        """))
    result = subprocess.run([*ISLS, "tmdb", "check", str(bad)], env=_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"{bad}: packet 'rover_hk' parameter 'current': overlaps parameter 'voltage'" \
        in result.stderr
    assert "'mode'" in result.stderr and "type must be one of" in result.stderr


def test_tmdb_check_passes_the_shipped_mission_layouts() -> None:
    result = subprocess.run([*ISLS, "tmdb", "check"], env=_env(), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for spacecraft in ("lander", "orbiter"):
        assert f"{PROJECT / 'config/dashboards' / spacecraft}.yaml: ok: mission dashboard " \
               f"of {spacecraft}" in result.stdout


def test_tmdb_check_fails_a_layout_naming_an_unknown_parameter(tmp_path: Path) -> None:
    """A configuration copied elsewhere: its layouts are the ones beside it."""
    shutil.copytree(PROJECT / "config", tmp_path / "config")
    layout = tmp_path / "config" / "dashboards" / "orbiter.yaml"
    layout.write_text(layout.read_text().replace("parameters: [relay_range]",
                                                 "parameters: [relay_rang]"))
    result = subprocess.run([*ISLS, "--config", str(tmp_path / "config" / "isls.toml"),
                             "tmdb", "check"], env=_env(), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1, result.stdout
    assert f"{layout}: row 'Relay link to the lander' panel 'Relay range': parameter " \
           f"'relay_rang' is not in packet 'orbiter_relay' of " \
           f"{tmp_path / 'config/tmdb/orbiter.yaml'} (did you mean 'relay_range'?)\n" \
           "1 problem(s) found\n" == result.stderr


def test_tmdb_check_fails_a_tmdb_copy_that_renames_a_parameter_a_layout_shows(
        tmp_path: Path) -> None:
    """Checking an edited copy of a TMDB checks the configured layouts against it."""
    copy = tmp_path / "lander.yaml"
    copy.write_text((PROJECT / "config/tmdb/lander.yaml").read_text()
                    .replace("name: bus_voltage\n", "name: bus_volts\n")
                    .replace("expression: bus_voltage *", "expression: bus_volts *"))
    result = subprocess.run([*ISLS, "tmdb", "check", str(copy)], env=_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stdout
    assert f"{PROJECT / 'config/dashboards/lander.yaml'}: row 'Power' panel 'Bus voltage': " \
           f"parameter 'bus_voltage' is not in packet 'lander_power' of {copy} " \
           "(did you mean 'bus_volts'?)" in result.stderr
    original = subprocess.run([*ISLS, "tmdb", "check", str(PROJECT / "config/tmdb/lander.yaml")],
                              env=_env(), capture_output=True, text=True, timeout=60)
    assert original.returncode == 0, original.stderr


def test_bad_config_names_file_key_and_reason(tmp_path: Path) -> None:
    config = tmp_path / "isls.toml"
    config.write_text(CONFIG.read_text().replace("batch_lines = 5000", "batch_lines = -3"))
    with pytest.raises(ConfigError) as error:
        load_config(config, {})
    assert str(error.value).startswith(f"{config}: influx.batch_lines: must be between")
    result = subprocess.run([*ISLS, "--config", str(config), "ingest"], env=_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "influx.batch_lines" in result.stderr and "Traceback" not in result.stderr


def test_up_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    mqtt_port, influx_port = free_port(), free_port()
    config = _local_config(tmp_path, mqtt_port, influx_port)
    process = start_isls(["--config", str(config), "up"], _env(), stdout=subprocess.PIPE)
    process.send_signal(signal.SIGINT)
    stdout, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    assert "stopped cleanly" in stdout
    assert not port_open(mqtt_port) and not port_open(influx_port)
    assert _processes_using(tmp_path) == []


def test_tmdb_import_csv_writes_a_database_that_checks(tmp_path: Path) -> None:
    import ccsdspy

    defs = Path(ccsdspy.__file__).parent / "tests/data/hs/apid895/defs.csv"
    out = tmp_path / "ssat1.yaml"
    result = subprocess.run([*ISLS, "tmdb", "import-csv", str(defs), "--apid", "895",
                             "--name", "SSAT HK", "--length", "34", "--spacecraft", "ssat1",
                             "--out", str(out)], env=_env(), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "packet ssat_hk (APID 895, 13 parameters) written" in result.stdout
    # The next step, said: the shipped configuration does not name ssat1 yet.
    assert f"spacecraft 'ssat1' is not in {CONFIG}: to decode and store it live, add\n\n" \
           f'[[spacecraft]]\nname = "ssat1"\ntmdb = "{out}"\n' in result.stdout
    check = subprocess.run([*ISLS, "tmdb", "check", str(out)], env=_env(),
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    assert "spacecraft ssat1, 1 packets, 13 parameters" in check.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("name,data_type,bit_length\nx,uint(4),8\ny,bool,8\n")
    failed = subprocess.run([*ISLS, "tmdb", "import-csv", str(bad), "--apid", "5", "--name",
                             "x"], env=_env(), capture_output=True, text=True, timeout=60)
    assert failed.returncode == 2
    assert f"{bad}:3: 'y': data_type 'bool': 'bool' is not one of uint, int, float, str, " \
        "fill" in failed.stderr


def test_up_hil_runs_the_chain_over_a_pty_pair(tmp_path: Path) -> None:
    config = _local_config(tmp_path, free_port(), free_port())
    result = subprocess.run([*ISLS, "--config", str(config), "up", "--hil", "--noise", "1e-4",
                             "--duration", "6"], env=_env(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "link hil" in result.stdout and "LOCKED" in result.stdout
    assert "at 115200 baud, line noise 0.0001 per octet (seed 0)" in result.stdout
    summary = re.search(r"hil: (\d+) frames written, (\d+) destroyed by line noise; "
                        r"(\d+) packets sent, (\d+) in intact frames", result.stdout)
    assert summary is not None, result.stdout[-2000:]
    frames, destroyed, sent, intact = (int(n) for n in summary.groups())
    assert frames > 0 and destroyed <= frames and 0 < intact <= sent
    assert _processes_using(tmp_path) == []  # socat too
    with InfluxServer(tmp_path / "state" / "influxdb", free_port()) as influxd:
        # Both spacecraft arrived over the one serial line, the lander by relay.
        assert count_points(influxd, "isls", "orbiter_orbit") > 0
        assert count_points(influxd, "isls", "lander_nav", "WHERE spacecraft='lander'") > 100
        links = influxd.query("SELECT COUNT(\"packets\") FROM \"link\" WHERE link='hil'", "isls")
        assert int(links["results"][0]["series"][0]["values"][0][1]) >= 5  # type: ignore[index]
