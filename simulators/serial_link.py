"""A simulator's serial output: packets framed and paced to the baud rate, with noise.

``isls sim lander --serial PATH`` and ``isls up --hil`` use it. Like a real downlink
the line is never silent with TM framing: when no telemetry waits, idle frames go out
(CCSDS 132.0-B-3 §4.1.4). The serial line carries 10 bits per octet (8N1), so the
pacing budget is ``baud / 10`` octets per second; a pty does not enforce it, we do.

Each packet gets a ticket from the framer; once every frame it spans has gone out, the
simulator knows whether the noise destroyed one of them, and so counts exactly which
packets must arrive (``stats.survivors``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from dataclasses import dataclass, field

import serial
import serial_asyncio_fast

from control_center.telemetry.packets import split_packets
from drivers.cobs import cobs_frame
from drivers.tm_frames import PacketTicket, TmFramer
from simulators.noise import LinkNoise
from simulators.runner import PacketGenerator

log = logging.getLogger("isls.sim.serial")


@dataclass(slots=True)
class SerialSimStats:
    frames: int = 0
    frames_destroyed: int = 0
    octets: int = 0
    packets: Counter[str] = field(default_factory=Counter)  # "spacecraft/packet" sent
    survivors: Counter[str] = field(default_factory=Counter)  # of those, must arrive
    reopens: int = 0


class SerialSimulatorService:
    """Frames the packets of one or more generators (one per virtual channel) onto a
    serial device. With COBS framing there is one channel and no idle fill."""

    def __init__(self, channels: list[tuple[int, PacketGenerator]], device: str, baud: int,
                 *, framing: str = "tm", frame_length: int = 1115, spacecraft_id: int = 0,
                 speed: float = 1.0, noise: LinkNoise | None = None, tick: float = 0.02,
                 fecf: bool = True) -> None:
        if framing not in ("tm", "cobs"):
            raise ValueError(f"framing {framing!r}: expected tm or cobs")
        self.channels = channels
        self.device = device
        self.baud = baud
        self.framing = framing
        self.speed = speed
        self.noise = noise
        self.tick = tick
        self.stats = SerialSimStats()
        self.framer = TmFramer(spacecraft_id, frame_length, fecf=fecf) \
            if framing == "tm" else None
        self._frame_octets = 4 + frame_length
        self._names = {(vcid, p.apid): f"{g.tmdb.spacecraft}/{p.name}"
                       for vcid, g in channels for p in g.tmdb.packets}
        self._tickets: list[tuple[PacketTicket, str]] = []
        self._destroyed: set[int] = set()
        self._cobs_backlog: list[tuple[bytes, str]] = []
        self.connected = asyncio.Event()

    # ------------------------------------------------------------ production

    def _produce(self, sim_time: float) -> None:
        for vcid, generator in self.channels:
            payload = generator.advance_to(sim_time)
            if not payload:
                continue
            result = split_packets(payload)
            # split_packets groups by APID; keep each packet's own label.
            for apid, packets in result.by_apid.items():
                name = self._names[(vcid, apid)]
                for packet in packets:
                    self.stats.packets[name] += 1
                    if self.framer is not None:
                        (ticket,) = self.framer.add_packets(vcid, packet)
                        self._tickets.append((ticket, name))
                    else:
                        self._cobs_backlog.append((packet, name))

    def _next_unit(self) -> bytes | None:
        """The next frame (TM) or packet frame (COBS) to send, after noise; None if idle."""
        if self.framer is not None:
            frame = self.framer.next_frame()
            sequence = self.framer.frames_emitted - 1
            sent, destroyed = self.noise.apply(frame) if self.noise else (frame, False)
            self.stats.frames += 1
            if destroyed:
                self._destroyed.add(sequence)
                self.stats.frames_destroyed += 1
            self._resolve()
            return sent
        if not self._cobs_backlog:
            return None
        packet, name = self._cobs_backlog.pop(0)
        frame = cobs_frame(packet)
        sent, destroyed = self.noise.apply(frame) if self.noise else (frame, False)
        self.stats.frames += 1
        if destroyed:
            self.stats.frames_destroyed += 1
        else:
            self.stats.survivors[name] += 1
        return sent

    def _resolve(self) -> None:
        assert self.framer is not None
        remaining: list[tuple[PacketTicket, str]] = []
        for ticket, name in self._tickets:
            spans = self.framer.spans(ticket)
            if spans is None:
                remaining.append((ticket, name))
                continue
            first, last = spans
            if not any(frame in self._destroyed for frame in range(first, last + 1)):
                self.stats.survivors[name] += 1
        self._tickets = remaining

    @property
    def settled(self) -> bool:
        """Every packet produced has gone out in whole frames."""
        return not self._tickets and not self._cobs_backlog

    # ------------------------------------------------------------ the line

    async def run(self, stop: asyncio.Event, duration: float | None = None) -> None:
        started = time.monotonic()
        sent_budget = 0.0
        delay = 0.1
        announced = False
        while True:
            try:
                _, writer = await serial_asyncio_fast.open_serial_connection(
                    url=self.device, baudrate=self.baud)
            except (serial.SerialException, OSError) as exc:
                if stop.is_set():
                    return
                if not announced:
                    log.warning("cannot open %s (%s); retrying", self.device, exc)
                    announced = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, 2.0)
                continue
            announced, delay = False, 0.1
            self.connected.set()
            try:
                finished = await self._write_loop(writer, started, duration, stop,
                                                  sent_budget)
                if finished:
                    return
            except (serial.SerialException, OSError, ConnectionError) as exc:
                log.warning("%s lost (%s); reopening", self.device, exc)
                self.stats.reopens += 1
            finally:
                self.connected.clear()
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
            sent_budget = self.stats.octets

    async def _write_loop(self, writer: asyncio.StreamWriter, started: float,
                          duration: float | None, stop: asyncio.Event,
                          already_sent: float) -> bool:
        octets_per_second = self.baud / 10.0
        line_started = time.monotonic() - already_sent / octets_per_second
        while True:
            elapsed = time.monotonic() - started
            ending = stop.is_set() or (duration is not None and elapsed >= duration)
            if duration is not None:
                elapsed = min(elapsed, duration)
            self._produce(elapsed * self.speed)
            budget = (time.monotonic() - line_started) * octets_per_second - self.stats.octets
            while budget >= self._frame_octets or (ending and not self.settled):
                unit = self._next_unit()
                if unit is None:
                    break
                writer.write(unit)
                nominal = self._frame_octets if self.framer is not None else len(unit)
                self.stats.octets += nominal
                budget -= nominal
            await writer.drain()
            if ending and self.settled:
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.tick)
