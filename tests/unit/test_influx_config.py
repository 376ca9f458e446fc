"""The configuration `isls up` writes for its embedded influxd (no server started)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from control_center.operations.servers import DATA_SETTINGS, InfluxServer


def data_section(server: InfluxServer) -> dict[str, object]:
    server.write_config()
    section: dict[str, object] = tomllib.loads(server.config_path.read_text())["data"]
    return section


def test_the_shipped_data_settings_are_written(tmp_path: Path) -> None:
    server = InfluxServer(tmp_path, 18086)
    section = data_section(server)
    for name, value in DATA_SETTINGS.items():
        assert section[name] == tomllib.loads(f"v = {value}")["v"]
    assert section["index-version"] == "inmem"
    assert server._command()[1:] == ["-config", str(server.config_path)]


def test_a_setting_given_replaces_the_shipped_one(tmp_path: Path) -> None:
    server = InfluxServer(tmp_path, 18086, data_settings={"index-version": '"tsi1"',
                                                           "wal-fsync-delay": '"100ms"'})
    section = data_section(server)
    assert (section["index-version"], section["wal-fsync-delay"]) == ("tsi1", "100ms")


def test_cpus_start_influxd_under_taskset(tmp_path: Path) -> None:
    command = InfluxServer(tmp_path, 18086, cpus="1")._command()
    assert Path(command[0]).name == "taskset" and command[1:3] == ["-c", "1"]
    assert Path(command[3]).name == "influxd"
