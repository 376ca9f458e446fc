"""The shipped ground network (config/network.toml: 3 stations, 2 centers, 1 partner, 20
spacecraft of 5 missions) on real brokers and influxd, under load, through both outages of
bench/network.py: the WAN link from Kashi to Moscow cut, then Beijing's broker stopped and
started again. Afterwards each center holds every packet the stations heard, once; the
partner holds exactly its share; the backlogs waited in the stations' brokers, Kashi's
alarm rose and Beijing saw it.

Each outage lasts as long as its condition takes (the alarm risen and seen at Beijing; a
backlog held for Beijing), a few seconds, not the 60 s and 30 s of `bench/network.py`
(README, "Ground network", has that run), to keep the suite short.
"""

from __future__ import annotations

from pathlib import Path

from bench.network import DOWN_HELD, run_scenario
from control_center.config import Config


def test_the_network_loses_nothing_through_a_cut_link_and_a_center_down(
        offline_config: Config, tmp_path: Path) -> None:
    outcome = run_scenario(offline_config, tmp_path)
    assert len(outcome.sent) == 20 and all(outcome.sent.values())
    assert outcome.problems() == []
    # Kashi's backlog waited in its broker, and its alarm rose (2,000 messages, a quarter).
    assert outcome.timings["cut: alarms raised"] >= 1
    assert outcome.timings["cut: peak held at kashi"] >= 500
    assert outcome.timings["cut: alarm at beijing after"] >= 0
    # Bear Lakes held Beijing's share while its broker was down, and Beijing's ingest,
    # back on its restarted broker, took it all (the compare above).
    assert outcome.timings["down: peak held at bear-lakes"] > DOWN_HELD
    for site in ("moscow", "beijing", "partner-a"):
        run = next(r for r in outcome.runs if r.site.name == site)
        assert run.ingest is not None
        # Only the live parameter stream (QoS 0, to the center's own broker) may have been
        # dropped while that broker was down; no telemetry error.
        errors = {k: v for k, v in run.ingest.stats.errors.items() if k != "publish_dropped"}
        assert not errors, (site, run.ingest.stats.errors)
