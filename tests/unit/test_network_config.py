"""The network file as loaded (every error names file, key and reason), and the bridge
lines and partner-broker files generated from it (no broker here: the integration tests
test_network_bridges.py and test_network_partner.py run them on real ones)."""

from __future__ import annotations

import json
import stat
import textwrap
from pathlib import Path

import pytest

from control_center.config import Config
from control_center.errors import ConfigError
from control_center.network.accounts import (
    partner_acl,
    partner_broker,
    partner_variables,
    with_generated_passwords,
)
from control_center.network.bridges import center_bridges, station_bridges
from control_center.network.run import Backlog, backlog_json, site_config
from control_center.network.sites import Network, load_network
from tests.support.network import agreement_toml, site_toml, spacecraft_toml, write_network

PASSWORDS = {"ISLS_NETWORK_PASSWORD_PARTNER_ESA": "esa secret",
             "ISLS_NETWORK_PASSWORD_BRIDGE_MOSCOW": "moscow secret",
             "ISLS_NETWORK_PASSWORD_BRIDGE_BEIJING": "beijing secret"}

SPACECRAFT = spacecraft_toml(["lander-1", "orbiter-1", "lander-2"])
SITES = (site_toml("bear-lakes", "station", "roscosmos", 20001, hears=["lander-1", "orbiter-1"])
         + site_toml("moscow", "center", "roscosmos", 20011, 20012)
         + site_toml("beijing", "center", "cnsa", 20021, 20022)
         + site_toml("partner-esa", "partner", "esa", 20031, 20032))
AGREEMENTS = (agreement_toml("moscow", "partner-esa", ["lander-1"], ["alarms", "raw"])
              + agreement_toml("beijing", "partner-esa", ["orbiter-1"], ["param"]))


def network(tmp_path: Path, sites: str = SITES) -> Network:
    return load_network(write_network(tmp_path, SPACECRAFT, sites, AGREEMENTS))


@pytest.mark.parametrize(("sites", "agreements", "key", "reason"), [
    (SITES.replace('mqtt_port = 20001', 'mqtt_prot = 20001'), AGREEMENTS,
     "site[0].mqtt_prot", "unknown key"),
    (SITES.replace('mqtt_port = 20001', 'mqtt_port = 20001\ninflux_port = 20002'),
     AGREEMENTS, "site[0].influx_port", "a station stores nothing"),
    (SITES, AGREEMENTS.replace('partner = "partner-esa"', 'partner = "beijing"', 1),
     "agreement[0].partner", "'beijing' is not a partner of this network"),
    (SITES.replace("influx_port = 20012", "influx_port = 20001"), AGREEMENTS,
     "site[1].influx_port", "port 20001 is also bear-lakes.mqtt_port"),
    (SITES.replace('hears = ["lander-1", "orbiter-1"]', 'hears = ["lander-1", "lander-9"]'),
     AGREEMENTS, "site[0].hears", "lander-9: not a [[spacecraft]] of this network"),
], ids=["unknown-key", "station-influx", "agreement-not-partner", "duplicate-port",
        "unknown-spacecraft-heard"])
def test_network_file_errors_name_file_key_and_reason(tmp_path: Path, sites: str,
                                                      agreements: str, key: str,
                                                      reason: str) -> None:
    path = write_network(tmp_path, SPACECRAFT, sites, agreements)
    with pytest.raises(ConfigError) as caught:
        load_network(path)
    assert (caught.value.source, caught.value.key) == (str(path), key)
    assert reason in caught.value.reason
    assert str(caught.value).startswith(f"{path}: {key}: ")


def test_a_partners_share_joins_its_agreements(tmp_path: Path) -> None:
    net = network(tmp_path)
    assert net.partner_share("partner-esa") == {"lander-1": ("raw", "alarms"),
                                                "orbiter-1": ("param",)}


def connection(lines: list[str], name: str) -> list[str]:
    """The lines of bridge connection ``name``, its ``connection`` line first."""
    start = lines.index(f"connection {name}")
    end = next((i for i in range(start + 1, len(lines))
                if lines[i].startswith("connection ")), len(lines))
    return lines[start:end]


def names(lines: list[str]) -> list[str]:
    return [line.split()[1] for line in lines if line.startswith("connection ")]


COMMON = ["bridge_protocol_version mqttv50", "cleansession false", "restart_timeout 1 5",
          "keepalive_interval 5", "notifications true", "notifications_local_only true",
          "try_private false"]


def test_a_station_bridges_the_raw_telemetry_it_hears_to_every_center(tmp_path: Path) -> None:
    net = network(tmp_path)
    lines = station_bridges(net, net.site("bear-lakes"), {})
    assert names(lines) == ["bear-lakes-to-moscow", "bear-lakes-to-beijing"]
    to_moscow = connection(lines, "bear-lakes-to-moscow")
    assert to_moscow == ["connection bear-lakes-to-moscow", "address 127.0.0.1:20011",
                         "bridge_protocol_version mqttv50",
                         "remote_clientid bear-lakes-to-moscow",
                         "local_clientid bear-lakes-to-moscow.local", *COMMON[1:],
                         "topic isls/lander-1/tm/raw out 1", "topic isls/orbiter-1/tm/raw out 1",
                         "topic isls/network/bear-lakes/backlog out 1"]
    with_password = station_bridges(net, net.site("bear-lakes"),
                                    {"ISLS_NETWORK_PASSWORD_BRIDGE_BEAR_LAKES": "s3cret"})
    assert "remote_username bridge-bear-lakes" in with_password
    assert with_password.count("remote_password s3cret") == 2


def test_a_center_bridges_each_partner_its_agreement_and_nothing_else(tmp_path: Path) -> None:
    net = network(tmp_path)
    moscow = center_bridges(net, net.site("moscow"), PASSWORDS)
    # Moscow is the first center: the command hub, it opens no command connection.
    assert names(moscow) == ["moscow-to-partner-esa"]
    wanted = ("topic", "remote_username", "remote_password", "address")
    assert [line for line in moscow if line.startswith(wanted)] == [
        "address 127.0.0.1:20031", "remote_username bridge-moscow",
        "remote_password moscow secret",
        "topic isls/lander-1/tm/raw out 1", "topic isls/lander-1/alarms out 1"]
    beijing = center_bridges(net, net.site("beijing"), PASSWORDS)
    assert names(beijing) == ["beijing-to-partner-esa", "beijing-to-moscow"]
    assert [line for line in connection(beijing, "beijing-to-partner-esa")
            if line.startswith("topic")] == ["topic isls/orbiter-1/tm/param out 0"]
    commands = connection(beijing, "beijing-to-moscow")
    assert commands[1] == "address 127.0.0.1:20011"
    assert [line for line in commands if line.startswith("topic")] == \
        ["topic isls/alarms/command both 1"]
    assert all(line in commands for line in COMMON)


def test_alarm_commands_travel_a_tree_of_centers(tmp_path: Path) -> None:
    """Two connections that both send a command out would loop it for ever (the docstring
    of bridges.py): with three centers each non-hub center opens exactly one command
    connection, to the hub, and the hub none."""
    net = network(tmp_path, SITES + site_toml("delhi", "center", "isro", 20041, 20042))
    edges: list[tuple[str, str]] = []
    for center in net.of_kind("center"):
        lines = center_bridges(net, center, PASSWORDS)
        for name in names(lines):
            topics = [line for line in connection(lines, name) if line.startswith("topic")]
            if any("alarms/command" in t for t in topics):
                assert topics == ["topic isls/alarms/command both 1"]
                edges.append((center.name, name.split("-to-")[1]))
    assert sorted(edges) == [("beijing", "moscow"), ("delhi", "moscow")]


def test_a_missing_bridge_password_names_its_variable(tmp_path: Path) -> None:
    net = network(tmp_path)
    with pytest.raises(ConfigError, match=r"environment: ISLS_NETWORK_PASSWORD_BRIDGE_MOSCOW: "
                                          r"not set: .*bridge-moscow.*partner partner-esa"):
        center_bridges(net, net.site("moscow"), {})
    broken = dict(PASSWORDS, ISLS_NETWORK_PASSWORD_BRIDGE_MOSCOW="x\nallow_anonymous true")
    with pytest.raises(ConfigError, match="ISLS_NETWORK_PASSWORD_BRIDGE_MOSCOW: a password "
                                          "may hold no control characters"):
        center_bridges(net, net.site("moscow"), broken)


def test_the_partner_acl_grants_each_account_its_topics_only(tmp_path: Path) -> None:
    net = network(tmp_path)
    assert partner_acl(net, net.site("partner-esa")) == textwrap.dedent("""\
        # Written by isls from the network file; regenerated at every start.

        # partner partner-esa: reads its share
        user partner-esa
        topic read isls/lander-1/tm/raw
        topic read isls/lander-1/alarms
        topic read isls/orbiter-1/tm/param

        # the bridge from center moscow: writes its agreement
        user bridge-moscow
        topic write isls/lander-1/tm/raw
        topic write isls/lander-1/alarms

        # the bridge from center beijing: writes its agreement
        user bridge-beijing
        topic write isls/orbiter-1/tm/param
        """)


def test_a_partner_broker_is_locked_with_private_files(tmp_path: Path) -> None:
    net = network(tmp_path)
    directory = tmp_path / "partner-esa"
    missing = {k: v for k, v in PASSWORDS.items() if "PARTNER_ESA" not in k}
    with pytest.raises(ConfigError, match="ISLS_NETWORK_PASSWORD_PARTNER_ESA: not set"):
        partner_broker(net, net.site("partner-esa"), directory, missing)
    assert not directory.exists()  # nothing written before every password is known
    broker = partner_broker(net, net.site("partner-esa"), directory, PASSWORDS)
    broker.write_config()
    for name in ("passwd", "acl", "mosquitto.conf"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    passwd = (directory / "passwd").read_text()
    assert sorted(line.split(":")[0] for line in passwd.splitlines()) == \
        ["bridge-beijing", "bridge-moscow", "partner-esa"]
    assert "secret" not in passwd and passwd.count(":$7$101$") == 3
    conf = (directory / "mosquitto.conf").read_text().splitlines()
    assert conf[1:5] == ["listener 20031 127.0.0.1", "allow_anonymous false",
                         f"password_file {directory / 'passwd'}",
                         f"acl_file {directory / 'acl'}"]
    assert "allow_anonymous true" not in conf
    with pytest.raises(ConfigError, match="is a center, not a partner"):
        partner_broker(net, net.site("moscow"), tmp_path / "moscow", PASSWORDS)


def test_a_whole_network_on_one_machine_gets_passwords_it_lacks(tmp_path: Path) -> None:
    net = network(tmp_path)
    assert set(partner_variables(net)) == set(PASSWORDS)
    given = {"ISLS_NETWORK_PASSWORD_PARTNER_ESA": "chosen", "HOME": "/root"}
    filled = with_generated_passwords(net, given)
    assert filled["ISLS_NETWORK_PASSWORD_PARTNER_ESA"] == "chosen" and filled["HOME"] == "/root"
    assert len({filled[v] for v in PASSWORDS}) == 3  # random, one per account
    partner_broker(net, net.site("partner-esa"), tmp_path / "partner-esa", filled)
    assert center_bridges(net, net.site("moscow"), filled)


def test_a_partners_ingest_stores_its_share_and_publishes_nothing(
        tmp_path: Path, offline_config: Config) -> None:
    # Its account writes nothing at its broker: live parameters and alarms there are the
    # ones the centers share. A center's ingest publishes and monitors as configured.
    net = network(tmp_path)
    partner = site_config(offline_config, net, net.site("partner-esa"), PASSWORDS)
    assert (partner.ingest.publish_params, partner.alarms.enabled) == (False, False)
    assert partner.mqtt.username == "partner-esa"
    center = site_config(offline_config, net, net.site("moscow"), PASSWORDS)
    assert (center.ingest.publish_params, center.alarms.enabled) == (True, True)
    assert center.mqtt.username is None


def test_the_backlog_watch_counts_what_a_stations_broker_dropped() -> None:
    # $SYS/broker/publish/messages/dropped is the broker's count since it started: the
    # first reading is the baseline, and a restarted broker counts from 0 again.
    backlog = Backlog()
    assert [backlog.dropped_reading(n) for n in (7, 7, 12, 3, 3, 10)] == [0, 0, 5, 3, 0, 7]
    assert backlog.dropped == 15
    message = json.loads(backlog_json("kashi", backlog, 2000))
    assert message == {"station": "kashi", "alarm": False, "stored": 0, "limit": 2000,
                       "dropped": 15}
