"""The configuration as loaded: secrets refused in the file, environment overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from control_center.config import load_config
from control_center.errors import ConfigError
from tests.conftest import CONFIG


def test_secrets_in_the_config_file_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "isls.toml"
    config.write_text(CONFIG.read_text().replace('database = "isls"',
                                                 'database = "isls"\npassword = "hunter2"'))
    with pytest.raises(ConfigError, match=r"influx\.password: secrets are never read"):
        load_config(config, {})


def test_environment_overrides_name_external_servers() -> None:
    config = load_config(CONFIG, {"ISLS_MQTT_URL": "mqtt://ops:secret@127.0.0.1:2883",
                                  "ISLS_INFLUX_URL": "http://127.0.0.1:9086",
                                  "ISLS_INFLUX_DB": "training"})
    assert config.mqtt.external and config.mqtt.port == 2883
    assert config.mqtt.username == "ops" and config.mqtt.password == "secret"
    assert "secret" not in repr(config)
    assert config.influx.external and config.influx.database == "training"
    with pytest.raises(ConfigError, match="ISLS_MQTT_URL"):
        load_config(CONFIG, {"ISLS_MQTT_URL": "tcp://nowhere"})
