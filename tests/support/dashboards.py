"""Helpers shared by the unit and integration tests of dashboards."""

from __future__ import annotations

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
