"""``isls up``: the whole control center in one process tree.

Starts (unless the configuration names external servers) a local Mosquitto and a
local influxd under the state directory, then the ingest service and one simulator
per configured spacecraft; prints what runs where and a live status; on Ctrl-C,
SIGTERM or the end of ``--duration`` it stops the simulators, lets the ingest drain
and flush every decoded value to InfluxDB, and only then stops the servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from control_center.config import Config, LinkSettings
from control_center.errors import LayoutError
from control_center.operations.security import (
    INGEST,
    account_settings,
    influx_accounts,
    provision_influx,
    simulator_account,
    write_broker_security,
)
from control_center.operations.servers import (
    PRIVATE_UMASK,
    InfluxServer,
    MosquittoServer,
    private_directory,
)
from control_center.pipeline.service import IngestService, wait_subscribed
from control_center.telemetry.tmdb import Tmdb
from control_center.terminal import LiveText, stop_on_signals
from drivers.mqtt import raw_subscription, raw_topic
from simulators.noise import LinkNoise
from simulators.pty import PtyPair
from simulators.runner import PacketGenerator, SimulatorService, make_model
from simulators.serial_link import SerialSimulatorService

log = logging.getLogger("isls.up")


@contextlib.contextmanager
def local_servers(config: Config, tmdbs: list[Tmdb]) -> Iterator[Config]:
    """Start the servers the configuration does not name; yield the config that uses them.

    When the broker accounts have passwords (``operations/security.py``), the local
    broker refuses anonymous clients, checks the generated ACL, and the ingest of this
    run connects as ``isls-ingest``; simulators and agencies connect to the partner port.

    The state directory is 0700 (``servers.private_directory``): what the servers and
    the security files keep there is for this account only."""
    stack = contextlib.ExitStack()
    with stack:
        private_directory(config.state_dir)
        if not config.mqtt.external:
            directory = config.state_dir / "mosquitto"
            security = write_broker_security(directory / "security", config, tmdbs,
                                             os.environ)
            broker = MosquittoServer(directory, config.mqtt.port, security=security,
                                     autosave=(True, config.mqtt.broker_save_every))
            stack.enter_context(broker)
            log.info("started mosquitto on 127.0.0.1:%d (data %s, %s)", broker.port,
                     broker.directory,
                     f"accounts and ACL on; simulators and agencies on {broker.partner_url}"
                     if security else "anonymous")
            if security is not None:
                config = replace(config, mqtt=account_settings(config, INGEST))
        if not config.influx.external:
            users = influx_accounts(os.environ, config)
            database = InfluxServer(config.state_dir / "influxdb", config.influx.port,
                                    auth=users is not None)
            stack.enter_context(database)
            if users is not None:
                provision_influx(database.query, config.influx.database, users)
            log.info("started influxd on %s (data %s, %s)", database.url, database.directory,
                     "accounts on: the ingest writes only" if users else "no authentication")
        yield config


def servers(config: Config, tmdbs: list[Tmdb], *, duration: float | None,
            out: TextIO = sys.stdout) -> int:
    """``isls servers``: only the local broker and InfluxDB, as ``isls up`` starts them,
    until Ctrl-C (or ``duration`` s), for services run by hand in other shells."""
    if config.mqtt.external and config.influx.external:
        out.write("isls servers: the configuration names both servers (ISLS_MQTT_URL, "
                  "ISLS_INFLUX_URL): nothing to start\n")
        return 0
    with contextlib.ExitStack() as stack:
        stack.callback(os.umask, os.umask(PRIVATE_UMASK))
        running = stack.enter_context(local_servers(config, tmdbs))
        mqtt_url = config.mqtt.url if config.mqtt.external else \
            f"mqtt://127.0.0.1:{config.mqtt.port}"
        out.write("ISLS local servers (Ctrl-C stops them)\n"
                  f"  mqtt       {mqtt_url}"
                  f"{' (external)' if config.mqtt.external else ''}\n"
                  f"  influxdb   {running.influx.url} database {running.influx.database}"
                  f"{' (external)' if config.influx.external else ''}\n"
                  f"  state      {config.state_dir}\n"
                  "In another shell, for isls ingest, isls sim and the operator tools:\n"
                  f"  export ISLS_MQTT_URL={mqtt_url} ISLS_INFLUX_URL={running.influx.url}"
                  f" ISLS_STATE_DIR={config.state_dir}\n")
        if running.mqtt.username:
            out.write("  (the broker has accounts: add the user to the URL, e.g. "
                      "mqtt://isls-operator@127.0.0.1:…, and set ISLS_MQTT_PASSWORD)\n")
        out.flush()
        asyncio.run(_until_stopped(duration))
    out.write("servers stopped\n")
    return 0


async def _until_stopped(duration: float | None) -> None:
    stop = asyncio.Event()
    stop_on_signals(stop, duration)
    await stop.wait()


class StatusDisplay:
    """A status line per spacecraft: redrawn in place on a terminal, printed every few
    seconds otherwise (logs, CI)."""

    def __init__(self, ingest: IngestService, simulators: list[SimulatorService],
                 out: TextIO = sys.stdout) -> None:
        self.ingest = ingest
        self.simulators = simulators
        self.out = out
        self.view = LiveText(out)
        self._last_packets: dict[str, int] = {}
        self._last_time = time.monotonic()

    def render(self) -> list[str]:
        now = time.monotonic()
        span = max(now - self._last_time, 1e-3)
        self._last_time = now
        stats = self.ingest.stats
        writer = self.ingest.writer.stats if self.ingest.writer else None
        lines = []
        for spacecraft in sorted(set(stats.packets) | {s.spacecraft for s in self.simulators}):
            total = stats.packets.get(spacecraft, 0)
            rate = (total - self._last_packets.get(spacecraft, 0)) / span
            self._last_packets[spacecraft] = total
            age = ""
            if spacecraft in stats.last_packet_ns:
                lag = max(0.0, time.time() - stats.last_packet_ns[spacecraft] / 1e9)
                age = f", last packet {lag:.1f} s ago"
            lines.append(f"  {spacecraft:<10} {rate:8.1f} packets/s  {total:>9} packets  "
                         f"{stats.values.get(spacecraft, 0):>10} values decoded{age}")
        errors = ", ".join(f"{k} {v}" for k, v in sorted(stats.errors.items())) or "none"
        if writer is not None:
            lines.append(f"  influxdb   {writer.values_written:>10} values written, "
                         f"{writer.pending_lines} lines pending, {writer.retries} retries, "
                         f"{stats.queue_depth} messages queued for decoding")
            if writer.spool_lines or writer.spooled_lines or writer.spool_full:
                # InfluxDB failed at some point: say where the telemetry is.
                lines.append(f"  spool      {writer.spool_lines} lines waiting on disk "
                             f"({writer.spool_bytes / 1e6:.1f} MB), {writer.spooled_lines} "
                             f"spooled, {writer.backfilled_lines} backfilled"
                             + ("  ALARM: SPOOL FULL, the broker holds the rest"
                                if writer.spool_full else ""))
        for link in self.ingest.links:
            status = link.snapshot()
            state = "LOCKED" if status.locked else (
                "SEARCHING" if status.connected else "NO DEVICE")
            lines.append(f"  link {link.settings.name:<5} {state:<9} frames good "
                         f"{status.frames_good}, bad {status.frames_bad},"
                         f" gaps {status.frames_gap}, {status.bit_rate / 1000:.1f} kbit/s")
        lines.append(f"  errors     {errors}")
        return lines

    async def run(self, stop: asyncio.Event) -> None:
        await self.view.refresh(lambda: "\n".join(self.render()), stop)


@dataclass(frozen=True, slots=True)
class HilSettings:
    """``isls up --hil``: the orbiter simulator, relaying the lander on virtual channel 1,
    writes TM frames into one end of a pty pair; the ingest reads the other end."""

    baud: int = 115200
    frame_length: int = 1115
    noise: float = 0.0
    seed: int = 0


def hil_link(config: Config, tmdbs: list[Tmdb], device: str, hil: HilSettings) -> LinkSettings:
    orbiter = next(t for t in tmdbs if t.spacecraft == "orbiter")
    return LinkSettings(name="hil", spacecraft="orbiter", device=device, baud=hil.baud,
                        frame_length=hil.frame_length, spacecraft_id=orbiter.spacecraft_id,
                        virtual_channels=((0, "orbiter"), (1, "lander")))


def describe(config: Config, tmdbs: list[Tmdb], *, hil: bool = False,
             simulate: bool = True) -> str:
    sims = [s.name for s in config.spacecraft if s.simulator] if simulate and not hil else []
    lines = [
        "ISLS control center",
        f"  mqtt       {config.mqtt.url}{'' if config.mqtt.external else ' (local)'}",
        f"  influxdb   {config.influx.url} database {config.influx.database}"
        f"{'' if config.influx.external else ' (local)'}",
        f"  raw topics {', '.join(raw_topic(t.spacecraft) for t in tmdbs)}",
        f"  ingest     {raw_subscription(config.mqtt.shared_group)}",
        f"  simulators {', '.join(sims) or 'none'}",
        *(f"  link       {link.name}: {link.device} at {link.baud} baud, {link.framing} framing"
          for link in config.links),
        f"  state      {config.state_dir}",
        "  Ctrl-C stops everything after the last value is stored.",
    ]
    return "\n".join(lines)


async def run_up(config: Config, tmdbs: list[Tmdb], *, duration: float | None,
                 simulate: bool = True, seed: int = 0, out: TextIO = sys.stdout,
                 hil: tuple[HilSettings, str] | None = None) -> IngestService:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        ingest = IngestService.from_config(config, tmdbs)
        ingest_task = asyncio.create_task(ingest.run(stop), name="ingest")
        await wait_subscribed(ingest)
        by_name = {t.spacecraft: t for t in tmdbs}
        sim_stop = asyncio.Event()
        simulators: list[SimulatorService] = []
        serial_simulators: list[SerialSimulatorService] = []
        if hil is not None:
            settings, device = hil
            channels = [(0, PacketGenerator(make_model("orbiter", seed + 1), by_name["orbiter"])),
                        (1, PacketGenerator(make_model("lander", seed), by_name["lander"]))]
            serial_simulators.append(SerialSimulatorService(
                channels, device, settings.baud, frame_length=settings.frame_length,
                spacecraft_id=by_name["orbiter"].spacecraft_id, speed=config.simulator.speed,
                noise=LinkNoise(settings.noise, settings.seed) if settings.noise else None))
        elif simulate:
            for index, spacecraft in enumerate(config.spacecraft):
                if spacecraft.simulator is None:
                    continue
                model = make_model(spacecraft.simulator, seed + index)
                generator = PacketGenerator(model, by_name[spacecraft.name])
                simulators.append(SimulatorService(
                    generator, account_settings(config, simulator_account(spacecraft.name)),
                    speed=config.simulator.speed,
                    publish_interval=config.simulator.publish_interval))
        sim_tasks = [asyncio.create_task(s.run(sim_stop)) for s in simulators]
        sim_tasks += [asyncio.create_task(s.run(sim_stop)) for s in serial_simulators]
        display = StatusDisplay(ingest, simulators, out)
        display_stop = asyncio.Event()
        display_task = asyncio.create_task(display.run(display_stop))
        waiters = [asyncio.create_task(stop.wait()), ingest_task]
        if duration is not None:
            waiters.append(asyncio.create_task(asyncio.sleep(duration)))
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        out.write("stopping: simulators, then ingest (flushing to InfluxDB)...\n")
        sim_stop.set()
        await asyncio.gather(*sim_tasks)
        for serial_sim in serial_simulators:
            stats = serial_sim.stats
            out.write(f"hil: {stats.frames} frames written, {stats.frames_destroyed} "
                      f"destroyed by line noise; {sum(stats.packets.values())} packets sent, "
                      f"{sum(stats.survivors.values())} in intact frames\n")
        stop.set()
        await ingest_task
        display_stop.set()
        await display_task
        for waiter in waiters:
            waiter.cancel()
        return ingest
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def refresh_dashboards(config: Config, tmdbs: list[Tmdb], out_dir: Path) -> None:
    """Keep the generated dashboards current with the telemetry database."""
    from control_center.grafana.dashboards import build_dashboards, influx_auth, write_dashboards

    try:
        write_dashboards(build_dashboards(config, tmdbs), out_dir,
                         influx_auth=influx_auth(config))
    except OSError as exc:  # a read-only checkout must not stop the control center
        log.warning("dashboards not refreshed in %s: %s", out_dir, exc)
    except LayoutError as exc:  # nor a layout naming a parameter the TMDB lost
        log.warning("dashboards not refreshed in %s: %d layout problem(s) (isls tmdb check "
                    "lists them):\n  %s", out_dir, len(exc.problems),
                    "\n  ".join(exc.problems))


def up(config: Config, tmdbs: list[Tmdb], *, duration: float | None, simulate: bool = True,
       seed: int = 0, out: TextIO = sys.stdout, hil: HilSettings | None = None,
       dashboards_dir: Path | None = None) -> int:
    if dashboards_dir is not None:
        refresh_dashboards(config, tmdbs, dashboards_dir)
    with contextlib.ExitStack() as stack:
        # Everything this run writes (archive, spool, alarm state, dead letters, the
        # servers' files) is its owner's only: 0600 files, 0700 directories.
        stack.callback(os.umask, os.umask(PRIVATE_UMASK))
        running = stack.enter_context(local_servers(config, tmdbs))
        hil_run: tuple[HilSettings, str] | None = None
        if hil is not None:
            directory = config.state_dir / "hil"
            pair = stack.enter_context(PtyPair(directory / "simulator", directory / "ingest"))
            running = replace(running, links=(*running.links,
                                              hil_link(running, tmdbs, str(pair.b), hil)))
            hil_run = (hil, str(pair.a))
        out.write(describe(running, tmdbs, hil=hil is not None, simulate=simulate) + "\n")
        if hil_run is not None:
            settings = hil_run[0]
            noise = (f"line noise {settings.noise:g} per octet (seed {settings.seed})"
                     if settings.noise else "no line noise")
            out.write(f"  hil        orbiter simulator (lander relayed on VC 1) writes TM frames "
                      f"to {hil_run[1]} at {settings.baud} baud, {noise}\n")
        out.flush()
        ingest = asyncio.run(run_up(running, tmdbs, duration=duration, simulate=simulate,
                                    seed=seed, out=out, hil=hil_run))
    stats = ingest.stats
    writer = ingest.writer.stats if ingest.writer else None
    out.write(f"stopped cleanly: {sum(stats.packets.values())} packets decoded, "
              f"{writer.values_written if writer else 0} values stored, "
              f"errors {dict(stats.errors) or 'none'}\n")
    return 0

