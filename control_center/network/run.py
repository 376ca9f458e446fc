"""``isls up --site NAME`` and ``isls up --network``: sites of the ground network side by
side on one machine, each on its own loopback ports and state directory (docs/network.md).

- a **station** is its broker, bridged to every center (store and forward), and the
  simulators of the spacecraft it hears, which publish there stamped with the station's
  earth-receive time and link (``<station>/<spacecraft>``); a watch raises the backlog
  alarm when the broker's queue nears its limit;
- a **center** is its broker (bridged to its partners and the other centers), its
  InfluxDB, an ingest storing every spacecraft of the network, and its dashboards;
- a **partner** is its broker (only its agreement reaches it), its InfluxDB and an ingest
  storing its share.

Each site is built from the same pieces ``isls up`` runs (servers, ``IngestService``,
simulators); nothing here forwards a message itself: the brokers' bridges do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO

import aiomqtt

from control_center.config import Config, MqttSettings, SpacecraftSettings
from control_center.network.accounts import partner_broker, with_generated_passwords
from control_center.network.bridges import (
    backlog_topic,
    center_bridges,
    network_password,
    station_bridges,
)
from control_center.network.sites import Network, Site
from control_center.operations.servers import (
    PRIVATE_UMASK,
    InfluxServer,
    MosquittoServer,
    private_directory,
)
from control_center.operations.up import refresh_dashboards
from control_center.pipeline.service import IngestService, wait_subscribed
from control_center.telemetry.tmdb import Tmdb
from control_center.telemetry.tmdb_yaml import load_tmdb
from control_center.terminal import LiveText, stop_on_signals
from drivers.mqtt import make_client
from simulators.runner import PacketGenerator, SimulatorService, make_model

log = logging.getLogger("isls.network")

SITE_AUTOSAVE = (False, 1)  # (autosave_on_changes, autosave_interval s): see start_servers


def network_tmdbs(network: Network) -> list[Tmdb]:
    """Each spacecraft's database: the file of its kind, under the spacecraft's name."""
    cache: dict[Path, Tmdb] = {}
    out: list[Tmdb] = []
    for spacecraft in network.spacecraft:
        tmdb = cache.get(spacecraft.tmdb)
        if tmdb is None:
            tmdb = cache[spacecraft.tmdb] = load_tmdb(spacecraft.tmdb)
        out.append(replace(tmdb, spacecraft=spacecraft.name,
                           mission=spacecraft.mission or tmdb.mission))
    return out


def site_config(base: Config, network: Network, site: Site,
                environ: Mapping[str, str]) -> Config:
    """The configuration of a center's or partner's ingest: its own broker, InfluxDB and
    state directory; every spacecraft of the network (a partner's broker only ever
    carries its share). A partner's ingest logs in to its locked broker as the partner.

    A partner's ingest stores its share and publishes nothing: the live parameters and
    alarms its operators see are the ones its agreements share, published by the
    center that owns them (whose operators acknowledge those alarms); the partner's
    broker would refuse its own anyway (its account writes nothing), and a refused
    publish must not pass for a delivered one. So no ``tm/param`` republishing and no
    alarm monitor there."""
    assert site.influx_port is not None
    username = password = None
    ingest, alarms = base.ingest, base.alarms
    if site.kind == "partner":
        username = site.name
        password = network_password(site.name, environ, required=True,
                                    why="the partner's ingest reads its share with it")
        ingest = replace(ingest, publish_params=False)
        alarms = replace(alarms, enabled=False)
    return replace(
        base, source=network.source, state_dir=network.state_dir / site.name,
        mqtt=replace(base.mqtt, host="127.0.0.1", port=site.mqtt_port, username=username,
                     password=password, external=True, shared_group=""),
        influx=replace(base.influx, url=f"http://127.0.0.1:{site.influx_port}",
                       external=True, username=None, password=None, token=None),
        spacecraft=tuple(SpacecraftSettings(name=s.name, tmdb=s.tmdb)
                         for s in network.spacecraft),
        links=(), ingest=ingest, alarms=alarms, grafana=replace(base.grafana,
                                  dashboards_dir=network.state_dir / site.name / "dashboards"),
    )


@dataclass(slots=True)
class Backlog:
    """What a station's broker says of its store and bridges ($SYS, every second)."""

    stored: int = 0
    bridges: dict[str, bool] = field(default_factory=dict)
    alarm: bool | None = None  # None until the first reading: then published, retained
    peak: int = 0  # the most messages stored at once
    alarms: int = 0  # times the backlog alarm rose
    # Messages the station's broker dropped since the watch began: a full queue (a bridge's
    # backlog past queue_limit) drops the newest; nothing else tells of that loss but the
    # broker's log. ``_dropped_seen``: the broker's own count at the last reading (it
    # restarts at 0 with the broker).
    dropped: int = 0
    _dropped_seen: int | None = None

    def dropped_reading(self, count: int) -> int:
        """The broker's dropped count read; returns how many are new."""
        new = 0 if self._dropped_seen is None else \
            (count - self._dropped_seen if count >= self._dropped_seen else count)
        self._dropped_seen = count
        self.dropped += new
        return new


@dataclass(slots=True)
class SiteRun:
    site: Site
    broker: MosquittoServer
    influx: InfluxServer | None = None
    ingest: IngestService | None = None
    simulators: list[SimulatorService] = field(default_factory=list)
    backlog: Backlog | None = None


def start_servers(stack: contextlib.ExitStack, network: Network, sites: Sequence[Site],
                  environ: Mapping[str, str],
                  via: Mapping[tuple[str, str], int] | None = None) -> list[SiteRun]:
    """Every site's broker (with its bridges) and InfluxDB, entered on ``stack``.
    ``via``: (station, center) -> the port of a WAN link between them (tests)."""
    runs: list[SiteRun] = []
    for site in sites:
        directory = private_directory(network.state_dir / site.name)
        bridges: list[str] = []
        if site.kind == "station":
            # $SYS every second: the backlog watch reads the store and bridge states.
            links = {center: port for (station, center), port in (via or {}).items()
                     if station == site.name}
            bridges = ["sys_interval 1", *station_bridges(network, site, environ, links)]
        elif site.kind == "center":
            bridges = center_bridges(network, site, environ)
        # A site's broker saves its store once a second, not after every change: while a
        # link is down its backlog grows to tens of thousands of messages, and a save per
        # change rewrites all of them each time (measured: a center's broker back from
        # 30 s down stalled, its ingest's connects timing out, for over a minute). A
        # clean stop saves everything; a SIGKILL loses at most the last second.
        broker = partner_broker(network, site, directory / "mosquitto", environ) \
            if site.kind == "partner" else MosquittoServer(
                directory / "mosquitto", site.mqtt_port, max_queued=site.queue_limit,
                bridges=tuple(bridges), autosave=SITE_AUTOSAVE)
        stack.enter_context(broker)
        run = SiteRun(site, broker)
        if site.influx_port is not None:
            run.influx = InfluxServer(directory / "influxdb", site.influx_port)
            stack.enter_context(run.influx)
        runs.append(run)
        log.info("%s %s: mqtt 127.0.0.1:%d%s", site.kind, site.name, site.mqtt_port,
                 f", influxdb 127.0.0.1:{site.influx_port}" if site.influx_port else "")
    return runs


DROPPED = "$SYS/broker/publish/messages/dropped"


def backlog_json(station: str, backlog: Backlog, limit: int) -> bytes:
    """The retained backlog message: the alarm, the messages held, and how many the
    station's broker dropped since the watch began."""
    return json.dumps({"station": station, "alarm": bool(backlog.alarm),
                       "stored": backlog.stored, "limit": limit,
                       "dropped": backlog.dropped}).encode()


async def watch_backlog(run: SiteRun, network: Network, stop: asyncio.Event) -> None:
    """Raise (and clear) a station's backlog alarm from its broker's $SYS figures: the
    messages it stores (what waits for unreachable centers) against its queue limit.
    Mosquitto publishes a $SYS figure only when it changes, so the watch ends on
    ``stop``, not on a next message that may never come."""
    run.backlog = Backlog()
    watch = asyncio.create_task(_watch(run, network))
    await stop.wait()
    watch.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watch


async def _watch(run: SiteRun, network: Network) -> None:
    assert run.backlog is not None
    backlog = run.backlog
    limit = run.site.queue_limit
    settings = MqttSettings(port=run.site.mqtt_port, keepalive=5)
    topic = backlog_topic(run.site.name)
    while True:
        try:
            async with make_client(settings, f"isls-backlog-{run.site.name}") as client:
                await client.subscribe("$SYS/broker/store/messages/count", qos=0)
                await client.subscribe("$SYS/broker/connection/+/state", qos=0)
                await client.subscribe(DROPPED, qos=0)
                async for message in client.messages:
                    payload = message.payload if isinstance(message.payload, bytes) else b""
                    text = payload.decode(errors="replace")
                    if message.topic.value.endswith("/state"):
                        backlog.bridges[message.topic.value.split("/")[3]] = text == "1"
                        continue
                    if message.topic.value == DROPPED:
                        new = backlog.dropped_reading(int(text)) if text.isdigit() else 0
                        if new:
                            log.error("station %s: its broker DROPPED %d messages (%d in all): "
                                      "a bridge's queue is full (queue_limit %d); the "
                                      "centers will not get them", run.site.name, new,
                                      backlog.dropped, limit)
                            await client.publish(topic, backlog_json(
                                run.site.name, backlog, limit), qos=1, retain=True)
                        continue
                    backlog.stored = int(text) if text.isdigit() else backlog.stored
                    backlog.peak = max(backlog.peak, backlog.stored)
                    alarm = backlog.stored >= network.queue_alarm * limit
                    if alarm == backlog.alarm:
                        continue
                    # The first reading is published too: a retained alarm of an earlier
                    # run must not outlive the backlog it was about.
                    backlog.alarms += int(alarm)
                    backlog.alarm = alarm
                    (log.warning if alarm else log.info)(
                        "station %s: backlog %s: %d messages stored of %d allowed",
                        run.site.name, "ALARM" if alarm else "normal", backlog.stored, limit)
                    await client.publish(topic, backlog_json(run.site.name, backlog, limit),
                                         qos=1, retain=True)
        except aiomqtt.MqttError:
            await asyncio.sleep(1.0)  # the station's own broker restarting: try again


DRAIN_SECONDS = 30.0  # after the simulators stop, for the bridges to deliver the rest


def expected_packets(network: Network, runs: list[SiteRun], run: SiteRun) -> dict[str, int]:
    """Per spacecraft, the packets this process's stations sent that ``run`` must get."""
    sent: dict[str, int] = {}
    for station in runs:
        for simulator in station.simulators:
            sent[simulator.spacecraft] = sent.get(simulator.spacecraft, 0) \
                + sum(simulator.stats.packets.values())
    if run.site.kind == "partner":
        share = network.partner_share(run.site.name)
        return {sc: n for sc, n in sent.items() if "raw" in share.get(sc, ())}
    return sent


async def drain(network: Network, runs: list[SiteRun], timeout: float, out: TextIO) -> None:
    """Wait, up to ``timeout`` s, until every center and partner here holds in InfluxDB
    what this process's stations sent for it; say what is still on its way (it waits in
    a broker's queue for the next start: nothing is lost). Points, not the ingests'
    packet counts: a message redelivered after an outage is decoded twice but stored as
    the same points, and would make a count look complete while a tail still waits."""
    from control_center.network.compare import compare_network

    here = {r.site.name for r in runs}
    ingests = [r for r in runs if r.ingest is not None]
    if not ingests or any(s.name not in here for s in network.sites if s.influx_port):
        return  # sites elsewhere: their stores are not this process's to wait for

    def missing() -> dict[str, int]:
        comparison = compare_network(network)
        short: dict[str, int] = {}
        for run in ingests:
            index = comparison.sites.index(run.site.name)
            stored: dict[str, int] = {}
            for row in comparison.rows:
                stored[row.spacecraft] = stored.get(row.spacecraft, 0) + (row.counts[index] or 0)
            gap = sum(max(0, n - stored.get(sc, 0))
                      for sc, n in expected_packets(network, runs, run).items())
            if gap:
                short[run.site.name] = gap
        return short

    short = await asyncio.to_thread(missing)
    for _ in range(int(timeout * 2)):  # InfluxDB's counts, polled to a deadline
        if not short:
            break
        await asyncio.sleep(0.5)
        short = await asyncio.to_thread(missing)
    dropped = {run.site.name: run.backlog.dropped for run in runs
               if run.backlog is not None and run.backlog.dropped}
    for site, gap in short.items():
        if dropped:
            lost = ", ".join(f"{name} {n}" for name, n in sorted(dropped.items()))
            out.write(f"{site}: {gap} packets sent by the stations here are not stored: "
                      f"stations' brokers dropped messages (full queues: {lost}); the "
                      f"rest, if any, wait in a broker's queue for the next start\n")
        else:
            out.write(f"{site}: {gap} packets sent by the stations here are not stored yet: "
                      f"they wait in a broker's queue for the next start\n")


class NetworkStatus:
    """One line per site: what it holds, receives and stores."""

    def __init__(self, runs: list[SiteRun], out: TextIO) -> None:
        self.runs = runs
        self.view = LiveText(out)

    def render(self) -> list[str]:
        lines = []
        for run in self.runs:
            site = run.site
            if site.kind == "station":
                sent = sum(sum(s.stats.packets.values()) for s in run.simulators)
                backlog = run.backlog or Backlog()
                links = ", ".join(f"{name.split('-to-')[-1]} {'up' if up else 'DOWN'}"
                                  for name, up in sorted(backlog.bridges.items())) or "..."
                alarm = "  ALARM: BACKLOG NEAR ITS LIMIT" if backlog.alarm else ""
                if backlog.dropped:
                    alarm += f"  DROPPED {backlog.dropped} (queue full)"
                lines.append(f"  station {site.name:<12} {sent:>8} packets heard, "
                             f"{backlog.stored:>7} held; links: {links}{alarm}")
            elif run.ingest is not None:
                stats = run.ingest.stats
                errors = ", ".join(f"{k} {v}" for k, v in sorted(stats.errors.items()))
                lines.append(f"  {site.kind:<7} {site.name:<12} "
                             f"{sum(stats.packets.values()):>8} packets stored of "
                             f"{len(stats.packets)} spacecraft; errors {errors or 'none'}")
        return lines

    async def run(self, stop: asyncio.Event) -> None:
        await self.view.refresh(lambda: "\n".join(self.render()), stop)


async def run_network(base: Config, network: Network, runs: list[SiteRun], *,
                      duration: float | None, environ: Mapping[str, str], speed: float = 1.0,
                      seed: int = 0, out: TextIO = sys.stdout,
                      stop: asyncio.Event | None = None,
                      start_unix: float | None = None, simulate: bool = True,
                      tmdbs: Sequence[Tmdb] | None = None) -> list[SiteRun]:
    """Ingests at the centers and partners, simulators (unless not ``simulate``: the
    stations' brokers then take what serial links or simulators started elsewhere
    publish) and backlog watches at the stations, until ``stop`` (Ctrl-C) or
    ``duration``; then simulators stop first and every ingest drains into its InfluxDB
    before it returns. ``tmdbs``: the network's databases, if already loaded."""
    stop = stop or asyncio.Event()
    stop_on_signals(stop, duration)
    by_name = {t.spacecraft: t for t in (network_tmdbs(network) if tmdbs is None else tmdbs)}
    kinds = {s.name: s.simulator for s in network.spacecraft}
    ingest_stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    for run in runs:
        if run.site.kind == "station":
            continue
        config = site_config(base, network, run.site, environ)
        share = network.partner_share(run.site.name) if run.site.kind == "partner" else None
        chosen = [t for name, t in by_name.items() if share is None or name in share]
        run.ingest = IngestService.from_config(config, chosen)
        tasks.append(asyncio.create_task(run.ingest.run(ingest_stop)))
    for run in runs:
        if run.ingest is not None:
            await wait_subscribed(run.ingest)
    sim_stop = asyncio.Event()
    sim_tasks: list[asyncio.Task[None]] = []
    watch_stop = asyncio.Event()
    for index, spacecraft in enumerate(network.spacecraft):
        kind = kinds[spacecraft.name]
        if kind is None or not simulate:
            continue
        for run in runs:
            if run.site.kind != "station" or spacecraft.name not in run.site.hears:
                continue
            generator = PacketGenerator(make_model(kind, seed + index),
                                        by_name[spacecraft.name], start_unix=start_unix)
            simulator = SimulatorService(
                generator, MqttSettings(port=run.site.mqtt_port, keepalive=5), speed=speed,
                publish_interval=base.simulator.publish_interval,
                link=f"{run.site.name}/{spacecraft.name}")
            run.simulators.append(simulator)
            sim_tasks.append(asyncio.create_task(simulator.run(sim_stop)))
    for run in runs:
        if run.site.kind == "station":
            tasks.append(asyncio.create_task(watch_backlog(run, network, watch_stop)))
    status = NetworkStatus(runs, out)
    status_stop = asyncio.Event()
    status_task = asyncio.create_task(status.run(status_stop))
    await stop.wait()
    out.write("stopping: simulators, then the ingests (flushing to InfluxDB)...\n")
    sim_stop.set()
    await asyncio.gather(*sim_tasks)
    await drain(network, runs, DRAIN_SECONDS, out)
    ingest_stop.set()
    watch_stop.set()
    await asyncio.gather(*tasks)
    status_stop.set()
    await status_task
    return runs


def network_up(base: Config, network: Network, site_names: Sequence[str] | None, *,
               duration: float | None, speed: float = 1.0, seed: int = 0,
               out: TextIO = sys.stdout, environ: Mapping[str, str] | None = None,
               simulate: bool = True) -> int:
    """Run the named sites (all with ``None``) until Ctrl-C or ``duration``; without
    ``simulate``, no simulator at the stations (``isls up --network --no-sim``)."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    sites = network.sites if site_names is None else tuple(network.site(n) for n in site_names)
    if site_names is None:
        # Every site in this process: both ends of each partner bridge read one mapping,
        # so accounts without a password in the environment get a random one.
        env = with_generated_passwords(network, env)
    tmdbs = network_tmdbs(network)
    with contextlib.ExitStack() as stack:
        stack.callback(os.umask, os.umask(PRIVATE_UMASK))
        private_directory(network.state_dir)
        runs = start_servers(stack, network, sites, env)
        for run in runs:
            if run.site.kind == "center":
                refresh_dashboards(site_config(base, network, run.site, env), tmdbs,
                                   network.state_dir / run.site.name / "dashboards")
        out.write(describe(network, sites) + "\n")
        out.flush()
        started = time.monotonic()
        asyncio.run(run_network(base, network, runs, duration=duration, environ=env,
                                speed=speed, seed=seed, out=out, simulate=simulate,
                                tmdbs=tmdbs))
        for run in runs:
            if run.ingest is not None:
                stats = run.ingest.stats
                writer = run.ingest.writer.stats if run.ingest.writer else None
                out.write(f"{run.site.name}: {sum(stats.packets.values())} packets decoded, "
                          f"{writer.values_written if writer else 0} values stored, errors "
                          f"{dict(stats.errors) or 'none'}\n")
        out.write(f"network stopped cleanly after {time.monotonic() - started:.0f} s\n")
    return 0


def describe(network: Network, sites: Sequence[Site]) -> str:
    lines = [f"ISLS ground network ({network.source}): {len(sites)} of "
             f"{len(network.sites)} sites here, state {network.state_dir}"]
    for site in sites:
        if site.kind == "station":
            centers = ", ".join(c.name for c in network.of_kind("center"))
            lines.append(f"  station {site.name:<12} mqtt :{site.mqtt_port}, hears "
                         f"{', '.join(site.hears)}; bridged to {centers}")
        elif site.kind == "center":
            lines.append(f"  center  {site.name:<12} mqtt :{site.mqtt_port}, influxdb "
                         f":{site.influx_port}, all {len(network.spacecraft)} spacecraft")
        else:
            share = network.partner_share(site.name)
            lines.append(f"  partner {site.name:<12} mqtt :{site.mqtt_port}, influxdb "
                         f":{site.influx_port}, share: " + ", ".join(
                             f"{sc} ({'/'.join(kinds)})" for sc, kinds in share.items()))
    lines.append("  Ctrl-C stops every site after the last value is stored.")
    return "\n".join(lines)

