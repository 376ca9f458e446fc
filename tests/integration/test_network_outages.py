"""The shipped ground network (config/network.toml: 3 stations, 2 centers, 1 partner, 20
spacecraft of 5 missions) on real brokers and influxd, under load, through two outages:
the WAN link from Kashi to Moscow cut, then Beijing's broker stopped. Afterwards each
center holds every packet the stations heard, once; the partner holds exactly its share;
the backlog waited in the stations' brokers and the backlog alarm rose.

Outages here last seconds, not the 60 s and 30 s of bench/network.py (docs/network.md
has its figures), to keep the suite short: what a bridge does with a backlog does not
depend on how long it took to build.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import Counter
from pathlib import Path

from control_center.config import Config
from control_center.network.compare import compare_network, format_comparison
from control_center.network.run import SiteRun, run_network, start_servers
from control_center.network.sites import Network, load_network
from control_center.operations.servers import free_port
from tests.conftest import wait_for_async
from tests.support.wan import WanLink

ROOT = Path(__file__).resolve().parents[2]
START_UNIX = 1_800_000_000.0
SPEED = 4.0


def shipped_network(tmp_path: Path) -> Network:
    """config/network.toml on free ports, its state under ``tmp_path``; Kashi's queue
    small enough (1,000 messages, alarm at a quarter) for its alarm to rise in seconds."""
    text = (ROOT / "config" / "network.toml").read_text()
    text = re.sub(r"(mqtt_port|influx_port) = \d+", lambda m: f"{m[1]} = {free_port()}", text)
    text = text.replace('state_dir = "../state/network"', f'state_dir = "{tmp_path / "state"}"')
    text = text.replace("queue_alarm = 0.8", "queue_alarm = 0.25")
    text = text.replace('tmdb = "tmdb/', f'tmdb = "{ROOT / "config" / "tmdb"}/')
    text = re.sub(r'(name = "kashi"[^\[]*?queue_limit = )\d+', r"\g<1>1000", text, flags=re.S)
    path = tmp_path / "network.toml"
    path.write_text(text)
    return load_network(path)


def sent_by_spacecraft(runs: list[SiteRun]) -> Counter[str]:
    sent: Counter[str] = Counter()
    for run in runs:
        for simulator in run.simulators:
            sent[simulator.spacecraft] += sum(simulator.stats.packets.values())
    return sent


def test_the_network_loses_nothing_through_a_cut_link_and_a_center_down(
        offline_config: Config, tmp_path: Path) -> None:
    network = shipped_network(tmp_path)
    assert network.site("kashi").queue_limit == 1000
    moscow = network.site("moscow")
    wan = WanLink(moscow.mqtt_port)  # Kashi -> Moscow goes through it
    environ = {f"ISLS_NETWORK_PASSWORD_{a}": f"secret-{a.lower()}"
               for a in ("BRIDGE_MOSCOW", "BRIDGE_BEIJING", "PARTNER_A")}
    with contextlib.ExitStack() as stack:
        runs = start_servers(stack, network, network.sites, environ,
                             via={("kashi", "moscow"): wan.port})
        by_name = {run.site.name: run for run in runs}
        stop = asyncio.Event()

        async def scenario() -> None:
            await wan.start()
            task = asyncio.create_task(run_network(
                offline_config, network, runs, duration=None, environ=environ, speed=SPEED,
                stop=stop, start_unix=START_UNIX))
            centers = [by_name["moscow"], by_name["beijing"]]
            # Every station's telemetry reaching both centers: the bridges are up.
            await wait_for_async(lambda: all(
                run.ingest is not None and len(run.ingest.stats.packets) == 20
                for run in centers), 30, "both centers to hear all 20 spacecraft")
            kashi = by_name["kashi"]
            wan.cut()
            await wait_for_async(lambda: kashi.backlog is not None and kashi.backlog.alarm,
                                 30, "Kashi's backlog alarm while its link to Moscow is cut")
            wan.restore()
            await wait_for_async(lambda: kashi.backlog is not None and not kashi.backlog.alarm,
                                 30, "Kashi's backlog to drain into Moscow")
            beijing = by_name["beijing"]
            held = by_name["bear-lakes"].backlog
            assert held is not None
            before = held.stored
            beijing.broker.stop()
            await wait_for_async(lambda: held.stored > before + 100, 30,
                                 "Bear Lakes to hold a backlog for Beijing")
            beijing.broker.start()
            await wait_for_async(lambda: held.stored <= before + 20, 30,
                                 "Bear Lakes' backlog to drain into Beijing")
            stop.set()
            await task
            await wan.close()

        asyncio.run(scenario())
        sent = sent_by_spacecraft(runs)
        comparison = compare_network(network)
    assert len(sent) == 20 and all(sent.values())
    kashi_backlog = by_name["kashi"].backlog
    assert kashi_backlog is not None and kashi_backlog.alarms >= 1 \
        and kashi_backlog.peak >= 250
    table = format_comparison(comparison)
    assert comparison.exit_code == 0, table
    # Every packet heard is stored once at each center; the partner holds its share.
    for site in ("moscow", "beijing", "partner-a"):
        index = comparison.sites.index(site)
        stored: Counter[str] = Counter()
        for row in comparison.rows:
            stored[row.spacecraft] += row.counts[index] or 0
        share = {sc for sc, kinds in network.partner_share(site).items() if "raw" in kinds}
        expected = {sc: n for sc, n in sent.items() if site != "partner-a" or sc in share}
        assert {sc: n for sc, n in stored.items() if n} == expected, f"{site}:\n{table}"
        ingest = by_name[site].ingest
        assert ingest is not None
        assert not ingest.stats.errors, (site, ingest.stats.errors)
