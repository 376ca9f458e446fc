"""Generated Grafana dashboards: their JSON model, and the files and provisioning
``write_dashboards`` leaves for Grafana (their queries run on a real influxd in
tests/integration/test_dashboards.py).

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
  interpolation is not run; the expansion rules are the documented ones."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped, unused-ignore]  # stubs: types-jsonschema
import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dm

from control_center.cli import main
from control_center.config import Config, load_config
from control_center.grafana import health as health_module
from control_center.grafana.dashboards import (
    DashboardSet,
    build_dashboards,
    folder_uid,
    influx_auth,
    write_dashboards,
)
from control_center.grafana.fields import grafana_unit
from control_center.grafana.health import (
    HEADLINE_ROW,
    HEALTH_FIELDS,
    HEALTH_TITLE,
    HEALTH_UID,
    HealthField,
)
from control_center.grafana.queries import InfluxQLQuery
from control_center.storage.contract import health_line
from control_center.storage.health import WriterStats
from control_center.telemetry.decoder import IngestStats
from control_center.telemetry.tmdb import Limits, Parameter, Tmdb
from tests.conftest import CONFIG
from tests.support.dashboards import START_NS, _health, panels, targets

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


def test_a_line_in_health_fields_is_a_panel(offline_config: Config, tmdbs: list[Tmdb],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """HEALTH_FIELDS is the one place: the dashboard is built from it and nothing else."""
    before = list(panels(_health(build_dashboards(offline_config, tmdbs))))
    too_large = HealthField("Storage", "too_large", "Batches too large (413)", "short",
                            "count", bad=True)
    monkeypatch.setattr(health_module, "HEALTH_FIELDS", (*HEALTH_FIELDS, too_large))
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
    monkeypatch.setattr(health_module, "HEALTH_FIELDS", (*HEALTH_FIELDS, archive))
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
                                f"control_center/grafana/health.py for {written - charted}")


def test_isls_dashboards_build_writes_the_ground_health_dashboard(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISLS_STATE_DIR", str(tmp_path / "state"))
    out = tmp_path / "dashboards"
    assert main(["--config", str(CONFIG), "dashboards", "build", "--out", str(out)]) == 0
    model = json.loads((out / "isls-joint" / "isls-ground-health.json").read_text())
    assert (model["uid"], model["title"]) == ("isls-ground-health", "ISLS ground system health")
    assert len([p for p in model["panels"] if p["type"] != "row"]) == len(HEALTH_FIELDS) + 3
