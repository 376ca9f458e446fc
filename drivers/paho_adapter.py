"""What the control center needs from aiomqtt and aiomqtt 2.5 does not offer, in one place.

aiomqtt wraps a paho-mqtt client and keeps it, its socket reader and its queue of
received messages private. This module is the only code that touches a private
attribute of aiomqtt or paho; it fills five gaps:

- manual acknowledgement (:func:`enable_manual_ack`, :func:`ack`): aiomqtt acknowledges
  a QoS 1 message as soon as paho reads it; paho can leave that to the application
  (``manual_ack_set``, ``ack``), which is how the ingest acknowledges only what it has
  stored;
- socket-read pausing (:class:`GatedClient`): aiomqtt reads the socket and queues
  whatever arrives, without bound and without a way to stop;
- PUBACK reason codes (:func:`publish_refusals`): ``publish`` returns as if a refused
  message (MQTT 5 reason code 0x87 "not authorized") had been accepted; paho passes the
  reason code to ``on_publish``;
- the account a client connected as (:func:`account_name`), to name it in an error;
- an unexpected disconnection nobody was reading at the time
  (:func:`retrieve_disconnection`), which asyncio would print as a traceback.

It relies on, as of aiomqtt 2.5.1 and paho-mqtt 2.2 (pyproject pins aiomqtt <3):
``aiomqtt.Client._client`` (the paho client); the callbacks aiomqtt installs on it,
``Client._on_socket_open``, ``_on_socket_close`` and ``_on_message``, and what they use
(``_loop``, ``_queue``, ``_disconnected``, ``_misc_task``, ``_misc_loop``); the
``_disconnected`` future of a fresh client lasting its session; paho's
``on_publish``, ``_sock``, ``_keepalive`` and ``_username``. A later aiomqtt that
changes them breaks tests/integration/test_flow_control.py and test_backpressure.py
(pausing, acknowledgement) and test_clear_errors.py (refusals): fix it here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import aiomqtt
from paho.mqtt.reasoncodes import ReasonCode


def enable_manual_ack(client: aiomqtt.Client) -> None:
    """Leave QoS 1 acknowledgements to :func:`ack` (aiomqtt has no switch for it; paho,
    underneath, does). Call before connecting."""
    client._client.manual_ack_set(True)


def ack(client: aiomqtt.Client, message: aiomqtt.Message) -> None:
    """Acknowledge a message received by a manual-ack client (no-op for QoS 0)."""
    if message.qos:
        client._client.ack(message.mid, message.qos)


@contextlib.contextmanager
def publish_refusals(client: aiomqtt.Client) -> Iterator[list[ReasonCode]]:
    """The failure reason codes of the PUBACKs received while the block runs.

    aiomqtt keeps its own ``on_publish`` on the paho client (it completes ``publish``);
    it is called on as before, and put back when the block ends."""
    paho = client._client
    refused: list[ReasonCode] = []
    aiomqtt_on_publish: Callable[..., None] | None = paho.on_publish

    def on_publish(paho_client: Any, userdata: Any, mid: int, reason_code: ReasonCode,
                   properties: Any) -> None:
        if isinstance(reason_code, ReasonCode) and reason_code.is_failure:
            refused.append(reason_code)
        if aiomqtt_on_publish is not None:
            aiomqtt_on_publish(paho_client, userdata, mid, reason_code, properties)

    paho.on_publish = on_publish
    try:
        yield refused
    finally:
        paho.on_publish = aiomqtt_on_publish


def retrieve_disconnection(client: aiomqtt.Client) -> None:
    """Mark an unexpected disconnection as seen once it happens.

    aiomqtt sets it as the exception of a future (``Client._disconnected``) that only
    message iteration and ``publish`` read; a client that is not in either when its
    broker goes away (a publisher waiting for its next message) leaves it unread, and
    asyncio prints "Future exception was never retrieved" with a traceback when the
    future is collected. The reconnect loop reports the disconnection already, once,
    in one line (:func:`drivers.mqtt.with_reconnect`)."""
    def seen(future: Any) -> None:
        if not future.cancelled():
            future.exception()

    client._disconnected.add_done_callback(seen)


def account_name(client: aiomqtt.Client) -> str | None:
    """The user name the client connects with, if any."""
    name = client._client._username
    return name.decode() if isinstance(name, bytes) else None


class GatedClient(aiomqtt.Client):
    """An aiomqtt client that stops reading its socket while ``read_limit`` received
    messages wait unread, and reads on once the reader has taken them down to half.

    Why: the broker is meant to send at most Receive Maximum unacknowledged messages,
    but Mosquitto 2.0.11 sends more once acknowledgements flow (2,388 outstanding at
    100, FACTS.md), and aiomqtt queues whatever paho reads, without bound. Not reading
    the socket is the one bound the broker cannot override: TCP flow control pushes the
    backlog back into the broker's queue for this session, where it waits.

    aiomqtt 2.5 keeps its socket reader as a closure: ``_on_socket_open`` below is its
    own (aiomqtt/client.py, ``Client._on_socket_open``), keeping a reference to the
    reader so that it can be removed and added again.
    """

    def __init__(self, *args: Any, read_limit: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read_limit = read_limit
        self.paused = 0  # times reading was paused (figures for tests and health)
        # Off until :meth:`arm`: a resumed session's broker sends up to Receive Maximum
        # queued messages right after CONNACK, before the SUBACKs; pausing then (nothing
        # reads the queue yet) would leave the SUBACK unread, the subscribe timing out
        # and the session reconnecting for ever (issue 16: a center's broker back with
        # a backlog). Until acknowledgements flow the broker keeps to Receive Maximum,
        # so the queue is bounded meanwhile all the same.
        self.armed = False
        self._reader: Callable[[], None] | None = None
        self._reader_fd = -1
        self._reading = False

    def _on_socket_open(self, client: Any, userdata: Any, sock: Any) -> None:
        def callback() -> None:
            try:
                while True:
                    client.loop_read()
                    if hasattr(client._sock, "pending") and client._sock.pending() > 0:
                        continue
                    break
            except Exception as exc:
                if not self._disconnected.done():
                    self._disconnected.set_exception(exc)

        def create_misc_task() -> None:
            self._misc_task = self._loop.create_task(self._misc_loop())

        def start_reading() -> None:
            self._reader, self._reader_fd = callback, sock.fileno()
            self._resume()

        self._loop.call_soon_threadsafe(start_reading)
        self._loop.call_soon_threadsafe(create_misc_task)

    def _on_socket_close(self, client: Any, userdata: Any, sock: Any) -> None:
        super()._on_socket_close(client, userdata, sock)  # removes the reader
        self._reading = False
        self._reader, self._reader_fd = None, -1

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        super()._on_message(client, userdata, message)
        if self.armed and self._reading and self._queue.qsize() >= self.read_limit:
            self._loop.remove_reader(self._reader_fd)
            self._reading = False
            self.paused += 1
            # A paused client cannot read the broker's PINGRESP, and paho drops a
            # connection whose PINGRESP does not come within the keepalive: read again
            # for a moment every half keepalive (the next message over the limit
            # pauses it again), so a long stall never costs the session a reconnect.
            keepalive = max(1.0, float(getattr(client, "_keepalive", 60)) / 2)
            self._loop.call_later(keepalive, self._resume)

    def _resume(self) -> None:
        if not self._reading and self._reader is not None and self._reader_fd >= 0:
            self._loop.add_reader(self._reader_fd, self._reader)
            self._reading = True

    def arm(self) -> None:
        """Subscribed, and a reader takes messages: hold to ``read_limit`` from now on."""
        self.armed = True

    def release(self) -> None:
        """Leaving: read the socket freely again (what comes now is not taken, and stays
        unacknowledged), so that an answer the client waits for can be read."""
        self.armed = False
        self._resume()

    def taken(self) -> None:
        """The reader took a message: read the socket again once half the limit waits."""
        if not self._reading and self._queue.qsize() <= self.read_limit // 2:
            self._resume()
