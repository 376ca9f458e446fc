"""The ground network as one configuration file: sites, the spacecraft each station
hears, and what flows where (docs/network.md).

ISLS spacecraft are heard by ground stations of two agencies, far from the control
centers; each agency's center stores every shared spacecraft's telemetry; partners
receive what their bilateral agreement covers. One TOML file says all of it, validated
once here (every error names file, key and reason), so that the brokers' bridges and
ACLs (:mod:`control_center.network.bridges`) are generated from the same facts and
cannot drift apart.

```toml
[[site]]                      # a ground station: its broker, the spacecraft it hears
name = "bear-lakes"
kind = "station"              # station | center | partner
agency = "roscosmos"
mqtt_port = 19831
hears = ["lander-1", "orbiter-1"]

[[site]]                      # a control center: broker, InfluxDB, ingest, dashboards
name = "moscow"
kind = "center"
agency = "roscosmos"
mqtt_port = 19841
influx_port = 19842

[[agreement]]                 # what a center forwards to a partner
center = "moscow"
partner = "partner-esa"
spacecraft = ["lander-1"]
data = ["raw", "param", "alarms"]

[[spacecraft]]
name = "lander-1"
mission = "ISLS-1"
tmdb = "tmdb/lander.yaml"     # the database of its kind, renamed to this spacecraft
simulator = "lander"
```
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from control_center.errors import ConfigError

SiteKind = Literal["station", "center", "partner"]
SITE_KINDS: tuple[str, ...] = ("station", "center", "partner")
# What a center may forward to a partner, and the topic of each (docs/contracts.md, "MQTT
# contract"): raw packets (QoS 1), decoded parameters (QoS 0, as the center publishes
# them), alarms (QoS 1).
DATA_KINDS: tuple[str, ...] = ("raw", "param", "alarms")
NAME = re.compile(r"^[a-z][a-z0-9-]*$")
SPACECRAFT_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclass(frozen=True, slots=True)
class Site:
    name: str
    kind: SiteKind
    agency: str
    mqtt_port: int
    influx_port: int | None = None  # centers and partners store what they receive
    hears: tuple[str, ...] = ()  # stations: the spacecraft whose downlink they receive
    # Stations: messages a bridge may hold for an unreachable center; past it Mosquitto
    # drops the NEWEST (measured, docs/network.md) and logs it; the backlog alarm rises at
    # ``queue_alarm`` of it.
    queue_limit: int = 100_000


@dataclass(frozen=True, slots=True)
class Agreement:
    """A center forwards ``data`` of ``spacecraft`` to ``partner``, and nothing else."""

    center: str
    partner: str
    spacecraft: tuple[str, ...]
    data: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NetworkSpacecraft:
    name: str
    mission: str
    tmdb: Path
    simulator: str | None = None


@dataclass(frozen=True, slots=True)
class Network:
    source: str
    sites: tuple[Site, ...]
    agreements: tuple[Agreement, ...]
    spacecraft: tuple[NetworkSpacecraft, ...]
    state_dir: Path
    queue_alarm: float = 0.8  # fraction of a bridge queue that raises the backlog alarm

    def site(self, name: str) -> Site:
        for site in self.sites:
            if site.name == name:
                return site
        raise KeyError(name)

    def of_kind(self, kind: SiteKind) -> tuple[Site, ...]:
        return tuple(s for s in self.sites if s.kind == kind)

    def stations_hearing(self, spacecraft: str) -> tuple[Site, ...]:
        return tuple(s for s in self.of_kind("station") if spacecraft in s.hears)

    def partner_share(self, partner: str) -> dict[str, tuple[str, ...]]:
        """Spacecraft -> the kinds of data ``partner`` receives of it (any center)."""
        share: dict[str, set[str]] = {}
        for agreement in self.agreements:
            if agreement.partner == partner:
                for spacecraft in agreement.spacecraft:
                    share.setdefault(spacecraft, set()).update(agreement.data)
        return {sc: tuple(k for k in DATA_KINDS if k in kinds) for sc, kinds in share.items()}


class _Table:
    """Typed access to one table of the network file; errors name file and key."""

    def __init__(self, source: str, table: Any, prefix: str, allowed: set[str]) -> None:
        if not isinstance(table, dict):
            raise ConfigError(source, prefix.rstrip("."), "must be a table")
        self.source, self.table, self.prefix = source, table, prefix
        for key in table:
            if key not in allowed:
                raise ConfigError(source, f"{prefix}{key}",
                                  f"unknown key (expected one of {', '.join(sorted(allowed))})")

    def fail(self, key: str, reason: str) -> ConfigError:
        return ConfigError(self.source, f"{self.prefix}{key}", reason)

    def name(self, key: str, pattern: re.Pattern[str] = NAME) -> str:
        value = self.table.get(key)
        if not isinstance(value, str) or not pattern.match(value):
            raise self.fail(key, f"must be a lower-case name ({pattern.pattern}), got {value!r}")
        return value

    def port(self, key: str, *, required: bool) -> int | None:
        value = self.table.get(key)
        if value is None and not required:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 1024 <= value <= 65535:
            raise self.fail(key, f"must be a port number 1024-65535, got {value!r}")
        return value

    def names(self, key: str, pattern: re.Pattern[str] = SPACECRAFT_NAME) -> tuple[str, ...]:
        value = self.table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and pattern.match(v)
                                                  for v in value):
            raise self.fail(key, f"must be a list of names, got {value!r}")
        if len(set(value)) != len(value):
            raise self.fail(key, "names a spacecraft twice")
        return tuple(value)


def load_network(path: Path) -> Network:
    """Read and validate a network file; raise :class:`ConfigError` on the first problem."""
    source = str(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(source, "(file)", f"cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "(file)", f"not valid TOML: {exc}") from None
    top = _Table(source, document, "", {"network", "site", "agreement", "spacecraft"})
    base = path.resolve().parent
    settings = _Table(source, document.get("network", {}), "network.",
                      {"state_dir", "queue_alarm"})
    state_dir = Path(str(settings.table.get("state_dir", "../state/network"))).expanduser()
    queue_alarm = settings.table.get("queue_alarm", 0.8)
    if isinstance(queue_alarm, bool) or not isinstance(queue_alarm, int | float) \
            or not 0 < queue_alarm < 1:
        raise settings.fail("queue_alarm", f"must be a fraction between 0 and 1, got "
                                           f"{queue_alarm!r}")
    spacecraft = _spacecraft(source, top.table.get("spacecraft", []), base)
    known = {s.name for s in spacecraft}
    sites = _sites(source, top.table.get("site", []), known)
    agreements = _agreements(source, top.table.get("agreement", []), sites, known)
    return Network(source=source, sites=sites, agreements=agreements, spacecraft=spacecraft,
                   state_dir=state_dir if state_dir.is_absolute() else (base / state_dir),
                   queue_alarm=float(queue_alarm))


def _list(source: str, raw: Any, key: str) -> list[Any]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(source, key, f"give at least one [[{key}]]")
    return raw


def _spacecraft(source: str, raw: Any, base: Path) -> tuple[NetworkSpacecraft, ...]:
    out: list[NetworkSpacecraft] = []
    for index, item in enumerate(_list(source, raw, "spacecraft")):
        table = _Table(source, item, f"spacecraft[{index}].",
                       {"name", "mission", "tmdb", "simulator"})
        name = table.name("name", SPACECRAFT_NAME)
        if any(s.name == name for s in out):
            raise table.fail("name", f"{name!r} is already a spacecraft of this network")
        tmdb = Path(str(table.table.get("tmdb", "")))
        tmdb = tmdb if tmdb.is_absolute() else base / tmdb
        if not tmdb.is_file():
            raise table.fail("tmdb", f"{tmdb} does not exist")
        simulator = table.table.get("simulator")
        if simulator is not None and simulator not in ("lander", "orbiter"):
            raise table.fail("simulator", f"must be lander or orbiter, got {simulator!r}")
        mission = table.table.get("mission", "")
        if not isinstance(mission, str):
            raise table.fail("mission", f"must be text, got {mission!r}")
        out.append(NetworkSpacecraft(name=name, mission=mission, tmdb=tmdb, simulator=simulator))
    return tuple(out)


def _sites(source: str, raw: Any, spacecraft: set[str]) -> tuple[Site, ...]:
    sites: list[Site] = []
    ports: dict[int, str] = {}
    for index, item in enumerate(_list(source, raw, "site")):
        table = _Table(source, item, f"site[{index}].",
                       {"name", "kind", "agency", "mqtt_port", "influx_port", "hears",
                        "queue_limit"})
        name = table.name("name")
        if any(s.name == name for s in sites):
            raise table.fail("name", f"{name!r} is already a site of this network")
        kind = table.table.get("kind")
        if kind not in SITE_KINDS:
            raise table.fail("kind", f"must be one of {', '.join(SITE_KINDS)}, got {kind!r}")
        agency = table.name("agency")
        mqtt_port = table.port("mqtt_port", required=True)
        influx_port = table.port("influx_port", required=kind != "station")
        if kind == "station" and influx_port is not None:
            raise table.fail("influx_port", "a station stores nothing: its broker holds the "
                                            "backlog for the centers")
        for key, port in (("mqtt_port", mqtt_port), ("influx_port", influx_port)):
            if port is not None and port in ports:
                raise table.fail(key, f"port {port} is also {ports[port]}'s")
            if port is not None:
                ports[port] = f"{name}.{key}"
        hears = table.names("hears")
        if kind != "station" and hears:
            raise table.fail("hears", "only a station hears spacecraft")
        if kind == "station" and not hears:
            raise table.fail("hears", "a station must hear at least one spacecraft")
        unknown = [h for h in hears if h not in spacecraft]
        if unknown:
            raise table.fail("hears", f"{', '.join(unknown)}: not a [[spacecraft]] of this "
                                      f"network")
        limit = table.table.get("queue_limit", 100_000)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 100:
            raise table.fail("queue_limit", f"must be an integer >= 100, got {limit!r}")
        assert mqtt_port is not None
        sites.append(Site(name=name, kind=kind, agency=agency, mqtt_port=mqtt_port,
                          influx_port=influx_port, hears=hears, queue_limit=limit))
    if not any(s.kind == "center" for s in sites):
        raise ConfigError(source, "site", "a network needs at least one center")
    return tuple(sites)


def _agreements(source: str, raw: Any, sites: tuple[Site, ...], spacecraft: set[str]
                ) -> tuple[Agreement, ...]:
    by_name: Mapping[str, Site] = {s.name: s for s in sites}
    out: list[Agreement] = []
    for index, item in enumerate(raw if isinstance(raw, list) else [raw]):
        table = _Table(source, item, f"agreement[{index}].",
                       {"center", "partner", "spacecraft", "data"})
        center, partner = table.name("center"), table.name("partner")
        if center not in by_name or by_name[center].kind != "center":
            raise table.fail("center", f"{center!r} is not a center of this network")
        if partner not in by_name or by_name[partner].kind != "partner":
            raise table.fail("partner", f"{partner!r} is not a partner of this network")
        names = table.names("spacecraft")
        unknown = [n for n in names if n not in spacecraft]
        if not names or unknown:
            what = f": unknown {', '.join(unknown)}" if unknown else ""
            raise table.fail("spacecraft", f"must name spacecraft of this network{what}")
        data = table.table.get("data", ["param"])
        if not isinstance(data, list) or not data or any(d not in DATA_KINDS for d in data):
            raise table.fail("data", f"must list some of {', '.join(DATA_KINDS)}, got {data!r}")
        out.append(Agreement(center=center, partner=partner, spacecraft=names,
                             data=tuple(k for k in DATA_KINDS if k in data)))
    return tuple(out)
