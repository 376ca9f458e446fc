"""Software-in-the-loop spacecraft simulator: physics model → packets → MQTT.

The model (``LanderModel``/``OrbiterModel``) advances in fixed steps of simulated time;
each packet type is sampled at its period from the telemetry database (scaled by
``--rate``), encoded with the same codec the ingest decodes with, and published to
``isls/<spacecraft>/tm/raw`` at QoS 1, many packets per message (one message per
``publish_interval``), since per-message overhead dominates MQTT throughput.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import aiomqtt
import numpy as np

from control_center.config import MqttSettings
from control_center.telemetry.codec import PacketCodec
from control_center.telemetry.packets import CucTime
from control_center.telemetry.tmdb import PacketDef, Tmdb
from drivers.mqtt import RAW_QOS, make_client, raw_properties, raw_topic, with_reconnect

log = logging.getLogger("isls.sim")

SIMULATORS = ("lander", "orbiter")


class SpacecraftModel(Protocol):
    spacecraft: str

    def step(self, dt: float) -> None: ...

    @property
    def elapsed(self) -> float: ...

    def sample(self, packet: str) -> dict[str, float | int | bool]: ...


def make_model(kind: str, seed: int, fault: str | None = None,
               fault_until: float | None = None) -> SpacecraftModel:
    if kind == "lander":
        from simulators.lander import LanderModel
        return LanderModel(seed=seed, fault=fault, fault_until=fault_until)
    if kind == "orbiter":
        from simulators.orbiter import OrbiterModel
        return OrbiterModel(seed=seed, fault=fault)
    raise ValueError(f"unknown simulator {kind!r}; expected one of {', '.join(SIMULATORS)}")


@dataclass(slots=True)
class _Schedule:
    packet: PacketDef
    codec: PacketCodec
    period: float
    next_due: float = 0.0
    sequence: int = 0
    generated: int = 0
    rows: list[dict[str, float | int | bool]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)


@dataclass(slots=True)
class SimulatorStats:
    messages: int = 0
    packets: Counter[str] = field(default_factory=Counter)  # by packet name
    octets: int = 0
    publish_failures: int = 0


class PacketGenerator:
    """Steps a model and turns its samples into encoded packets; no I/O."""

    def __init__(self, model: SpacecraftModel, tmdb: Tmdb, *, rate: float | None = None,
                 start_unix: float | None = None, step: float = 0.1) -> None:
        self.model = model
        self.tmdb = tmdb
        self.start_unix = time.time() if start_unix is None else start_unix
        periods = [p.period or 1.0 for p in tmdb.packets]
        # --rate sets the fastest packet type's rate; the others keep their ratio to it.
        scale = 1.0 if rate is None else (1.0 / min(periods)) / rate
        self.step = min(step, min(periods) * scale)
        self.schedules = [_Schedule(p, PacketCodec(tmdb.spacecraft, p), (p.period or 1.0) * scale)
                          for p in tmdb.packets]
        self.sim_time = 0.0

    def advance_to(self, sim_time: float) -> bytes:
        """Run the model up to ``sim_time`` simulated seconds; the packets it produced."""
        while self.sim_time + self.step <= sim_time + 1e-9:
            for schedule in self.schedules:
                while schedule.next_due <= self.sim_time + 1e-9:
                    schedule.rows.append(self.model.sample(schedule.packet.name))
                    schedule.times.append(self.start_unix + schedule.next_due)
                    schedule.next_due += schedule.period
            self.model.step(self.step)
            self.sim_time += self.step
        return self.flush()

    def flush(self) -> bytes:
        parts: list[bytes] = []
        for schedule in self.schedules:
            if not schedule.rows:
                continue
            n = len(schedule.rows)
            names = [p.name for p in schedule.packet.parameters if not p.overlay]
            values = {name: np.array([row[name] for row in schedule.rows]) for name in names}
            codes = [CucTime.from_unix(t) for t in schedule.times]
            sequence = (schedule.sequence + np.arange(n)) % 16384
            parts.append(schedule.codec.encode(
                values, coarse=[c.coarse for c in codes], fine=[c.fine for c in codes],
                sequence_counts=sequence))
            schedule.sequence = int((schedule.sequence + n) % 16384)
            schedule.generated += n
            schedule.rows.clear()
            schedule.times.clear()
        return b"".join(parts)

    def counts(self) -> dict[str, int]:
        """Packets generated so far, by packet name."""
        return {s.packet.name: s.generated for s in self.schedules}


class SimulatorService:
    """Publishes a generator's packets to MQTT in real time scaled by ``speed``."""

    def __init__(self, generator: PacketGenerator, mqtt: MqttSettings, *, speed: float = 1.0,
                 publish_interval: float = 0.1, link: str | None = None,
                 on_message: Callable[[int], None] | None = None) -> None:
        self.generator = generator
        self.mqtt = mqtt
        self.speed = speed
        self.publish_interval = publish_interval
        self.spacecraft = generator.tmdb.spacecraft
        self.link = link or f"sim-{self.spacecraft}"
        self.stats = SimulatorStats()
        self.connected = asyncio.Event()
        self._on_message = on_message
        self._backlog: list[bytes] = []

    async def run(self, stop: asyncio.Event, duration: float | None = None) -> None:
        """Publish until ``stop`` is set or ``duration`` wall seconds have passed."""
        started = time.monotonic()
        finished = asyncio.Event()

        async def session() -> None:
            async with make_client(self.mqtt, f"isls-sim-{self.spacecraft}-{id(self)}") as client:
                self.connected.set()
                await self._publish_loop(client, started, duration, stop, finished)

        # Until the backlog is out (a broker outage delays telemetry, loses none of it),
        # unless Ctrl-C comes while the broker is away: then say what stayed unsent.
        await with_reconnect(f"simulator {self.spacecraft}", self.mqtt, session, finished,
                             give_up=stop)
        if self._backlog:
            log.warning("simulator %s: stopped with %d messages not published (the broker "
                        "at %s:%d was unreachable); they are lost with this process",
                        self.spacecraft, len(self._backlog), self.mqtt.host, self.mqtt.port)

    async def _publish_loop(self, client: aiomqtt.Client, started: float,
                            duration: float | None,
                            stop: asyncio.Event, finished: asyncio.Event) -> None:
        topic = raw_topic(self.spacecraft)
        tick = 0
        while True:
            elapsed = time.monotonic() - started
            last = stop.is_set() or (duration is not None and elapsed >= duration)
            if duration is not None:
                elapsed = min(elapsed, duration)
            payload = self.generator.advance_to(elapsed * self.speed)
            if payload:
                self._backlog.append(payload)
            while self._backlog:
                # Published before being dropped from the backlog: a broker outage
                # delays telemetry but loses none of it.
                await client.publish(topic, self._backlog[0], qos=RAW_QOS,
                                     properties=raw_properties(time.time_ns(), self.link))
                sent = self._backlog.pop(0)
                self.stats.messages += 1
                self.stats.octets += len(sent)
                if self._on_message is not None:
                    self._on_message(len(sent))
            self.stats.packets = Counter(self.generator.counts())
            if last:
                finished.set()
                return
            tick += 1
            next_tick = started + tick * self.publish_interval
            delay = next_tick - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)


