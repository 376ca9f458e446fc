"""Configuration: one TOML file, validated once at start, overridden by the environment.

Secrets (MQTT and InfluxDB passwords, tokens) come only from the environment: a
password in the TOML file is refused. Everything downstream receives the frozen
:class:`Config` and never reads files or variables itself.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from control_center.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "config" / "isls.toml"
DEFAULT_MQTT_PORT = 18830  # not 1883/8086: a system broker or database may hold those
DEFAULT_INFLUX_PORT = 18086

ENVIRONMENT_KEYS = (
    "ISLS_CONFIG", "ISLS_STATE_DIR", "ISLS_MQTT_URL", "ISLS_INFLUX_URL", "ISLS_INFLUX_DB",
    "ISLS_INFLUX_USER", "ISLS_INFLUX_PASSWORD", "ISLS_INFLUX_TOKEN",
)


@dataclass(frozen=True, slots=True)
class MqttSettings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_MQTT_PORT
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    external: bool = False  # True: a broker we must not start
    shared_group: str = ""  # "": a plain subscription; a name: a shared one
    keepalive: int = 30
    # The ingest's MQTT session outlives its connection this long (s): what the broker
    # held for it while it was away (a crash, a restart) is delivered when it returns.
    session_expiry: int = 3600
    # The local broker (isls up) saves its store after this many changes: 1 loses nothing
    # it acknowledged on a SIGKILL but slows publishers while a backlog waits; N loses at
    # most N - 1 messages and costs about N times less (docs/operating.md, "The broker: crashes").
    broker_save_every: int = 1

    @property
    def url(self) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class InfluxSettings:
    url: str = f"http://127.0.0.1:{DEFAULT_INFLUX_PORT}"
    database: str = "isls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    external: bool = False
    batch_lines: int = 5000
    flush_interval: float = 0.25
    max_retry_delay: float = 10.0
    concurrency: int = 2
    spool_max_mb: int = 1024  # disk spool for while InfluxDB fails (state_dir/spool)

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 8086


@dataclass(frozen=True, slots=True)
class SpacecraftSettings:
    name: str
    tmdb: Path
    simulator: str | None = None
    shared_with: tuple[str, ...] = ()  # partner agencies granted its telemetry


@dataclass(frozen=True, slots=True)
class IngestSettings:
    batch_packets: int = 2000  # decode when this many packets of one APID are waiting
    batch_interval: float = 0.1  # or when the oldest has waited this long (seconds)
    queue_messages: int = 2000  # bounded queue between the MQTT reader and the decoder
    publish_params: bool = True  # republish engineering values on isls/<sc>/tm/param


@dataclass(frozen=True, slots=True)
class GrafanaSettings:
    url: str = ""  # default for `isls dashboards push --url`
    dashboards_dir: Path | None = None  # `isls up` keeps the generated dashboards here
    influx_url: str = ""  # how Grafana reaches InfluxDB; empty: influx.url
    datasource_uid: str = "isls-influxdb"
    datasource_name: str = "ISLS InfluxDB"
    joint_folder: str = "ISLS joint"  # cross-mission dashboards (overview, links)
    # agency code (the telemetry database's ``agency``) -> folder title
    agencies: tuple[tuple[str, str], ...] = (("cnsa", "CNSA"), ("roscosmos", "Roscosmos"))

    def folder_of(self, agency: str) -> str:
        for code, title in self.agencies:
            if code == agency:
                return title
        return agency.upper() if agency else self.joint_folder


@dataclass(frozen=True, slots=True)
class AlarmSettings:
    enabled: bool = True  # limit checking, alarms and events in this ingest
    stale_periods: float = 5.0  # a packet type missing this many periods is stale


@dataclass(frozen=True, slots=True)
class ArchiveSettings:
    enabled: bool = True
    silence: float = 60.0  # seconds without data that end a pass (LOS)
    max_segment_mb: int = 256  # segments rotate at this size


@dataclass(frozen=True, slots=True)
class SimulatorSettings:
    publish_interval: float = 0.1  # one MQTT message carries this much telemetry
    speed: float = 1.0


@dataclass(frozen=True, slots=True)
class LinkSettings:
    """A serial link from a bench or a radio's ground test port."""

    name: str
    spacecraft: str  # the spacecraft whose downlink this is (tags link statistics)
    device: str
    baud: int = 115200
    framing: str = "tm"  # "tm": CCSDS TM transfer frames with ASM; "cobs": COBS packets
    frame_length: int = 1115  # octets of one TM transfer frame, ASM excluded
    spacecraft_id: int | None = None  # frames of another SCID are counted and dropped
    fecf: bool = True
    ocf: bool = False
    # vcid -> spacecraft whose packets that virtual channel carries (relay: the
    # orbiter's downlink carries the lander's packets on a channel of its own)
    virtual_channels: tuple[tuple[int, str], ...] = ((0, ""),)

    def spacecraft_of(self, vcid: int) -> str | None:
        for channel, spacecraft in self.virtual_channels:
            if channel == vcid:
                return spacecraft or self.spacecraft
        return None


@dataclass(frozen=True, slots=True)
class Config:
    source: str
    state_dir: Path
    mqtt: MqttSettings
    influx: InfluxSettings
    spacecraft: tuple[SpacecraftSettings, ...]
    ingest: IngestSettings = IngestSettings()
    simulator: SimulatorSettings = SimulatorSettings()
    links: tuple[LinkSettings, ...] = ()
    archive: ArchiveSettings = ArchiveSettings()
    grafana: GrafanaSettings = GrafanaSettings()
    alarms: AlarmSettings = AlarmSettings()

    @property
    def archive_dir(self) -> Path:
        return self.state_dir / "archive"

    def shared_with(self, spacecraft: str) -> tuple[str, ...]:
        """Partner agencies granted this spacecraft's telemetry besides its own."""
        for entry in self.spacecraft:
            if entry.name == spacecraft:
                return entry.shared_with
        return ()

    @property
    def tmdb_paths(self) -> list[Path]:
        return [s.tmdb for s in self.spacecraft]


class _Reader:
    """Typed access to one TOML table that names file and key in every error."""

    def __init__(self, source: str, table: Mapping[str, Any], prefix: str,
                 allowed: set[str]) -> None:
        self.source, self.table, self.prefix = source, table, prefix
        for key in table:
            if key not in allowed:
                raise ConfigError(source, f"{prefix}{key}",
                                  f"unknown key (expected one of {', '.join(sorted(allowed))})")

    def _fail(self, key: str, reason: str) -> ConfigError:
        return ConfigError(self.source, f"{self.prefix}{key}", reason)

    def string(self, key: str, default: str) -> str:
        value = self.table.get(key, default)
        if not isinstance(value, str):
            raise self._fail(key, f"must be text, got {value!r}")
        return value

    def number(self, key: str, default: float, *, minimum: float = 0.0,
               strictly: bool = True) -> float:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._fail(key, f"must be a number, got {value!r}")
        if not math.isfinite(value):
            # TOML spells nan and inf; every comparison with nan is false, so it would
            # pass the range check below and fail far from here (int(nan) in the ingest).
            raise self._fail(key, f"must be a finite number, got {value}")
        if value < minimum or (strictly and value == minimum):
            raise self._fail(key, f"must be {'>' if strictly else '>='} {minimum}, got {value}")
        return float(value)

    def integer(self, key: str, default: int, *, minimum: int = 1,
                maximum: int | None = None) -> int:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, f"must be an integer, got {value!r}")
        if value < minimum or (maximum is not None and value > maximum):
            raise self._fail(key, f"must be between {minimum} and {maximum}, got {value}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.table.get(key, default)
        if not isinstance(value, bool):
            raise self._fail(key, f"must be true or false, got {value!r}")
        return value


def _table(document: Mapping[str, Any], key: str, source: str) -> Mapping[str, Any]:
    value = document.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(source, key, "must be a table")
    return value


def parse_mqtt_url(url: str, source: str, key: str) -> MqttSettings:
    """``mqtt://user:pass@host:port`` (or ``mqtts://`` for TLS) to settings."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ConfigError(source, key, f"{url!r} is not an mqtt://host:port or mqtts:// URL")
    try:
        port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
    except ValueError:
        raise ConfigError(source, key, f"{url!r} has an invalid port") from None
    return MqttSettings(
        host=parts.hostname, port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=parts.scheme == "mqtts", external=True,
    )


def _check_http_url(url: str, source: str, key: str) -> str:
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise ConfigError(source, key, f"{url!r} has an invalid port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(source, key, f"{url!r} is not an http(s)://host:port URL")
    if parts.password:
        raise ConfigError(source, key, "put no password in the URL; set ISLS_INFLUX_PASSWORD "
                                       "or ISLS_INFLUX_TOKEN instead")
    return url.rstrip("/")


def config_file(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """Which configuration file a command reads: ``--config``, else ``ISLS_CONFIG``, else
    the shipped ``config/isls.toml``."""
    env = os.environ if environ is None else environ
    if path is not None:
        return path
    return Path(env["ISLS_CONFIG"]) if env.get("ISLS_CONFIG") else DEFAULT_CONFIG


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate the configuration; raise :class:`ConfigError` on the first problem.

    Environment variables (``ISLS_*``) override the file; secrets come only from them.
    Each table is read by one function below, which names file, key and reason."""
    env = dict(os.environ if environ is None else environ)
    path = config_file(path, env)
    source = str(path)
    document = _read_document(path)
    base = path.resolve().parent

    def resolve(value: str) -> Path:
        candidate = Path(value).expanduser()
        return candidate if candidate.is_absolute() else (base / candidate).resolve()

    # Constructing a reader rejects unknown top-level tables.
    _Reader(source, document, "", {"station", "mqtt", "influx", "spacecraft", "ingest",
                                   "simulator", "link", "archive", "grafana",
                                   "alarms"})
    station = _Reader(source, _table(document, "station", source), "station.", {"state_dir"})
    state_dir = resolve(station.string("state_dir", "../state"))
    if env.get("ISLS_STATE_DIR"):
        state_dir = Path(env["ISLS_STATE_DIR"]).resolve()
    mqtt = _parse_mqtt(_table(document, "mqtt", source), source, env)
    influx = _parse_influx(_table(document, "influx", source), source, env)
    spacecraft = _parse_spacecraft(document.get("spacecraft", []), source, resolve)
    links = tuple(_parse_links(document.get("link", []), source, {s.name for s in spacecraft}))
    return Config(
        source=source, state_dir=state_dir, mqtt=mqtt, influx=influx,
        spacecraft=spacecraft,
        ingest=_parse_ingest(_table(document, "ingest", source), source),
        simulator=_parse_simulator(_table(document, "simulator", source), source),
        links=links,
        grafana=_parse_grafana(_table(document, "grafana", source), source, influx, resolve),
        alarms=_parse_alarms(_table(document, "alarms", source), source),
        archive=_parse_archive(_table(document, "archive", source), source),
    )


def _read_document(path: Path) -> dict[str, Any]:
    source = str(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(source, "(file)", "not found; pass --config PATH or set "
                                            "ISLS_CONFIG") from None
    except OSError as exc:
        raise ConfigError(source, "(file)", f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(source, "(file)", f"not UTF-8 text ({exc.reason} at byte "
                                            f"{exc.start}); TOML files are UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "(file)", f"not valid TOML: {exc}") from None


def _parse_mqtt(table: Mapping[str, Any], source: str, env: Mapping[str, str]) -> MqttSettings:
    mqtt = _Reader(source, table, "mqtt.",
                   {"url", "port", "username", "shared_group", "keepalive", "password",
                    "session_expiry", "broker_save_every"})
    if "password" in table:
        raise ConfigError(source, "mqtt.password", "secrets are never read from the config "
                                                   "file; use ISLS_MQTT_URL or ISLS_MQTT_PASSWORD")
    mqtt_url = env.get("ISLS_MQTT_URL") or mqtt.string("url", "")
    mqtt_key = "ISLS_MQTT_URL" if env.get("ISLS_MQTT_URL") else "mqtt.url"
    settings = (parse_mqtt_url(mqtt_url, source if mqtt_key == "mqtt.url" else "environment",
                               mqtt_key)
                if mqtt_url else MqttSettings(port=mqtt.integer("port", DEFAULT_MQTT_PORT,
                                                                maximum=65535)))
    username = settings.username or (mqtt.string("username", "") or None)
    password = settings.password or env.get("ISLS_MQTT_PASSWORD") or None
    return replace(settings, username=username, password=password,
                   shared_group=mqtt.string("shared_group", ""),
                   keepalive=mqtt.integer("keepalive", 30, minimum=5, maximum=3600),
                   session_expiry=mqtt.integer("session_expiry", 3600, minimum=0,
                                               maximum=7 * 86400),
                   broker_save_every=mqtt.integer("broker_save_every", 1, minimum=1,
                                                  maximum=1_000_000))


def _parse_influx(table: Mapping[str, Any], source: str,
                  env: Mapping[str, str]) -> InfluxSettings:
    influx = _Reader(source, table, "influx.",
                     {"url", "port", "database", "username", "batch_lines", "flush_interval",
                      "max_retry_delay", "concurrency", "password", "token", "spool_max_mb"})
    for secret in ("password", "token"):
        if secret in table:
            raise ConfigError(source, f"influx.{secret}", "secrets are never read from the "
                              f"config file; set ISLS_INFLUX_{secret.upper()}")
    influx_url = env.get("ISLS_INFLUX_URL") or influx.string("url", "")
    external_influx = bool(influx_url)
    if influx_url:
        influx_url = _check_http_url(influx_url, "environment" if env.get("ISLS_INFLUX_URL")
                                     else source, "ISLS_INFLUX_URL" if env.get("ISLS_INFLUX_URL")
                                     else "influx.url")
    else:
        port = influx.integer("port", DEFAULT_INFLUX_PORT, maximum=65535)
        influx_url = f"http://127.0.0.1:{port}"
    database = env.get("ISLS_INFLUX_DB") or influx.string("database", "isls")
    if not database.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(source, "influx.database", f"{database!r}: use letters, digits, - and _")
    return InfluxSettings(
        url=influx_url, database=database, external=external_influx,
        username=env.get("ISLS_INFLUX_USER") or (influx.string("username", "") or None),
        password=env.get("ISLS_INFLUX_PASSWORD") or None,
        token=env.get("ISLS_INFLUX_TOKEN") or None,
        batch_lines=influx.integer("batch_lines", 5000, maximum=1_000_000),
        flush_interval=influx.number("flush_interval", 0.25),
        max_retry_delay=influx.number("max_retry_delay", 10.0),
        concurrency=influx.integer("concurrency", 2, maximum=32),
        spool_max_mb=influx.integer("spool_max_mb", 1024, minimum=1, maximum=1 << 20),
    )


def _parse_spacecraft(raw: Any, source: str, resolve: Callable[[str], Path]
                      ) -> tuple[SpacecraftSettings, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(source, "spacecraft", "list at least one [[spacecraft]] table")
    spacecraft: list[SpacecraftSettings] = []
    for index, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise ConfigError(source, f"spacecraft[{index}]", "must be a table")
        reader = _Reader(source, entry, f"spacecraft[{index}].",
                         {"name", "tmdb", "simulator", "shared_with"})
        name = reader.string("name", "")
        if not name:
            raise ConfigError(source, f"spacecraft[{index}].name", "is required")
        tmdb = resolve(reader.string("tmdb", ""))
        if not tmdb.is_file():
            raise ConfigError(source, f"spacecraft[{index}].tmdb", f"{tmdb} does not exist")
        simulator = reader.string("simulator", "") or None
        if simulator not in (None, "lander", "orbiter"):
            raise ConfigError(source, f"spacecraft[{index}].simulator",
                              f"{simulator!r}: expected lander or orbiter")
        shared = entry.get("shared_with", [])
        if not isinstance(shared, list) or not all(isinstance(a, str) and a for a in shared):
            raise ConfigError(source, f"spacecraft[{index}].shared_with",
                              "must be a list of agency codes, e.g. [\"cnsa\"]")
        spacecraft.append(SpacecraftSettings(name=name, tmdb=tmdb, simulator=simulator,
                                             shared_with=tuple(shared)))
    names = [s.name for s in spacecraft]
    if len(set(names)) != len(names):
        raise ConfigError(source, "spacecraft", f"names must be unique, got {names}")
    return tuple(spacecraft)


def _parse_ingest(table: Mapping[str, Any], source: str) -> IngestSettings:
    ingest = _Reader(source, table, "ingest.",
                     {"batch_packets", "batch_interval", "queue_messages", "publish_params"})
    return IngestSettings(
        batch_packets=ingest.integer("batch_packets", 2000, maximum=1_000_000),
        batch_interval=ingest.number("batch_interval", 0.1),
        queue_messages=ingest.integer("queue_messages", 2000, maximum=1_000_000),
        publish_params=ingest.boolean("publish_params", True),
    )


def _parse_simulator(table: Mapping[str, Any], source: str) -> SimulatorSettings:
    simulator = _Reader(source, table, "simulator.", {"publish_interval", "speed"})
    return SimulatorSettings(publish_interval=simulator.number("publish_interval", 0.1),
                             speed=simulator.number("speed", 1.0))


def _parse_grafana(table: Mapping[str, Any], source: str, influx: InfluxSettings,
                   resolve: Callable[[str], Path]) -> GrafanaSettings:
    grafana = _Reader(source, table, "grafana.",
                      {"url", "influx_url", "datasource_uid", "datasource_name",
                       "joint_folder", "agencies", "dashboards_dir"})
    agencies_raw = table.get("agencies", {"cnsa": "CNSA", "roscosmos": "Roscosmos"})
    if not isinstance(agencies_raw, dict) or not all(
            isinstance(v, str) and v for v in agencies_raw.values()):
        raise ConfigError(source, "grafana.agencies", "must be a table of agency = \"Folder\"")
    return GrafanaSettings(
        url=grafana.string("url", ""),
        dashboards_dir=resolve(grafana.string("dashboards_dir", ""))
        if grafana.string("dashboards_dir", "") else None,
        influx_url=grafana.string("influx_url", "") or influx.url,
        datasource_uid=grafana.string("datasource_uid", "isls-influxdb"),
        datasource_name=grafana.string("datasource_name", "ISLS InfluxDB"),
        joint_folder=grafana.string("joint_folder", "ISLS joint"),
        agencies=tuple(sorted((str(k), str(v)) for k, v in agencies_raw.items())),
    )


def _parse_alarms(table: Mapping[str, Any], source: str) -> AlarmSettings:
    alarms = _Reader(source, table, "alarms.", {"enabled", "stale_periods"})
    return AlarmSettings(enabled=alarms.boolean("enabled", True),
                         stale_periods=alarms.number("stale_periods", 5.0))


def _parse_archive(table: Mapping[str, Any], source: str) -> ArchiveSettings:
    archive = _Reader(source, table, "archive.", {"enabled", "silence", "max_segment_mb"})
    return ArchiveSettings(
        enabled=archive.boolean("enabled", True),
        silence=archive.number("silence", 60.0),
        max_segment_mb=archive.integer("max_segment_mb", 256, maximum=65536),
    )


def _parse_links(raw: Any, source: str, spacecraft: set[str]) -> list[LinkSettings]:
    if not isinstance(raw, list):
        raise ConfigError(source, "link", "must be a list of [[link]] tables")
    links: list[LinkSettings] = []
    for index, entry in enumerate(raw):
        prefix = f"link[{index}]."
        if not isinstance(entry, dict):
            raise ConfigError(source, f"link[{index}]", "must be a table")
        reader = _Reader(source, entry, prefix, {
            "name", "spacecraft", "device", "baud", "framing", "frame_length", "spacecraft_id",
            "fecf", "ocf", "virtual_channels"})
        name = reader.string("name", "")
        if not name or not name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(source, f"{prefix}name", f"{name!r}: use letters, digits, - and _")
        owner = reader.string("spacecraft", "")
        if owner not in spacecraft:
            raise ConfigError(source, f"{prefix}spacecraft",
                              f"{owner!r} is not a configured spacecraft "
                              f"({', '.join(sorted(spacecraft))})")
        device = reader.string("device", "")
        if not device:
            raise ConfigError(source, f"{prefix}device", "is required, e.g. /dev/ttyUSB0")
        framing = reader.string("framing", "tm")
        if framing not in ("tm", "cobs"):
            raise ConfigError(source, f"{prefix}framing", f"{framing!r}: expected tm or cobs")
        scid_raw = entry.get("spacecraft_id")
        scid = None if scid_raw is None else reader.integer("spacecraft_id", 0, minimum=0,
                                                            maximum=0x3FF)
        channels_raw = entry.get("virtual_channels", {"0": owner})
        if not isinstance(channels_raw, dict) or not channels_raw:
            raise ConfigError(source, f"{prefix}virtual_channels",
                              "must be a table of vcid = \"spacecraft\"")
        channels: list[tuple[int, str]] = []
        for key, target in channels_raw.items():
            if not str(key).isdigit() or not 0 <= int(key) <= 6:
                raise ConfigError(source, f"{prefix}virtual_channels.{key}",
                                  "virtual channel ids are 0..6 (7 carries idle frames)")
            if target not in spacecraft:
                raise ConfigError(source, f"{prefix}virtual_channels.{key}",
                                  f"{target!r} is not a configured spacecraft")
            channels.append((int(key), str(target)))
        links.append(LinkSettings(
            name=name, spacecraft=owner, device=device,
            baud=reader.integer("baud", 115200, minimum=300, maximum=20_000_000),
            framing=framing,
            frame_length=reader.integer("frame_length", 1115, minimum=16, maximum=2048),
            spacecraft_id=scid, fecf=reader.boolean("fecf", True),
            ocf=reader.boolean("ocf", False), virtual_channels=tuple(sorted(channels)),
        ))
    if len({link.name for link in links}) != len(links):
        raise ConfigError(source, "link", "link names must be unique")
    return links
