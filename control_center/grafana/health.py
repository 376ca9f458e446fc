"""The ground system health dashboard (``isls-ground-health``, joint folder): the ground
system itself, from measurements ``ingest`` (a point a second from every ingest) and
``link`` (serial link statistics).

:data:`HEALTH_FIELDS` is its single source: a line there is a panel there, in its row
(rows in order of first appearance), and a counter with a ``headline`` is also a stat
at the top of what was lost over the time range. Its one variable is ``ingest`` (All
by default); a series per ingest process (or per link).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import stat
from grafana_foundation_sdk.builders.common import GraphThresholdsStyleConfig, ReduceDataOptions
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common, units
from grafana_foundation_sdk.models import dashboard as dm

from control_center.grafana.board import (
    ALL_VALUE,
    Board,
    option,
    timeline_panel,
    timeseries_panel,
)
from control_center.grafana.fields import boolean_mappings
from control_center.grafana.layout import GRID_WIDTH
from control_center.grafana.queries import quote
from control_center.storage.contract import INGEST_MEASUREMENT, LINK_MEASUREMENT

HEALTH_UID = "isls-ground-health"
HEALTH_TITLE = "ISLS ground system health"
HEALTH_REFRESH = "5s"  # the ingest writes a point a second; 30-odd panels, InfluxDB is busy
HEADLINE_ROW = "Nothing lost over the time range"
# The red threshold of a rate: any rate above 0 at all (one drop in 30 years is 1e-9/s).
ANY_RATE = 1e-9
HealthKind = Literal["rate", "level", "count", "state"]
# The tag a measurement has one series per: an ingest process, a serial link.
HEALTH_SERIES: dict[str, str] = {INGEST_MEASUREMENT: "ingest", LINK_MEASUREMENT: "link"}
HEALTH_FILTERS: dict[str, str] = {
    INGEST_MEASUREMENT: """WHERE "ingest" =~ /^$ingest$/ AND $timeFilter""",
    LINK_MEASUREMENT: "WHERE $timeFilter",
}


@dataclass(frozen=True, slots=True)
class HealthField:
    """A field of measurement ``ingest`` or ``link`` (docs/contracts.md, "InfluxDB contract") and
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
    measurement: str = INGEST_MEASUREMENT  # or LINK_MEASUREMENT
    bad: bool = False
    headline: str = ""
    shared: bool = False
    note: str = ""

    def __post_init__(self) -> None:
        if self.measurement not in HEALTH_SERIES:
            raise ValueError(f"health field {self.field}: measurement {self.measurement!r} "
                             f"is not one of {', '.join(HEALTH_SERIES)}")
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
    HealthField(_LINKS, "locked", "Locked", units.NoUnit, "state", LINK_MEASUREMENT),
    HealthField(_LINKS, "frames_bad", "Bad frames per second", "suffix:frames/s", "rate",
                LINK_MEASUREMENT),
    HealthField(_LINKS, "frames_gap", "Frame gaps per second", "suffix:gaps/s", "rate",
                LINK_MEASUREMENT),
    HealthField(_LINKS, "last_frame_age", "Last frame age", units.Seconds, "level",
                LINK_MEASUREMENT),
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
    column = quote(item.field)
    return (f"SELECT {_HEALTH_AGGREGATES[item.kind].format(column)} AS {column} "
            f"FROM {quote(item.measurement)} {HEALTH_FILTERS[item.measurement]} "
            f"GROUP BY time($__interval), {quote(HEALTH_SERIES[item.measurement])} fill(null)")


def headline_query(item: HealthField) -> str:
    """The counter's increase over the time range: per ingest (or link), then summed
    (the largest, if ``shared``).

    ``non_negative_difference`` of each interval's highest value: a restart (the counter
    back to 0) is skipped instead of subtracted; what a restarted ingest counted before
    the first point of its new run is the one increase not seen.
    """
    column = quote(item.field)
    series = quote(HEALTH_SERIES[item.measurement])
    increases = (f"SELECT non_negative_difference(max({column})) AS {column} "
                 f"FROM {quote(item.measurement)} {HEALTH_FILTERS[item.measurement]} "
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
            .query(f"SHOW TAG VALUES FROM {quote(INGEST_MEASUREMENT)} "
                   f"WITH KEY = {quote(HEALTH_SERIES[INGEST_MEASUREMENT])}")
            .description("Ingest process (its MQTT client id); All for every one")
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dm.VariableSort.ALPHABETICAL_ASC).multi(True)
            .include_all(True).all_value(ALL_VALUE).current(option("$__all", "All"))
            .options([]))



def _health_panel(board: Board, item: HealthField) -> None:
    description = (f"{item.measurement}.{item.field}, {_HEALTH_MEANING[item.kind]}; "
                   f"a series per {HEALTH_SERIES[item.measurement]}."
                   + (f" {item.note}." if item.note else ""))
    builder: Any
    if item.kind == "state":
        builder = timeline_panel(item.title).mappings(
            _trouble_mappings() if item.bad else boolean_mappings())
    else:
        builder = timeseries_panel(item.title).unit(item.unit)
        if item.bad:  # the line turns red, over a red area, as soon as it leaves 0
            builder = (builder.thresholds(_red_above_zero(1 if item.kind == "count"
                                                          else ANY_RATE))
                       .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
                       .gradient_mode(common.GraphGradientMode.SCHEME)
                       .thresholds_style(GraphThresholdsStyleConfig().mode(
                           common.GraphTresholdsStyleMode.LINE_AND_AREA)))
    board.add(builder.description(description), 8, 6, targets=[board.target(
        health_query(item), alias=f"$tag_{HEALTH_SERIES[item.measurement]}")])


def _headline_panel(board: Board, item: HealthField, width: int) -> None:
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


def ground_health(ref: dm.DataSourceRef) -> Board:
    """The ground system itself: a panel per :data:`HEALTH_FIELDS` entry, read here at
    build time so that the table stays the one place a field is added."""
    fields = HEALTH_FIELDS
    board = Board(HEALTH_UID, HEALTH_TITLE, ref, [_ingest_variable(ref)], HEALTH_REFRESH,
                  ["isls", "ground", "health"],
                  f"The ground system itself (measurements {INGEST_MEASUREMENT} and "
                  f"{LINK_MEASUREMENT}): throughput, backlog, storage, spool, dead letters, "
                  "input faults, broker drops, links. Every event and alarm change is an "
                  "annotation.",
                  # every event and alarm change, of every spacecraft
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

