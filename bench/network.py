"""The ground network through outages: nothing lost, nothing twice, the partner its share.

    python bench/network.py [--cut 60] [--down 30] [--speed 4] [--json PATH]

Runs the shipped network (config/network.toml: 3 stations, 2 centers, 1 partner, 20
spacecraft of 5 missions, simulators at ``--speed``) on free loopback ports with its state
in a temporary directory, as ``isls up --network`` does, and under that load:

1. cuts the WAN link from Kashi to Moscow (a TCP link in between, aborted) for ``--cut``
   seconds, and at least until Kashi's backlog alarm has risen (its queue is set to 2,000
   messages, the alarm to a quarter of it, so the alarm shows within seconds) and Beijing
   holds it too (the alarm is bridged to every center);
2. restores it and waits for the backlog to drain into Moscow;
3. stops Beijing's broker for ``--down`` seconds, and at least until Bear Lakes holds a
   backlog for it; starts it again (same data directory) and waits for the drain;
4. stops the simulators, lets the bridges deliver the rest, stops the ingests.

Then ``isls network compare``'s rule over the run: every center holds the same packets
per spacecraft and hour, the partner exactly its share; and each center's counts equal
the packets the stations' simulators sent (0 lost, 0 stored twice). Exit 0 when all hold.
tests/integration/test_network_outages.py runs it with outages of a few seconds (the
conditions alone).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from control_center.config import Config, MqttSettings, load_config
from control_center.network.bridges import backlog_topic
from control_center.network.compare import Comparison, compare_network, format_comparison
from control_center.network.run import SiteRun, run_network, start_servers
from control_center.network.sites import Network, load_network
from control_center.network.wan import WanLink
from control_center.operations.servers import free_port
from control_center.pipeline.sources import RECEIVE_MAXIMUM
from drivers.mqtt import make_client

ROOT = Path(__file__).resolve().parent.parent
START_UNIX = 1_800_000_000.0
PASSWORDS = {f"ISLS_NETWORK_PASSWORD_{a}": f"bench-{a.lower()}"
             for a in ("BRIDGE_MOSCOW", "BRIDGE_BEIJING", "PARTNER_A")}


# Messages Bear Lakes holds for Beijing before its broker comes back (see the scenario).
DOWN_HELD = 3 * RECEIVE_MAXIMUM // 4
# Kashi's queue, at least: it holds Beijing's share of Kashi (as much as Bear Lakes holds,
# with a margin) while Beijing's broker is down; a full queue drops the newest.
KASHI_QUEUE = 2_000


def shipped_network(directory: Path, kashi_queue: int = KASHI_QUEUE) -> Network:
    """config/network.toml on free ports, its state under ``directory``; Kashi's queue
    ``kashi_queue`` messages with the alarm at a quarter: 2,000 lets the alarm rise within
    seconds and holds Beijing's backlog; a longer cut needs a queue that holds it (80
    messages a second)."""
    text = (ROOT / "config" / "network.toml").read_text()
    text = re.sub(r"(mqtt_port|influx_port) = \d+", lambda m: f"{m[1]} = {free_port()}", text)
    text = text.replace('state_dir = "../state/network"',
                        f'state_dir = "{directory / "state"}"')
    text = text.replace("queue_alarm = 0.8", "queue_alarm = 0.25")
    text = text.replace('tmdb = "tmdb/', f'tmdb = "{ROOT / "config" / "tmdb"}/')
    text = re.sub(r'(name = "kashi"[^\[]*?queue_limit = )\d+', rf"\g<1>{kashi_queue}", text,
                  flags=re.S)
    path = directory / "network.toml"
    path.write_text(text)
    return load_network(path)


@dataclass
class Outcome:
    network: Network
    runs: list[SiteRun]
    comparison: Comparison
    sent: Counter[str]
    timings: dict[str, float] = field(default_factory=dict)

    def stored(self, site: str) -> dict[str, int]:
        index = self.comparison.sites.index(site)
        counts: Counter[str] = Counter()
        for row in self.comparison.rows:
            counts[row.spacecraft] += row.counts[index] or 0
        return {spacecraft: n for spacecraft, n in counts.items() if n}

    def expected(self, site: str) -> dict[str, int]:
        if self.network.site(site).kind == "center":
            return dict(self.sent)
        share = self.network.partner_share(site)
        return {sc: n for sc, n in self.sent.items() if "raw" in share.get(sc, ())}

    def problems(self) -> list[str]:
        found = []
        if self.comparison.exit_code:
            found.append("isls network compare finds differences:\n"
                         + format_comparison(self.comparison))
        for site in ("moscow", "beijing", "partner-a"):
            if self.stored(site) != self.expected(site):
                found.append(f"{site}: stored {self.stored(site)}, expected "
                             f"{self.expected(site)}")
        for run in self.runs:
            if run.backlog is not None and run.backlog.dropped:
                found.append(f"{run.site.name}: its broker dropped {run.backlog.dropped} "
                             f"messages (a full queue: size it for the outage)")
        return found


async def _until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Wait for ``condition`` (polled) within ``timeout`` s; return the seconds it took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(int(timeout * 10)):
        if condition():
            return loop.time() - start
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


async def retained_alarm(port: int, topic: str) -> bool | None:
    """The ``alarm`` of the retained backlog message on ``topic`` at the broker on
    ``port`` (None: no such message within a second)."""
    async with make_client(MqttSettings(port=port), f"bench-backlog-{port}") as client:
        await client.subscribe(topic, qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                async for message in client.messages:
                    payload = message.payload if isinstance(message.payload, bytes) else b""
                    with contextlib.suppress(ValueError, AttributeError):
                        return bool(json.loads(payload).get("alarm"))
    return None


async def _until_async(condition: Callable[[], Awaitable[bool]], timeout: float,
                       what: str) -> float:
    """:func:`_until` for a condition that must be awaited."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while loop.time() - start < timeout:
        if await condition():
            return loop.time() - start
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


async def _hold(seconds: float) -> None:
    """An outage's length: the scenario's own clock, not a synchronisation."""
    await asyncio.sleep(seconds)


async def _is_true(reading: Awaitable[bool | None]) -> bool:
    return await reading is True


def run_scenario(base: Config, directory: Path, *, cut: float = 0.0, down: float = 0.0,
                 speed: float = 4.0, center_down: bool = True) -> Outcome:
    """The outages above; ``center_down=False`` leaves out the second (Beijing's broker
    stopped)."""
    # Room for the whole cut, with a margin: 80 messages a second reach Kashi's broker.
    network = shipped_network(directory, max(KASHI_QUEUE, int(cut * 80 * 1.5)))
    wan = WanLink(network.site("moscow").mqtt_port)  # Kashi -> Moscow goes through it
    timings: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        runs = start_servers(stack, network, network.sites, PASSWORDS,
                             via={("kashi", "moscow"): wan.port})
        by_name = {run.site.name: run for run in runs}
        stop = asyncio.Event()

        async def scenario() -> None:
            await wan.start()
            task = asyncio.create_task(run_network(
                base, network, runs, duration=None, environ=PASSWORDS, speed=speed,
                stop=stop, start_unix=START_UNIX))
            centers = [by_name["moscow"], by_name["beijing"]]
            timings["all heard"] = await _until(lambda: all(
                run.ingest is not None and len(run.ingest.stats.packets) == 20
                for run in centers), 60, "both centers to hear all 20 spacecraft")
            kashi = by_name["kashi"]
            wan.cut()
            started = time.monotonic()
            timings["cut: alarm after"] = await _until(
                lambda: kashi.backlog is not None and kashi.backlog.alarm is True,
                max(60, 2 * cut),
                "Kashi's backlog alarm while its link to Moscow is cut")
            # Beijing's operators see it too: the alarm is bridged to every center.
            beijing_port = by_name["beijing"].site.mqtt_port
            timings["cut: alarm at beijing after"] = await _until_async(
                lambda: _is_true(retained_alarm(beijing_port, backlog_topic("kashi"))),
                30, "Kashi's backlog alarm at Beijing")
            await _hold(max(0.0, cut - (time.monotonic() - started)))
            timings["cut: seconds"] = time.monotonic() - started
            wan.restore()
            timings["cut: drained after"] = await _until(
                lambda: kashi.backlog is not None and kashi.backlog.alarm is False, 120,
                "Kashi's backlog to drain into Moscow")
            held = by_name["bear-lakes"].backlog
            assert held is not None
            before = held.stored
            if not center_down:
                stop.set()
                await task
                await wan.close()
                return
            beijing = by_name["beijing"]
            beijing.broker.stop()
            started = time.monotonic()
            # Bear Lakes hears 8 of the 20 spacecraft: at this, Beijing's broker gets
            # back more than its ingest takes unacknowledged (RECEIVE_MAXIMUM). It sends
            # that many of the session's backlog before the SUBACK, which once kept the
            # ingest from ever resuming.
            await _until(lambda: held.stored > before + DOWN_HELD,
                         max(60, 2 * down), "Bear Lakes to hold a backlog for Beijing")
            await _hold(max(0.0, down - (time.monotonic() - started)))
            timings["down: seconds"] = time.monotonic() - started
            timings["down: peak held at bear-lakes"] = held.peak
            beijing.broker.start()
            timings["down: drained after"] = await _until(
                lambda: held.stored <= before + 20, 120, "Bear Lakes' backlog to drain")
            stop.set()
            await task
            await wan.close()

        asyncio.run(scenario())
        sent: Counter[str] = Counter()
        for run in runs:
            for simulator in run.simulators:
                sent[simulator.spacecraft] += sum(simulator.stats.packets.values())
        comparison = compare_network(network)
    backlog = by_name["kashi"].backlog
    if backlog is not None:
        timings["cut: peak held at kashi"] = backlog.peak
        timings["cut: alarms raised"] = backlog.alarms
    return Outcome(network, runs, comparison, sent, timings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--cut", type=float, default=60.0, help="seconds the Kashi-Moscow "
                        "link stays cut (default 60)")
    parser.add_argument("--down", type=float, default=30.0, help="seconds Beijing's broker "
                        "stays down (default 30)")
    parser.add_argument("--speed", type=float, default=4.0, help="simulated seconds a second")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        outcome = run_scenario(load_config(), Path(tmp), cut=args.cut, down=args.down,
                               speed=args.speed)
        seconds = time.monotonic() - started
    problems = outcome.problems()
    figures: dict[str, Any] = {
        "seconds": round(seconds), "packets_sent": sum(outcome.sent.values()),
        "stored": {s: sum(outcome.stored(s).values()) for s in ("moscow", "beijing",
                                                                "partner-a")},
        "partner_expected": sum(outcome.expected("partner-a").values()),
        "timings": {k: round(v, 1) for k, v in outcome.timings.items()},
        "problems": problems,
    }
    print(json.dumps(figures, indent=1))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
