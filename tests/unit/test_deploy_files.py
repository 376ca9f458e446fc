"""deploy/site-cluster: the EMQX + openGemini site, checked as files.

No Docker engine runs here, so nothing in these tests starts a container. They hold what
would break silently between the compose file, the site's configurations and the code:
the ingests' environment names are the ones control_center reads; each site
configuration passes the real validation; every ingest has a client id of its own; the
EMQX ACL is the account list ``isls up`` gives Mosquitto; the EMQX settings the ingest
relies on (window, queue, cluster seeds) agree with the code and the node names; the
openGemini configuration renders to valid TOML naming the three nodes; every service a
service waits for exists; and no secret is written in any file.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import sys
import tomllib
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from control_center.config import Config, load_config
from control_center.operations.security import accounts, password
from control_center.pipeline.service import ingest_client_id
from control_center.pipeline.sources import RECEIVE_MAXIMUM
from control_center.telemetry.tmdb_yaml import load_tmdbs
from drivers.mqtt import raw_subscription

PROJECT = Path(__file__).resolve().parents[2]
SITE = PROJECT / "deploy" / "site-cluster"
COMPOSE_FILE = SITE / "compose.yaml"
DOCKERFILE = SITE / "Dockerfile"
ENV_EXAMPLE = SITE / "env.example"
EMQX_CONF = SITE / "emqx" / "emqx.conf"
ACL_FILE = SITE / "emqx" / "acl.conf"
HAPROXY_CFG = SITE / "haproxy" / "haproxy.cfg"
GEMINI_TEMPLATE = SITE / "opengemini" / "openGemini.conf"
CONFIG_MODULE = PROJECT / "control_center" / "config.py"
IMAGE_ROOT = PurePosixPath("/app")  # WORKDIR of deploy/site-cluster/Dockerfile

SECRET_WORDS = re.compile(r"PASSWORD|PASSWD|TOKEN|SECRET|COOKIE|API_?KEY|CREDENTIAL",
                          re.IGNORECASE)
REFERENCE = re.compile(r"\$\{(\w+):\?[^}]+\}")  # ${VARIABLE:?message}: required, from .env
SHARED_INGESTS = ("ingest-1", "ingest-2")
ISLS_SERVICES = ("ingest-1", "ingest-2", "ingest-alarms", "accounts", "sim-lander",
                 "sim-orbiter")


@functools.cache
def _compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


@pytest.fixture()
def compose() -> dict[str, Any]:
    return _compose()


def _services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services = compose["services"]
    assert isinstance(services, dict)
    return services


def _environment(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    assert isinstance(raw, dict), "write environments as mappings"
    return {str(key): str(value) for key, value in raw.items()}


def _runtime_environment(service: dict[str, Any]) -> dict[str, str]:
    """The environment a container would get, each ${SECRET:?...} replaced by a
    placeholder: what load_config sees, without a real secret."""
    return {key: REFERENCE.sub(lambda m: f"placeholder-{m.group(1).lower()}", value)
            for key, value in _environment(service).items()}


def _repository_path(inside: str) -> Path:
    """A path inside the isls image, as the same file in the repository (the Dockerfile
    copies the repository's files to the same places under /app)."""
    return PROJECT / PurePosixPath(inside).relative_to(IMAGE_ROOT)


def _site_config(service: dict[str, Any]) -> Config:
    environment = _runtime_environment(service)
    return load_config(_repository_path(environment["ISLS_CONFIG"]), environment)


@functools.cache
def _accounts_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("site_accounts",
                                                  SITE / "emqx" / "accounts.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _hocon_value(text: str, key: str) -> str:
    """The value of ``key = value`` in emqx.conf (each key is written once)."""
    found = re.findall(rf"^\s*{re.escape(key)}\s*=\s*(.+?)\s*$", text, re.MULTILINE)
    assert len(found) == 1, f"emqx.conf: {key} set {len(found)} times"
    return str(found[0])


def _size(text: str) -> int:
    """A HOCON byte size such as ``16MB``, in octets."""
    match = re.fullmatch(r"(\d+)(KB|MB|GB)?", text)
    assert match is not None, f"emqx.conf: {text!r} is not a size"
    shift = {"": 0, "KB": 10, "MB": 20, "GB": 30}[match.group(2) or ""]
    return int(match.group(1)) << shift


def test_every_service_waited_for_exists(compose: dict[str, Any]) -> None:
    services = _services(compose)
    for name, service in services.items():
        for needed in service.get("depends_on", {}):
            assert needed in services, f"{name} depends on {needed}, which is not a service"


def test_the_site_has_three_nodes_of_each_cluster_and_two_shared_ingests(
        compose: dict[str, Any]) -> None:
    services = _services(compose)
    assert {"emqx1", "emqx2", "emqx3", "gemini-1", "gemini-2", "gemini-3", "haproxy",
            "gemini-init", *SHARED_INGESTS} <= set(services)
    for name in SHARED_INGESTS:  # started by a plain `docker compose up`
        assert "profiles" not in services[name]
    assert services["emqx1"]["image"] == "emqx/emqx:5.8.6"  # the Apache-2.0 line
    assert re.fullmatch(r"haproxy:\d+\.\d+", services["haproxy"]["image"])


def test_ingest_environment_names_are_the_ones_the_config_reads(
        compose: dict[str, Any]) -> None:
    """An ISLS_* name the code does not read is ignored without a word: the ingest would
    then look for a local broker and database and never reach the site's."""
    read = set(re.findall(r'"(ISLS_[A-Z_]+)"', CONFIG_MODULE.read_text(encoding="utf-8")))
    assert {"ISLS_MQTT_URL", "ISLS_MQTT_PASSWORD", "ISLS_INFLUX_URL", "ISLS_INFLUX_DB",
            "ISLS_STATE_DIR", "ISLS_CONFIG"} <= read
    services = _services(compose)
    for name in ISLS_SERVICES:
        for key in _environment(services[name]):
            if key.startswith("ISLS_MQTT_PASSWORD_"):
                continue  # per-account passwords: test_account_passwords_are_read
            if key.startswith("ISLS_"):
                assert key in read, f"{name}: {key} is not read by control_center/config.py"


@pytest.mark.parametrize("name", SHARED_INGESTS)
def test_shared_ingests_load_their_config_in_the_shared_group(
        compose: dict[str, Any], name: str) -> None:
    service = _services(compose)[name]
    config = _site_config(service)
    assert config.mqtt.shared_group == "isls-ingest"
    assert raw_subscription(config.mqtt.shared_group) == "$share/isls-ingest/isls/+/tm/raw"
    # The servers are the site's, through the load balancer, not local ones.
    assert config.mqtt.external and config.influx.external
    assert (config.mqtt.host, config.mqtt.port) == ("haproxy", 1883)
    assert (config.mqtt.username, config.mqtt.password) == (
        "isls-ingest", "placeholder-isls_mqtt_password_isls_ingest")
    assert urlsplit(config.influx.url).hostname == "haproxy"
    assert config.influx.database == "isls"
    # Each shared ingest sees part of the telemetry: no limit checks there.
    assert not config.alarms.enabled


def test_the_alarms_ingest_sees_everything(compose: dict[str, Any]) -> None:
    service = _services(compose)["ingest-alarms"]
    assert service["profiles"] == ["alarms"]
    config = _site_config(service)
    assert config.mqtt.shared_group == ""  # a plain subscription: every message
    assert config.alarms.enabled
    assert not config.ingest.publish_params  # the shared ingests publish tm/param
    assert config.influx.database == _site_config(_services(compose)["ingest-1"]).influx.database


def test_every_ingest_has_a_client_id_of_its_own(compose: dict[str, Any]) -> None:
    """The MQTT client id is derived from the state directory: two ingests with one
    path would take each other's session, each connection dropping the other."""
    services = _services(compose)
    ids = {name: ingest_client_id(_site_config(services[name]).state_dir)
           for name in ("ingest-1", "ingest-2", "ingest-alarms")}
    assert len(set(ids.values())) == len(ids), ids
    for name in ids:  # each state directory on a volume of its own
        assert _environment(services[name])["ISLS_STATE_DIR"].startswith("/data/")
        volumes = services[name]["volumes"]
        assert len(volumes) == 1 and volumes[0].endswith(":/data")
        assert volumes[0].split(":")[0] in compose["volumes"]


def test_the_image_holds_the_configs_where_compose_points(compose: dict[str, Any]) -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    assert lines[0] == "FROM python:3.11-slim"
    assert "RUN pip install . && rm -rf build" in lines
    assert lines[-1] == 'CMD ["isls", "ingest"]'
    assert "WORKDIR /app" in lines
    copied: set[str] = set()
    for line in lines:
        if line.startswith("COPY "):
            *sources, _target = line.split()[1:]
            for source in sources:
                assert (PROJECT / source).exists(), f"COPY {source}: not in the repository"
                copied.add(source)
    for name in ISLS_SERVICES:
        service = _services(compose)[name]
        assert service["build"] == {"context": "../..",
                                    "dockerfile": "deploy/site-cluster/Dockerfile"}
        config = _environment(service)["ISLS_CONFIG"]
        assert str(PurePosixPath(config).relative_to(IMAGE_ROOT)) in copied, config
    assert "config" in copied  # the telemetry databases the configs name


def test_account_passwords_are_read_from_the_names_compose_and_env_example_give(
        compose: dict[str, Any]) -> None:
    service = _services(compose)["accounts"]
    config = _site_config(service)
    environment = _runtime_environment(service)
    site_accounts = accounts(config, load_tmdbs(config.tmdb_paths))
    for account in site_accounts:
        assert password(account.name, config, environment) is not None, \
            f"no variable in the accounts service gives {account.name}'s password"
    credentials = _accounts_module().credentials(config, site_accounts, environment)
    assert [c.user_id for c in credentials] == [a.name for a in site_accounts]


def test_emqx_acl_is_generated_from_the_accounts(compose: dict[str, Any]) -> None:
    """acl.conf must say what control_center.operations.security says each account may
    do: regenerate it (accounts.py acl) when the accounts change."""
    config = _site_config(_services(compose)["ingest-1"])
    module = _accounts_module()
    expected = module.acl_text(config, accounts(config, load_tmdbs(config.tmdb_paths)))
    assert ACL_FILE.read_text(encoding="utf-8") == expected
    rules = ACL_FILE.read_text(encoding="utf-8")
    assert '"$share/isls-ingest/isls/+/tm/raw"' in rules
    assert rules.rstrip().endswith("{deny, all}.")


def test_emqx_settings_the_ingest_relies_on(compose: dict[str, Any]) -> None:
    text = EMQX_CONF.read_text(encoding="utf-8")
    # The window: at least the ingest's MQTT 5 Receive Maximum, or the ingest waits.
    assert int(_hocon_value(text, "max_inflight")) >= RECEIVE_MAXIMUM
    # The queue for an away ingest: far above the default 1000 that drops a burst's tail.
    assert int(_hocon_value(text, "max_mqueue_len")) >= 100_000
    assert _size(_hocon_value(text, "max_packet_size")) >= 16 << 20
    assert _hocon_value(text, "shared_subscription") == "true"
    assert _hocon_value(text, "no_match") == "deny"
    assert _hocon_value(text, "discovery_strategy") == "static"
    # Durable sessions off: not replicated in the open-source edition (docs/scaling.md).
    assert re.search(r"durable_sessions\s*\{\s*enable\s*=\s*false\s*\}", text)
    # The ACL file EMQX reads is the one compose mounts.
    acl_path = _hocon_value(text, "path").strip('"')
    for name in ("emqx1", "emqx2", "emqx3"):
        assert f"./emqx/acl.conf:{acl_path}:ro" in _services(compose)[name]["volumes"]


def test_emqx_seeds_name_the_three_nodes(compose: dict[str, Any]) -> None:
    seeds = re.findall(r'"(emqx@[\w.-]+)"', _hocon_value(EMQX_CONF.read_text(), "seeds"))
    services = _services(compose)
    names = []
    for name in ("emqx1", "emqx2", "emqx3"):
        node = _environment(services[name])["EMQX_NODE_NAME"]
        host = node.split("@", 1)[1]
        assert "." in host  # EMQX runs long node names: the host part needs a dot
        assert host in services[name]["networks"]["default"]["aliases"]
        assert "./emqx/emqx.conf:/opt/emqx/etc/emqx.conf:ro" in services[name]["volumes"]
        names.append(node)
    assert sorted(seeds) == sorted(names)
    # The load balancer sends MQTT to the same three hosts.
    backends = re.findall(r"^\s*server \w+ ([\w.-]+):1883 check", HAPROXY_CFG.read_text(),
                          re.MULTILINE)
    assert sorted(backends) == sorted(n.split("@", 1)[1] for n in names)


def test_opengemini_config_renders_to_three_replicated_nodes(compose: dict[str, Any]) -> None:
    services = _services(compose)
    nodes = sorted(name for name in services if re.fullmatch(r"gemini-\d", name))
    peers = _environment(services[nodes[0]])["OG_PEERS"].split(",")
    assert sorted(peers) == nodes
    template = GEMINI_TEMPLATE.read_text(encoding="utf-8")
    for node in nodes:
        assert _environment(services[node]) == {"OG_NODE": node, "OG_PEERS": ",".join(peers)}
        # As node.sh fills it in.
        rendered = (template.replace("{{addr}}", "172.18.0.9").replace("{{domain}}", node)
                    .replace("{{meta_join}}", ", ".join(f'"{p}:8092"' for p in peers))
                    .replace("{{gossip_members}}", ", ".join(f'"{p}:8010"' for p in peers)))
        config = tomllib.loads(rendered)
        assert config["common"]["ha-policy"] == "replication"
        assert config["meta"]["domain"] == config["data"]["domain"] == node
        assert len(config["common"]["meta-join"]) == 3  # Raft: a majority of 3 survives one
        assert config["http"]["bind-address"].endswith(":8086")
    # Replicas: odd (Raft), and the ts-store count a multiple of it (openGemini's rule).
    init = _environment(services["gemini-init"])
    replicas = int(init["OG_REPLICATION"])
    assert replicas % 2 == 1 and len(nodes) % replicas == 0 and replicas >= 3
    # The database the ingests write is the one created with replicas, before them.
    assert init["ISLS_INFLUX_DB"] == _site_config(services["ingest-1"]).influx.database
    for name in SHARED_INGESTS:
        assert services[name]["depends_on"]["gemini-init"] == {
            "condition": "service_completed_successfully"}
    backends = re.findall(r"^\s*server \w+ ([\w.-]+):8086 check", HAPROXY_CFG.read_text(),
                          re.MULTILINE)
    assert sorted(backends) == nodes


def test_bind_mounts_exist_and_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    for name, service in _services(compose).items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (SITE / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in compose["volumes"], f"{name}: volume {source} not declared"
        build = service.get("build")
        if isinstance(build, str):
            assert (SITE / build / "Dockerfile").is_file()


def test_no_secret_is_written_in_the_site_files(compose: dict[str, Any]) -> None:
    """Secrets come from .env as ${VARIABLE:?...}; env.example names them all, empty."""
    referenced: set[str] = set()
    for name, service in _services(compose).items():
        for key, value in _environment(service).items():
            referenced.update(REFERENCE.findall(value))
            if SECRET_WORDS.search(key):
                assert REFERENCE.fullmatch(value), \
                    f"{name}: {key} has a literal value; reference ${{VARIABLE:?...}} in .env"
            if "://" in value:
                assert urlsplit(value).password is None, f"{name}: {key}: password in URL"
    example = {name: value for name, _, value in
               (line.partition("=") for line in ENV_EXAMPLE.read_text().splitlines()
                if line and not line.startswith("#"))}
    assert set(example) == referenced
    assert all(value == "" for value in example.values()), "env.example holds a value"
    assert ".env" in (SITE / ".gitignore").read_text().split()
    # In the configuration files: no password or cookie given a literal value, none of
    # EMQX's well-known defaults, no long random-looking string.
    literal = re.compile(r"(?i)(password|cookie)\s*[:=]\s*[\"']?(?!\$\{)\w"
                         r"|emqxsecretcookie|[A-Za-z0-9]{32,}")
    for path in SITE.rglob("*"):
        if path.is_file() and (path.suffix in (".yaml", ".conf", ".toml", ".cfg", ".sh")
                               or path.name in ("Dockerfile", "env.example")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.lstrip().startswith(("#", "%")):
                    continue  # comments explain; they hold no value
                found = literal.search(line)
                assert found is None, \
                    f"{path.relative_to(PROJECT)}:{number}: {found.group(0)!r}"
