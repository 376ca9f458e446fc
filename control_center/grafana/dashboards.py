"""Grafana dashboards generated from the telemetry database (``isls dashboards build``):
assembled here, and written as files Grafana provisions.

The telemetry databases (``config/tmdb/*.yaml``) are the source of every unit, limit,
enum state and description on a panel; the mission layouts (``config/dashboards/*.yaml``,
:mod:`control_center.grafana.layout`) say which parameters the mission dashboards show,
checked against the TMDBs. A TMDB change and a rebuild is all a dashboard ever needs.
The models are built with grafana-foundation-sdk's builders (:mod:`.board`, :mod:`.fields`)
and raw InfluxQL targets (:mod:`.queries`).

Dashboards (uid, folder):

- ``isls-overview`` (joint folder): a row per spacecraft: link state (packets in the
  last 10 s), last packet age, packet rate and, per packet type, its limit-checked
  parameters' last values coloured by their limits; room for alarms and events.
- ``isls-links`` (joint folder): serial link statistics from measurement ``link``.
- ``isls-ground-health`` (joint folder): the ground system itself
  (:mod:`control_center.grafana.health`).
- ``isls-lander``, ``isls-orbiter`` (agency folder of the TMDB): mission panels, for each
  spacecraft with a mission layout.
- ``isls-<spacecraft>-all`` (agency folder): every parameter of every packet.

Template variables on every telemetry dashboard: ``spacecraft``, ``source`` (live, replay,
import; default live) and ``pass`` (default All = ``.*``); every query filters on them
(:mod:`control_center.grafana.queries`).

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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import stat, table
from grafana_foundation_sdk.builders.common import ReduceDataOptions
from grafana_foundation_sdk.models import common, units
from grafana_foundation_sdk.models import dashboard as dm

from control_center.config import Config
from control_center.grafana.board import (
    Board,
    telemetry_variables,
    timeline_panel,
    timeseries_panel,
)
from control_center.grafana.fields import boolean_mappings, is_state
from control_center.grafana.health import ground_health
from control_center.grafana.layout import GRID_WIDTH, MissionLayout, layout_dir, load_layouts
from control_center.grafana.queries import (
    LIVE_ONLY_FILTER,
    quote,
    series_query,
    telemetry_filter,
)
from control_center.storage.contract import (
    ALARMS_MEASUREMENT,
    EVENTS_MEASUREMENT,
    LINK_MEASUREMENT,
)
from control_center.telemetry.tmdb import PacketDef, Parameter, Tmdb

LIVE_REFRESH = "1s"
ALL_PARAMETERS_REFRESH = "10s"
MISSION_PANEL_HEIGHT = 7  # grid rows of a mission dashboard's panel
DASHBOARDS_PATH = "/var/lib/grafana/dashboards"
PROVISIONING = "provisioning"
InfluxAuth = Literal["none", "basic", "token"]


def _parameter_panel(board: Board, packet: PacketDef, parameters: Sequence[Parameter],
                     title: str, w: int, h: int) -> dm.Panel:
    """A time series of numbers or a state timeline of enums and booleans."""
    builder: Any = (timeline_panel(title) if all(is_state(p) for p in parameters)
                    else timeseries_panel(title))
    return board.add(builder, w, h, fields=parameters,
                     targets=[board.target(series_query(packet, parameters))])


def _limit_stat(board: Board, packet: PacketDef, spacecraft: str, w: int, h: int) -> None:
    """The last value of every limit-checked parameter, coloured by its limits."""
    checked = [p for p in packet.fields if p.limits.defined]
    columns = ", ".join(f"last({quote(p.name)}) AS {quote(p.name)}" for p in checked)
    query = f"SELECT {columns} FROM {quote(packet.name)} {telemetry_filter(spacecraft)}"
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


def _overview(config: Config, tmdbs: Sequence[Tmdb], ref: dm.DataSourceRef) -> Board:
    names = [t.spacecraft for t in tmdbs]
    board = Board("isls-overview", "ISLS overview", ref,
                  telemetry_variables(ref, spacecraft=None, spacecraft_from=None,
                                      all_spacecraft=names),
                  LIVE_REFRESH, ["isls", "overview"],
                  "Every spacecraft on one screen: link, packet rate, worst limit state "
                  "per subsystem.")
    _alarm_panels(board)
    for tmdb in tmdbs:
        sc = tmdb.spacecraft
        board.row(f"{_title(sc)} — {tmdb.mission or 'ISLS'} "
                  f"({config.grafana.folder_of(tmdb.agency)})")
        fastest = _fastest(tmdb)
        field = quote(_count_field(fastest).name)
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
            f"SELECT count({field}) AS \"packets\" FROM {quote(fastest.name)} {where}")])
        age = (stat.Panel().title("Last packet").unit(units.DateTimeFromNow)
               .description(f"Onboard time of the last {fastest.name} packet")
               .graph_mode(common.BigValueGraphMode.NONE)
               .color_mode(common.BigValueColorMode.NONE)
               .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False)
                               .fields("/^Time$/")))
        board.add(age, 4, 5, targets=[board.target(
            f"SELECT last({field}) AS \"last\" FROM {quote(fastest.name)} {where}")])
        rate = timeseries_panel("Packet rate").unit(units.PacketsPerSecond).interval("1s")
        rate.description("Packets per second by packet type")
        board.add(rate, 16, 5, targets=[
            board.target(f"SELECT count({quote(_count_field(p).name)}) * 1000 / "
                         f"$__interval_ms AS {quote(p.name)} FROM {quote(p.name)} {where} "
                         "GROUP BY time($__interval) fill(0)", chr(ord("A") + i))
            for i, p in enumerate(tmdb.packets)])
        board.break_line()
        checked = [p for p in tmdb.packets if any(q.limits.defined for q in p.fields)]
        for packet in checked:
            _limit_stat(board, packet, sc, max(6, GRID_WIDTH // len(checked)), 5)
    return board


def _alarm_panels(board: Board) -> None:
    """Alarm state per parameter, the latest alarm changes and the latest events.

    Alarms and events are live-only measurements (no source or pass tag), written by
    the ingest's monitoring stage: see docs/alarms.md."""
    alarms, events = quote(ALARMS_MEASUREMENT), quote(EVENTS_MEASUREMENT)
    states = {"0": ("NORMAL", "green"), "1": ("YELLOW", "yellow"), "2": ("RED", "red")}
    timeline = (timeline_panel("Alarm state by parameter")
                .description("Worst alarm severity of each monitored parameter")
                .mappings([dm.ValueMap(options={
                    value: dm.ValueMappingResult(text=label, color=colour, index=i)
                    for i, (value, (label, colour)) in enumerate(states.items())})]))
    board.add(timeline, GRID_WIDTH, 6, targets=[board.target(
        f'SELECT last("state") AS "state" FROM {alarms} {LIVE_ONLY_FILTER} '
        'GROUP BY time($__interval), "subject" fill(previous)', alias="$tag_subject")])
    latest = (table.Panel().title("Latest alarm changes")
              .description("Newest first: raised, escalated, returned, acknowledged, cleared"))
    board.add(latest, GRID_WIDTH // 2, 7, targets=[board.target(
        'SELECT "alarm_id", "transition", "severity", "message", "acknowledged" FROM '
        f"{alarms} {LIVE_ONLY_FILTER} ORDER BY time DESC LIMIT 50", alias=None,
        result_format="table")])
    latest_events = (table.Panel().title("Latest events")
                     .description("Mode changes, alarm changes, operator actions, contact"))
    board.add(latest_events, GRID_WIDTH // 2, 7, targets=[board.target(
        f'SELECT "subject", "message" FROM {events} {LIVE_ONLY_FILTER} '
        "ORDER BY time DESC LIMIT 50", alias=None, result_format="table")])


def _links(tmdbs: Sequence[Tmdb], ref: dm.DataSourceRef) -> Board:
    board = Board("isls-links", "ISLS serial links", ref,
                  telemetry_variables(ref, spacecraft=None, spacecraft_from=None,
                                      all_spacecraft=[t.spacecraft for t in tmdbs]),
                  LIVE_REFRESH, ["isls", "links"],
                  f"Serial links (measurement {LINK_MEASUREMENT}): frames, gaps, sync "
                  f"losses, bit rate, lock. The {LINK_MEASUREMENT} measurement has no "
                  "source or pass tag.")
    link = quote(LINK_MEASUREMENT)
    by_link = f'{LIVE_ONLY_FILTER} GROUP BY time($__interval), "link" fill(null)'
    alias = "$tag_link $col"  # a series per link (tag "link")

    def rates(*fields: str) -> str:
        columns = ", ".join(f"non_negative_derivative(last({quote(f)}), 1s) AS {quote(f)}"
                            for f in fields)
        return f"SELECT {columns} FROM {link} {by_link}"

    locked = timeline_panel("Locked").mappings(boolean_mappings())
    board.add(locked, 12, 6, targets=[board.target(
        f'SELECT last("locked") AS "locked", last("connected") AS "connected" FROM {link} '
        f"{by_link}", alias=alias)])
    age = timeseries_panel("Last frame age").unit("s")
    board.add(age, 12, 6, targets=[board.target(
        f'SELECT max("last_frame_age") AS "age" FROM {link} {by_link}', alias=alias)])
    for title, fields, unit in (
            ("Frames good / bad per second", ("frames_good", "frames_bad"), "suffix:frames/s"),
            ("Gaps and sync losses per second", ("frames_gap", "sync_losses"), "suffix:/s"),
            ("Packets per second", ("packets", "packets_dropped"), "suffix:packets/s")):
        board.add(timeseries_panel(title).unit(unit), 12, 7,
                  targets=[board.target(rates(*fields), alias=alias)])
    board.add(timeseries_panel("Bit rate").unit("bps"), 12, 7, targets=[board.target(
        f'SELECT mean("bit_rate") AS "bit_rate" FROM {link} {by_link}', alias=alias)])
    totals = (table.Panel().title("Totals per link")
              .description("Counters since each link was opened"))
    board.add(totals, GRID_WIDTH, 6, targets=[board.target(
        'SELECT last("frames_good") AS "frames good", last("frames_bad") AS "frames bad", '
        'last("frames_gap") AS "gaps", last("sync_losses") AS "sync losses", '
        f'last("packets") AS "packets", last("reopens") AS "reopens" FROM {link} '
        f'{LIVE_ONLY_FILTER} GROUP BY "link", "spacecraft"', alias=None,
        result_format="table")])
    return board



def _mission(tmdb: Tmdb, layout: MissionLayout, ref: dm.DataSourceRef) -> Board:
    """The spacecraft's mission dashboard: the rows and panels of its layout, every
    parameter of which the layout's check found in the TMDB."""
    sc = tmdb.spacecraft
    board = Board(f"isls-{slug(sc)}"[:40], f"{_title(sc)} — {tmdb.mission or 'ISLS'}", ref,
                  telemetry_variables(ref, spacecraft=sc, spacecraft_from=_fastest(tmdb).name),
                  LIVE_REFRESH, ["isls", sc], tmdb.description or f"{sc} telemetry")
    packets = {p.name: p for p in tmdb.packets}
    for row in layout.rows:
        board.row(row.title)
        for panel in row.panels:
            packet = packets[panel.packet]
            fields = {f.name: f for f in packet.fields}
            _parameter_panel(board, packet, [fields[name] for name in panel.parameters],
                             panel.title, panel.width, MISSION_PANEL_HEIGHT)
    return board


def _all_parameters(tmdb: Tmdb, ref: dm.DataSourceRef) -> Board:
    sc = tmdb.spacecraft
    board = Board(f"isls-{slug(sc)}-all"[:40], f"{_title(sc)} — all parameters", ref,
                  telemetry_variables(ref, spacecraft=sc, spacecraft_from=_fastest(tmdb).name),
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


def build_dashboards(config: Config, tmdbs: list[Tmdb],
                     layouts: Mapping[str, MissionLayout] | None = None) -> DashboardSet:
    """Every dashboard for these telemetry databases, with the data source they use.

    ``layouts``: the mission layout of each spacecraft that has one, by spacecraft;
    by default those in ``dashboards/`` beside the configuration file, read and checked
    against ``tmdbs`` here (:class:`~control_center.errors.LayoutError` if one
    names what its TMDB lacks).
    """
    if layouts is None:
        layouts = {layout.spacecraft: layout
                   for layout in load_layouts(layout_dir(config.source), tmdbs)}
    ref = dm.DataSourceRef(type_val="influxdb", uid=config.grafana.datasource_uid)
    joint = config.grafana.joint_folder
    boards: list[tuple[Board, str]] = [(_overview(config, tmdbs, ref), joint),
                                       (_links(tmdbs, ref), joint),
                                       (ground_health(ref), joint)]
    for tmdb in tmdbs:
        folder = config.grafana.folder_of(tmdb.agency)
        layout = layouts.get(tmdb.spacecraft)
        if layout is not None:
            boards.append((_mission(tmdb, layout, ref), folder))
        boards.append((_all_parameters(tmdb, ref), folder))
    dashboards = tuple(GeneratedDashboard(uid=b.uid, title=b.title, folder=f,
                                          folder_uid=folder_uid(f), model=b.build())
                       for b, f in boards)
    uids = [d.uid for d in dashboards]
    if len(set(uids)) != len(uids):
        raise ValueError(f"two dashboards share a uid: {uids}")
    return DashboardSet(datasource=datasource_json(config), dashboards=dashboards)


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
