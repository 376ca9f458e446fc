"""The source stages: where raw telemetry enters the ingest, onto the intake queue.

- :class:`MqttReader`: the MQTT session reading ``isls/+/tm/raw`` and ``isls/+/tm/replay``
  (a shared subscription when configured, so that several ingests share the load). Each
  message goes on the intake queue with its acknowledgement, sent once it is stored
  (decode_store.py): the broker sends at most :data:`RECEIVE_MAXIMUM` unacknowledged
  ones, and the socket is not read while that many wait unread (GatedClient), so the
  backlog waits at the broker. Poison messages are quarantined, packets a serial link's
  ingest stored already are skipped, the broker's ``$SYS`` figures are kept for the
  health point, and operator alarm commands go to the alarm stage.
- :class:`SerialIntake`: the configured serial links. Their deframed packets go on the
  intake queue, so they are stored even when the broker is down, and to the publisher,
  republished on the raw topic marked ``stored`` so that no ingest stores them twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiomqtt

from control_center.archive.recorder import KIND_LINK_OCTETS, ArchiveWriter
from control_center.config import LinkSettings, MqttSettings
from control_center.pipeline.publisher import Outgoing, Publisher
from control_center.pipeline.quarantine import Quarantine
from control_center.telemetry.decoder import Decoder, IngestStats
from control_center.telemetry.records import RawMessage
from drivers.mqtt import (
    ALARM_COMMAND_TOPIC,
    RAW_QOS,
    make_client,
    raw_subscription,
    raw_topic,
    to_raw_message,
    with_reconnect,
)
from drivers.paho_adapter import GatedClient, ack
from drivers.serial import PacketSink, SerialLinkSource

log = logging.getLogger("isls.ingest")

# Unacknowledged QoS 1 messages the broker may send one ingest. Messages are
# acknowledged once stored, so this is the whole pipeline's depth: 20 s of a 20 ms-message
# stream, 250 MiB at most of 256 KiB replay bundles. Beyond it the backlog waits at the
# broker.
RECEIVE_MAXIMUM = 1000
# Mosquitto's $SYS figures the ingest keeps in its health point (published every
# sys_interval, 10 s by default): messages it dropped (a full queue, max_queued_messages)
# and messages it holds.
BROKER_FIGURES = {"$SYS/broker/publish/messages/dropped": "broker_dropped",
                  "$SYS/broker/store/messages/count": "broker_stored"}


@dataclass(frozen=True, slots=True)
class Received:
    """A raw message on the intake queue, with what acknowledges it to the broker
    (``None``: nothing to acknowledge, a serial link's packets)."""

    message: RawMessage
    acknowledge: Callable[[], None] | None = None


# ``None`` on the intake queue: the sources have stopped, the decoder finishes.
Intake = asyncio.Queue[Received | None]


class MqttReader:
    """The MQTT reader session, and how it stops taking messages."""

    def __init__(self, settings: MqttSettings, client_id: str, intake: Intake, *,
                 decoder: Decoder, stats: IngestStats, quarantine: Quarantine,
                 session_expiry: int, commands: asyncio.Queue[dict[str, Any]] | None,
                 drain_quiet: float, drain_limit: float) -> None:
        self.settings = settings
        self.client_id = client_id
        self.intake = intake
        self.decoder = decoder  # counts bad input by kind
        self.stats = stats
        self.quarantine = quarantine
        self.session_expiry = session_expiry
        # The alarm stage's queue (None without one: commands are not subscribed to).
        self.commands = commands
        self.drain_quiet = drain_quiet
        self.drain_limit = drain_limit
        self.ready = asyncio.Event()  # set once subscribed
        self.broker_figures: dict[str, int] = {}
        self._mqtt: aiomqtt.Client | None = None
        self._last_message = time.monotonic()
        self._leave = asyncio.Event()  # leave the shared group (stop, shared only)
        self._stop_taking = asyncio.Event()  # stop reading messages (stop, plain)
        self._taking_stopped = asyncio.Event()
        self._connected = False  # a session is subscribed and may have taken messages
        # The broker confirmed the last acknowledgements before a clean stop.
        self.acknowledgements_confirmed = False

    @property
    def unread_messages(self) -> int:
        """Messages the MQTT client holds that the reader has not taken yet (at most
        about ``RECEIVE_MAXIMUM``: the rest of a backlog waits at the broker)."""
        return 0 if self._mqtt is None else len(self._mqtt.messages)

    @property
    def read_pauses(self) -> int:
        """Times the socket was left unread because too many messages waited."""
        return self._mqtt.paused if isinstance(self._mqtt, GatedClient) else 0

    async def run(self, stop: asyncio.Event) -> None:
        """Read until ``stop`` is set, reconnecting as needed."""
        await with_reconnect("ingest", self.settings, lambda: self._session(stop), stop)

    async def stop_taking(self, session: asyncio.Task[None]) -> None:
        """Stop taking messages, before the decoder drains (``session``: the task of
        :meth:`run`)."""
        if self.settings.shared_group:
            # Drain: leave the shared group (the broker sends the others what comes
            # next), keep reading until the broker has been quiet for a moment, and
            # let the service store and acknowledge it before disconnecting.
            self._leave.set()
            deadline = time.monotonic() + self.drain_limit
            while time.monotonic() < deadline and not session.done():
                quiet = time.monotonic() - self._last_message
                if quiet >= self.drain_quiet and self.intake.empty():
                    break
                await asyncio.sleep(0.05)
        else:
            # A plain subscription is kept: the broker goes on queueing for this
            # persistent session while the ingest is stopped (mqtt.session_expiry).
            # Stop taking messages; what was received and not taken stays
            # unacknowledged and comes again at the next start. What was taken is
            # stored and acknowledged before disconnecting.
            self._stop_taking.set()
            if not self._connected:
                return  # nothing taken waits for an acknowledgement: no wait for a broker
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._taking_stopped.wait(), 5)

    def command(self, payload: bytes) -> None:
        """An operator alarm command as received: a JSON object for the alarm stage;
        anything else is counted as ``bad_command``."""
        try:
            command = json.loads(payload)
            if not isinstance(command, dict):
                raise ValueError("not an object")
        except ValueError:
            self.decoder.count_error("bad_command", 1, "an alarm command that is not JSON")
            return
        if self.commands is not None:
            try:
                self.commands.put_nowait(command)
            except asyncio.QueueFull:
                self.decoder.count_error("commands_dropped", 1, "more alarm commands than "
                                         "the alarm stage takes")

    async def _session(self, stop: asyncio.Event) -> None:
        # No limit on aiomqtt's own queue (at its limit it would discard messages): the
        # broker sends at most RECEIVE_MAXIMUM unacknowledged ones, and this ingest
        # acknowledges only what it has stored.
        client = make_client(self.settings, self.client_id, manual_ack=True,
                             receive_maximum=RECEIVE_MAXIMUM, clean_start=False,
                             session_expiry=self.session_expiry, read_limit=RECEIVE_MAXIMUM)
        group = self.settings.shared_group
        if self._stop_taking.is_set():
            await stop.wait()  # stopping: no new session that would take messages
            return
        async with client:
            self._mqtt = client
            await client.subscribe(raw_subscription(group), qos=RAW_QOS)
            await client.subscribe(raw_subscription(group, "replay"), qos=RAW_QOS)
            if self.commands is not None:
                # Not shared: every ingest hears every command; the one that holds the
                # alarm answers.
                await client.subscribe(ALARM_COMMAND_TOPIC, qos=1)
            for topic in BROKER_FIGURES:
                await client.subscribe(topic, qos=0)
            self.ready.set()
            log.info("ingest subscribed to %s on %s", raw_subscription(group), self.settings.url)
            self._connected = True  # until the finally below
            reading = asyncio.create_task(self._read_messages(client))
            leaving = asyncio.create_task(self._unsubscribe_on_leave(client))
            stopping = asyncio.create_task(stop.wait())
            halting = asyncio.create_task(self._stop_taking.wait())
            try:
                await asyncio.wait({reading, stopping, halting},
                                   return_when=asyncio.FIRST_COMPLETED)
                if halting.done() and not reading.done():
                    # Stop taking, but stay connected until what was taken is stored
                    # and acknowledged (``stop``).
                    reading.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reading
                    self._taking_stopped.set()
                    await stopping
                if stopping.done():  # a clean stop, not a lost connection
                    await self._confirm_acknowledgements(client)
            finally:
                self._connected = False
                stopping.cancel()
                leaving.cancel()
                halting.cancel()
                if not reading.done():
                    reading.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reading
                self._taking_stopped.set()
            if reading.done() and not reading.cancelled() and reading.exception() is not None:
                raise reading.exception()  # type: ignore[misc]

    async def _confirm_acknowledgements(self, client: aiomqtt.Client) -> None:
        """Before a clean disconnect: one round trip to the broker after the last
        acknowledgement. A broker handles a connection's packets in order, so its answer
        (UNSUBACK) proves every PUBACK sent before it was taken; the session is not left
        while an acknowledgement may still be on its way (a clean stop's stored messages
        came again at the next start, seen twice in CI under load). The ``$SYS`` figures
        are what is unsubscribed: they are subscribed again at the next start, and the
        broker stops sending them to a client that is leaving."""
        if isinstance(client, GatedClient):
            client.release()  # a paused socket would never show the answer
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            # Well within the service's wait for the reader to end (5 s): a broker too
            # busy to answer must not hold up a stop.
            await asyncio.wait_for(client.unsubscribe(list(BROKER_FIGURES)), 2)
            self.acknowledgements_confirmed = True
        if not self.acknowledgements_confirmed:
            log.warning("the broker did not confirm the last acknowledgements within 2 s: "
                        "some stored messages may come again at the next start (stored "
                        "once all the same)")

    async def _unsubscribe_on_leave(self, client: aiomqtt.Client) -> None:
        await self._leave.wait()
        await client.unsubscribe([raw_subscription(self.settings.shared_group),
                                  raw_subscription(self.settings.shared_group, "replay")])

    async def _read_messages(self, client: aiomqtt.Client) -> None:
        gate = client if isinstance(client, GatedClient) else None
        if gate is not None:
            gate.arm()  # subscribed, and read from here on
        async for message in client.messages:
            if gate is not None:
                gate.taken()
            if message.topic.value.startswith("$SYS/"):
                # The broker's own figures: what it dropped and holds
                # (docs/operating.md); readable where the ACL lets this account read $SYS.
                self._broker_figure(message.topic.value, message.payload)
                ack(client, message)
                continue
            if message.topic.matches(ALARM_COMMAND_TOPIC):
                ack(client, message)
                self.command(message.payload if isinstance(message.payload, bytes) else b"")
                continue
            raw = to_raw_message(message)
            self._last_message = time.monotonic()
            if raw is None:
                ack(client, message)
                self.decoder.count_error("foreign_topic", 1, "message on a topic "
                                         "outside isls/<spacecraft>/tm/raw")
                continue
            if raw.problem:
                self.quarantine.message(raw, raw.problem, archive=True)
                ack(client, message)  # it is on disk in the dead-letter store
                continue
            if raw.stored:
                ack(client, message)
                continue  # a serial link's ingest stored it already
            # Waits when the decoder is behind; unacknowledged, the broker holds the rest.
            await self.intake.put(Received(raw, functools.partial(ack, client, message)))
            self.stats.queue_depth = self.intake.qsize()

    def _broker_figure(self, topic: str, payload: object) -> None:
        name = BROKER_FIGURES.get(topic)
        if name is None or not isinstance(payload, bytes | str):
            return
        with contextlib.suppress(ValueError):
            self.broker_figures[name] = int(payload)


class SerialIntake:
    """The serial links: packets to the intake queue and, republished, to the broker."""

    def __init__(self, links: Sequence[LinkSettings], intake: Intake, publisher: Publisher,
                 archive: ArchiveWriter | None) -> None:
        self.intake = intake
        self.publisher = publisher
        self.archive = archive
        self.links = [SerialLinkSource(link, self._sink_for(link.name),
                                       octet_sink=self._octets_for(link)) for link in links]

    async def run(self, stop: asyncio.Event) -> None:
        """Read every link until ``stop`` is set."""
        await asyncio.gather(*(asyncio.create_task(link.run(stop), name=f"link-{link.name}")
                               for link in self.links))

    def _octets_for(self, link: LinkSettings) -> Callable[[bytes, int], None] | None:
        archive = self.archive
        if archive is None:
            return None

        def record(octets: bytes, receive_ns: int) -> None:
            archive.record(link.spacecraft, receive_ns, link.name, octets, KIND_LINK_OCTETS)
        return record

    def _sink_for(self, link: str) -> PacketSink:
        async def sink(spacecraft: str, packets: bytes, receive_ns: int) -> None:
            await self._from_link(spacecraft, packets, receive_ns, link)
        return sink

    async def _from_link(self, spacecraft: str, packets: bytes, receive_ns: int,
                         name: str) -> None:
        """Packets deframed from a serial link: stored locally, and republished."""
        await self.intake.put(Received(RawMessage(spacecraft, packets, receive_ns, name,
                                                  stored=True)))
        self.publisher.offer(Outgoing(raw_topic(spacecraft), packets, qos=RAW_QOS,
                                      properties=(receive_ns, name)))
