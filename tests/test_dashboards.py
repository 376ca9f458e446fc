"""Generated Grafana dashboards: their JSON model, their queries on a real influxd, and
the files and provisioning ``write_dashboards`` leaves for Grafana.

What is checked and what is not:

- The model is checked against a JSON schema written here from Grafana's documented
  dashboard JSON model (the keys Grafana needs to load a dashboard: uid, title,
  schemaVersion, time, templating.list, panels with id/type/gridPos/targets[refId]),
  plus what a schema cannot say: unique panel ids, no overlapping panels, panels
  inside the 24-column grid. It is not Grafana's own (much larger) schema, and no
  Grafana renders the panels here.
- The model also goes back through grafana-foundation-sdk's typed ``Dashboard.from_json``
  and must serialise to the same JSON: the SDK's model knows every key we emit.
- Every panel target and every query variable runs on the real influxd filled by the
  real pipeline, with the template variables expanded as Grafana would. Grafana's own
  interpolation is not run; the expansion rules are the documented ones.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped, unused-ignore]  # stubs: types-jsonschema
import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dm

from control_center.cli import main
from control_center.config import Config, load_config
from control_center.grafana import dashboards as dashboards_module
from control_center.grafana.dashboards import (
    HEADLINE_ROW,
    HEALTH_FIELDS,
    HEALTH_TITLE,
    HEALTH_UID,
    DashboardSet,
    HealthField,
    InfluxQLQuery,
    build_dashboards,
    folder_uid,
    grafana_unit,
    influx_auth,
    write_dashboards,
)
from control_center.monitoring.alarms import AlarmManager
from control_center.monitoring.monitor import Event
from control_center.operations.servers import InfluxServer
from control_center.storage.contract import alarm_line, event_line, health_line, link_line
from control_center.storage.writer import WriterStats
from control_center.telemetry.decoder import IngestStats
from control_center.telemetry.tmdb import Limits, Parameter, Tmdb
from tests.conftest import CONFIG, run_pipeline

START_NS = 1_800_000_000 * 1_000_000_000  # the simulators' first packet (test_pipeline)

DASHBOARD_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["uid", "title", "panels", "templating", "time", "schemaVersion",
                 "editable", "refresh"],
    "properties": {
        "uid": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,40}$"},
        "title": {"type": "string", "minLength": 1},
        "schemaVersion": {"type": "integer", "minimum": 36},
        "editable": {"const": True},
        "refresh": {"type": "string"},
        "time": {"type": "object", "required": ["from", "to"],
                 "properties": {"from": {"type": "string"}, "to": {"type": "string"}}},
        "templating": {
            "type": "object", "required": ["list"],
            "properties": {"list": {"type": "array", "items": {
                "type": "object", "required": ["name", "type"],
                "properties": {"name": {"type": "string"},
                               "type": {"enum": ["query", "custom"]}}}}}},
        "panels": {"type": "array", "items": {"$ref": "#/$defs/panel"}},
    },
    "$defs": {
        "gridPos": {
            "type": "object", "required": ["x", "y", "w", "h"],
            "properties": {"x": {"type": "integer", "minimum": 0, "maximum": 23},
                           "y": {"type": "integer", "minimum": 0},
                           "w": {"type": "integer", "minimum": 1, "maximum": 24},
                           "h": {"type": "integer", "minimum": 1}}},
        "panel": {
            "type": "object", "required": ["id", "type", "gridPos"],
            "properties": {
                "id": {"type": "integer", "minimum": 1},
                "type": {"enum": ["row", "timeseries", "stat", "state-timeline", "table",
                                  "text"]},
                "gridPos": {"$ref": "#/$defs/gridPos"},
                "title": {"type": "string"},
                "targets": {"type": "array", "items": {
                    "type": "object",
                    "required": ["refId", "query", "rawQuery", "resultFormat", "datasource"],
                    "properties": {
                        "refId": {"type": "string", "minLength": 1},
                        "query": {"type": "string", "minLength": 1},
                        "rawQuery": {"const": True},
                        "resultFormat": {"enum": ["time_series", "table"]},
                        "datasource": {"type": "object", "required": ["type", "uid"],
                                       "properties": {"type": {"const": "influxdb"}}}}}},
                "fieldConfig": {"type": "object", "required": ["defaults", "overrides"]},
                "panels": {"type": "array", "maxItems": 0},  # rows: never collapsed
            },
            "if": {"properties": {"type": {"enum": ["timeseries", "stat",
                                                    "state-timeline", "table"]}}},
            "then": {"required": ["targets", "datasource", "fieldConfig", "title"],
                     "properties": {"targets": {"minItems": 1}}},
        },
    },
}


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def offline_config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """The shipped configuration without servers: building needs none."""
    return load_config(CONFIG, {"ISLS_STATE_DIR": str(tmp_path_factory.mktemp("state"))})


@pytest.fixture(scope="module")
def built(offline_config: Config, tmdbs: list[Tmdb]) -> DashboardSet:
    return build_dashboards(offline_config, tmdbs)


def panels(model: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in model["panels"]:
        yield panel
        yield from panel.get("panels", [])


def targets(model: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in panels(model):
        for target in panel.get("targets", []):
            yield panel, target


def field_config(panel: dict[str, Any], name: str) -> dict[str, Any]:
    """The field config Grafana applies to field ``name``: defaults, then overrides."""
    config = dict(panel["fieldConfig"]["defaults"])
    for override in panel["fieldConfig"]["overrides"]:
        if override["matcher"] == {"id": "byName", "options": name}:
            config.update({p["id"]: p["value"] for p in override["properties"]})
    return config


def colour(steps: list[dict[str, Any]], value: float) -> str:
    """The colour Grafana gives ``value``: the last step it reaches (base: value null)."""
    assert steps[0]["value"] is None
    result = steps[0]["color"]
    for step in steps[1:]:
        if value >= step["value"]:
            result = step["color"]
    return str(result)


def expected_colour(limits: Limits, value: float) -> str:
    if (limits.red_low is not None and value < limits.red_low) or (
            limits.red_high is not None and value > limits.red_high):
        return "red"
    if (limits.yellow_low is not None and value < limits.yellow_low) or (
            limits.yellow_high is not None and value > limits.yellow_high):
        return "yellow"
    return "green"


def grafana_regex_escape(value: str) -> str:
    """@grafana/data escapeRegex, which the InfluxDB data source applies in regexes."""
    return re.sub(r"[\\^$*+?.()|[\]{}/]", lambda m: "\\" + m.group(0), value)


def variable_value(model: dict[str, Any], name: str) -> str:
    """The regex text Grafana puts for ``$name`` with the variable's default selection."""
    (variable,) = [v for v in model["templating"]["list"] if v["name"] == name]
    current = variable["current"]["value"]
    if current == "$__all":
        return str(variable["allValue"])  # a custom all value is inserted as is
    return grafana_regex_escape(str(current))


def expand(query: str, model: dict[str, Any], start_ns: int, end_ns: int, *,
           source: str = "live", pass_value: str | None = None) -> str:
    """A target's query as Grafana sends it, for an absolute time range: every template
    variable of the dashboard at its default selection, unless chosen here."""
    chosen = {"source": source, "pass": pass_value}
    replacements = [("$timeFilter", f"time >= {start_ns // 1_000_000}ms and "
                                    f"time <= {end_ns // 1_000_000}ms"),
                    ("$__interval_ms", "1000"), ("$__interval", "1s")]
    for variable in model["templating"]["list"]:
        name = variable["name"]
        value = chosen.get(name)
        replacements.append((f"${name}", value if value is not None
                             else variable_value(model, name)))
    for name, value in replacements:
        query = query.replace(name, value)
    assert not re.search(r"\$\w", query), query  # every variable expanded
    return query


def series_of(result: dict[str, object], query: str) -> list[dict[str, Any]]:
    outcome = result["results"][0]  # type: ignore[index]
    assert "error" not in outcome, (query, outcome["error"])
    series: list[dict[str, Any]] = outcome.get("series", [])
    return series


def non_null_values(series: list[dict[str, Any]]) -> int:
    return sum(value is not None for s in series for row in s["values"] for value in row[1:])


def write_lines(influxd: InfluxServer, database: str, lines: list[str]) -> None:
    request = urllib.request.Request(f"{influxd.url}/write?db={database}&precision=ns",
                                     data="".join(lines).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 204


# --------------------------------------------------------------------------- the model


def test_expected_dashboards_folders_and_variables(built: DashboardSet,
                                                   offline_config: Config) -> None:
    by_uid = {d.uid: d for d in built.dashboards}
    assert set(by_uid) == {"isls-overview", "isls-links", "isls-lander", "isls-orbiter",
                           "isls-lander-all", "isls-orbiter-all", "isls-ground-health"}
    grafana = offline_config.grafana
    assert by_uid["isls-overview"].folder == by_uid["isls-links"].folder == grafana.joint_folder
    assert by_uid["isls-ground-health"].folder == grafana.joint_folder
    assert by_uid["isls-lander"].folder == grafana.folder_of("roscosmos") == "Roscosmos"
    assert by_uid["isls-orbiter-all"].folder == grafana.folder_of("cnsa") == "CNSA"
    assert by_uid["isls-orbiter"].folder_uid == folder_uid("CNSA") == "isls-folder-cnsa"
    assert by_uid["isls-lander-all"].title == "Lander — all parameters"
    for dashboard in built.dashboards:
        if dashboard.uid == HEALTH_UID:
            continue  # the ground system's own: test_ground_health_* below
        model = dashboard.model
        assert model["uid"] == dashboard.uid and model["title"] == dashboard.title
        assert model["editable"] is True and model["time"] == {"from": "now-15m", "to": "now"}
        live = not dashboard.uid.endswith("-all")
        assert (model["refresh"] == "1s") == live, dashboard.uid
        variables = {v["name"]: v for v in model["templating"]["list"]}
        assert set(variables) == {"spacecraft", "source", "pass"}
        assert variables["source"]["query"] == "live,replay,import"
        assert variables["source"]["current"]["value"] == "live"
        assert variables["pass"]["includeAll"] and variables["pass"]["allValue"] == ".*"
        for _, target in targets(model):
            query = target["query"]
            assert target["datasource"] == {"type": "influxdb", "uid": grafana.datasource_uid}
            assert "$timeFilter" in query and "spacecraft\" =~ /^$spacecraft$/" in query
            live_only = ('FROM "link"', 'FROM "alarms"', 'FROM "events"')
            if not any(m in query for m in live_only):  # these carry no source/pass tag
                assert "\"source\" = '$source'" in query and '"pass" =~ /^$pass$/' in query
            if "GROUP BY time(" in query:
                assert "GROUP BY time($__interval)" in query
    assert built.datasource == {
        "name": grafana.datasource_name, "uid": grafana.datasource_uid, "type": "influxdb",
        "access": "proxy", "url": grafana.influx_url,
        "jsonData": {"dbName": offline_config.influx.database, "httpMode": "POST",
                     "version": "InfluxQL", "timeInterval": "1s"}}


def test_every_model_validates_and_round_trips_through_the_sdk(built: DashboardSet) -> None:
    validator = jsonschema.Draft202012Validator(DASHBOARD_SCHEMA)
    for dashboard in built.dashboards:
        model = dashboard.model
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in validator.iter_errors(model)]
        assert not errors, (dashboard.uid, errors[:5])
        all_panels = list(panels(model))
        ids = [p["id"] for p in all_panels]
        assert len(ids) == len(set(ids)), dashboard.uid
        cells: dict[tuple[int, int], int] = {}
        for panel in all_panels:
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, (dashboard.uid, panel["title"])
            for x in range(grid["x"], grid["x"] + grid["w"]):
                for y in range(grid["y"], grid["y"] + grid["h"]):
                    other = cells.setdefault((x, y), panel["id"])
                    assert other == panel["id"], (dashboard.uid, "overlap", other, panel["id"])
        for panel, target in targets(model):
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs)), (dashboard.uid, panel["title"])
            assert target["rawQuery"] is True
        # The SDK's typed model reads it back (our targets as InfluxQLQuery) unchanged.
        typed = dm.Dashboard.from_json(model)
        assert typed.uid == dashboard.uid
        first = next(p for p in typed.panels or [] if isinstance(p, dm.Panel) and p.targets)
        assert first.targets and isinstance(first.targets[0], InfluxQLQuery)
        # Annotations are the exception: the SDK's AnnotationQuery has no field for the
        # InfluxDB data source's own keys (query, textColumn), so they are compared apart
        # from the rest and checked here by hand; their queries run in the test below.
        round_trip = json.loads(json.dumps(typed, cls=JSONEncoder))
        assert {k: v for k, v in round_trip.items() if k != "annotations"} == \
            {k: v for k, v in model.items() if k != "annotations"}, dashboard.uid
        for annotation in model["annotations"]["list"]:
            assert annotation["datasource"] == {"type": "influxdb",
                                                "uid": "isls-influxdb"}
            assert annotation["enable"] is True and annotation["textColumn"] == "message"
            assert annotation["query"].startswith('SELECT "message" FROM "')


def test_panel_counts_and_every_parameter_on_its_all_parameters_dashboard(
        built: DashboardSet, tmdbs: list[Tmdb]) -> None:
    by_uid = {d.uid: d for d in built.dashboards}
    for tmdb in tmdbs:
        model = by_uid[f"isls-{tmdb.spacecraft}-all"].model
        rows = [p["title"] for p in panels(model) if p["type"] == "row"]
        assert [r.split(" ")[0] for r in rows] == [p.name for p in tmdb.packets]
        plotted = [p["title"] for p in panels(model) if p["type"] != "row"]
        assert plotted == [q.name for p in tmdb.packets for q in p.fields]
        assert {d.name for p in tmdb.packets for d in p.derived} <= set(plotted)
        for panel in panels(model):
            if panel["type"] == "row":
                continue
            (parameter,) = [q for p in tmdb.packets for q in p.fields
                            if q.name == panel["title"]]
            kind = "state-timeline" if parameter.type in ("enum", "boolean") else "timeseries"
            assert panel["type"] == kind, parameter.name
            assert panel.get("description", "") == parameter.description
            aggregate = "last" if kind == "state-timeline" else "mean"
            assert f'{aggregate}("{parameter.name}")' in panel["targets"][0]["query"]
    overview = by_uid["isls-overview"].model
    assert [p["title"] for p in panels(overview)][:3] == [
        "Alarm state by parameter", "Latest alarm changes", "Latest events"]
    limit_stats = [p["title"] for p in panels(overview) if p["title"].endswith(" limits")]
    assert limit_stats == [f"{p.name} limits" for t in tmdbs for p in t.packets
                           if any(q.limits.defined for q in p.fields)]


def test_thresholds_units_and_mappings_equal_the_tmdb(built: DashboardSet,
                                                      tmdbs: list[Tmdb]) -> None:
    parameters = {(p.name, q.name): q for t in tmdbs for p in t.packets for q in p.parameters}
    checked = 0
    for dashboard in built.dashboards:
        for panel, target in targets(dashboard.model):
            measurement = re.search(r'FROM "(\w+)"', target["query"])
            assert measurement is not None
            for name in re.findall(r'(?:mean|last)\("(\w+)"\) AS "\1"', target["query"]):
                parameter = parameters.get((measurement.group(1), name))
                if parameter is None:
                    continue  # the link measurement
                checked += 1
                config = field_config(panel, name)
                where = (dashboard.uid, panel["title"], name)
                assert config["unit"] == grafana_unit(parameter.unit), where
                assert config["thresholds"]["mode"] == "absolute", where
                steps = config["thresholds"]["steps"]
                limits = parameter.limits
                bounds = [b for b in (limits.red_low, limits.yellow_low, limits.yellow_high,
                                      limits.red_high) if b is not None]
                probes = [b + d for b in bounds for d in (-0.01, 0.01)] + [0.0, 1e9, -1e9]
                for value in probes:
                    assert colour(steps, value) == expected_colour(limits, value), (where,
                                                                                    value)
                _assert_mappings(config.get("mappings", []), parameter, where)
                if parameter.description:  # the field's description (panel: see above)
                    assert config["description"] == parameter.description, where
    assert checked > 150  # the -all dashboards alone hold 75 parameter panels


def _assert_mappings(mappings: list[dict[str, Any]], parameter: Parameter,
                     where: tuple[str, str, str]) -> None:
    if parameter.type == "enum":
        (mapping,) = mappings
        assert mapping["type"] == "value", where
        assert {int(k): v["text"] for k, v in mapping["options"].items()} == dict(
            parameter.states), where
        assert not {v["color"] for v in mapping["options"].values()} & {"red", "yellow"}
    elif parameter.type == "boolean":
        assert {m["options"]["match"]: m["options"]["result"]["text"] for m in mappings} == {
            "true": "TRUE", "false": "FALSE"}, where
        assert all(m["type"] == "special" for m in mappings), where
    else:
        assert mappings == [], where


def test_unit_ids() -> None:
    assert [grafana_unit(u) for u in ("m", "km", "m/s", "km/s", "%", "V", "A", "W", "degC",
                                      "deg", "deg/s", "dBm", "bit/s", "kg", "", "furlong")] == [
        "lengthm", "lengthkm", "velocityms", "suffix:km/s", "percent", "volt", "amp", "watt",
        "celsius", "degree", "rotdegs", "dBm", "bps", "masskg", "none", "suffix:furlong"]


# --------------------------------------------------------------------------- real queries


def _link_lines(seconds: int) -> list[str]:
    lines = []
    for i in range(seconds):
        now = START_NS + i * 1_000_000_000
        lines.append(link_line({
            "link": "orbiter-bench", "spacecraft": "orbiter", "connected": True,
            "locked": i > 1, "frames_good": 12 * i, "frames_bad": i // 3, "frames_gap": i // 4,
            "sync_losses": i // 5, "packets": 40 * i, "packets_dropped": 0,
            "octets": 1115 * 12 * i, "bit_rate": 107_040.0, "reopens": 0,
            "last_frame_ns": now - 80_000_000}, now))
    return lines


def _alarm_lines() -> list[str]:
    """An alarm's life and a few events, as the ingest's monitoring stage writes them."""
    manager = AlarmManager()
    changes = manager.on_level("lander", "battery_soc", 1, 28.0, START_NS + 10**9, 30.0)
    changes += manager.on_level("orbiter", "bus_voltage", 4, 31.0, START_NS + 2 * 10**9, 30.5)
    changes += manager.on_level("lander", "battery_soc", 0, 31.0, START_NS + 3 * 10**9)
    events = [Event(sc, "mode", "power_mode", f"{sc} power_mode: A -> B", START_NS + i)
              for i, sc in enumerate(("lander", "orbiter"))]
    return [alarm_line(c) for c in changes] + [event_line(e) for e in events]


def test_every_query_returns_data_from_the_real_pipeline(
        config: Config, tmdbs: list[Tmdb], influxd: InfluxServer, database: str) -> None:
    ingest, _ = asyncio.run(run_pipeline(config, tmdbs, 3.0, 5.0))
    assert ingest.stats.errors == {}
    write_lines(influxd, database, _link_lines(15))
    write_lines(influxd, database, _alarm_lines())
    dashboards = build_dashboards(config, tmdbs)
    assert dashboards.datasource["jsonData"]["dbName"] == database
    assert dashboards.datasource["url"] == influxd.url
    start, end = START_NS - 60_000_000_000, START_NS + 3_600_000_000_000
    ran = 0
    for dashboard in dashboards.dashboards:
        if dashboard.uid == HEALTH_UID:
            continue  # its data is the ingest's own: test_ground_health_queries_*
        model = dashboard.model
        for panel, target in targets(model):
            query = expand(target["query"], model, start, end)
            series = series_of(influxd.query(query, database), query)
            assert series and non_null_values(series) > 0, (dashboard.uid, panel["title"],
                                                            query)
            ran += 1
        for annotation in model["annotations"]["list"]:
            if "query" not in annotation:
                continue  # Grafana's built-in annotations
            query = expand(annotation["query"], model, start, end)
            series = series_of(influxd.query(query, database), query)
            assert series and non_null_values(series) > 0, (dashboard.uid, query)
        for variable in model["templating"]["list"]:
            if variable["type"] != "query":
                continue
            series = series_of(influxd.query(variable["query"], database), variable["query"])
            values = {row[1] for s in series for row in s["values"]}
            if variable["name"] == "spacecraft":
                assert variable["current"]["value"] in values, (dashboard.uid, values)
    assert ran > 100  # 138 targets with the shipped TMDBs


def test_pass_variable_selects_one_replayed_pass(
        built: DashboardSet, influxd: InfluxServer, database: str) -> None:
    """Live points have no pass tag: the All value matches them; one pass selects it."""
    influxd.query(f'CREATE DATABASE "{database}"')
    passes = ("lander-2027-01-15T08:00:00Z", "lander-2027-01-16T08:00:00Z")
    write_lines(influxd, database, [
        f"lander_power,spacecraft=lander,source=live battery_soc=50.0 {START_NS}\n",
        *(f"lander_power,spacecraft=lander,source=replay,pass={name} battery_soc={60.0 + i} "
          f"{START_NS + 1_000_000_000}\n" for i, name in enumerate(passes))])
    model = next(d.model for d in built.dashboards if d.uid == "isls-lander")
    (query,) = [t["query"] for p, t in targets(model) if p["title"] == "State of charge"]
    window = (START_NS - 10**10, START_NS + 10**10)

    def values(source: str, pass_value: str | None) -> list[float]:
        text = expand(query, model, *window, source=source, pass_value=pass_value)
        series = series_of(influxd.query(text, database), text)
        return [row[1] for s in series for row in s["values"] if row[1] is not None]

    assert values("live", None) == [50.0]
    # All passes at once: replays of the same time are averaged (pick one to separate).
    assert values("replay", None) == [60.5]
    assert values("replay", grafana_regex_escape(passes[1])) == [61.0]
    tags = series_of(influxd.query('SHOW TAG VALUES WITH KEY = "pass"', database), "")
    assert sorted(row[1] for s in tags for row in s["values"]) == list(passes)


# --------------------------------------------------------------------------- files


def test_write_dashboards_files_provisioning_and_stale_removal(
        offline_config: Config, tmdbs: list[Tmdb], tmp_path: Path) -> None:
    out = tmp_path / "dashboards"
    stale = out / "cnsa" / "isls-orbiter-old.json"
    foreign = out / "cnsa" / "hand-made.json"
    renamed = out / "old-folder" / "isls-gone.json"
    for path, uid in ((stale, "isls-orbiter-old"), (foreign, "hand-made"), (renamed, "isls-x")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"uid": uid}))
    first = write_dashboards(build_dashboards(offline_config, tmdbs), out)
    contents = {p: p.read_bytes() for p in first}
    assert not stale.exists() and not renamed.parent.exists() and foreign.exists()
    assert sorted(p.relative_to(out).as_posix() for p in first) == [
        "cnsa/isls-orbiter-all.json", "cnsa/isls-orbiter.json",
        "isls-joint/isls-ground-health.json", "isls-joint/isls-links.json",
        "isls-joint/isls-overview.json",
        "provisioning/dashboards/isls.yaml", "provisioning/datasources/isls.yaml",
        "roscosmos/isls-lander-all.json", "roscosmos/isls-lander.json"]
    # A rebuild from scratch writes the same bytes.
    second = write_dashboards(build_dashboards(offline_config, tmdbs), out)
    assert second == first and {p: p.read_bytes() for p in second} == contents
    model = json.loads((out / "cnsa" / "isls-orbiter.json").read_text())
    assert model["uid"] == "isls-orbiter" and "id" not in model

    datasources = yaml.safe_load((out / "provisioning/datasources/isls.yaml").read_text())
    assert datasources["apiVersion"] == 1
    (source,) = datasources["datasources"]
    assert source["uid"] == "isls-influxdb" and source["type"] == "influxdb"
    assert source["jsonData"]["dbName"] == "isls" and "secureJsonData" not in source
    providers = yaml.safe_load((out / "provisioning/dashboards/isls.yaml").read_text())
    assert providers["apiVersion"] == 1
    assert {(p["folder"], p["folderUid"], p["options"]["path"], p["type"])
            for p in providers["providers"]} == {
        ("ISLS joint", "isls-folder-isls-joint", "/var/lib/grafana/dashboards/isls-joint",
         "file"),
        ("CNSA", "isls-folder-cnsa", "/var/lib/grafana/dashboards/cnsa", "file"),
        ("Roscosmos", "isls-folder-roscosmos", "/var/lib/grafana/dashboards/roscosmos",
         "file")}


@pytest.mark.parametrize("environ", [
    {"ISLS_INFLUX_USER": "ops", "ISLS_INFLUX_PASSWORD": "pw-Sup3rSecret-1"},
    {"ISLS_INFLUX_TOKEN": "tok-Sup3rSecret-2"},
])
def test_credentials_are_environment_references_never_secrets(
        environ: dict[str, str], tmdbs: list[Tmdb], tmp_path: Path) -> None:
    config = load_config(CONFIG, {**environ, "ISLS_STATE_DIR": str(tmp_path / "state"),
                                  "ISLS_INFLUX_URL": "http://influx.example:8086"})
    dashboards = build_dashboards(config, tmdbs)
    written = write_dashboards(dashboards, tmp_path / "out", influx_auth=influx_auth(config))
    text = "\n".join(p.read_text() for p in written) + json.dumps(dashboards.datasource)
    for secret in ("pw-Sup3rSecret-1", "tok-Sup3rSecret-2"):
        assert secret not in text
    (source,) = yaml.safe_load(
        (tmp_path / "out/provisioning/datasources/isls.yaml").read_text())["datasources"]
    assert source["url"] == "http://influx.example:8086"
    if "ISLS_INFLUX_TOKEN" in environ:
        assert source["jsonData"]["httpHeaderName1"] == "Authorization"
        assert source["secureJsonData"] == {"httpHeaderValue1": "Token $ISLS_INFLUX_TOKEN"}
    else:
        assert source["user"] == "$ISLS_INFLUX_USER"
        assert source["secureJsonData"] == {"password": "$ISLS_INFLUX_PASSWORD"}


# --------------------------------------------------------------------------- ground health

INGEST_ID = "isls-ingest-5f3a9c1e"
RESTART = 10  # the ingest restarts after its 10th point: its counters begin again at 0
# rejected_lines, point by point: 3 in the first run, 2 in the second; 5 over the range.
REJECTED = (0, 0, 1, 1, 2, 2, 3, 3, 3, 3, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2)


def _ingest_lines(identifier: str = INGEST_ID) -> list[str]:
    """An ingest's health points a second apart, in the ``ingest`` measurement's shape
    (README, "InfluxDB contract"), restarted after ``RESTART`` points. The broker's $SYS
    figures are the broker's own: they go on through the ingest's restart (3 dropped in
    the range, 10 before it)."""
    lines = []
    for i, rejected in enumerate(REJECTED):
        run = i if i < RESTART else i - RESTART  # seconds since this run of the ingest began
        integers = {
            "messages": 100 * run, "packets": 400 * run, "values": 4000 * run,
            "errors": run // 2, "unread_messages": 10 * (i % 4), "queue_depth": i % 3,
            "waiting_packets": 5 * (i % 2), "pending_lines": 20 + i,
            "lines_written": 400 * run, "values_written": 4000 * run,
            "write_retries": run // 4, "rejected_lines": rejected,
            "spooled_lines": 30 * run, "backfilled_lines": 25 * run,
            "spool_lines": 50 if 3 <= i <= 6 else 0, "spool_bytes": 4096 if 3 <= i <= 6 else 0,
            "dead_letters": run // 3, "dead_letters_lost": 0, "poison_messages": run // 5,
            "read_pauses": run // 2, "broker_dropped": 10 + 2 * (i >= 5) + (i >= 15),
            "broker_stored": 100 + i, "auth_failures": int(run >= 6),
            "missing_database": int(run >= 8), "dead_letter_lines": rejected,
        }
        fields = ",".join(f"{name}={value}i" for name, value in integers.items())
        lines.append(f"ingest,ingest={identifier} {fields},"
                     f"spool_full={'true' if 3 <= i <= 6 else 'false'},"
                     f"spool_failed={'true' if 4 <= i <= 5 else 'false'},"
                     f"peak_memory_mb={80.0 + i!r} {START_NS + i * 1_000_000_000}\n")
    return lines


def _health(dashboards: DashboardSet) -> dict[str, Any]:
    (model,) = [d.model for d in dashboards.dashboards if d.uid == HEALTH_UID]
    return model


def _charted_field(query: str) -> str:
    match = re.search(r'(?:last|max)\("(\w+)"\)', query)
    assert match is not None, query
    return match.group(1)


def test_ground_health_dashboard_model(built: DashboardSet) -> None:
    (dashboard,) = [d for d in built.dashboards if d.uid == "isls-ground-health"]
    assert dashboard.title == HEALTH_TITLE == "ISLS ground system health"
    model = dashboard.model
    assert model["uid"] == "isls-ground-health" and model["refresh"] == "5s"
    (variable,) = model["templating"]["list"]
    assert variable["name"] == "ingest" and variable["type"] == "query"
    assert variable["query"] == 'SHOW TAG VALUES FROM "ingest" WITH KEY = "ingest"'
    assert variable["multi"] and variable["includeAll"] and variable["allValue"] == ".*"
    assert variable["current"]["value"] == "$__all"

    # A panel per HEALTH_FIELDS entry, in its order and under its row; stats on top.
    rows = [p["title"] for p in panels(model) if p["type"] == "row"]
    assert rows == [HEADLINE_ROW, "Ingest throughput", "Backlog and memory", "Storage",
                    "Input faults", "Broker", "Links"]
    charted, row = [], ""
    for panel in panels(model):
        if panel["type"] == "row":
            row = panel["title"]
        elif panel["type"] != "stat":
            (target,) = panel["targets"]
            charted.append((row, _charted_field(target["query"]), panel["title"]))
            kind = {f.field: f.kind for f in HEALTH_FIELDS}[charted[-1][1]]
            assert panel["type"] == ("state-timeline" if kind == "state" else "timeseries")
            if kind == "rate":
                assert "non_negative_derivative(last(" in target["query"]
                assert "), 1s)" in target["query"]
    assert charted == [(f.row, f.field, f.title) for f in HEALTH_FIELDS]
    assert {"spool_failed", "auth_failures", "missing_database", "dead_letter_lines",
            "broker_dropped", "broker_stored", "locked", "last_frame_age"} <= {
        field for _, field, _ in charted}

    for _, target in targets(model):
        query = target["query"]
        assert "$timeFilter" in query and "GROUP BY time($__interval)" in query, query
        assert "$spacecraft" not in query and "$source" not in query
        if 'FROM "ingest"' in query:
            assert '"ingest" =~ /^$ingest$/' in query and target["alias"] in (
                "$tag_ingest", "$col"), query
        else:
            assert 'FROM "link"' in query and target["alias"] == "$tag_link", query
    for annotation in model["annotations"]["list"]:  # every event, every alarm change
        assert annotation["query"].endswith(" WHERE $timeFilter")

    # The "nothing lost" stats: green at 0, red at anything above.
    stats = {p["title"]: p for p in panels(model) if p["type"] == "stat"}
    assert list(stats) == ["Rejected lines", "Dead letters lost",
                           "Messages dropped by the broker"]
    for title, panel in stats.items():
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert (colour(steps, 0), colour(steps, 1), colour(steps, 1e6)) == (
            "green", "red", "red"), title
        assert panel["options"]["colorMode"] == "background"
        assert panel["gridPos"]["y"] == 1  # under the first row, above every chart

    # The broker's drop rate: red as soon as it leaves 0.
    (dropped,) = [p for p in panels(model)
                  if p.get("title") == "Broker dropped messages per second"]
    config = field_config(dropped, "broker_dropped")
    steps = config["thresholds"]["steps"]
    assert colour(steps, 0.0) == "green"
    assert colour(steps, 1 / 86_400) == colour(steps, 1000.0) == "red"  # one a day: red
    assert config["color"] == {"mode": "thresholds"}
    assert config["custom"]["thresholdsStyle"] == {"mode": "line+area"}
    # A boolean that is trouble when true is red when true; a link's lock is not.
    for title, true_colour in (("Spool full", "red"), ("Spool write failed", "red"),
                               ("Locked", "green")):
        (panel,) = [p for p in panels(model) if p.get("title") == title]
        mappings = panel["fieldConfig"]["defaults"]["mappings"]
        assert {m["options"]["match"]: m["options"]["result"]["color"]
                for m in mappings}["true"] == true_colour, title


def test_ground_health_queries_return_the_sample_data(
        offline_config: Config, tmdbs: list[Tmdb], influxd: InfluxServer,
        database: str) -> None:
    influxd.query(f'CREATE DATABASE "{database}"')
    write_lines(influxd, database, _ingest_lines() + _link_lines(15) + _alarm_lines())
    model = _health(build_dashboards(offline_config, tmdbs))
    start, end = START_NS - 60_000_000_000, START_NS + 3_600_000_000_000

    def run(query: str) -> list[dict[str, Any]]:
        text = expand(query, model, start, end)
        return series_of(influxd.query(text, database), text)

    def values(query: str) -> list[Any]:
        return [row[1] for s in run(query) for row in s["values"] if row[1] is not None]

    charts: dict[str, str] = {}  # title: query
    stats: dict[str, str] = {}
    for panel, target in targets(model):
        series = run(target["query"])
        assert series and non_null_values(series) > 0, (panel["title"], target["query"])
        (stats if panel["type"] == "stat" else charts)[panel["title"]] = target["query"]
        if 'FROM "ingest"' in target["query"] and panel["type"] != "stat":
            assert {s["tags"]["ingest"] for s in series} == {INGEST_ID}, panel["title"]
    assert (len(charts), len(stats)) == (len(HEALTH_FIELDS), 3)

    # Rates from counters: the restart's drop to 0 is skipped, never a negative rate.
    assert values(charts["Messages per second"]) == [100.0] * (len(REJECTED) - 2)
    assert values(charts["Packets per second"]) == [400.0] * (len(REJECTED) - 2)
    assert values(charts["Rejected lines"]) == list(REJECTED)  # as counted, restart shown
    assert max(values(charts["Peak memory"])) == 80.0 + len(REJECTED) - 1
    assert set(values(charts["Spool full"])) == {True, False}
    assert set(values(charts["Locked"])) == {True, False}
    assert max(values(charts["Last frame age"])) == pytest.approx(0.08)
    # Over the range, across the restart: 3 + 2 rejected, none lost, 3 dropped (the 10
    # the broker had dropped before the range are not counted).
    assert values(stats["Rejected lines"]) == [5]
    assert values(stats["Dead letters lost"]) == [0]
    assert values(stats["Messages dropped by the broker"]) == [3]

    for annotation in model["annotations"]["list"]:
        assert non_null_values(run(annotation["query"])) > 0, annotation["name"]
    (variable,) = model["templating"]["list"]
    tags = series_of(influxd.query(variable["query"], database), variable["query"])
    assert [row[1] for s in tags for row in s["values"]] == [INGEST_ID]

    # A second ingest on the same broker: its losses add up, the broker's figure does not
    # (both report the same counter); picking one ingest shows that one's alone.
    write_lines(influxd, database, _ingest_lines("isls-ingest-0b77d2a4"))
    assert values(stats["Rejected lines"]) == [10]
    assert values(stats["Messages dropped by the broker"]) == [3]
    one = stats["Rejected lines"].replace("$ingest", grafana_regex_escape(INGEST_ID))
    assert values(one) == [5]


def test_a_line_in_health_fields_is_a_panel(offline_config: Config, tmdbs: list[Tmdb],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """HEALTH_FIELDS is the one place: the dashboard is built from it and nothing else."""
    before = list(panels(_health(build_dashboards(offline_config, tmdbs))))
    too_large = HealthField("Storage", "too_large", "Batches too large (413)", "short",
                            "count", bad=True)
    monkeypatch.setattr(dashboards_module, "HEALTH_FIELDS", (*HEALTH_FIELDS, too_large))
    model = _health(build_dashboards(offline_config, tmdbs))
    after = list(panels(model))
    assert len(after) == len(before) + 1
    titles = [p["title"] for p in after]
    (added,) = [p for p in after if p["title"] == too_large.title]
    assert _charted_field(added["targets"][0]["query"]) == "too_large"
    assert titles.index("Storage") < titles.index(too_large.title) < titles.index(
        "Input faults")  # in its row, wherever the line is in the table

    # A new row and a new headline: a row, the panel and a stat among the others.
    archive = HealthField("Archive", "archive_failures", "Archive write failures",
                          "short", "count", bad=True, headline="Messages not archived")
    monkeypatch.setattr(dashboards_module, "HEALTH_FIELDS", (*HEALTH_FIELDS, archive))
    model = _health(build_dashboards(offline_config, tmdbs))
    assert len(list(panels(model))) == len(before) + 3
    assert [p["title"] for p in panels(model) if p["type"] == "stat"][-1] == \
        "Messages not archived"
    errors = list(jsonschema.Draft202012Validator(DASHBOARD_SCHEMA).iter_errors(model))
    assert not errors
    with pytest.raises(ValueError, match="peak_memory_mb"):
        HealthField("Backlog", "peak_memory_mb", "Peak", "mbytes", "level", headline="x")


def test_every_field_the_ingest_writes_has_a_panel() -> None:
    """A field added to the ingest's health point needs its line in HEALTH_FIELDS."""
    line = health_line("isls-ingest-x", IngestStats(), 0, 0, WriterStats(), START_NS)
    written = {field.split("=")[0] for field in line.split(" ")[1].split(",")}
    charted = {f.field for f in HEALTH_FIELDS if f.measurement == "ingest"}
    assert written <= charted, (f"add a HealthField line to HEALTH_FIELDS in "
                                f"control_center/dashboards.py for {written - charted}")


def test_isls_dashboards_build_writes_the_ground_health_dashboard(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISLS_STATE_DIR", str(tmp_path / "state"))
    out = tmp_path / "dashboards"
    assert main(["--config", str(CONFIG), "dashboards", "build", "--out", str(out)]) == 0
    model = json.loads((out / "isls-joint" / "isls-ground-health.json").read_text())
    assert (model["uid"], model["title"]) == ("isls-ground-health", "ISLS ground system health")
    assert len([p for p in model["panels"] if p["type"] != "row"]) == len(HEALTH_FIELDS) + 3
