"""Mosquitto bridges generated from the network file (docs/network.md).

Store and forward between sites is Mosquitto's own bridge, not code of ours:

- a station's broker holds one bridge connection to each center and publishes there the
  raw telemetry of the spacecraft it hears;
- a center's broker holds one to each partner its agreements name and publishes there
  exactly that partner's share by this center's agreements (the partner's broker
  refuses anything else too: :mod:`control_center.network.accounts`);
- the centers exchange the operators' alarm commands (``isls/alarms/command``: an
  acknowledgement or a shelve given at one center is applied at every center).

Every setting below is there for a reason:

- ``bridge_protocol_version mqttv50``: MQTT 5 carries the ``ert`` and ``link`` user
  properties the station stamped (earth-receive time, the station's link) to the center
  unchanged; a 3.1.1 bridge drops them.
- ``cleansession false`` and ``persistence true`` on the station: while the WAN link is
  down, the bridge's session at the station keeps every QoS 1 message, across a restart
  of the station's broker too, and delivers them in order once the center answers.
- ``max_queued_messages``: the bound of that backlog (the site's ``queue_limit``);
  ``$SYS/broker/connection/<bridge>/state`` (``notifications``) says whether each link
  is up, and the backlog alarm reads the bridge's queue from the station's ``$SYS``.
- ``restart_timeout 1 5``: reconnect within seconds of the far side coming back (the
  default waits up to 30 s).
- ``remote_username``/``remote_password``: a site's bridges log in to the far broker as
  ``bridge-<site>``, with the password ``ISLS_NETWORK_PASSWORD_BRIDGE_<SITE>`` of the
  environment (the far broker's password file is written from the same variable),
  written only into the 0600 configuration file. Required towards a partner, whose broker
  admits accounts only; towards a center, used when set.
- TLS over a real WAN (not used on loopback): ``bridge_cafile``, ``bridge_certfile``,
  ``bridge_keyfile`` and an ``mqtts`` listener on the far side (docs/network.md).

Alarm commands without a loop. Two bridges that each forward ``isls/alarms/command``
*out* (A to B and B to A) loop for ever: a command that reached B from A is, for B, a
message like any other, so B's bridge sends it back to A, whose bridge sends it to B
again. What Mosquitto does prevent is the echo on *one* connection: a ``both`` topic of
an MQTT 5 bridge is subscribed with No Local on either side, so a command never comes
back over the connection it went out on. So the command connections form a tree: the
first center of the file is the hub, every other center holds one ``both`` connection to
it. On a tree with no echo, a command published at any center reaches every other center
exactly once (two centers: one connection). While the hub is unreachable the other
centers exchange no commands; the QoS 1 bridge sessions deliver the held ones when it
is back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from control_center.errors import ConfigError
from control_center.network.sites import Network, Site
from drivers.mqtt import ALARM_COMMAND_TOPIC, alarms_topic, param_topic, raw_topic

# The topic and QoS of each kind of data a site may forward.
DATA_TOPICS: dict[str, tuple[Callable[[str], str], int]] = {
    "raw": (raw_topic, 1), "param": (param_topic, 0), "alarms": (alarms_topic, 1)}
COMMAND_QOS = 1  # as `isls alarm ack` publishes it: an acknowledgement is never lost
PASSWORD_VARIABLE = "ISLS_NETWORK_PASSWORD_"

Direction = Literal["out", "both"]


@dataclass(frozen=True, slots=True)
class BridgeTopic:
    """One ``topic`` line of a bridge connection."""

    topic: str
    direction: Direction
    qos: int

    def line(self) -> str:
        return f"topic {self.topic} {self.direction} {self.qos}"


def backlog_topic(station: str) -> str:
    """A station's backlog alarm: retained JSON, published by its backlog watch
    (network/run.py) and bridged to every center."""
    return f"isls/network/{station}/backlog"


def bridge_name(local: Site, remote: Site) -> str:
    return f"{local.name}-to-{remote.name}"


def bridge_account(site: Site) -> str:
    """The account a site's bridges log in with at the far brokers."""
    return f"bridge-{site.name}"


def password_variable(account: str) -> str:
    """The environment variable holding a network account's password."""
    return PASSWORD_VARIABLE + account.upper().replace("-", "_")


def network_password(account: str, environ: Mapping[str, str], *, required: bool,
                     why: str) -> str | None:
    """``account``'s password from the environment; a missing one is an error naming the
    variable when ``required``. A password goes into a configuration file line, so it
    may hold no line break (which would add lines to the broker's configuration) and no
    blank at either end (Mosquitto trims them)."""
    variable = password_variable(account)
    value = environ.get(variable, "")
    if not value:
        if required:
            raise ConfigError("environment", variable,
                              f"not set: the password of the broker account {account!r} "
                              f"({why})")
        return None
    if not value.isprintable() or value != value.strip():
        raise ConfigError("environment", variable,
                          "a password may hold no control characters (line breaks) and no "
                          "blank at its start or end")
    return value


def agreement_topics(network: Network, center: Site, partner: Site) -> tuple[BridgeTopic, ...]:
    """What ``center`` forwards to ``partner``: the topics of their agreements, each at
    the QoS its kind is published with; empty without an agreement."""
    topics: dict[BridgeTopic, None] = {}  # in the file's order, each once
    for agreement in network.agreements:
        if agreement.center != center.name or agreement.partner != partner.name:
            continue
        for spacecraft in agreement.spacecraft:
            for kind in agreement.data:
                topic_of, qos = DATA_TOPICS[kind]
                topics[BridgeTopic(topic_of(spacecraft), "out", qos)] = None
    return tuple(topics)


def command_hub(network: Network) -> Site:
    """The center every other center bridges its alarm commands to (the module's
    docstring says why a tree): the first center of the file."""
    return network.of_kind("center")[0]


def _connection(local: Site, remote: Site, topics: tuple[BridgeTopic, ...],
                password: str | None, port: int | None = None) -> list[str]:
    name = bridge_name(local, remote)
    lines = [
        f"connection {name}",
        f"address 127.0.0.1:{port or remote.mqtt_port}",
        "bridge_protocol_version mqttv50",
        f"remote_clientid {name}",
        f"local_clientid {name}.local",
        "cleansession false",
        "restart_timeout 1 5",
        "keepalive_interval 5",
        "notifications true",
        "notifications_local_only true",
        "try_private false",
    ]
    if password is not None:
        lines += [f"remote_username {bridge_account(local)}", f"remote_password {password}"]
    lines += [topic.line() for topic in topics]
    return lines


def station_bridges(network: Network, station: Site, environ: Mapping[str, str],
                    via: Mapping[str, int] | None = None) -> list[str]:
    """The bridge lines of a station's broker: the raw telemetry of every spacecraft it
    hears, QoS 1, and the station's backlog alarm (retained: a center that connects
    later learns the latest), to every center. ``via``: center name -> the loopback port
    of a WAN link in between (a proxy the tests cut), instead of the center's own port."""
    topics = (*(BridgeTopic(raw_topic(spacecraft), "out", 1) for spacecraft in station.hears),
              BridgeTopic(backlog_topic(station.name), "out", 1))
    password = network_password(bridge_account(station), environ, required=False,
                                why=f"station {station.name}'s bridges to the centers")
    lines: list[str] = []
    for center in network.of_kind("center"):
        lines += _connection(station, center, topics, password,
                             (via or {}).get(center.name))
    return lines


def center_bridges(network: Network, center: Site, environ: Mapping[str, str]) -> list[str]:
    """The bridge lines of a center's broker: each partner's share by its agreements with
    this center, and nothing else; and, unless this center is the command hub, the alarm
    commands both ways with the hub."""
    lines: list[str] = []
    account = bridge_account(center)
    for partner in network.of_kind("partner"):
        topics = agreement_topics(network, center, partner)
        if topics:
            # A partner's broker admits accounts only: without the password the bridge
            # would retry for ever, refused, and the partner receive nothing.
            password = network_password(account, environ, required=True,
                                        why=f"center {center.name}'s bridge to partner "
                                            f"{partner.name}")
            lines += _connection(center, partner, topics, password)
    hub = command_hub(network)
    if hub.name != center.name:
        password = network_password(account, environ, required=False,
                                    why=f"center {center.name}'s bridge to center {hub.name}")
        lines += _connection(center, hub, (BridgeTopic(ALARM_COMMAND_TOPIC, "both",
                                                       COMMAND_QOS),), password)
    return lines
