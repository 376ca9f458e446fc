"""Broker accounts and their rights, generated from the configuration.

Accounts (MQTT user names):

* ``isls-ingest``: reads raw telemetry, replays and alarm commands; writes what it
  derives (engineering values, alarms, events, link state) and raw telemetry it read
  from a serial link;
* ``isls-operator``: reads everything, writes alarm commands and replays;
* ``isls-sim-<spacecraft>``: writes that spacecraft's raw telemetry, nothing else;
* ``agency-<code>``: reads the topics of the spacecraft its agency operates (the
  telemetry database's ``agency``) and of those shared with it (``shared_with`` of a
  ``[[spacecraft]]``), and nothing else.

The control center's own accounts (ingest, operator) may also round-trip on
``isls/doctor/<account>/#`` (``isls doctor``) and read the broker's ``$SYS/broker/#``
counters (dropped messages, stored messages).

Client ids only the right account can use (issue 13, item 7). A client that connects
with the client id of a connected client disconnects it, and with clean start off it
takes over that client's session: what the broker queued for it. Mosquitto 2.0.11 has
no client-id ACL; what it offers was weighed so:

* ``use_username_as_clientid true`` on the only listener makes every account's id its
  user name: only one connection per account, so two ingests of one broker (a shared
  subscription, one per state directory), the ingest's publisher beside its reader,
  or two operator tools at once would disconnect each other;
* ``clientid_prefixes`` is one prefix for every account, so it cannot tell them apart;
* the dynamic-security plugin binds one client id to an account, but leaves every
  other id free to any account, the ingest's included;
* a client id carrying a secret (an HMAC of the account's password) needs every client
  to compute it, and is only as hidden as the broker's logs.

So the broker has two listeners (``per_listener_settings true``): the control center's
own accounts connect to the port of the configuration, and the partner accounts
(simulators and link benches, agencies) to the *partner port* next to it, where
``use_username_as_clientid true`` replaces whatever id a client sends by its user
name. Each listener has its own password file, so a partner account cannot log in on
the control center's port, and on its own port its id is always ``isls-sim-…`` or
``agency-…``: never the ingest's, whatever it asks for. The ACL is the same file on
both. The cost: one connection at a time per partner account (a second one replaces
the first); give a partner that needs two clients two accounts. The partner port is
``ISLS_MQTT_PARTNER_PORT``, or the MQTT port + 1.

Passwords come from the environment (``ISLS_MQTT_PASSWORD_<ACCOUNT>``, upper case, ``-``
as ``_``) or from ``<state_dir>/secrets/<account>``, a file only its owner may read
(mode 0600). They are never logged and never put on a command line (``/proc/<pid>/cmdline``
is world-readable): the password files are written here, in Mosquitto 2.0's own format
(``mosquitto_passwd``'s ``$7$``: PBKDF2-HMAC-SHA512, 101 iterations, a 12-octet random
salt, a 64-octet hash, both in base64), mode 0600 in a 0700 directory.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import stat
import urllib.error
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from control_center.config import Config, MqttSettings
from control_center.errors import ConfigError, IslsError
from control_center.operations.servers import BrokerSecurity, private_directory, write_private
from control_center.telemetry.tmdb import Tmdb
from drivers.mqtt import TOPIC_ROOT

INGEST = "isls-ingest"
OPERATOR = "isls-operator"
PARTNER_PREFIXES = ("isls-sim-", "agency-")  # accounts that log in on the partner port
PARTNER_PORT_VARIABLE = "ISLS_MQTT_PARTNER_PORT"

# mosquitto_passwd 2.0.11's hash ("$7$"): PBKDF2-HMAC-SHA512, 101 iterations, 12-octet
# salt, 64-octet hash. The broker reads the iteration count from each line.
PBKDF2_ITERATIONS = 101
SALT_OCTETS = 12
HASH_OCTETS = 64


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    read: tuple[str, ...]
    write: tuple[str, ...]
    why: str


def simulator_account(spacecraft: str) -> str:
    return f"isls-sim-{spacecraft}"


def agency_account(agency: str) -> str:
    return f"agency-{agency}"


def is_partner(name: str) -> bool:
    """Simulators (and link benches) and agencies: they connect to the partner port."""
    return name.startswith(PARTNER_PREFIXES)


def doctor_topic(username: str | None) -> str:
    """Where ``isls doctor`` round-trips as ``username``: its own subtree, so one
    account's checks never reach another's subscriptions."""
    return f"{TOPIC_ROOT}/doctor/{username or 'anonymous'}"


# The broker's counters ``isls doctor`` reads (dropped messages, stored messages).
BROKER_STATISTICS = "$SYS/broker/#"


def accounts(config: Config, tmdbs: list[Tmdb]) -> list[Account]:
    root = TOPIC_ROOT
    result = [
        Account(INGEST, read=(f"{root}/+/tm/raw", f"{root}/+/tm/replay",
                              f"{root}/alarms/command", f"{doctor_topic(INGEST)}/#",
                              BROKER_STATISTICS),
                write=(f"{root}/+/tm/param", f"{root}/+/alarms", f"{root}/+/alarms/active",
                       f"{root}/+/events", f"{root}/+/link", f"{root}/+/tm/raw",
                       f"{doctor_topic(INGEST)}/#"),
                why="reads raw telemetry, replays and alarm commands; writes what it derives"),
        Account(OPERATOR, read=(f"{root}/#", BROKER_STATISTICS),
                write=(f"{root}/alarms/command", f"{root}/+/tm/replay",
                       f"{doctor_topic(OPERATOR)}/#"),
                why="reads everything; acknowledges and shelves alarms, replays passes"),
    ]
    for tmdb in tmdbs:
        result.append(Account(simulator_account(tmdb.spacecraft), read=(),
                              write=(f"{root}/{tmdb.spacecraft}/tm/raw",),
                              why=f"the {tmdb.spacecraft} simulator or link bench"))
    for code, _title in config.grafana.agencies:
        granted = sorted(t.spacecraft for t in tmdbs
                         if t.agency == code or code in config.shared_with(t.spacecraft))
        result.append(Account(agency_account(code),
                              read=tuple(f"{root}/{sc}/#" for sc in granted), write=(),
                              why=f"partner agency {code}: "
                                  f"{', '.join(granted) if granted else 'no spacecraft'}"))
    return result


def acl_text(config: Config, tmdbs: list[Tmdb]) -> str:
    """A Mosquitto ACL file: every account may do what its list says, no more."""
    return render_acl(accounts(config, tmdbs), "the configuration")


def render_acl(listed: Iterable[Account], written_from: str) -> str:
    """The Mosquitto ACL of ``listed`` accounts (a topic no line grants is denied); the
    local broker's and a network partner's broker's alike."""
    lines = [f"# Written by isls from {written_from}; regenerated at every start.", ""]
    for account in listed:
        lines += [f"# {account.why}", f"user {account.name}"]
        lines += [f"topic read {topic}" for topic in account.read]
        lines += [f"topic write {topic}" for topic in account.write]
        lines.append("")
    return "\n".join(lines)


def _variable(name: str) -> str:
    return "ISLS_MQTT_PASSWORD_" + name.upper().replace("-", "_")


def password(name: str, config: Config, env: Mapping[str, str]) -> str | None:
    """The account's password from the environment or its 0600 secrets file, if any."""
    value = env.get(_variable(name))
    if value:
        return value
    path = config.state_dir / "secrets" / name
    if not path.exists():
        return None
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(str(path), "permissions", f"mode {mode:04o}: a secrets file must be "
                          f"readable by its owner only (chmod 600 {path})")
    text = path.read_text(encoding="utf-8").strip()
    return text or None


def partner_port(config: Config, env: Mapping[str, str]) -> int:
    """The local broker's port for partner accounts: ``ISLS_MQTT_PARTNER_PORT``, or the
    MQTT port + 1."""
    text = env.get(PARTNER_PORT_VARIABLE)
    if not text:
        return config.mqtt.port + 1
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 0 < port < 65536 or port == config.mqtt.port:
        raise ConfigError("environment", PARTNER_PORT_VARIABLE,
                          f"{text!r} is not a TCP port other than the MQTT port "
                          f"{config.mqtt.port}; set a free port such as "
                          f"{config.mqtt.port + 1}")
    return port


def account_settings(config: Config, name: str,
                     env: Mapping[str, str] | None = None) -> MqttSettings:
    """The MQTT settings to connect as ``name`` when it has a password; else unchanged.
    A partner account of the local broker connects to the partner port."""
    env = os.environ if env is None else env
    secret = password(name, config, env)
    if secret is None:
        return config.mqtt
    settings = replace(config.mqtt, username=name, password=secret)
    if is_partner(name) and not config.mqtt.external:
        settings = replace(settings, port=partner_port(config, env))
    return settings


def password_hash(secret: str, salt: bytes | None = None,
                  iterations: int = PBKDF2_ITERATIONS) -> str:
    """``secret`` hashed as ``mosquitto_passwd`` 2.0 does (``$7$``, PBKDF2-HMAC-SHA512)."""
    salt = os.urandom(SALT_OCTETS) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", secret.encode("utf-8"), salt, iterations,
                                 HASH_OCTETS)
    return (f"$7${iterations}${base64.b64encode(salt).decode()}"
            f"${base64.b64encode(digest).decode()}")


def password_file_text(secrets: Mapping[str, str]) -> str:
    """A Mosquitto password file: one ``user:hash`` line per account."""
    for name in secrets:
        if ":" in name or not name.isprintable():
            raise ConfigError("accounts", name, "a broker user name cannot hold ':' or "
                              "control characters")
    return "".join(f"{name}:{password_hash(secret)}\n" for name, secret in secrets.items())


def write_broker_security(directory: Path, config: Config, tmdbs: list[Tmdb],
                          env: Mapping[str, str]) -> BrokerSecurity | None:
    """Password (hashed) and ACL files for the local broker, 0600 in a 0700 directory;
    None when no account has a password (then the local broker stays anonymous on
    127.0.0.1, as in development)."""
    known = accounts(config, tmdbs)
    secrets = {a.name: password(a.name, config, env) for a in known}
    if not any(secrets.values()):
        return None
    missing = sorted(name for name, secret in secrets.items() if not secret)
    if missing:
        raise ConfigError("environment", _variable(missing[0]),
                          f"credentials are on, but accounts {', '.join(missing)} have no "
                          f"password; set {_variable(missing[0])} (or its secrets file) for "
                          f"each")
    given = {name: secret for name, secret in secrets.items() if secret}
    private_directory(directory)
    own = {name: secret for name, secret in given.items() if not is_partner(name)}
    partners = {name: secret for name, secret in given.items() if is_partner(name)}
    return BrokerSecurity(
        password_file=write_private(directory / "passwd", password_file_text(own)),
        partner_password_file=write_private(directory / "partner-passwd",
                                            password_file_text(partners)),
        acl_file=write_private(directory / "acl", acl_text(config, tmdbs)),
        partner_port=partner_port(config, env))


def influx_accounts(env: Mapping[str, str], config: Config) -> dict[str, tuple[str, str]] | None:
    """Accounts for a local influxd with authentication: admin, the ingest's write-only
    account (``ISLS_INFLUX_USER``/``ISLS_INFLUX_PASSWORD``) and the dashboards' read-only
    one (``ISLS_INFLUX_READER``/``ISLS_INFLUX_READER_PASSWORD``). None unless the admin
    password and the ingest's credentials are set."""
    admin = env.get("ISLS_INFLUX_ADMIN_PASSWORD")
    if not admin or not config.influx.username or not config.influx.password:
        return None
    result = {"admin": ("admin", admin), "ingest": (config.influx.username,
                                                   config.influx.password)}
    reader = env.get("ISLS_INFLUX_READER_PASSWORD")
    if reader:
        result["reader"] = (env.get("ISLS_INFLUX_READER", "grafana"), reader)
    return result


def provision_influx(query: Callable[..., dict[str, object]], database: str,
                     users: dict[str, tuple[str, str]]) -> None:
    """Create the admin (InfluxDB lets the first admin be created without credentials),
    the database, the write-only ingest account and the read-only reader account."""
    admin = users["admin"]

    def run(statement: str, account: tuple[str, str] | None = admin) -> None:
        try:
            result = query(statement, database, account=account)
        except urllib.error.HTTPError as exc:
            raise IslsError(f"InfluxDB refused {statement.split(' WITH ')[0]}: {exc.code} "
                            f"{exc.read()[:200]!r}") from None
        errors = [r.get("error") for r in result.get("results", [])  # type: ignore[attr-defined]
                  if isinstance(r, dict) and r.get("error")]
        if errors and not all("already exists" in str(e) for e in errors):
            raise IslsError(f"InfluxDB refused {statement.split(' WITH ')[0]}: {errors[0]}")

    def quoted(text: str) -> str:
        return text.replace("\\", "\\\\").replace("'", "\\'")

    with contextlib.suppress(IslsError):  # created at an earlier start: proven below
        run(f"CREATE USER \"{admin[0]}\" WITH PASSWORD '{quoted(admin[1])}' "
            f"WITH ALL PRIVILEGES", account=None)
    run(f'CREATE DATABASE "{database}"')
    ingest = users["ingest"]
    run(f"CREATE USER \"{ingest[0]}\" WITH PASSWORD '{quoted(ingest[1])}'")
    run(f"SET PASSWORD FOR \"{ingest[0]}\" = '{quoted(ingest[1])}'")
    run(f'GRANT WRITE ON "{database}" TO "{ingest[0]}"')
    if "reader" in users:
        reader = users["reader"]
        run(f"CREATE USER \"{reader[0]}\" WITH PASSWORD '{quoted(reader[1])}'")
        run(f"SET PASSWORD FOR \"{reader[0]}\" = '{quoted(reader[1])}'")
        run(f'GRANT READ ON "{database}" TO "{reader[0]}"')
