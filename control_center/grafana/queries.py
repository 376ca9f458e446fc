"""The InfluxQL behind every panel: a raw InfluxQL ``Dataquery`` (grafana-foundation-sdk
has no InfluxDB query type) and the query text the telemetry dashboards share.

Every telemetry query says ``WHERE "spacecraft" =~ /^$spacecraft$/ AND "source" =
'$source' AND "pass" =~ /^$pass$/ AND $timeFilter``. Live and imported points have no
``pass`` tag; InfluxQL compares a missing tag as the empty string, which ``/^.*$/``
matches, so the pass filter is a no-op until an operator picks one pass (with source =
replay). The live-only measurements (``link``, ``alarms``, ``events``) have neither
``source`` nor ``pass`` tags; their queries filter on spacecraft and time only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard as dm

from control_center.grafana.fields import is_state
from control_center.telemetry.tmdb import PacketDef, Parameter


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


# The measurements written live only, without source or pass tags: link, alarms, events.
LIVE_ONLY_FILTER = """WHERE "spacecraft" =~ /^$spacecraft$/ AND $timeFilter"""


def quote(name: str) -> str:
    """An InfluxQL identifier: a measurement, tag or field name in double quotes."""
    return '"' + name.replace('"', '\\"') + '"'


def series_query(packet: PacketDef, parameters: Sequence[Parameter]) -> str:
    """Means of numbers and last values of states, per ``$__interval``."""
    columns = ", ".join(
        f"{'last' if is_state(p) else 'mean'}({quote(p.name)}) AS {quote(p.name)}"
        for p in parameters)
    return (f"SELECT {columns} FROM {quote(packet.name)} {telemetry_filter()} "
            "GROUP BY time($__interval) fill(null)")
