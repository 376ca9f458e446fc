"""A partner's broker, locked down from the network file (docs/network.md).

A partner receives what its agreements say and nothing else. The centers' bridges carry
only that (:func:`control_center.network.bridges.center_bridges`); the partner's broker
enforces it a second time, so that a misconfigured or compromised center cannot push
more, and the partner cannot read more:

* no anonymous client (``allow_anonymous false``);
* ``<partner>`` (the partner site's own name): its ingest and tools; reads its share (the
  topics of :meth:`Network.partner_share`), writes nothing;
* ``bridge-<center>`` for each center with an agreement with it: writes exactly that
  center's agreement topics, reads nothing.

Mosquitto 2.0.11 grants every subscription (SUBACK "granted QoS"), whatever the ACL
says, and filters at delivery: a subscription to ``isls/#`` or to another spacecraft's
topic delivers only the share. A publish the ACL refuses is answered with PUBACK 0x87
(MQTT 5, QoS 1) and dropped; a connection without a known account with CONNACK 0x87.

Passwords come from the environment, ``ISLS_NETWORK_PASSWORD_<ACCOUNT>`` (upper case,
``-`` as ``_``: ``ISLS_NETWORK_PASSWORD_BRIDGE_MOSCOW``); the centers' bridges send the
same variable's value. They are hashed into the password file (Mosquitto's ``$7$``,
:func:`control_center.operations.security.password_file_text`), 0600 in a 0700
directory, never put on a command line.

Client ids: every account may connect with any id, so the partner can run its ingest
and its tools side by side. A center's bridge account could take another center's bridge
id and disconnect it; that bridge reconnects within seconds and its broker still holds
what was not delivered (QoS 1, persistent session), so nothing is lost.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path

from control_center.errors import ConfigError
from control_center.network.bridges import (
    DATA_TOPICS,
    agreement_topics,
    bridge_account,
    network_password,
    password_variable,
)
from control_center.network.sites import Network, Site
from control_center.operations.security import Account, password_file_text, render_acl
from control_center.operations.servers import MosquittoServer, private_directory, write_private


def share_topics(network: Network, partner: Site) -> tuple[str, ...]:
    """Every topic of ``partner``'s share, from all its agreements."""
    share = network.partner_share(partner.name)
    return tuple(DATA_TOPICS[kind][0](spacecraft)
                 for spacecraft, kinds in sorted(share.items()) for kind in kinds)


def partner_accounts(network: Network, partner: Site) -> tuple[Account, ...]:
    """The accounts of ``partner``'s broker and what each may do."""
    accounts = [Account(partner.name, read=share_topics(network, partner), write=(),
                              why=f"partner {partner.name}: reads its share")]
    for center in network.of_kind("center"):
        topics = agreement_topics(network, center, partner)
        if topics:
            accounts.append(Account(
                bridge_account(center), read=(), write=tuple(t.topic for t in topics),
                why=f"the bridge from center {center.name}: writes its agreement"))
    names = [a.name for a in accounts]
    if len(set(names)) != len(names):  # a partner site named like a bridge account
        raise ConfigError(network.source, f"site {partner.name}",
                          f"the partner's account {partner.name!r} is also a center's bridge "
                          f"account; rename the site")
    return tuple(accounts)


def partner_acl(network: Network, partner: Site) -> str:
    """The ACL of a partner's broker: each account may do what its lists say, no more
    (a topic no line grants is denied)."""
    return render_acl(partner_accounts(network, partner), "the network file")


def partner_passwords(network: Network, partner: Site, environ: Mapping[str, str]
                      ) -> dict[str, str]:
    """Account -> password of every account of ``partner``'s broker; a missing one is a
    :class:`ConfigError` naming its variable."""
    passwords: dict[str, str] = {}
    for account in partner_accounts(network, partner):
        secret = network_password(account.name, environ, required=True,
                                  why=f"an account of partner {partner.name}'s broker")
        assert secret is not None
        passwords[account.name] = secret
    return passwords


def partner_variables(network: Network) -> tuple[str, ...]:
    """The variables of every account of every partner's broker: each partner's own and
    the bridge accounts of the centers that forward to it."""
    variables = {password_variable(account.name): None
                 for partner in network.of_kind("partner")
                 for account in partner_accounts(network, partner)}
    return tuple(variables)


def with_generated_passwords(network: Network, environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` and a random password for every partner-broker account it lacks.

    For ``isls up --network`` only, where every site runs in one process and reads this
    one mapping: both ends of each bridge agree. Never for one site (``--site``): the far
    side would not know the password."""
    filled = dict(environ)
    for variable in partner_variables(network):
        if not filled.get(variable):
            filled[variable] = secrets.token_urlsafe(24)
    return filled


class PartnerBroker(MosquittoServer):
    """A partner's Mosquitto: one listener, accounts only, the network's ACL."""

    def __init__(self, directory: Path, port: int, *, password_file: Path, acl_file: Path,
                 max_queued: int) -> None:
        # Saved once a second, as every network site's broker (network/run.py says why).
        super().__init__(directory, port, max_queued=max_queued, autosave=(False, 1))
        self.password_file = password_file
        self.acl_file = acl_file

    def _listeners(self) -> list[str]:
        return [f"listener {self.port} 127.0.0.1", "allow_anonymous false",
                f"password_file {self.password_file}", f"acl_file {self.acl_file}"]


def partner_broker(network: Network, site: Site, directory: Path,
                   environ: Mapping[str, str]) -> PartnerBroker:
    """``site``'s broker (not started): writes its password file (hashed) and its ACL,
    0600, into ``directory`` (0700), where the broker keeps its data too."""
    if site.kind != "partner":
        raise ConfigError(network.source, f"site {site.name}",
                          f"is a {site.kind}, not a partner")
    passwords = partner_passwords(network, site, environ)  # before anything is written
    private_directory(directory)
    return PartnerBroker(
        directory, site.mqtt_port,
        password_file=write_private(directory / "passwd", password_file_text(passwords)),
        acl_file=write_private(directory / "acl", partner_acl(network, site)),
        max_queued=site.queue_limit)
