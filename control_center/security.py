"""Broker accounts and their rights, generated from the configuration.

Accounts (MQTT user names):

* ``isls-ingest``: reads raw telemetry, replays and alarm commands; writes what it
  derives (engineering values, alarms, events, link state) and raw telemetry it read
  from a serial link;
* ``isls-sim-<spacecraft>``: writes that spacecraft's raw telemetry, nothing else;
* ``isls-operator``: reads everything, writes alarm commands and replays;
* ``agency-<code>``: reads the topics of the spacecraft its agency operates (the
  telemetry database's ``agency``) and of those shared with it (``shared_with`` of a
  ``[[spacecraft]]``), and nothing else.

Passwords come from the environment (``ISLS_MQTT_PASSWORD_<ACCOUNT>``, upper case, ``-``
as ``_``) or from ``<state_dir>/secrets/<account>``, a file only its owner may read
(mode 0600). They are never logged; the broker gets them hashed by ``mosquitto_passwd``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import urllib.error
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from control_center.config import Config, MqttSettings
from control_center.errors import ConfigError, IslsError
from control_center.tmdb import Tmdb
from drivers.mqtt import TOPIC_ROOT

INGEST = "isls-ingest"
OPERATOR = "isls-operator"


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


def accounts(config: Config, tmdbs: list[Tmdb]) -> list[Account]:
    root = TOPIC_ROOT
    result = [
        Account(INGEST, read=(f"{root}/+/tm/raw", f"{root}/+/tm/replay",
                              f"{root}/alarms/command"),
                write=(f"{root}/+/tm/param", f"{root}/+/alarms", f"{root}/+/alarms/active",
                       f"{root}/+/events", f"{root}/+/link", f"{root}/+/tm/raw"),
                why="reads raw telemetry, replays and alarm commands; writes what it derives"),
        Account(OPERATOR, read=(f"{root}/#",),
                write=(f"{root}/alarms/command", f"{root}/+/tm/replay"),
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
    lines = ["# Written by isls from the configuration; regenerated at every start.", ""]
    for account in accounts(config, tmdbs):
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


def account_settings(config: Config, name: str,
                     env: Mapping[str, str] | None = None) -> MqttSettings:
    """The MQTT settings to connect as ``name`` when it has a password; else unchanged."""
    secret = password(name, config, os.environ if env is None else env)
    if secret is None:
        return config.mqtt
    return replace(config.mqtt, username=name, password=secret)


def write_broker_security(directory: Path, config: Config, tmdbs: list[Tmdb],
                          env: Mapping[str, str]) -> tuple[Path, Path] | None:
    """Password (hashed) and ACL files for the local broker; None when no account has a
    password (then the local broker stays anonymous on 127.0.0.1, as in development)."""
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
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not os.path.exists(tool):
        raise IslsError("mosquitto_passwd not found; install mosquitto (make setup)")
    directory.mkdir(parents=True, exist_ok=True)
    password_file = directory / "passwd"
    password_file.unlink(missing_ok=True)
    password_file.touch(mode=0o600)
    for name, secret in secrets.items():
        assert secret is not None
        # -b takes the password as an argument: visible to this machine's process list
        # for the instant the tool runs, never written anywhere in clear.
        subprocess.run([tool, "-b", str(password_file), name, secret], check=True,
                       capture_output=True)
    acl_file = directory / "acl"
    acl_file.write_text(acl_text(config, tmdbs))
    return password_file, acl_file


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
