"""Helpers shared by the unit and integration tests of dashboards."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from control_center.grafana.dashboards import DashboardSet
from control_center.grafana.health import HEALTH_UID

START_NS = 1_800_000_000 * 1_000_000_000  # the simulators' first packet (test_pipeline)


def panels(model: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in model["panels"]:
        yield panel
        yield from panel.get("panels", [])


def targets(model: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in panels(model):
        for target in panel.get("targets", []):
            yield panel, target


def _health(dashboards: DashboardSet) -> dict[str, Any]:
    (model,) = [d.model for d in dashboards.dashboards if d.uid == HEALTH_UID]
    return model


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
