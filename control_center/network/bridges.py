"""Mosquitto bridges and ACLs generated from the network file (docs/network.md).

Store and forward between sites is Mosquitto's own bridge, not code of ours: a station's
broker holds one bridge connection to each center and publishes the raw telemetry of the
spacecraft it hears there; a center's broker holds one to each partner its agreements
name and publishes exactly their share. Every setting below is there for a reason:

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
- ``remote_username``/``remote_password``: from the environment
  (``ISLS_BRIDGE_PASSWORD_<SITE>``), written only into the 0600 configuration file.
- TLS over a real WAN (not used on loopback): ``bridge_cafile``, ``bridge_certfile``,
  ``bridge_keyfile`` and an ``mqtts`` listener on the far side (docs/network.md).
"""

from __future__ import annotations

from collections.abc import Mapping

from control_center.network.sites import Network, Site
from drivers.mqtt import alarms_topic, param_topic, raw_topic

# The topic and QoS of each kind of data a site may forward.
DATA_TOPICS = {"raw": (raw_topic, 1), "param": (param_topic, 0), "alarms": (alarms_topic, 1)}


def bridge_name(local: Site, remote: Site) -> str:
    return f"{local.name}-to-{remote.name}"


def _connection(local: Site, remote: Site, topics: list[tuple[str, int]],
                environ: Mapping[str, str]) -> list[str]:
    name = bridge_name(local, remote)
    lines = [
        f"connection {name}",
        f"address 127.0.0.1:{remote.mqtt_port}",
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
    password = environ.get(f"ISLS_BRIDGE_PASSWORD_{local.name.upper().replace('-', '_')}")
    if password:
        lines += [f"remote_username bridge-{local.name}", f"remote_password {password}"]
    lines += [f"topic {topic} out {qos}" for topic, qos in topics]
    return lines


def station_bridges(network: Network, station: Site, environ: Mapping[str, str]
                    ) -> list[str]:
    """The bridge lines of a station's broker: the raw telemetry of every spacecraft it
    hears, QoS 1, to every center."""
    topics = [(raw_topic(spacecraft), 1) for spacecraft in station.hears]
    lines: list[str] = []
    for center in network.of_kind("center"):
        lines += _connection(station, center, topics, environ)
    return lines


def center_bridges(network: Network, center: Site, environ: Mapping[str, str]) -> list[str]:
    """The bridge lines of a center's broker: each partner's share, by its agreements
    with this center, and nothing else."""
    lines: list[str] = []
    for partner in network.of_kind("partner"):
        topics: list[tuple[str, int]] = []
        for agreement in network.agreements:
            if agreement.center != center.name or agreement.partner != partner.name:
                continue
            for spacecraft in agreement.spacecraft:
                for kind in agreement.data:
                    topic_of, qos = DATA_TOPICS[kind]
                    topics.append((topic_of(spacecraft), qos))
        if topics:
            lines += _connection(center, partner, sorted(set(topics)), environ)
    return lines


def partner_acl(network: Network, partner: Site) -> str:
    """The ACL of a partner's broker: its own accounts read only its share; the bridges
    from the centers write only it (a center cannot push beyond the agreement either)."""
    share = network.partner_share(partner.name)
    topics = [DATA_TOPICS[kind][0](spacecraft)
              for spacecraft, kinds in sorted(share.items()) for kind in kinds]
    lines = ["# Written by isls from the network file; regenerated at every start.",
             "# The partner's own accounts: read its share, write nothing."]
    lines += ["pattern read $SYS/broker/connection/#"]
    for center in network.of_kind("center"):
        if not any(a.center == center.name and a.partner == partner.name
                   for a in network.agreements):
            continue
        lines += ["", f"user bridge-{center.name}"]
        lines += [f"topic write {t}" for t in topics]
        lines += [f"topic readwrite $SYS/broker/connection/{bridge_name(center, partner)}/state"]
    lines += ["", f"user {partner.name}"]
    lines += [f"topic read {t}" for t in topics]
    return "\n".join(lines) + "\n"
