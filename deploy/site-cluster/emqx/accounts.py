"""The broker accounts of an EMQX site, from the same list ``isls up`` gives Mosquitto.

    python deploy/site-cluster/emqx/accounts.py acl > deploy/site-cluster/emqx/acl.conf
    docker compose run --rm accounts      # in deploy/site-cluster: create or update them

``acl`` prints EMQX's ACL file (Erlang terms, read by its file authorizer) for the
accounts of ``control_center.operations.security.accounts``: what each may read and
write, nothing more. ``create`` logs in to EMQX's REST API as the dashboard's admin and
creates every account in the built-in database (or sets its password again), each
password from ``ISLS_MQTT_PASSWORD_<ACCOUNT>``, as ``isls up`` reads them.

The REST calls follow EMQX 5's documentation (``POST /api/v5/login``, ``POST
/api/v5/authentication/password_based:built_in_database/users``); they have not been
run against a live EMQX here (deploy/README.md, "What was checked").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from control_center.config import Config, load_config
from control_center.errors import IslsError
from control_center.operations.security import Account, accounts, password
from control_center.telemetry.tmdb_yaml import load_tmdbs
from drivers.mqtt import raw_subscription

AUTHENTICATOR = "password_based:built_in_database"
DASHBOARD_USER = "admin"  # EMQX's first dashboard user; its password: EMQX_DASHBOARD_PASSWORD
DASHBOARD_PASSWORD_VARIABLE = "EMQX_DASHBOARD__DEFAULT_PASSWORD"
TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Credential:
    user_id: str
    password: str


def _erlang_string(text: str) -> str:
    """A topic or user name as an Erlang string: backslash and quote escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _rule(account: Account, action: str, topics: Sequence[str]) -> str:
    listed = ", ".join(_erlang_string(topic) for topic in topics)
    return f"{{allow, {{username, {_erlang_string(account.name)}}}, {action}, [{listed}]}}."


def subscriptions(account: Account, config: Config) -> tuple[str, ...]:
    """What the account may subscribe to. The ingest subscribes to the raw and replay
    topics through its shared group; both spellings are allowed, because whether EMQX
    checks a ``$share/<group>/`` filter with or without its prefix was not verified."""
    topics = list(account.read)
    group = config.mqtt.shared_group
    if group:
        for plain in (raw_subscription(None), raw_subscription(None, "replay")):
            if plain in topics:
                topics.append(f"$share/{group}/{plain}")
    return tuple(topics)


def acl_text(config: Config, site_accounts: Sequence[Account]) -> str:
    """EMQX's ACL file: one allow rule per account and action, then deny everything
    else (emqx.conf also sets ``authorization.no_match = deny``)."""
    lines = [
        "%% EMQX ACL of the ISLS site, written by deploy/site-cluster/emqx/accounts.py from",
        "%% control_center.operations.security.accounts (the accounts `isls up` gives",
        "%% Mosquitto). Do not edit by hand: change the configuration and run",
        "%%   python deploy/site-cluster/emqx/accounts.py acl > deploy/site-cluster/emqx/acl.conf",
        "",
    ]
    for account in site_accounts:
        lines.append(f"%% {account.name}: {account.why}")
        reads = subscriptions(account, config)
        if reads:
            lines.append(_rule(account, "subscribe", reads))
        if account.write:
            lines.append(_rule(account, "publish", account.write))
        lines.append("")
    lines += ["%% Anyone else, anything else.", "{deny, all}.", ""]
    return "\n".join(lines)


def credentials(config: Config, site_accounts: Sequence[Account],
                env: Mapping[str, str]) -> list[Credential]:
    """Every account with its password; all missing ones named at once."""
    found: list[Credential] = []
    missing: list[str] = []
    for account in site_accounts:
        secret = password(account.name, config, env)
        if secret is None:
            missing.append("ISLS_MQTT_PASSWORD_" + account.name.upper().replace("-", "_"))
        else:
            found.append(Credential(account.name, secret))
    if missing:
        raise IslsError(f"environment: no password for {len(missing)} broker account(s): "
                        f"set {', '.join(missing)} in deploy/site-cluster/.env")
    return found


def _call(method: str, url: str, body: object, token: str | None = None) -> tuple[int, str]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method=method,
                                     headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
            return answer.status, answer.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except (urllib.error.URLError, TimeoutError) as error:
        raise IslsError(f"{url}: EMQX's REST API cannot be reached: {error}") from None


def create(api: str, dashboard_password: str, found: Sequence[Credential]) -> list[str]:
    """Create each account, or set its password again if it exists; one line each."""
    status, text = _call("POST", f"{api}/api/v5/login",
                         {"username": DASHBOARD_USER, "password": dashboard_password})
    if status != 200:
        raise IslsError(f"{api}/api/v5/login: refused ({status}): {text[:200]}; check "
                        f"EMQX_DASHBOARD_PASSWORD (EMQX applies it only at a node's first "
                        f"start)")
    token = str(json.loads(text)["token"])
    users = f"{api}/api/v5/authentication/{AUTHENTICATOR}/users"
    report: list[str] = []
    for credential in found:
        status, text = _call("POST", users, {"user_id": credential.user_id,
                                             "password": credential.password,
                                             "is_superuser": False}, token)
        if status == 409:  # exists: set its password, so a changed .env takes effect
            status, text = _call("PUT", f"{users}/{credential.user_id}",
                                 {"password": credential.password, "is_superuser": False},
                                 token)
            verb = "password set"
        else:
            verb = "created"
        if not 200 <= status < 300:
            raise IslsError(f"{users}: account {credential.user_id}: refused ({status}): "
                            f"{text[:200]}")
        report.append(f"{credential.user_id}: {verb}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("action", choices=("acl", "create"))
    parser.add_argument("--config", type=Path, default=None,
                        help="the site's configuration (default: ISLS_CONFIG)")
    parser.add_argument("--api", default="http://emqx1.isls.site:18083",
                        help="EMQX's dashboard and REST API")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        site_accounts = accounts(config, load_tmdbs(config.tmdb_paths))
        if args.action == "acl":
            sys.stdout.write(acl_text(config, site_accounts))
            return 0
        dashboard_password = os.environ.get(DASHBOARD_PASSWORD_VARIABLE, "")
        if not dashboard_password:
            raise IslsError(f"environment: {DASHBOARD_PASSWORD_VARIABLE} is not set")
        for line in create(args.api.rstrip("/"), dashboard_password,
                           credentials(config, site_accounts, os.environ)):
            print(line)
    except IslsError as error:
        print(f"accounts: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
