"""Local Mosquitto and InfluxDB servers run as child processes.

``isls up`` uses them as the embedded default, and the test suite starts one of each
per session on free loopback ports. Each server writes its config file and keeps all
of its data under one directory, binds 127.0.0.1 only, needs no systemd, and is
stopped (SIGTERM, then SIGKILL after a grace period) by :meth:`stop`.

Their directories are 0700 and everything in them 0600: the servers run with umask 077
(InfluxDB's ``meta/meta.db`` holds its users' password hashes, Mosquitto's
``mosquitto.db`` the queued telemetry of every spacecraft).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from control_center.errors import ServerError
from control_center.operations.ports import free_port as free_port  # callers import it here

START_TIMEOUT = 30.0
PRIVATE_UMASK = 0o077  # files 0600, directories 0700


def private_directory(path: Path) -> Path:
    """``path`` (and its missing parents) as a directory only its owner may enter."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def write_private(path: Path, text: str) -> Path:
    """Replace ``path`` with ``text``, readable and writable by its owner only (0600)
    from the moment it exists; atomic (a reader sees the old file or the new one)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                         0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(temporary, path)
    return path


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _find(binary: str, candidates: tuple[str, ...]) -> str:
    found = shutil.which(binary)
    if found:
        return found
    for candidate in candidates:
        if Path(candidate).is_file():
            return candidate
    raise ServerError(f"{binary} is not installed; run `make setup` (it installs the Debian "
                      f"packages mosquitto and influxdb) or point ISLS_MQTT_URL / "
                      f"ISLS_INFLUX_URL at running servers")


class _ChildServer:
    """A server process whose whole life is one ``with`` block."""

    name = "server"

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = directory / f"{self.name}.log"

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _ports(self) -> tuple[int, ...]:
        return (self.port,)

    def start(self) -> None:
        private_directory(self.directory)
        for port in self._ports():
            if port_open(port):
                raise ServerError(f"cannot start {self.name}: 127.0.0.1:{port} is already in "
                                  f"use; stop what holds it or choose another port in the "
                                  f"config")
        command = self._command()
        descriptor = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.chmod(self.log_path, 0o600)  # a log from before this rule: clients' ids, errors
        with os.fdopen(descriptor, "ab") as log:
            # A new session: Ctrl-C in the terminal reaches `isls up`, which then stops
            # the servers in order after the last flush, instead of killing them first.
            # umask 077: what the server creates (its database, its persistence) is 0600.
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True,
                                            umask=PRIVATE_UMASK)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise ServerError(f"{self.name} exited with code {self.process.returncode} "
                                  f"while starting; its log {self.log_path} ends:\n{tail}")
            if self._ready():
                return
            time.sleep(0.05)
        self.stop()
        raise ServerError(f"{self.name} did not become ready on 127.0.0.1:{self.port} within "
                          f"{START_TIMEOUT:.0f} s; see {self.log_path}")

    def stop(self, timeout: float = 15.0) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop_child(process, timeout=timeout)

    def kill(self) -> None:
        """SIGKILL, for tests of crash recovery."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


def stop_child(process: subprocess.Popen[bytes], *, signum: int = signal.SIGTERM,
               timeout: float = 15.0) -> int:
    """Ask a child process to stop (``signum``), SIGKILL it if it has not within
    ``timeout`` seconds; its exit code."""
    if process.poll() is None:
        process.send_signal(signum)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    return process.returncode


@dataclass(frozen=True, slots=True)
class BrokerSecurity:
    """Accounts for the local broker (``control_center/operations/security.py`` writes the files):
    the control center's own accounts log in on the configured port, the partner
    accounts (simulators, agencies) on ``partner_port``, where a client's id is always
    its user name. No anonymous clients on either."""

    password_file: Path
    partner_password_file: Path
    acl_file: Path
    partner_port: int


# Mosquitto 2.0.11 saves its whole in-memory store (every queued message) to
# mosquitto.db, with an fsync: every `autosave_interval` seconds, or with
# `autosave_on_changes` once that many changes (a message for a subscriber, a
# subscription) happened since the last save, at the end of the event-loop pass that got
# there. It acknowledges a QoS 1 PUBLISH before that save, so a SIGKILL loses what came
# since the last save (issue 13, item 5: 6,900 of 8,000 queued messages with the 10 s
# interval). A save after every pass that changed something loses nothing acknowledged
# but the last pass, acknowledged milliseconds before. Its cost, measured with
# bench/broker_persistence.py (docs/operating.md): while the ingest keeps up, one
# small save and one fsync per pass; while it is away, each save rewrites the whole
# backlog, so a publisher that awaits each PUBACK slows as the backlog grows, and the
# broker writes far more than it holds.
AUTOSAVE_ON_CHANGES = (True, 1)


class MosquittoServer(_ChildServer):
    name = "mosquitto"

    def __init__(self, directory: Path, port: int, *, persistence: bool = True,
                 security: BrokerSecurity | None = None,
                 autosave: tuple[bool, int] = AUTOSAVE_ON_CHANGES,
                 max_queued: int = 100_000, bridges: tuple[str, ...] = ()) -> None:
        super().__init__(directory, port)
        self.max_queued = max_queued
        # Bridge sections (control_center/network/bridges.py): last in the file, since
        # every line after a `connection` belongs to that bridge.
        self.bridges = bridges
        self.persistence = persistence
        self.autosave = autosave  # (autosave_on_changes, autosave_interval)
        self.security = security  # None: anonymous clients, one listener
        self.config_path = directory / "mosquitto.conf"

    def _ports(self) -> tuple[int, ...]:
        return (self.port,) if self.security is None else (self.port,
                                                           self.security.partner_port)

    def _listeners(self) -> list[str]:
        security = self.security
        if security is None:
            return [f"listener {self.port} 127.0.0.1", "allow_anonymous true"]
        return [
            # Each listener its own password file: a partner account cannot log in on
            # the control center's port (security.py says why).
            "per_listener_settings true",
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous false",
            f"password_file {security.password_file}",
            f"acl_file {security.acl_file}",
            f"listener {security.partner_port} 127.0.0.1",
            # Whatever client id a partner sends, it gets its user name: it can never
            # take the ingest's id, and with it the ingest's session and queue.
            "use_username_as_clientid true",
            "allow_anonymous false",
            f"password_file {security.partner_password_file}",
            f"acl_file {security.acl_file}",
        ]

    def write_config(self) -> None:
        on_changes, interval = self.autosave
        lines = [
            "# Written by isls; regenerated at every start.",
            *self._listeners(),
            # Started as root, Mosquitto would switch to the `mosquitto` user, which
            # cannot write persistence into our directory: sessions would not survive a
            # restart, silently.
            f"user {getpass.getuser()}",
            # Raw telemetry is QoS 1 in many-packet messages: keep a deep in-flight queue
            # so a briefly slow ingest does not make the broker drop messages.
            f"max_queued_messages {self.max_queued}",
            "max_inflight_messages 1000",
            "message_size_limit 16777216",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.directory}/",
            f"autosave_on_changes {'true' if on_changes else 'false'}",
            f"autosave_interval {interval}",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            *self.bridges,
        ]
        write_private(self.config_path, "\n".join(lines) + "\n")

    def _command(self) -> list[str]:
        self.write_config()
        binary = _find("mosquitto", ("/usr/sbin/mosquitto",))
        return [binary, "-c", str(self.config_path)]

    def _ready(self) -> bool:
        return all(port_open(port) for port in self._ports())

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def partner_url(self) -> str | None:
        """Where simulators and agencies connect; None without accounts."""
        return None if self.security is None else \
            f"mqtt://127.0.0.1:{self.security.partner_port}"


# The embedded influxd's [data] settings; bench/levers.py measured the alternatives
# (docs/performance.md, "Levers"). Telemetry has few series and many points: the
# in-memory index (tsi1 measured no different).
DATA_SETTINGS: dict[str, str] = {"index-version": '"inmem"'}


class InfluxServer(_ChildServer):
    name = "influxd"

    def __init__(self, directory: Path, port: int, *, rpc_port: int | None = None,
                 auth: bool = False, data_settings: Mapping[str, str] | None = None,
                 cpus: str | None = None) -> None:
        super().__init__(directory, port)
        self.rpc_port = rpc_port or free_port()
        self.auth = auth  # HTTP authentication on: every request needs an account
        self.config_path = directory / "influxdb.conf"
        # More [data] settings, as TOML text values (bench/levers.py tries them one at
        # a time); they replace the defaults below of the same name.
        self.data_settings = {**DATA_SETTINGS, **(data_settings or {})}
        # A CPU list for taskset (bench/e2e.py --pin: influxd on a core of its own); its
        # Go runtime sizes itself to the CPUs it may use when it starts.
        self.cpus = cpus

    def write_config(self) -> None:
        d = self.directory
        data_lines = "\n".join(f"  {name} = {value}" for name, value in
                               self.data_settings.items())
        write_private(self.config_path, f"""# Written by isls; regenerated at every start.
reporting-disabled = true
bind-address = "127.0.0.1:{self.rpc_port}"

[meta]
  dir = "{d}/meta"

[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
{data_lines}

[monitor]
  store-enabled = false

[http]
  bind-address = "127.0.0.1:{self.port}"
  auth-enabled = {'true' if self.auth else 'false'}
  log-enabled = false
  max-body-size = 0
  # No /debug/pprof (profiles, goroutine dumps) without authentication. InfluxDB 1.6.7
  # has no switch for /debug/vars and /debug/requests: they answer anyone who reaches
  # this port (counters, database names, user names, its command line, no telemetry),
  # which is why it binds 127.0.0.1 only; see docs/operating.md.
  pprof-enabled = false

[ifql]
  enabled = false

[logging]
  level = "warn"

[subscriber]
  enabled = false

[continuous_queries]
  log-enabled = false
""")

    def _command(self) -> list[str]:
        self.write_config()
        binary = _find("influxd", ("/usr/bin/influxd",))
        pinned = [_find("taskset", ("/usr/bin/taskset",)), "-c", self.cpus] if self.cpus else []
        return [*pinned, binary, "-config", str(self.config_path)]

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=1.0) as response:
                return int(response.status) == 204
        except (urllib.error.URLError, OSError):
            return False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def query(self, query: str, database: str = "isls", *,
              account: tuple[str, str] | None = None) -> dict[str, object]:
        """Run InfluxQL synchronously (for tests and tools), returning the decoded JSON."""
        data = urllib.parse.urlencode({"q": query, "db": database, "epoch": "ns"}).encode()
        # Credentials go in the URL's query string: influxd does not read them from a
        # form body.
        credentials = "" if account is None else "?" + urllib.parse.urlencode(
            {"u": account[0], "p": account[1]})
        with contextlib.closing(urllib.request.urlopen(f"{self.url}/query{credentials}",
                                                       data=data, timeout=30)) as response:
            result: dict[str, object] = json.loads(response.read())
        return result
