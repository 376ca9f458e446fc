"""Grafana dashboards generated from the telemetry database (``isls dashboards build``).

The telemetry databases (``config/tmdb/*.yaml``) are the only source: every unit,
limit, enum state and description on a panel comes from them, so a TMDB change and a
rebuild is all a dashboard ever needs. The models are built with
grafana-foundation-sdk's builders; the SDK has no InfluxDB query type, so
:class:`InfluxQLQuery` is a small ``Dataquery`` for raw InfluxQL targets.

Dashboards (uid, folder):

- ``isls-overview`` (joint folder): a row per spacecraft: link state (packets in the
  last 10 s), last packet age, packet rate and, per packet type, its limit-checked
  parameters' last values coloured by their limits; room for alarms and events.
- ``isls-links`` (joint folder): serial link statistics from measurement ``link``.
- ``isls-ground-health`` (joint folder): the ground system itself, a panel per entry of
  :data:`HEALTH_FIELDS` (measurements ``ingest`` and ``link``) and stats of what was
  lost over the time range; its one variable is ``ingest`` (All by default).
- ``isls-lander``, ``isls-orbiter`` (agency folder of the TMDB): mission panels.
- ``isls-<spacecraft>-all`` (agency folder): every parameter of every packet.

Template variables on every telemetry dashboard: ``spacecraft``, ``source`` (live, replay,
import; default live) and ``pass`` (default All = ``.*``). Every telemetry query says
``WHERE "spacecraft" =~ /^$spacecraft$/ AND "source" = '$source' AND "pass" =~
/^$pass$/ AND $timeFilter``. Live and imported points have no ``pass`` tag; InfluxQL
compares a missing tag as the empty string, which ``/^.*$/`` matches, so the pass
filter is a no-op until an operator picks one pass (with source = replay). The
``link`` measurement has neither ``source`` nor ``pass`` tags; its queries filter on
spacecraft and time only.

Files (:func:`write_dashboards`)::

    <out>/<folder slug>/<uid>.json            one per dashboard, e.g. cnsa/isls-orbiter.json
    <out>/provisioning/datasources/isls.yaml  the InfluxDB data source
    <out>/provisioning/dashboards/isls.yaml   a file provider per folder

Mount them into Grafana (e.g. the grafana/grafana container)::

    <out>/provisioning/datasources -> /etc/grafana/provisioning/datasources
    <out>/provisioning/dashboards  -> /etc/grafana/provisioning/dashboards
    <out>                          -> /var/lib/grafana/dashboards

The dashboard providers point at ``/var/lib/grafana/dashboards/<folder slug>``
(``dashboards_path`` changes that). Credentials never appear in the files: with
``influx_auth="basic"`` the data source reads ``$ISLS_INFLUX_USER`` and
``$ISLS_INFLUX_PASSWORD`` from Grafana's environment, with ``"token"`` it sends
``Authorization: Token $ISLS_INFLUX_TOKEN`` (InfluxDB 2.x/3.x v1 API).

Live dashboards refresh every second; Grafana's default ``min_refresh_interval`` is
5 s, so set ``GF_DASHBOARDS_MIN_REFRESH_INTERVAL=1s`` for them to do so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import stat, statetimeline, table, timeseries
from grafana_foundation_sdk.builders.common import (
    GraphThresholdsStyleConfig,
    ReduceDataOptions,
    VizLegendOptions,
)
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common, units
from grafana_foundation_sdk.models import dashboard as dm

from control_center.config import Config
from control_center.telemetry.tmdb import Limits, PacketDef, Parameter, Tmdb

SCHEMA_VERSION = 39  # Grafana 10.4 / 11
LIVE_REFRESH = "1s"
ALL_PARAMETERS_REFRESH = "10s"
TIME_FROM, TIME_TO = "now-15m", "now"
REFRESH_INTERVALS = ["1s", "5s", "10s", "30s", "1m", "5m"]
GRID_WIDTH = 24
SOURCES = ("live", "replay", "import")
ALL_VALUE = ".*"
DASHBOARDS_PATH = "/var/lib/grafana/dashboards"
PROVISIONING = "provisioning"
InfluxAuth = Literal["none", "basic", "token"]

# TMDB unit -> Grafana unit id, from the SDK's catalogue of Grafana's units. Grafana has
# no km/s; a unit without an id is shown with Grafana's custom "suffix:<text>" unit.
UNITS: dict[str, str] = {
    "": units.NoUnit, "m": units.Meter, "km": units.Kilometer,
    "m/s": units.MetersPerSecond, "km/s": "suffix:km/s", "%": units.Percent,
    "V": units.Volt, "A": units.Ampere, "W": units.Watt, "degC": units.Celsius,
    "deg": units.Degrees, "deg/s": units.DegreesPerSecond, "dBm": units.DecibelMilliWatt,
    "bit/s": units.BitsPerSecondSI, "kg": units.Kilogram, "s": units.Seconds,
}
# Colours of enum states in order of their values (never yellow or red: those mean
# limits), and of booleans.
STATE_COLOURS = ("blue", "green", "purple", "light-blue", "dark-green", "dark-purple",
                 "super-light-blue", "light-green", "light-purple", "dark-blue")
BOOLEAN_TEXT = {"true": ("TRUE", "green"), "false": ("FALSE", "blue")}


def grafana_unit(unit: str) -> str:
    """The Grafana unit id of a TMDB unit (``suffix:<unit>`` when Grafana has none)."""
    return UNITS.get(unit, f"suffix:{unit}")


def threshold_steps(limits: Limits) -> list[dm.Threshold]:
    """Absolute threshold steps for yellow and red limits, base green.

    Grafana colours a value with the last step whose value it reaches, so the low
    limits open the scale: below red_low red, from red_low yellow (if there is a
    yellow low), from yellow_low green, from yellow_high yellow, from red_high red. A
    value exactly on a limit takes the colour above it (the TMDB's checks are strict).
    """
    if limits.red_low is not None:
        base = "red"
    elif limits.yellow_low is not None:
        base = "yellow"
    else:
        base = "green"
    steps = [dm.Threshold(value=None, color=base)]
    if limits.red_low is not None:
        steps.append(dm.Threshold(value=limits.red_low,
                                  color="yellow" if limits.yellow_low is not None else "green"))
    if limits.yellow_low is not None:
        steps.append(dm.Threshold(value=limits.yellow_low, color="green"))
    if limits.yellow_high is not None:
        steps.append(dm.Threshold(value=limits.yellow_high, color="yellow"))
    if limits.red_high is not None:
        steps.append(dm.Threshold(value=limits.red_high, color="red"))
    return steps


def value_mappings(parameter: Parameter) -> list[dm.ValueMapping]:
    """Enum states (value -> state name) and booleans (true/false) for display."""
    if parameter.type == "enum":
        return [dm.ValueMap(options={
            str(value): dm.ValueMappingResult(text=name,
                                              color=STATE_COLOURS[index % len(STATE_COLOURS)],
                                              index=index)
            for index, (value, name) in enumerate(sorted(parameter.states.items()))})]
    if parameter.type == "boolean":
        return [dm.SpecialValueMap(options=dm.DashboardSpecialValueMapOptions(
            match=dm.SpecialValueMatch(match),
            result=dm.ValueMappingResult(text=label, color=colour, index=index)))
            for index, (match, (label, colour)) in enumerate(BOOLEAN_TEXT.items())]
    return []


def _is_state(parameter: Parameter) -> bool:
    return parameter.type in ("enum", "boolean")


# --------------------------------------------------------------------------- queries


class InfluxQLQuery(cogvariants.Dataquery):
    """A raw InfluxQL target of Grafana's InfluxDB data source (InfluxQL mode)."""

    def __init__(self, ref_id: str = "A", query: str = "",
                 result_format: str = "time_series", alias: str | None = None,
                 datasource: dm.DataSourceRef | None = None) -> None:
        self.ref_id = ref_id
        self.query = query
        self.result_format = result_format
        self.alias = alias
        self.datasource = datasource

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {"refId": self.ref_id, "query": self.query,
                                      "rawQuery": True, "resultFormat": self.result_format}
        if self.alias is not None:
            payload["alias"] = self.alias
        if self.datasource is not None:
            payload["datasource"] = self.datasource
        return payload

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        source = data.get("datasource")
        return cls(ref_id=str(data.get("refId", "A")), query=str(data.get("query", "")),
                   result_format=str(data.get("resultFormat", "time_series")),
                   alias=data.get("alias"),
                   datasource=dm.DataSourceRef.from_json(source) if source else None)


class InfluxQL(cogbuilder.Builder[cogvariants.Dataquery]):
    def __init__(self, query: InfluxQLQuery) -> None:
        self._query = query

    def build(self) -> cogvariants.Dataquery:
        return self._query


# Dashboard.from_json (and Panel.from_json) then decode our targets as InfluxQLQuery.
cogruntime.register_dataquery_variant(cogruntime.DataqueryConfig(
    identifier="influxdb", from_json_hook=InfluxQLQuery.from_json))


def telemetry_filter(spacecraft: str | None = None) -> str:
    """The WHERE clause of every telemetry query (``spacecraft``: also pin that name)."""
    pinned = f""""spacecraft" = '{spacecraft}' AND """ if spacecraft else ""
    return (f"""WHERE {pinned}"spacecraft" =~ /^$spacecraft$/ AND "source" = '$source' """
            """AND "pass" =~ /^$pass$/ AND $timeFilter""")


LINK_FILTER = """WHERE "spacecraft" =~ /^$spacecraft$/ AND $timeFilter"""


def _quote(name: str) -> str:
    return '"' + name.replace('"', '\\"') + '"'


def series_query(packet: PacketDef, parameters: Sequence[Parameter]) -> str:
    """Means of numbers and last values of states, per ``$__interval``."""
    columns = ", ".join(
        f"{'last' if _is_state(p) else 'mean'}({_quote(p.name)}) AS {_quote(p.name)}"
        for p in parameters)
    return (f"SELECT {columns} FROM {_quote(packet.name)} {telemetry_filter()} "
            "GROUP BY time($__interval) fill(null)")


# --------------------------------------------------------------------------- layout


class _Layout:
    """Places panels left to right in rows of 24 columns; ids in order of creation."""

    def __init__(self) -> None:
        self.x = self.y = self.row_height = 0
        self.next_id = 1

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def place(self, w: int, h: int) -> dm.GridPos:
        if self.x + w > GRID_WIDTH:
            self.break_line()
        position = dm.GridPos(h=h, w=w, x=self.x, y=self.y)
        self.x += w
        self.row_height = max(self.row_height, h)
        return position

    def break_line(self) -> None:
        self.y += self.row_height
        self.x = self.row_height = 0

    def row(self) -> dm.GridPos:
        self.break_line()
        position = dm.GridPos(h=1, w=GRID_WIDTH, x=0, y=self.y)
        self.y += 1
        return position


class _Board:
    """One dashboard under construction: a builder, its layout and its data source."""

    def __init__(self, uid: str, title: str, datasource: dm.DataSourceRef,
                 variables: list[cogbuilder.Builder[dm.VariableModel]], refresh: str,
                 tags: list[str], description: str,
                 annotation_filter: str | None = None) -> None:
        self.uid, self.title, self.datasource = uid, title, datasource
        # Events and alarm changes of the spacecraft selected, unless told otherwise.
        self.annotation_filter = annotation_filter or ALARM_FILTER
        self.layout = _Layout()
        self.builder = (db.Dashboard(title).uid(uid).description(description).tags(tags)
                        .editable().time(TIME_FROM, TIME_TO).refresh(refresh)
                        .timezone("utc").tooltip(dm.DashboardCursorSync.CROSSHAIR)
                        .timepicker(db.TimePicker().refresh_intervals(REFRESH_INTERVALS))
                        .variables(variables))

    def row(self, title: str) -> None:
        self.builder.with_row(db.Row(title).id(self.layout.new_id())
                              .grid_pos(self.layout.row()))

    def break_line(self) -> None:
        self.layout.break_line()

    def target(self, query: str, ref_id: str = "A", *, alias: str | None = "$col",
               result_format: str = "time_series") -> InfluxQL:
        return InfluxQL(InfluxQLQuery(ref_id=ref_id, query=query, alias=alias,
                                      result_format=result_format,
                                      datasource=self.datasource))

    def add(self, panel: Any, w: int, h: int, *, fields: Sequence[Parameter] = (),
            targets: Sequence[InfluxQL] = ()) -> dm.Panel:
        """Finish ``panel`` (a panel builder), configure its fields from the TMDB."""
        panel.id(self.layout.new_id()).datasource(self.datasource).grid_pos(
            self.layout.place(w, h))
        for target in targets:
            panel.with_target(target)
        built: dm.Panel = panel.build()
        _configure_fields(built, fields)
        self.builder.with_panel(_Built(built))
        return built

    def build(self) -> dict[str, Any]:
        model: dict[str, Any] = json.loads(json.dumps(self.builder.build(), cls=JSONEncoder))
        model["schemaVersion"] = SCHEMA_VERSION
        # Events and alarm changes as annotations on every time axis.
        annotations = model.setdefault("annotations", {}).setdefault("list", [])
        for name, measurement, colour in (("Events", "events", "#5794F2"),
                                          ("Alarms", "alarms", "#F2495C")):
            annotations.append({
                "name": name, "enable": True, "hide": False, "iconColor": colour,
                "datasource": json.loads(json.dumps(self.datasource, cls=JSONEncoder)),
                "query": f'SELECT "message" FROM "{measurement}" {self.annotation_filter}',
                "textColumn": "message",
            })
        return model


class _Built(cogbuilder.Builder[dm.Panel]):
    def __init__(self, panel: dm.Panel) -> None:
        self._panel = panel

    def build(self) -> dm.Panel:
        return self._panel


def _field_properties(parameter: Parameter, *,
                      threshold_lines: bool) -> list[dm.DynamicConfigValue]:
    properties = [
        dm.DynamicConfigValue("unit", grafana_unit(parameter.unit)),
        dm.DynamicConfigValue("thresholds", dm.ThresholdsConfig(
            mode=dm.ThresholdsMode.ABSOLUTE, steps=threshold_steps(parameter.limits))),
        dm.DynamicConfigValue("mappings", value_mappings(parameter)),
    ]
    if parameter.description:
        properties.append(dm.DynamicConfigValue("description", parameter.description))
    if threshold_lines and parameter.limits.defined:
        properties.append(dm.DynamicConfigValue("custom.thresholdsStyle",
                                                {"mode": "dashed"}))
    return properties


def _configure_fields(panel: dm.Panel, parameters: Sequence[Parameter]) -> None:
    """Unit, thresholds (from the limits), value mappings and description of each field.

    One parameter: the panel's defaults. Several: an override per field (by name, the
    targets alias ``$col`` so the field is named after the parameter) and the common
    unit, if any, in the defaults.
    """
    defaults = panel.field_config.defaults
    if defaults.thresholds is None:  # else Grafana's default: red from 80
        defaults.thresholds = dm.ThresholdsConfig(
            mode=dm.ThresholdsMode.ABSOLUTE, steps=[dm.Threshold(value=None, color="green")])
    if not parameters:
        return
    lines = panel.type_val == "timeseries"
    if len(parameters) == 1:
        (parameter,) = parameters
        defaults.unit = grafana_unit(parameter.unit)
        defaults.thresholds.steps = threshold_steps(parameter.limits)
        defaults.mappings = value_mappings(parameter)
        if parameter.description:
            defaults.description = parameter.description
        if lines and parameter.limits.defined:
            custom = defaults.custom
            if isinstance(custom, dict):
                custom["thresholdsStyle"] = {"mode": "dashed"}
            elif custom is not None and hasattr(custom, "thresholds_style"):
                custom.thresholds_style = common.GraphThresholdsStyleConfig(
                    mode=common.GraphTresholdsStyleMode.DASHED)
        if parameter.description and not panel.description:
            panel.description = parameter.description
        return
    units = {p.unit for p in parameters}
    if len(units) == 1:
        defaults.unit = grafana_unit(units.pop())
    for parameter in parameters:
        panel.field_config.overrides.append(dm.DashboardFieldConfigSourceOverrides(
            matcher=dm.MatcherConfig(id_val="byName", options=parameter.name),
            properties=_field_properties(parameter, threshold_lines=lines)))
    if not panel.description:
        panel.description = "\n".join(f"{p.name}: {p.description}" for p in parameters
                                      if p.description)


# --------------------------------------------------------------------------- variables


def _option(value: str, text_value: str | None = None, *,
            selected: bool = True) -> dm.VariableOption:
    return dm.VariableOption(selected=selected, text=text_value or value, value=value)


def _variables(datasource: dm.DataSourceRef, *, spacecraft: str | None,
               spacecraft_from: str | None,
               all_spacecraft: Sequence[str] = ()) -> list[cogbuilder.Builder[dm.VariableModel]]:
    """``spacecraft``, ``source`` and ``pass``.

    ``spacecraft`` is a query of the spacecraft tag of ``spacecraft_from`` (a
    measurement) preset to ``spacecraft``, or, with ``all_spacecraft``, a custom
    multi-value list preset to All.
    """
    variables: list[cogbuilder.Builder[dm.VariableModel]] = []
    if all_spacecraft:
        variables.append(
            db.CustomVariable("spacecraft").label("Spacecraft").values(",".join(all_spacecraft))
            .multi(True).include_all(True).all_value(ALL_VALUE)
            .current(_option("$__all", "All"))
            .options([_option("$__all", "All"),
                      *(_option(s, selected=False) for s in all_spacecraft)]))
    else:
        assert spacecraft_from is not None
        preset = spacecraft or ""
        variables.append(
            db.QueryVariable("spacecraft").label("Spacecraft").datasource(datasource)
            .query(f'SHOW TAG VALUES FROM {_quote(spacecraft_from)} WITH KEY = "spacecraft"')
            .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD).sort(dm.VariableSort.ALPHABETICAL_ASC)
            .current(_option(preset)).options([]))
    variables.append(
        db.CustomVariable("source").label("Source").values(",".join(SOURCES))
        .current(_option("live"))
        .options([_option(s, selected=s == "live") for s in SOURCES]))
    variables.append(
        db.QueryVariable("pass").label("Pass (replays)").datasource(datasource)
        .query('SHOW TAG VALUES WITH KEY = "pass"')
        .description("Recorded pass of a replay; All for live and imported data")
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_DESC)
        .include_all(True).all_value(ALL_VALUE).current(_option("$__all", "All"))
        .options([]))
    return variables


# --------------------------------------------------------------------------- panels


def _timeseries(title: str) -> timeseries.Panel:
    return (timeseries.Panel().title(title).span_nulls(True).line_width(1).fill_opacity(5)
            .show_points(common.VisibilityMode.NEVER)
            .legend(VizLegendOptions().show_legend(True)
                    .display_mode(common.LegendDisplayMode.LIST)
                    .placement(common.LegendPlacement.BOTTOM)))


def _timeline(title: str) -> statetimeline.Panel:
    return (statetimeline.Panel().title(title).merge_values(True)
            .show_value(common.VisibilityMode.AUTO).fill_opacity(80).line_width(0)
            .legend(VizLegendOptions().show_legend(False)
                    .display_mode(common.LegendDisplayMode.LIST)
                    .placement(common.LegendPlacement.BOTTOM)))


def _parameter_panel(board: _Board, packet: PacketDef, parameters: Sequence[Parameter],
                     title: str, w: int, h: int) -> dm.Panel:
    """A time series of numbers or a state timeline of enums and booleans."""
    builder: Any = (_timeline(title) if all(_is_state(p) for p in parameters)
                    else _timeseries(title))
    return board.add(builder, w, h, fields=parameters,
                     targets=[board.target(series_query(packet, parameters))])


def _limit_stat(board: _Board, packet: PacketDef, spacecraft: str, w: int, h: int) -> None:
    """The last value of every limit-checked parameter, coloured by its limits."""
    checked = [p for p in packet.fields if p.limits.defined]
    columns = ", ".join(f"last({_quote(p.name)}) AS {_quote(p.name)}" for p in checked)
    query = f"SELECT {columns} FROM {_quote(packet.name)} {telemetry_filter(spacecraft)}"
    panel = (stat.Panel().title(f"{packet.name} limits")
             .description(packet.description or f"Limit-checked parameters of {packet.name}")
             .color_mode(common.BigValueColorMode.BACKGROUND)
             .graph_mode(common.BigValueGraphMode.NONE)
             .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
             .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False)))
    board.add(panel, w, h, fields=checked, targets=[board.target(query)])


def _fastest(tmdb: Tmdb) -> PacketDef:
    return min(tmdb.packets, key=lambda p: p.period if p.period is not None else 1e9)


def _count_field(packet: PacketDef) -> Parameter:
    """A field every point of the packet carries: integers are never left out."""
    for parameter in packet.parameters:
        if not parameter.is_float_value:
            return parameter
    return packet.parameters[0]


# --------------------------------------------------------------------------- dashboards


@dataclass(frozen=True, slots=True)
class GeneratedDashboard:
    uid: str  # stable, e.g. "isls-overview", "isls-lander", "isls-lander-all"
    title: str
    folder: str  # folder title: config.grafana.folder_of(agency) or the joint folder
    folder_uid: str  # stable, derived from the folder title: "isls-folder-cnsa"
    model: dict[str, Any]  # the dashboard JSON model ("dashboard" in Grafana's HTTP API)


@dataclass(frozen=True, slots=True)
class DashboardSet:
    datasource: dict[str, Any]  # Grafana data source JSON, no secrets
    dashboards: tuple[GeneratedDashboard, ...]


def slug(text_value: str) -> str:
    """Lower-case letters, digits and dashes: folder directories and uids."""
    return re.sub(r"[^a-z0-9]+", "-", text_value.lower()).strip("-") or "general"


def folder_uid(title: str) -> str:
    return f"isls-folder-{slug(title)}"[:40]


def _title(spacecraft: str) -> str:
    return spacecraft.replace("_", " ").capitalize()


def _overview(config: Config, tmdbs: Sequence[Tmdb], ref: dm.DataSourceRef) -> _Board:
    names = [t.spacecraft for t in tmdbs]
    board = _Board("isls-overview", "ISLS overview", ref,
                   _variables(ref, spacecraft=None, spacecraft_from=None, all_spacecraft=names),
                   LIVE_REFRESH, ["isls", "overview"],
                   "Every spacecraft on one screen: link, packet rate, worst limit state "
                   "per subsystem.")
    _alarm_panels(board)
    for tmdb in tmdbs:
        sc = tmdb.spacecraft
        board.row(f"{_title(sc)} — {tmdb.mission or 'ISLS'} "
                  f"({config.grafana.folder_of(tmdb.agency)})")
        fastest = _fastest(tmdb)
        field = _quote(_count_field(fastest).name)
        where = telemetry_filter(sc)
        expected = 10.0 / fastest.period if fastest.period else 1.0
        link = (stat.Panel().title(f"{_title(sc)} link")
                .description(f"Packets of {fastest.name} in the last 10 s "
                             f"({expected:g} expected); 0: no signal")
                .time_from("10s").color_mode(common.BigValueColorMode.BACKGROUND)
                .graph_mode(common.BigValueGraphMode.NONE).unit("none").no_value("0")
                .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))
                .mappings([dm.ValueMap(options={"0": dm.ValueMappingResult(
                    text="NO SIGNAL", color="red", index=0)})])
                .thresholds(db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps([
                    dm.Threshold(value=None, color="red"), dm.Threshold(value=1, color="yellow"),
                    dm.Threshold(value=max(1.0, round(expected * 0.8)), color="green")])))
        board.add(link, 4, 5, targets=[board.target(
            f"SELECT count({field}) AS \"packets\" FROM {_quote(fastest.name)} {where}")])
        age = (stat.Panel().title("Last packet").unit(units.DateTimeFromNow)
               .description(f"Onboard time of the last {fastest.name} packet")
               .graph_mode(common.BigValueGraphMode.NONE)
               .color_mode(common.BigValueColorMode.NONE)
               .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False)
                               .fields("/^Time$/")))
        board.add(age, 4, 5, targets=[board.target(
            f"SELECT last({field}) AS \"last\" FROM {_quote(fastest.name)} {where}")])
        rate = _timeseries("Packet rate").unit(units.PacketsPerSecond).interval("1s")
        rate.description("Packets per second by packet type")
        board.add(rate, 16, 5, targets=[
            board.target(f"SELECT count({_quote(_count_field(p).name)}) * 1000 / "
                         f"$__interval_ms AS {_quote(p.name)} FROM {_quote(p.name)} {where} "
                         "GROUP BY time($__interval) fill(0)", chr(ord("A") + i))
            for i, p in enumerate(tmdb.packets)])
        board.break_line()
        checked = [p for p in tmdb.packets if any(q.limits.defined for q in p.fields)]
        for packet in checked:
            _limit_stat(board, packet, sc, max(6, GRID_WIDTH // len(checked)), 5)
    return board


ALARM_FILTER = 'WHERE "spacecraft" =~ /^$spacecraft$/ AND $timeFilter'


def _alarm_panels(board: _Board) -> None:
    """Alarm state per parameter, the latest alarm changes and the latest events.

    Alarms and events are live-only measurements (no source or pass tag), written by
    the ingest's monitoring stage: see README, "Limits, alarms and events"."""
    states = {"0": ("NORMAL", "green"), "1": ("YELLOW", "yellow"), "2": ("RED", "red")}
    timeline = (_timeline("Alarm state by parameter")
                .description("Worst alarm severity of each monitored parameter")
                .mappings([dm.ValueMap(options={
                    value: dm.ValueMappingResult(text=label, color=colour, index=i)
                    for i, (value, (label, colour)) in enumerate(states.items())})]))
    board.add(timeline, GRID_WIDTH, 6, targets=[board.target(
        f'SELECT last("state") AS "state" FROM "alarms" {ALARM_FILTER} '
        'GROUP BY time($__interval), "subject" fill(previous)', alias="$tag_subject")])
    latest = (table.Panel().title("Latest alarm changes")
              .description("Newest first: raised, escalated, returned, acknowledged, cleared"))
    board.add(latest, GRID_WIDTH // 2, 7, targets=[board.target(
        'SELECT "alarm_id", "transition", "severity", "message", "acknowledged" FROM '
        f'"alarms" {ALARM_FILTER} ORDER BY time DESC LIMIT 50', alias=None,
        result_format="table")])
    events = (table.Panel().title("Latest events")
              .description("Mode changes, alarm changes, operator actions, contact"))
    board.add(events, GRID_WIDTH // 2, 7, targets=[board.target(
        f'SELECT "subject", "message" FROM "events" {ALARM_FILTER} '
        "ORDER BY time DESC LIMIT 50", alias=None, result_format="table")])


def _links(tmdbs: Sequence[Tmdb], ref: dm.DataSourceRef) -> _Board:
    board = _Board("isls-links", "ISLS serial links", ref,
                   _variables(ref, spacecraft=None, spacecraft_from=None,
                              all_spacecraft=[t.spacecraft for t in tmdbs]),
                   LIVE_REFRESH, ["isls", "links"],
                   "Serial links (measurement link): frames, gaps, sync losses, bit rate, "
                   "lock. The link measurement has no source or pass tag.")
    by_link = f'{LINK_FILTER} GROUP BY time($__interval), "link" fill(null)'
    alias = "$tag_link $col"

    def rates(*fields: str) -> str:
        columns = ", ".join(f"non_negative_derivative(last({_quote(f)}), 1s) AS {_quote(f)}"
                            for f in fields)
        return f'SELECT {columns} FROM "link" {by_link}'

    locked = _timeline("Locked").mappings(_boolean_mappings())
    board.add(locked, 12, 6, targets=[board.target(
        f'SELECT last("locked") AS "locked", last("connected") AS "connected" FROM "link" '
        f"{by_link}", alias=alias)])
    age = _timeseries("Last frame age").unit("s")
    board.add(age, 12, 6, targets=[board.target(
        f'SELECT max("last_frame_age") AS "age" FROM "link" {by_link}', alias=alias)])
    for title, fields, unit in (
            ("Frames good / bad per second", ("frames_good", "frames_bad"), "suffix:frames/s"),
            ("Gaps and sync losses per second", ("frames_gap", "sync_losses"), "suffix:/s"),
            ("Packets per second", ("packets", "packets_dropped"), "suffix:packets/s")):
        board.add(_timeseries(title).unit(unit), 12, 7,
                  targets=[board.target(rates(*fields), alias=alias)])
    board.add(_timeseries("Bit rate").unit("bps"), 12, 7, targets=[board.target(
        f'SELECT mean("bit_rate") AS "bit_rate" FROM "link" {by_link}', alias=alias)])
    totals = (table.Panel().title("Totals per link")
              .description("Counters since each link was opened"))
    board.add(totals, GRID_WIDTH, 6, targets=[board.target(
        'SELECT last("frames_good") AS "frames good", last("frames_bad") AS "frames bad", '
        'last("frames_gap") AS "gaps", last("sync_losses") AS "sync losses", '
        'last("packets") AS "packets", last("reopens") AS "reopens" FROM "link" '
        f'{LINK_FILTER} GROUP BY "link", "spacecraft"', alias=None, result_format="table")])
    return board


def _boolean_mappings() -> list[dm.ValueMapping]:
    flag = Parameter(name="flag", bit_offset=0, bit_length=1, type="boolean")
    return value_mappings(flag)


# --------------------------------------------------------------------------- ground health

HEALTH_UID = "isls-ground-health"
HEALTH_TITLE = "ISLS ground system health"
HEALTH_REFRESH = "5s"  # the ingest writes a point a second; 30-odd panels, InfluxDB is busy
HEADLINE_ROW = "Nothing lost over the time range"
# The red threshold of a rate: any rate above 0 at all (one drop in 30 years is 1e-9/s).
ANY_RATE = 1e-9
HealthKind = Literal["rate", "level", "count", "state"]
HealthMeasurement = Literal["ingest", "link"]
# The tag a measurement has one series per: an ingest process, a serial link.
HEALTH_SERIES: dict[HealthMeasurement, str] = {"ingest": "ingest", "link": "link"}
HEALTH_FILTERS: dict[HealthMeasurement, str] = {
    "ingest": """WHERE "ingest" =~ /^$ingest$/ AND $timeFilter""",
    "link": "WHERE $timeFilter",
}


@dataclass(frozen=True, slots=True)
class HealthField:
    """A field of measurement ``ingest`` or ``link`` (README, "InfluxDB contract") and
    its panel on the ground system health dashboard, in row ``row``.

    ``kind`` says what the value is, and so how it is queried and drawn:

    - ``rate``: a counter since its process started, per second
      (``non_negative_derivative``: a restart's drop to 0 is skipped, never a negative
      rate);
    - ``level``: a depth or size now, the highest in each interval;
    - ``count``: a counter since its process started, as it is (0 again after a restart);
    - ``state``: a boolean, as a state timeline.

    ``bad``: any value above 0 (true) is trouble, coloured red. ``headline`` (counters
    only): the title of a stat at the top showing the counter's increase over the time
    range, every ingest together, green at 0 and red above. ``shared``: every ingest
    reports the same figure (the broker's), so the stat takes the largest ingest's
    increase instead of the sum. ``note``: what the panel's description adds.
    """

    row: str
    field: str
    title: str
    unit: str  # a Grafana unit id (grafana_foundation_sdk.models.units)
    kind: HealthKind
    measurement: HealthMeasurement = "ingest"
    bad: bool = False
    headline: str = ""
    shared: bool = False
    note: str = ""

    def __post_init__(self) -> None:
        if self.headline and self.kind not in ("rate", "count"):
            raise ValueError(f"health field {self.field}: a headline sums a counter's "
                             f"increases; kind {self.kind!r} is not a counter")


_THROUGHPUT, _BACKLOG, _STORAGE = "Ingest throughput", "Backlog and memory", "Storage"
_INPUT, _BROKER, _LINKS = "Input faults", "Broker", "Links"

# The dashboard's single source: a field here is a panel there (rows in order of first
# appearance). A field no ingest writes yet is a panel that shows "No data".
HEALTH_FIELDS: tuple[HealthField, ...] = (
    HealthField(_THROUGHPUT, "messages", "Messages per second", units.MessagesPerSecond,
                "rate"),
    HealthField(_THROUGHPUT, "packets", "Packets per second", units.PacketsPerSecond, "rate"),
    HealthField(_THROUGHPUT, "values", "Values per second", "suffix:values/s", "rate"),
    HealthField(_BACKLOG, "unread_messages", "Unread messages (MQTT client)", units.Short,
                "level"),
    HealthField(_BACKLOG, "queue_depth", "Messages waiting for the decoder", units.Short,
                "level"),
    HealthField(_BACKLOG, "waiting_packets", "Packets in the decoder", units.Short, "level"),
    HealthField(_BACKLOG, "pending_lines", "Lines waiting for InfluxDB", units.Short, "level"),
    HealthField(_BACKLOG, "peak_memory_mb", "Peak memory", units.Mebibytes, "level",
                note="Peak resident memory (VmHWM) since the ingest started"),
    HealthField(_BACKLOG, "read_pauses", "Read pauses per second", "suffix:pauses/s", "rate",
                note="Reading from the broker paused at the unread-message bound: the "
                     "backlog waits at the broker"),
    HealthField(_STORAGE, "lines_written", "Lines written per second", "suffix:lines/s", "rate"),
    HealthField(_STORAGE, "values_written", "Values written per second", "suffix:values/s",
                "rate"),
    HealthField(_STORAGE, "write_retries", "Write retries per second", "suffix:retries/s",
                "rate"),
    HealthField(_STORAGE, "rejected_lines", "Rejected lines", units.Short, "count", bad=True,
                headline="Rejected lines"),
    HealthField(_STORAGE, "dead_letters", "Dead letters", units.Short, "count",
                note="Messages quarantined to the dead-letter store"),
    HealthField(_STORAGE, "dead_letter_lines", "Rejected lines kept as dead letters",
                units.Short, "count"),
    HealthField(_STORAGE, "dead_letters_lost", "Dead letters lost", units.Short, "count",
                bad=True, headline="Dead letters lost",
                note="Dropped at the store's bound or not written: gone for good"),
    HealthField(_STORAGE, "spooled_lines", "Lines spooled per second", "suffix:lines/s",
                "rate"),
    HealthField(_STORAGE, "backfilled_lines", "Lines backfilled per second", "suffix:lines/s",
                "rate"),
    HealthField(_STORAGE, "spool_lines", "Lines in the spool", units.Short, "level"),
    HealthField(_STORAGE, "spool_bytes", "Spool size", units.BytesIEC, "level"),
    HealthField(_STORAGE, "spool_full", "Spool full", units.NoUnit, "state", bad=True),
    HealthField(_STORAGE, "spool_failed", "Spool write failed", units.NoUnit, "state",
                bad=True),
    HealthField(_STORAGE, "auth_failures", "InfluxDB refused the account (401/403)",
                units.Short, "count", bad=True),
    HealthField(_STORAGE, "missing_database", "InfluxDB database missing (404)", units.Short,
                "count", bad=True),
    HealthField(_INPUT, "errors", "Input errors per second", "suffix:errors/s", "rate",
                note="Corrupt, unknown or truncated packets and messages"),
    HealthField(_INPUT, "poison_messages", "Poison messages", units.Short, "count",
                note="Messages whose properties cannot be trusted: archived, quarantined "
                     "as dead letters, acknowledged"),
    HealthField(_BROKER, "broker_dropped", "Broker dropped messages per second",
                units.MessagesPerSecond, "rate", bad=True,
                headline="Messages dropped by the broker", shared=True,
                note="The broker's $SYS/broker/publish/messages/dropped (full queues), "
                     "as each ingest allowed to read $SYS sees it"),
    HealthField(_BROKER, "broker_stored", "Messages stored at the broker", units.Short,
                "level", shared=True, note="The broker's $SYS/broker/store/messages/count"),
    HealthField(_LINKS, "locked", "Locked", units.NoUnit, "state", "link"),
    HealthField(_LINKS, "frames_bad", "Bad frames per second", "suffix:frames/s", "rate",
                "link"),
    HealthField(_LINKS, "frames_gap", "Frame gaps per second", "suffix:gaps/s", "rate",
                "link"),
    HealthField(_LINKS, "last_frame_age", "Last frame age", units.Seconds, "level", "link"),
)

_HEALTH_AGGREGATES: dict[HealthKind, str] = {
    "rate": "non_negative_derivative(last({}), 1s)", "level": "max({})", "count": "max({})",
    "state": "last({})"}
_HEALTH_MEANING: dict[HealthKind, str] = {
    "rate": "per second, from a counter since its process started (a restart's drop to 0 "
            "is skipped)",
    "level": "now: the highest in each interval",
    "count": "since its process started (0 again after a restart)",
    "state": "true or false now",
}


def health_query(item: HealthField) -> str:
    """A series per ingest (or link) of one health field, per ``$__interval``."""
    column = _quote(item.field)
    return (f"SELECT {_HEALTH_AGGREGATES[item.kind].format(column)} AS {column} "
            f"FROM {_quote(item.measurement)} {HEALTH_FILTERS[item.measurement]} "
            f"GROUP BY time($__interval), {_quote(HEALTH_SERIES[item.measurement])} fill(null)")


def headline_query(item: HealthField) -> str:
    """The counter's increase over the time range: per ingest (or link), then summed
    (the largest, if ``shared``).

    ``non_negative_difference`` of each interval's highest value: a restart (the counter
    back to 0) is skipped instead of subtracted; what a restarted ingest counted before
    the first point of its new run is the one increase not seen.
    """
    column = _quote(item.field)
    series = _quote(HEALTH_SERIES[item.measurement])
    increases = (f"SELECT non_negative_difference(max({column})) AS {column} "
                 f"FROM {_quote(item.measurement)} {HEALTH_FILTERS[item.measurement]} "
                 f"GROUP BY time($__interval), {series}")
    return (f"SELECT {'max' if item.shared else 'sum'}({column}) AS {column} FROM ("
            f"SELECT sum({column}) AS {column} FROM ({increases}) WHERE $timeFilter "
            f"GROUP BY {series}) WHERE $timeFilter")


def _red_above_zero(threshold: float) -> db.ThresholdsConfig:
    return db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps([
        dm.Threshold(value=None, color="green"), dm.Threshold(value=threshold, color="red")])


def _trouble_mappings() -> list[dm.ValueMapping]:
    """A boolean whose true is trouble: TRUE red, FALSE green."""
    return [dm.SpecialValueMap(options=dm.DashboardSpecialValueMapOptions(
        match=dm.SpecialValueMatch(match),
        result=dm.ValueMappingResult(text=label, color=colour, index=index)))
        for index, (match, label, colour) in enumerate((("true", "TRUE", "red"),
                                                        ("false", "FALSE", "green")))]


def _ingest_variable(ref: dm.DataSourceRef) -> cogbuilder.Builder[dm.VariableModel]:
    return (db.QueryVariable("ingest").label("Ingest").datasource(ref)
            .query('SHOW TAG VALUES FROM "ingest" WITH KEY = "ingest"')
            .description("Ingest process (its MQTT client id); All for every one")
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dm.VariableSort.ALPHABETICAL_ASC).multi(True)
            .include_all(True).all_value(ALL_VALUE).current(_option("$__all", "All"))
            .options([]))


def _health_panel(board: _Board, item: HealthField) -> None:
    description = (f"{item.measurement}.{item.field}, {_HEALTH_MEANING[item.kind]}; "
                   f"a series per {HEALTH_SERIES[item.measurement]}."
                   + (f" {item.note}." if item.note else ""))
    builder: Any
    if item.kind == "state":
        builder = _timeline(item.title).mappings(
            _trouble_mappings() if item.bad else _boolean_mappings())
    else:
        builder = _timeseries(item.title).unit(item.unit)
        if item.bad:  # the line turns red, over a red area, as soon as it leaves 0
            builder = (builder.thresholds(_red_above_zero(1 if item.kind == "count"
                                                          else ANY_RATE))
                       .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
                       .gradient_mode(common.GraphGradientMode.SCHEME)
                       .thresholds_style(GraphThresholdsStyleConfig().mode(
                           common.GraphTresholdsStyleMode.LINE_AND_AREA)))
    board.add(builder.description(description), 8, 6, targets=[board.target(
        health_query(item), alias=f"$tag_{HEALTH_SERIES[item.measurement]}")])


def _headline_panel(board: _Board, item: HealthField, width: int) -> None:
    panel = (stat.Panel().title(item.headline)
             .description(f"Increase of {item.measurement}.{item.field} over the time "
                          "range, " + ("the largest any ingest saw" if item.shared
                                       else "every ingest together")
                          + ": 0 green, anything else red")
             .unit(units.Short).color_mode(common.BigValueColorMode.BACKGROUND)
             .graph_mode(common.BigValueGraphMode.NONE)
             .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))
             .thresholds(_red_above_zero(1)))
    board.add(panel, width, 4, targets=[board.target(headline_query(item))])


def _ground_health(ref: dm.DataSourceRef) -> _Board:
    """The ground system itself: a panel per :data:`HEALTH_FIELDS` entry, read here at
    build time so that the table stays the one place a field is added."""
    fields = HEALTH_FIELDS
    board = _Board(HEALTH_UID, HEALTH_TITLE, ref, [_ingest_variable(ref)], HEALTH_REFRESH,
                   ["isls", "ground", "health"],
                   "The ground system itself (measurements ingest and link): throughput, "
                   "backlog, storage, spool, dead letters, input faults, broker drops, "
                   "links. Every event and alarm change is an annotation.",
                   annotation_filter="WHERE $timeFilter")
    headlines = [f for f in fields if f.headline]
    if headlines:
        board.row(HEADLINE_ROW)
        for item in headlines:
            _headline_panel(board, item, max(4, GRID_WIDTH // len(headlines)))
    for row in dict.fromkeys(f.row for f in fields):
        board.row(row)
        for item in fields:
            if item.row == row:
                _health_panel(board, item)
    return board


# Mission dashboards: section -> panels of (title, packet, parameters, width); a
# parameter missing from the TMDB is left out, a panel with none left is dropped.
PanelSpec = tuple[str, str, tuple[str, ...], int]
MISSION_PANELS: dict[str, list[tuple[str, list[PanelSpec]]]] = {
    "lander": [
        ("Descent profile", [
            ("Descent phase", "lander_nav", ("descent_phase",), 24),
            ("Altitude", "lander_nav", ("altitude",), 8),
            ("Velocity", "lander_nav", ("vertical_velocity", "horizontal_velocity"), 8),
            ("Throttle", "lander_nav", ("throttle",), 8),
            ("Propellant", "lander_power", ("propellant_mass",), 8),
            ("Engine, radar, legs", "lander_nav",
             ("main_engine_on", "radar_lock", "legs_deployed", "touchdown_sensed"), 16),
        ]),
        ("Attitude", [
            ("Attitude quaternion", "lander_nav",
             ("attitude_q0", "attitude_q1", "attitude_q2", "attitude_q3"), 12),
            ("IMU rates", "lander_nav", ("imu_rate_x", "imu_rate_y", "imu_rate_z"), 12),
        ]),
        ("Power", [
            ("State of charge", "lander_power", ("battery_soc",), 8),
            ("Bus voltage", "lander_power", ("bus_voltage",), 8),
            ("Battery voltage", "lander_power", ("battery_voltage",), 8),
            ("Solar array current", "lander_power", ("solar_array_current",), 8),
            ("Battery current", "lander_power", ("battery_current",), 8),
            ("Load current", "lander_power", ("load_current",), 8),
            ("Power mode, heaters, payload", "lander_power",
             ("power_mode", "heaters_enabled", "payload_powered"), 24),
        ]),
        ("Thermal", [
            ("Engine temperature", "lander_thermal", ("engine_temperature",), 8),
            ("Battery temperature", "lander_thermal", ("battery_temperature",), 8),
            ("Avionics temperature", "lander_thermal", ("avionics_temperature",), 8),
            ("Tank temperature", "lander_thermal", ("tank_temperature",), 8),
            ("Surface temperature", "lander_thermal", ("surface_temperature",), 8),
            ("Heater power", "lander_thermal", ("heater_power",), 8),
        ]),
    ],
    "orbiter": [
        ("Orbit", [
            ("Altitude", "orbiter_orbit", ("altitude",), 8),
            ("Latitude / longitude", "orbiter_orbit", ("latitude", "longitude"), 8),
            ("Eclipse", "orbiter_orbit", ("in_eclipse",), 8),
            ("Position", "orbiter_orbit", ("position_x", "position_y", "position_z"), 12),
            ("Velocity", "orbiter_orbit", ("velocity_x", "velocity_y", "velocity_z"), 12),
        ]),
        ("Power", [
            ("State of charge", "orbiter_power", ("battery_soc",), 8),
            ("Bus voltage", "orbiter_power", ("bus_voltage",), 8),
            ("Battery voltage", "orbiter_power", ("battery_voltage",), 8),
            ("Solar array current", "orbiter_power", ("solar_array_current",), 8),
            ("Battery current", "orbiter_power", ("battery_current",), 8),
            ("Load power", "orbiter_power", ("load_power",), 8),
            ("Power mode", "orbiter_power", ("power_mode",), 24),
        ]),
        ("Thermal", [
            ("Panel temperature", "orbiter_thermal", ("panel_temperature",), 8),
            ("Battery temperature", "orbiter_thermal", ("battery_temperature",), 8),
            ("Propulsion temperature", "orbiter_thermal", ("propulsion_temperature",), 8),
            ("Radiator temperature", "orbiter_thermal", ("radiator_temperature",), 12),
            ("Heater power", "orbiter_thermal", ("heater_power",), 12),
        ]),
        ("Relay link to the lander", [
            ("Lander visible, relay locked", "orbiter_relay",
             ("lander_visible", "relay_locked"), 24),
            ("Relay range", "orbiter_relay", ("relay_range",), 8),
            ("Signal strength", "orbiter_relay", ("relay_signal_strength",), 8),
            ("Lander elevation", "orbiter_relay", ("lander_elevation",), 8),
            ("Relay data rate", "orbiter_relay", ("relay_data_rate",), 12),
            ("Relay frames", "orbiter_relay", ("relay_frames",), 12),
        ]),
        ("Earth visibility", [
            ("Earth visible", "orbiter_orbit", ("earth_visible",), 12),
            ("Earth range", "orbiter_relay", ("earth_range",), 12),
        ]),
    ],
}


def _mission(tmdb: Tmdb, ref: dm.DataSourceRef) -> _Board | None:
    sections = MISSION_PANELS.get(tmdb.spacecraft)
    if sections is None:
        return None
    sc = tmdb.spacecraft
    board = _Board(f"isls-{slug(sc)}"[:40], f"{_title(sc)} — {tmdb.mission or 'ISLS'}", ref,
                   _variables(ref, spacecraft=sc, spacecraft_from=_fastest(tmdb).name),
                   LIVE_REFRESH, ["isls", sc], tmdb.description or f"{sc} telemetry")
    packets = {p.name: p for p in tmdb.packets}
    for section, specs in sections:
        panels: list[tuple[str, PacketDef, list[Parameter], int]] = []
        for title, packet_name, names, width in specs:
            packet = packets.get(packet_name)
            if packet is None:
                continue
            known = {p.name: p for p in packet.parameters}
            parameters = [known[n] for n in names if n in known]
            if parameters:
                panels.append((title, packet, parameters, width))
        if not panels:
            continue
        board.row(section)
        for title, packet, parameters, width in panels:
            _parameter_panel(board, packet, parameters, title, width, 7)
    return board


def _all_parameters(tmdb: Tmdb, ref: dm.DataSourceRef) -> _Board:
    sc = tmdb.spacecraft
    board = _Board(f"isls-{slug(sc)}-all"[:40], f"{_title(sc)} — all parameters", ref,
                   _variables(ref, spacecraft=sc, spacecraft_from=_fastest(tmdb).name),
                   ALL_PARAMETERS_REFRESH, ["isls", sc, "generated"],
                   f"Every parameter of the {sc} telemetry database, a row per packet.")
    for packet in tmdb.packets:
        board.row(f"{packet.name} (APID {packet.apid:#x})"
                  + (f" — {packet.description}" if packet.description else ""))
        for parameter in packet.fields:
            _parameter_panel(board, packet, [parameter], parameter.name, 8, 6)
    return board


def datasource_json(config: Config) -> dict[str, Any]:
    """Grafana's InfluxDB (InfluxQL) data source for our database; no secrets."""
    return {
        "name": config.grafana.datasource_name,
        "uid": config.grafana.datasource_uid,
        "type": "influxdb",
        "access": "proxy",
        "url": config.grafana.influx_url or config.influx.url,
        "jsonData": {"dbName": config.influx.database, "httpMode": "POST",
                     "version": "InfluxQL", "timeInterval": "1s"},
    }


def influx_auth(config: Config) -> InfluxAuth:
    """What the provisioned data source needs from Grafana's environment."""
    if config.influx.token:
        return "token"
    return "basic" if config.influx.username else "none"


def build_dashboards(config: Config, tmdbs: list[Tmdb]) -> DashboardSet:
    """Every dashboard for these telemetry databases, with the data source they use."""
    ref = dm.DataSourceRef(type_val="influxdb", uid=config.grafana.datasource_uid)
    joint = config.grafana.joint_folder
    boards: list[tuple[_Board, str]] = [(_overview(config, tmdbs, ref), joint),
                                        (_links(tmdbs, ref), joint),
                                        (_ground_health(ref), joint)]
    for tmdb in tmdbs:
        folder = config.grafana.folder_of(tmdb.agency)
        mission = _mission(tmdb, ref)
        if mission is not None:
            boards.append((mission, folder))
        boards.append((_all_parameters(tmdb, ref), folder))
    dashboards = tuple(GeneratedDashboard(uid=b.uid, title=b.title, folder=f,
                                          folder_uid=folder_uid(f), model=b.build())
                       for b, f in boards)
    uids = [d.uid for d in dashboards]
    if len(set(uids)) != len(uids):
        raise ValueError(f"two dashboards share a uid: {uids}")
    return DashboardSet(datasource=datasource_json(config), dashboards=dashboards)


# --------------------------------------------------------------------------- files


def _dump_json(model: dict[str, Any]) -> str:
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _write(path: Path, content: str) -> None:
    """Write only on change, so Grafana's file provider sees no needless update."""
    if path.is_file() and path.read_text(encoding="utf-8") == content:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(content, encoding="utf-8")
    temporary.replace(path)


def _datasource_provisioning(datasource: dict[str, Any], auth: InfluxAuth) -> dict[str, Any]:
    entry: dict[str, Any] = {**datasource, "jsonData": dict(datasource["jsonData"]),
                             "orgId": 1, "isDefault": False, "editable": False}
    if auth == "basic":
        entry["user"] = "$ISLS_INFLUX_USER"
        entry["secureJsonData"] = {"password": "$ISLS_INFLUX_PASSWORD"}
    elif auth == "token":
        entry["jsonData"]["httpHeaderName1"] = "Authorization"
        entry["secureJsonData"] = {"httpHeaderValue1": "Token $ISLS_INFLUX_TOKEN"}
    return {"apiVersion": 1, "datasources": [entry]}


def _dashboard_provisioning(folders: Iterable[tuple[str, str]],
                            dashboards_path: str) -> dict[str, Any]:
    providers = [{
        "name": folder_uid(title), "orgId": 1, "type": "file", "folder": title,
        "folderUid": folder_uid(title), "disableDeletion": False, "allowUiUpdates": False,
        "updateIntervalSeconds": 10,
        "options": {"path": f"{dashboards_path.rstrip('/')}/{slug(title)}",
                    "foldersFromFilesStructure": False},
    } for title, _ in folders]
    return {"apiVersion": 1, "providers": providers}


def _ours(path: Path) -> bool:
    """Whether a JSON file is a dashboard this module generated (uid isls-...)."""
    try:
        model = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(model, dict) and str(model.get("uid", "")).startswith("isls-")


def write_dashboards(dashboards: DashboardSet, out: Path, *, influx_auth: InfluxAuth = "none",
                     dashboards_path: str = DASHBOARDS_PATH) -> list[Path]:
    """Write ``out/<folder slug>/<uid>.json`` and the provisioning files; return them.

    Deterministic: the same set gives byte-identical files, and unchanged files are not
    rewritten. Generated dashboards no longer in the set (an ``isls-`` uid in a folder
    directory of ``out``) are removed, and folder directories left empty with them.
    """
    written: list[Path] = []
    folders: dict[str, str] = {}
    for dashboard in dashboards.dashboards:
        folders.setdefault(dashboard.folder, dashboard.folder_uid)
        path = out / slug(dashboard.folder) / f"{dashboard.uid}.json"
        _write(path, _dump_json({**dashboard.model, "uid": dashboard.uid}))
        written.append(path)
    keep = set(written)
    if out.is_dir():
        for directory in sorted(p for p in out.iterdir()
                                if p.is_dir() and p.name != PROVISIONING):
            for stale in sorted(directory.glob("*.json")):
                if stale not in keep and _ours(stale):
                    stale.unlink()
            if not any(directory.iterdir()):
                directory.rmdir()
    provisioning = out / PROVISIONING
    for path, document in (
            (provisioning / "datasources" / "isls.yaml",
             _datasource_provisioning(dashboards.datasource, influx_auth)),
            (provisioning / "dashboards" / "isls.yaml",
             _dashboard_provisioning(folders.items(), dashboards_path))):
        _write(path, "# Generated by isls dashboards build; do not edit.\n"
               + yaml.safe_dump(document, sort_keys=True, allow_unicode=True))
        written.append(path)
    return written
