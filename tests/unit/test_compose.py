"""docker-compose.yml, deploy/Dockerfile and deploy/mosquitto.conf, checked as files:
Docker cannot run here, so these tests hold the structure docs/dashboards.md promises (the
services, pinned images, the mounts Grafana provisioning needs, the control center
pointed at the service names, no secrets) and nothing about a running stack."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from control_center.config import DEFAULT_CONFIG, load_config, parse_mqtt_url
from control_center.grafana.dashboards import build_dashboards, write_dashboards
from control_center.telemetry.tmdb_yaml import load_tmdbs

PROJECT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = PROJECT / "docker-compose.yml"
MOSQUITTO_CONF = PROJECT / "deploy" / "mosquitto.conf"
DOCKERFILE = PROJECT / "deploy" / "Dockerfile"
GRAFANA_PROVISIONING = "/etc/grafana/provisioning"
GRAFANA_DASHBOARDS = "/var/lib/grafana/dashboards"
SECRET_WORDS = re.compile(r"PASSWORD|PASSWD|TOKEN|SECRET|API_?KEY|CREDENTIAL", re.IGNORECASE)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def _service(compose: dict[str, Any], name: str) -> dict[str, Any]:
    service = compose["services"][name]
    assert isinstance(service, dict)
    return service


def _environment(service: dict[str, Any]) -> dict[str, str | None]:
    """A service's environment, whether written as a mapping or as a list of K=V."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        pairs = [item.split("=", 1) for item in raw]
        return {pair[0]: pair[1] if len(pair) > 1 else None for pair in pairs}
    return {str(k): None if v is None else str(v) for k, v in raw.items()}


def _mounts(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """Container path -> (source, read-only), from short or long volume syntax."""
    mounts: dict[str, tuple[str, bool]] = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            parts = volume.split(":")
            mounts[parts[1]] = (parts[0], len(parts) > 2 and "ro" in parts[2].split(","))
        else:
            mounts[volume["target"]] = (volume["source"], bool(volume.get("read_only")))
    return mounts


def _directives(path: Path) -> dict[str, list[str]]:
    """A Mosquitto config file's settings: name -> values, comments left out."""
    directives: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition(" ")
            directives.setdefault(name, []).append(value.strip())
    return directives


def test_the_four_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"mosquitto", "influxdb", "grafana", "control-center"}
    assert "version" not in compose  # obsolete in the Compose specification


def test_images_are_pinned_to_a_major_version(compose: dict[str, Any]) -> None:
    images = {name: service.get("image") for name, service in compose["services"].items()}
    assert images["mosquitto"] == "eclipse-mosquitto:2"
    assert images["influxdb"] == "influxdb:1.8"
    assert re.fullmatch(r"grafana/grafana(-oss)?:\d+(\.\d+){0,2}", images["grafana"])
    for name, image in images.items():
        if name != "control-center":  # built here, tagged :local
            assert re.fullmatch(r"[\w./-]+:\d+(\.\d+)*", image), f"{name}: {image} is not pinned"


def test_mosquitto_config_and_persistence(compose: dict[str, Any]) -> None:
    mounts = _mounts(_service(compose, "mosquitto"))
    assert mounts["/mosquitto/config/mosquitto.conf"] == ("./deploy/mosquitto.conf", True)
    conf = _directives(MOSQUITTO_CONF)
    assert conf["listener"] == ["1883"]
    assert conf["allow_anonymous"] == ["true"]
    assert conf["persistence"] == ["true"]
    location = conf["persistence_location"][0]
    # The data directory is a named volume, so the persisted queue outlives the container.
    data_volume, read_only = mounts[location.rstrip("/")]
    assert data_volume in compose["volumes"] and not read_only
    assert "password_file" in MOSQUITTO_CONF.read_text()  # how to turn passwords on


def test_influxdb_database_and_volume(compose: dict[str, Any]) -> None:
    influxdb = _service(compose, "influxdb")
    assert _environment(influxdb)["INFLUXDB_DB"] == "isls"
    source, read_only = _mounts(influxdb)["/var/lib/influxdb"]
    assert source in compose["volumes"] and not read_only


def test_grafana_reads_the_generated_provisioning_and_dashboards(
        compose: dict[str, Any]) -> None:
    grafana = _service(compose, "grafana")
    assert "3000:3000" in grafana["ports"]
    mounts = _mounts(grafana)
    assert mounts[GRAFANA_PROVISIONING] == ("./dashboards/provisioning", True)
    assert mounts[GRAFANA_DASHBOARDS] == ("./dashboards", True)
    assert mounts["/var/lib/grafana"][0] in compose["volumes"]
    # The bind mounts name the directory `isls dashboards build` writes by default.
    assert (PROJECT / "dashboards").is_dir()
    # Anonymous viewing stays a documented option, not a default.
    assert "GF_AUTH_ANONYMOUS_ENABLED" not in _environment(grafana)
    assert "GF_AUTH_ANONYMOUS_ENABLED" in COMPOSE_FILE.read_text()


def test_the_control_center_uses_the_services(compose: dict[str, Any]) -> None:
    control = _service(compose, "control-center")
    assert control["build"] == {"context": ".", "dockerfile": "deploy/Dockerfile"}
    assert control["command"][:2] == ["isls", "up"]
    environment = _environment(control)
    mqtt = parse_mqtt_url(str(environment["ISLS_MQTT_URL"]), "compose", "ISLS_MQTT_URL")
    assert (mqtt.host, mqtt.port, mqtt.tls) == ("mosquitto", 1883, False)
    assert environment["ISLS_INFLUX_URL"] == "http://influxdb:8086"
    assert set(control["depends_on"]) == {"mosquitto", "influxdb"}
    # The shipped configuration under this environment, as the container loads it:
    # external servers (so `isls up` starts none) and Grafana's data source URL
    # following ISLS_INFLUX_URL.
    config = load_config(DEFAULT_CONFIG, {k: v for k, v in environment.items() if v})
    assert config.mqtt.external and config.influx.external
    assert config.grafana.influx_url == "http://influxdb:8086"
    assert config.influx.database == _environment(_service(compose, "influxdb"))["INFLUXDB_DB"]


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for source, _ in _mounts(service).values():
            if not source.startswith((".", "/")):
                assert source in compose["volumes"], f"{name}: volume {source} not declared"
            elif source.startswith("./dashboards/"):  # generated by `isls dashboards build`
                assert (PROJECT / "dashboards").is_dir()
            else:
                assert (PROJECT / source).exists(), f"{name}: {source} does not exist"


def test_no_secrets_in_the_compose_file(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for key, value in _environment(service).items():
            if SECRET_WORDS.search(key):
                assert value is None or re.fullmatch(r"\$\{\w+(:?\?[^}]*)?\}", value), \
                    f"{name}: {key} has a literal value; reference ${{VARIABLE}} from .env"
            if value and "://" in value:
                assert urlsplit(value).password is None, f"{name}: {key}: password in the URL"
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    assert not re.search(r"glsa_|[A-Za-z0-9_-]{40,}", text)  # no Grafana or long API tokens


def test_the_dockerfile_installs_and_runs_isls_up() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    assert lines[0] == "FROM python:3.11-slim"
    assert any(re.fullmatch(r"RUN pip install \.( .*)?", line) for line in lines)
    assert lines[-1] == 'CMD ["isls", "up"]'
    text = " ".join(lines)
    # The installed package does not sit beside config/: ISLS_CONFIG must say where it is.
    assert "ISLS_CONFIG=/app/config/isls.toml" in text
    assert "COPY config ./config" in lines
    for source in re.findall(r"^COPY (\S+)", "\n".join(lines), re.MULTILINE):
        assert (PROJECT / source).exists(), f"COPY {source}: not in the repository"


def test_generated_provisioning_fits_the_grafana_mounts(tmp_path: Path) -> None:
    """With the dashboards generator: the files land where the compose mounts expect
    them, and point Grafana at paths that exist inside its container."""
    config = load_config(DEFAULT_CONFIG, {"ISLS_INFLUX_URL": "http://influxdb:8086"})
    write_dashboards(build_dashboards(config, load_tmdbs(config.tmdb_paths)), tmp_path)

    datasources = sorted((tmp_path / "provisioning" / "datasources").glob("*.yaml"))
    providers = sorted((tmp_path / "provisioning" / "dashboards").glob("*.yaml"))
    assert datasources and providers
    for path in datasources:
        for source in yaml.safe_load(path.read_text())["datasources"]:
            assert source["url"] == "http://influxdb:8086"
    for path in providers:
        for provider in yaml.safe_load(path.read_text())["providers"]:
            inside = PurePosixPath(provider["options"]["path"])
            assert inside == PurePosixPath(GRAFANA_DASHBOARDS) or \
                PurePosixPath(GRAFANA_DASHBOARDS) in inside.parents, \
                f"{path.name}: provider path {inside} is not under {GRAFANA_DASHBOARDS}"
            relative = inside.relative_to(GRAFANA_DASHBOARDS)
            assert (tmp_path / relative).is_dir()
            assert list((tmp_path / relative).rglob("*.json"))
