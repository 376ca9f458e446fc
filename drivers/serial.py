"""Serial links: read framed telemetry from a device, write it to one (simulators).

The reader owns the device for the life of the ingest: when the device disappears
(a cable or USB adapter pulled, a bench power-cycled, a pty closed) it logs it, retries
opening with back-off, and logs when the device is back. Bytes go to a deframer
(CCSDS TM frames or COBS, per link); the extracted packets go to a callback by
spacecraft. pyserial does the device work, driven by asyncio through
pyserial-asyncio-fast (the maintained asyncio transport for pyserial).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import serial
import serial_asyncio_fast

from control_center.config import LinkSettings
from drivers.cobs import CobsDeframer, CobsStats
from drivers.link import LinkStatus
from drivers.tm_frames import TmDeframer

log = logging.getLogger("isls.serial")

PacketSink = Callable[[str, bytes, int], Awaitable[None]]  # spacecraft, packets, receive ns


@dataclass(slots=True)
class LinkState:
    """The serial reader's own counts of one link (:meth:`SerialLinkSource.snapshot`
    reports them with the deframer's)."""

    name: str
    spacecraft: str
    device: str
    connected: bool = False
    reopens: int = 0
    octets: int = 0
    bit_rate: float = 0.0
    unrouted_packets: int = 0  # on a virtual channel the configuration does not map
    _window: list[tuple[float, int]] = field(default_factory=list)

    def count(self, octets: int, now: float) -> None:
        self.octets += octets
        self._window.append((now, self.octets))
        # Bit rate over the last few seconds: steadier than per-read figures.
        while len(self._window) > 2 and now - self._window[0][0] > 5.0:
            self._window.pop(0)
        start, first = self._window[0]
        if now - start > 0.5:
            self.bit_rate = (self.octets - first) * 8 / (now - start)


# A link is SEARCHING once no good frame came for this many frame times (TM frames
# follow each other without a break: idle frames fill the gaps) ...
SILENT_FRAMES = 10
# ... and never sooner than this (scheduling and pacing jitter), nor, for COBS, whose
# packets come at the packets' own rates with nothing between them, before this.
MIN_SILENCE = 1.0
COBS_SILENCE = 5.0


def silence_limit(settings: LinkSettings) -> float:
    """Seconds without a good frame after which a connected link is no longer LOCKED."""
    if settings.framing != "tm":
        return COBS_SILENCE
    # A frame time on a UART: 10 bits an octet (start, 8 data, stop).
    return max(MIN_SILENCE, SILENT_FRAMES * settings.frame_length * 10 / settings.baud)


class SerialLinkSource:
    """Reads one configured link until stopped, reopening the device as needed: a
    :class:`drivers.link.LinkSource`."""

    def __init__(self, settings: LinkSettings, sink: PacketSink, *,
                 max_delay: float = 5.0,
                 octet_sink: Callable[[bytes, int], None] | None = None) -> None:
        self.settings = settings
        self.sink = sink
        self.octet_sink = octet_sink  # every octet as read, for the archive
        self.max_delay = max_delay
        self.state = LinkState(settings.name, settings.spacecraft, settings.device)
        self.tm: TmDeframer | None = None
        self.cobs: CobsDeframer | None = None
        if settings.framing == "tm":
            self.tm = TmDeframer(settings.frame_length, spacecraft_id=settings.spacecraft_id,
                                 ocf=settings.ocf, fecf=settings.fecf)
        else:
            self.cobs = CobsDeframer()
        self.silence_ns = int(silence_limit(settings) * 1e9)
        # COBS frames carry no time: when the last good one was read (monotonic ns).
        self._last_cobs_frame = 0

    async def run(self, stop: asyncio.Event) -> None:
        delay = 0.1
        announced = False
        while not stop.is_set():
            try:
                reader, writer = await serial_asyncio_fast.open_serial_connection(
                    url=self.settings.device, baudrate=self.settings.baud)
            except (serial.SerialException, OSError) as exc:
                if not announced:
                    log.warning("link %s: cannot open %s (%s); retrying with back-off",
                                self.settings.name, self.settings.device, exc)
                    announced = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, self.max_delay)
                continue
            if self.state.reopens or announced:
                log.warning("link %s: %s is back; reading again", self.settings.name,
                            self.settings.device)
                # Frames lost while the device was away left no octets; after a long
                # outage the 8-bit frame counters could alias, so start extraction over.
                if self.tm is not None:
                    self.tm.reset()
                if self.cobs is not None:
                    self.cobs.reset()
            else:
                log.info("link %s: reading %s at %d baud (%s framing)", self.settings.name,
                         self.settings.device, self.settings.baud, self.settings.framing)
            announced = False
            delay = 0.1
            self.state.connected = True
            try:
                await self._read(reader, stop)
            except (serial.SerialException, OSError, ConnectionError) as exc:
                log.warning("link %s: %s lost (%s); reopening", self.settings.name,
                            self.settings.device, exc or type(exc).__name__)
            finally:
                self.state.connected = False
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
            if not stop.is_set():
                self.state.reopens += 1

    async def _read(self, reader: asyncio.StreamReader, stop: asyncio.Event) -> None:
        stop_task = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                read_task = asyncio.create_task(reader.read(65536))
                done, _ = await asyncio.wait({read_task, stop_task},
                                             return_when=asyncio.FIRST_COMPLETED)
                if read_task not in done:
                    read_task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await read_task
                    return
                data = read_task.result()
                if not data:
                    raise ConnectionError("end of file")
                await self.feed(data)
        finally:
            stop_task.cancel()

    async def feed(self, data: bytes) -> None:
        """Deframe ``data`` and pass its packets on, grouped by spacecraft."""
        receive_ns = time.time_ns()
        self.state.count(len(data), time.monotonic())
        if self.octet_sink is not None:
            self.octet_sink(data, receive_ns)
        by_spacecraft: dict[str, list[bytes]] = {}
        if self.tm is not None:
            for vcid, packet in self.tm.feed(data):
                spacecraft = self.settings.spacecraft_of(vcid)
                if spacecraft is None:
                    self.state.unrouted_packets += 1
                    continue
                by_spacecraft.setdefault(spacecraft, []).append(packet)
        elif self.cobs is not None:
            packets = self.cobs.feed(data)
            if packets:  # every good COBS frame is one packet
                self._last_cobs_frame = time.monotonic_ns()
                by_spacecraft[self.settings.spacecraft] = packets
        for spacecraft, packets in by_spacecraft.items():
            await self.sink(spacecraft, b"".join(packets), receive_ns)

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def spacecraft(self) -> str:
        return self.settings.spacecraft

    def snapshot(self) -> LinkStatus:
        """The link's status and counts now, for InfluxDB and the link topic."""
        if self.tm is not None:
            tm = self.tm.stats
            locked, frames_good, frames_bad = tm.locked, tm.frames_good, tm.frames_bad
            frames_gap, sync_losses, packets = tm.frames_gap, tm.sync_losses, tm.packets
            packets_dropped, last_frame_ns = tm.packets_dropped, tm.last_frame_ns
            # The deframer stays locked until it sees a bad frame; a link that simply
            # went quiet is searching once no frame came for the silence limit.
            locked = locked and self.state.connected and last_frame_ns is not None \
                and time.time_ns() - last_frame_ns <= self.silence_ns
        else:
            # COBS has no frame counter nor sync marker: every good frame is a packet.
            cobs = self.cobs.stats if self.cobs is not None else CobsStats()
            locked = self.state.connected and cobs.frames_good > 0 \
                and time.monotonic_ns() - self._last_cobs_frame <= self.silence_ns
            frames_good, frames_bad, frames_gap, sync_losses = \
                cobs.frames_good, cobs.frames_bad, 0, 0
            packets, packets_dropped, last_frame_ns = cobs.frames_good, cobs.frames_bad, None
        return LinkStatus(
            link=self.settings.name, spacecraft=self.settings.spacecraft,
            device=self.settings.device, framing=self.settings.framing,
            connected=self.state.connected, reopens=self.state.reopens,
            octets=self.state.octets, bit_rate=round(self.state.bit_rate, 1),
            unrouted_packets=self.state.unrouted_packets, locked=locked,
            frames_good=frames_good, frames_bad=frames_bad, frames_gap=frames_gap,
            sync_losses=sync_losses, packets=packets, packets_dropped=packets_dropped,
            last_frame_ns=last_frame_ns)
