"""The dashboards' queries against a real influxd: every query of every generated
dashboard returns data from the real pipeline, the pass variable selects one replayed
pass, and the ground health queries return the health points the ingest writes.
What the models themselves must hold is tests/unit/test_dashboards.py."""

from __future__ import annotations

import asyncio
import urllib.request
from typing import Any

import pytest

from control_center.config import Config
from control_center.grafana.dashboards import DashboardSet, build_dashboards
from control_center.grafana.health import HEALTH_FIELDS, HEALTH_UID
from control_center.monitoring.alarms import AlarmManager
from control_center.monitoring.monitor import Event
from control_center.operations.servers import InfluxServer
from control_center.storage.contract import alarm_line, event_line, link_line
from control_center.telemetry.tmdb import Tmdb
from drivers.link import LinkStatus
from tests.conftest import run_pipeline
from tests.support.dashboards import (
    START_NS,
    _health,
    expand,
    grafana_regex_escape,
    non_null_values,
    series_of,
    targets,
)


def write_lines(influxd: InfluxServer, database: str, lines: list[str]) -> None:
    request = urllib.request.Request(f"{influxd.url}/write?db={database}&precision=ns",
                                     data="".join(lines).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 204


def _link_lines(seconds: int) -> list[str]:
    lines = []
    for i in range(seconds):
        now = START_NS + i * 1_000_000_000
        lines.append(link_line(LinkStatus(
            link="orbiter-bench", spacecraft="orbiter", device="", framing="tm",
            connected=True, locked=i > 1, frames_good=12 * i, frames_bad=i // 3,
            frames_gap=i // 4, sync_losses=i // 5, packets=40 * i, packets_dropped=0,
            octets=1115 * 12 * i, bit_rate=107_040.0, reopens=0, unrouted_packets=0,
            last_frame_ns=now - 80_000_000), now))
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


INGEST_ID = "isls-ingest-5f3a9c1e"


RESTART = 10  # the ingest restarts after its 10th point: its counters begin again at 0


# rejected_lines, point by point: 3 in the first run, 2 in the second; 5 over the range.
REJECTED = (0, 0, 1, 1, 2, 2, 3, 3, 3, 3, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2)


def _ingest_lines(identifier: str = INGEST_ID) -> list[str]:
    """An ingest's health points a second apart, in the ``ingest`` measurement's shape
    (docs/contracts.md, "InfluxDB contract"), restarted after ``RESTART`` points. The broker's $SYS
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
