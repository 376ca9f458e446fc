"""What every dashboard is built with: the board (a dashboard under construction: its
panels placed on Grafana's 24-column grid, ids in order, events and alarm changes as
annotations), the standard time series and state timeline panels, and the template
variables of the telemetry dashboards (``spacecraft``, ``source``, ``pass``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import statetimeline, timeseries
from grafana_foundation_sdk.builders.common import VizLegendOptions
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm

from control_center.grafana.fields import configure_fields
from control_center.grafana.layout import GRID_WIDTH
from control_center.grafana.queries import LIVE_ONLY_FILTER, InfluxQL, InfluxQLQuery, quote
from control_center.storage.contract import ALARMS_MEASUREMENT, EVENTS_MEASUREMENT
from control_center.telemetry.tmdb import Parameter

SCHEMA_VERSION = 39  # Grafana 10.4 / 11
TIME_FROM, TIME_TO = "now-15m", "now"
REFRESH_INTERVALS = ["1s", "5s", "10s", "30s", "1m", "5m"]
SOURCES = ("live", "replay", "import")
ALL_VALUE = ".*"


class _Grid:
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


class Board:
    """One dashboard under construction: a builder, its grid and its data source."""

    def __init__(self, uid: str, title: str, datasource: dm.DataSourceRef,
                 variables: list[cogbuilder.Builder[dm.VariableModel]], refresh: str,
                 tags: list[str], description: str,
                 annotation_filter: str | None = None) -> None:
        self.uid, self.title, self.datasource = uid, title, datasource
        # Events and alarm changes of the spacecraft selected, unless told otherwise.
        self.annotation_filter = annotation_filter or LIVE_ONLY_FILTER
        self.grid = _Grid()
        self.builder = (db.Dashboard(title).uid(uid).description(description).tags(tags)
                        .editable().time(TIME_FROM, TIME_TO).refresh(refresh)
                        .timezone("utc").tooltip(dm.DashboardCursorSync.CROSSHAIR)
                        .timepicker(db.TimePicker().refresh_intervals(REFRESH_INTERVALS))
                        .variables(variables))

    def row(self, title: str) -> None:
        self.builder.with_row(db.Row(title).id(self.grid.new_id())
                              .grid_pos(self.grid.row()))

    def break_line(self) -> None:
        self.grid.break_line()

    def target(self, query: str, ref_id: str = "A", *, alias: str | None = "$col",
               result_format: str = "time_series") -> InfluxQL:
        return InfluxQL(InfluxQLQuery(ref_id=ref_id, query=query, alias=alias,
                                      result_format=result_format,
                                      datasource=self.datasource))

    def add(self, panel: Any, w: int, h: int, *, fields: Sequence[Parameter] = (),
            targets: Sequence[InfluxQL] = ()) -> dm.Panel:
        """Finish ``panel`` (a panel builder), configure its fields from the TMDB."""
        panel.id(self.grid.new_id()).datasource(self.datasource).grid_pos(
            self.grid.place(w, h))
        for target in targets:
            panel.with_target(target)
        built: dm.Panel = panel.build()
        configure_fields(built, fields)
        self.builder.with_panel(_Built(built))
        return built

    def build(self) -> dict[str, Any]:
        model: dict[str, Any] = json.loads(json.dumps(self.builder.build(), cls=JSONEncoder))
        model["schemaVersion"] = SCHEMA_VERSION
        # Events and alarm changes as annotations on every time axis.
        annotations = model.setdefault("annotations", {}).setdefault("list", [])
        for name, measurement, colour in (("Events", EVENTS_MEASUREMENT, "#5794F2"),
                                          ("Alarms", ALARMS_MEASUREMENT, "#F2495C")):
            annotations.append({
                "name": name, "enable": True, "hide": False, "iconColor": colour,
                "datasource": json.loads(json.dumps(self.datasource, cls=JSONEncoder)),
                "query": f'SELECT "message" FROM {quote(measurement)} '
                         f"{self.annotation_filter}",
                "textColumn": "message",
            })
        return model


class _Built(cogbuilder.Builder[dm.Panel]):
    """A panel already built (and its fields configured), for the dashboard builder."""

    def __init__(self, panel: dm.Panel) -> None:
        self._panel = panel

    def build(self) -> dm.Panel:
        return self._panel


def option(value: str, text_value: str | None = None, *,
           selected: bool = True) -> dm.VariableOption:
    """An entry of a variable's options (``text_value``: shown instead of the value)."""
    return dm.VariableOption(selected=selected, text=text_value or value, value=value)


def telemetry_variables(datasource: dm.DataSourceRef, *, spacecraft: str | None,
                        spacecraft_from: str | None, all_spacecraft: Sequence[str] = ()
                        ) -> list[cogbuilder.Builder[dm.VariableModel]]:
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
            .current(option("$__all", "All"))
            .options([option("$__all", "All"),
                      *(option(s, selected=False) for s in all_spacecraft)]))
    else:
        assert spacecraft_from is not None
        preset = spacecraft or ""
        variables.append(
            db.QueryVariable("spacecraft").label("Spacecraft").datasource(datasource)
            .query(f'SHOW TAG VALUES FROM {quote(spacecraft_from)} WITH KEY = "spacecraft"')
            .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD).sort(dm.VariableSort.ALPHABETICAL_ASC)
            .current(option(preset)).options([]))
    variables.append(
        db.CustomVariable("source").label("Source").values(",".join(SOURCES))
        .current(option("live"))
        .options([option(s, selected=s == "live") for s in SOURCES]))
    variables.append(
        db.QueryVariable("pass").label("Pass (replays)").datasource(datasource)
        .query('SHOW TAG VALUES WITH KEY = "pass"')
        .description("Recorded pass of a replay; All for live and imported data")
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_DESC)
        .include_all(True).all_value(ALL_VALUE).current(option("$__all", "All"))
        .options([]))
    return variables


def timeseries_panel(title: str) -> timeseries.Panel:
    """Lines without points, nulls spanned, the legend below."""
    return (timeseries.Panel().title(title).span_nulls(True).line_width(1).fill_opacity(5)
            .show_points(common.VisibilityMode.NEVER)
            .legend(VizLegendOptions().show_legend(True)
                    .display_mode(common.LegendDisplayMode.LIST)
                    .placement(common.LegendPlacement.BOTTOM)))


def timeline_panel(title: str) -> statetimeline.Panel:
    """A state timeline: equal consecutive values merged, no legend."""
    return (statetimeline.Panel().title(title).merge_values(True)
            .show_value(common.VisibilityMode.AUTO).fill_opacity(80).line_width(0)
            .legend(VizLegendOptions().show_legend(False)
                    .display_mode(common.LegendDisplayMode.LIST)
                    .placement(common.LegendPlacement.BOTTOM)))

