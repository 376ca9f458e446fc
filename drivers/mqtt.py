"""The MQTT link: topics, message properties and client construction.

Contract (docs/contracts.md, "MQTT contract"):

``isls/<spacecraft>/tm/raw``
    QoS 1. Payload: one or more whole CCSDS space packets back to back. MQTT 5 user
    properties ``ert`` (earth-receive time of the first packet, ISO 8601 UTC) and
    ``link`` (the link or simulator that received it).
``isls/<spacecraft>/tm/param``
    QoS 0. JSON engineering values for live consumers, one message per decoded batch.

aiomqtt is the maintained successor of asyncio-mqtt (the same project, renamed). What
it does not expose (manual acknowledgement, pausing the socket reader) is reached only
through drivers/paho_adapter.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TextIO, TypeVar

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from control_center.config import MqttSettings
from control_center.errors import IslsError
from control_center.telemetry.records import RawMessage
from drivers.paho_adapter import GatedClient, enable_manual_ack, retrieve_disconnection

log = logging.getLogger("isls.mqtt")

TOPIC_ROOT = "isls"
RAW_QOS = 1


def raw_topic(spacecraft: str) -> str:
    return f"{TOPIC_ROOT}/{spacecraft}/tm/raw"


def param_topic(spacecraft: str) -> str:
    return f"{TOPIC_ROOT}/{spacecraft}/tm/param"


def replay_topic(spacecraft: str) -> str:
    return f"{TOPIC_ROOT}/{spacecraft}/tm/replay"


def raw_subscription(group: str | None, kind: str = "raw") -> str:
    """All raw (or replay) topics; with a group, a shared subscription that spreads the
    load."""
    topic = f"{TOPIC_ROOT}/+/tm/{kind}"
    return f"$share/{group}/{topic}" if group else topic


def spacecraft_of(topic: str) -> str | None:
    parts = topic.split("/")
    if len(parts) == 4 and parts[0] == TOPIC_ROOT and parts[2] == "tm" \
            and parts[3] in ("raw", "replay"):
        return parts[1]
    return None


def format_ert(unix_ns: int) -> str:
    seconds, nanoseconds = divmod(unix_ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanoseconds // 1000:06d}Z"


# Earth-receive times and replay shifts a message may carry: from the CCSDS epoch to
# 2200, so that every time stamp derived from them stays far inside int64 nanoseconds.
EARLIEST_ERT_NS = -378_691_200 * 1_000_000_000  # 1958-01-01T00:00:00Z
LATEST_ERT_NS = 7_258_118_400 * 1_000_000_000  # 2200-01-01T00:00:00Z
MAX_SHIFT_NS = LATEST_ERT_NS - EARLIEST_ERT_NS


def parse_ert(text: str) -> int | None:
    """An ISO 8601 UTC time as ns since 1970, or None if it is not one or lies outside
    1958..2200 (a hostile or corrupt value must not overflow a time stamp later)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    value = int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000
    return value if EARLIEST_ERT_NS <= value < LATEST_ERT_NS else None


def alarms_topic(spacecraft: str) -> str:
    return f"{TOPIC_ROOT}/{spacecraft}/alarms"


def active_alarms_topic(spacecraft: str) -> str:
    return f"{TOPIC_ROOT}/{spacecraft}/alarms/active"


def events_topic(spacecraft: str) -> str:
    return f"{TOPIC_ROOT}/{spacecraft}/events"


ALARM_COMMAND_TOPIC = f"{TOPIC_ROOT}/alarms/command"


def link_topic(spacecraft: str) -> str:
    return f"{TOPIC_ROOT}/{spacecraft}/link"


def replay_properties(ert_ns: int, link: str, pass_id: str, shift_ns: int) -> Properties:
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.UserProperty = [("ert", format_ert(ert_ns)), ("link", link),
                               ("pass", pass_id), ("shift_ns", str(shift_ns))]
    return properties


def raw_properties(ert_ns: int, link: str, *, stored: bool = False) -> Properties:
    """``stored``: the publisher (an ingest reading a serial link) has already stored
    these packets, so ingest subscribers skip them; other consumers still get them."""
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    user = [("ert", format_ert(ert_ns)), ("link", link)]
    if stored:
        user.append(("stored", "true"))
    properties.UserProperty = user
    return properties


# A link status not refreshed for this long is gone from the broker (MQTT 5 message
# expiry, §3.3.2.3.3, applies to retained messages too): the ingest reports every second,
# so `isls link status` never shows the last state of a stopped ingest, or of a link since
# removed from the configuration, as if it were live.
LINK_STATUS_EXPIRY = 10


def expiring_properties(seconds: int) -> Properties:
    """Publish properties with a message expiry interval of ``seconds``."""
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.MessageExpiryInterval = seconds
    return properties


def to_raw_message(message: aiomqtt.Message) -> RawMessage | None:
    """``None`` for a topic that is not a raw telemetry topic."""
    spacecraft = spacecraft_of(message.topic.value)
    if spacecraft is None:
        return None
    payload = message.payload
    if isinstance(payload, str):
        payload = payload.encode()
    elif not isinstance(payload, bytes | bytearray):
        payload = b""
    receive_ns: int | None = None
    link = "unknown"
    stored = False
    pass_id = ""
    shift_ns = 0
    user_properties = [(str(k), str(v)) for k, v in
                       getattr(message.properties, "UserProperty", None) or []]
    problems: list[str] = []
    for key, value in user_properties:
        if key == "ert":
            receive_ns = parse_ert(value)
            if receive_ns is None:
                problems.append(f"ert {value[:64]!r} is not an ISO 8601 UTC time in "
                                f"1958..2199")
        elif key == "link":
            link = value[:200]
        elif key == "stored":
            stored = value == "true"
        elif key == "pass":
            pass_id = value[:200]
        elif key == "shift_ns":
            try:
                shift_ns = int(value)
            except ValueError:
                shift_ns = MAX_SHIFT_NS + 1
            if abs(shift_ns) > MAX_SHIFT_NS:
                problems.append(f"shift_ns {value[:64]!r} is not a whole number of ns "
                                f"within ±{MAX_SHIFT_NS:,}")
                shift_ns = 0
    if receive_ns is None:
        receive_ns = time.time_ns()
    replay = message.topic.value.endswith("/tm/replay")
    return RawMessage(spacecraft, bytes(payload), receive_ns, link, stored,
                      source="replay" if replay else "live", pass_id=pass_id if replay else "",
                      shift_ns=shift_ns if replay else 0, problem="; ".join(problems),
                      topic=message.topic.value, properties=tuple(user_properties))


def make_client(settings: MqttSettings, identifier: str, *, clean_start: bool = True,
                session_expiry: int = 0, max_queued_incoming: int | None = None,
                receive_maximum: int = 0, manual_ack: bool = False,
                read_limit: int = 0) -> aiomqtt.Client:
    """An MQTT 5 client for ``settings``; the connection opens in ``async with``.

    ``manual_ack`` with ``receive_maximum``: the client acknowledges a QoS 1 message only
    when ``ack(client, message)`` (drivers.paho_adapter) is called, and the broker sends at most
    ``receive_maximum`` unacknowledged ones; the rest wait at the broker. That is the
    ingest's backpressure: it acknowledges what it has taken in, so a slow pipeline
    slows the broker's delivery instead of filling memory (aiomqtt alone would read the
    socket and acknowledge everything, however far behind its reader is).
    ``read_limit``: a :class:`~drivers.paho_adapter.GatedClient` that stops reading its
    socket while that many received messages wait unread.
    """
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    if session_expiry:
        properties.SessionExpiryInterval = session_expiry
    if receive_maximum:
        properties.ReceiveMaximum = receive_maximum
    tls_context = ssl.create_default_context() if settings.tls else None
    options: dict[str, Any] = dict(
        hostname=settings.host, port=settings.port, username=settings.username,
        password=settings.password, identifier=identifier,
        protocol=aiomqtt.ProtocolVersion.V5, keepalive=settings.keepalive,
        clean_start=clean_start, properties=properties, tls_context=tls_context,
        max_queued_incoming_messages=max_queued_incoming, timeout=10,
    )
    client = GatedClient(**options, read_limit=read_limit) if read_limit \
        else aiomqtt.Client(**options)
    if manual_ack:
        enable_manual_ack(client)
    retrieve_disconnection(client)
    return client


async def with_reconnect(name: str, settings: MqttSettings,
                         session: Callable[[], Awaitable[None]], stop: asyncio.Event,
                         *, max_delay: float = 10.0, give_up: asyncio.Event | None = None,
                         grace: float = 1.0) -> bool:
    """Run ``session`` until ``stop`` is set, reconnecting with back-off when the broker
    is unreachable or drops the connection, and telling the operator each time.

    ``give_up`` is for a session that sets ``stop`` only once it has sent everything (a
    simulator's backlog): once ``give_up`` is set (Ctrl-C, SIGTERM) no new attempt is
    made and a session still running has ``grace`` seconds to finish, so the command
    stops within seconds even with the broker gone. Returns whether ``stop`` was
    reached; False: given up first."""
    delay = 0.25
    while not stop.is_set():
        attempt = asyncio.ensure_future(session())
        if give_up is not None and not await finished_unless_given_up(attempt, give_up, grace):
            return stop.is_set()
        try:
            await attempt
            delay = 0.25
            if stop.is_set():
                return True
        except aiomqtt.MqttError as exc:
            if give_up is not None and give_up.is_set():
                return False
            log.warning("%s: MQTT broker %s:%d unavailable (%s); reconnecting in %.1f s",
                        name, settings.host, settings.port, exc, delay)
            waits = [stop] if give_up is None else [stop, give_up]
            await _any_set(waits, delay)
            delay = min(delay * 2, max_delay)
    return True


async def finished_unless_given_up(attempt: asyncio.Future[None], give_up: asyncio.Event,
                                grace: float) -> bool:
    """Wait for ``attempt``; if ``give_up`` comes first (Ctrl-C), allow it ``grace``
    seconds more, then cancel it. False if it was cancelled; its error, if it failed,
    is the caller's to take (``attempt.result()``)."""
    quitting = asyncio.ensure_future(give_up.wait())
    either: set[asyncio.Future[Any]] = {attempt, quitting}
    try:
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    finally:
        quitting.cancel()
    if not attempt.done():
        await asyncio.wait({attempt}, timeout=grace)
    if attempt.done():
        return True
    attempt.cancel()
    with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
        await attempt
    return False


async def _any_set(events: list[asyncio.Event], timeout: float) -> None:
    """Return when any of ``events`` is set, or after ``timeout`` seconds."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


# Every operator tool meets the broker through with_broker: a broker that cannot be
# reached, or that refuses the account, is one line naming the broker and the reason,
# never a traceback; the live views retry until Ctrl-C, the one-shot commands stop.
T = TypeVar("T")
RETRY_FIRST = 1.0  # seconds before the first reconnection attempt of a live view
RETRY_MAX = 30.0
# CONNACK reason codes (MQTT 5 §3.2.2.2; 3: server unavailable in MQTT 3.1.1) after
# which trying again may help: the others (bad credentials, not authorized, banned,
# protocol) need the user to change something.
_TRANSIENT_CONNECT_CODES = {3, 0x88, 0x89, 0x97, 0x9F}


def broker_error(mqtt: MqttSettings, error: aiomqtt.MqttError) -> tuple[IslsError, bool]:
    """What went wrong with the broker, as one line naming it, and whether trying
    again later may help. The URL shows the user name, never the password."""
    if isinstance(error, MqttConnectError):
        code = error.rc
        value = code.value if isinstance(code, ReasonCode) else code
        reason = (code.getName() if isinstance(code, ReasonCode)
                  else str(error).removeprefix(f"[code:{code}] "))
        if value in _TRANSIENT_CONNECT_CODES:
            return IslsError(f"the broker at {mqtt.url} is not available: "
                             f"{str(reason).lower()}"), True
        return IslsError(f"the broker at {mqtt.url} refused the connection: "
                         f"{str(reason).lower()} (check the user name and password: "
                         f"ISLS_MQTT_URL, ISLS_MQTT_PASSWORD)"), False
    cause = error.__cause__ or error.__context__
    if isinstance(cause, OSError) and cause.strerror:
        reason = cause.strerror
    elif isinstance(cause, aiomqtt.MqttCodeError):
        reason = str(cause)
    else:
        reason = str(error)
    if reason.startswith("[") and "] " in reason:  # "[Errno 111] …", "[code:7] …"
        reason = reason.split("] ", 1)[1]
    reason = reason.rstrip(".")
    return IslsError(f"cannot reach the broker at {mqtt.url}: "
                     f"{reason[:1].lower()}{reason[1:]}"), True


async def with_broker(mqtt: MqttSettings, name: str,
                      session: Callable[[aiomqtt.Client], Awaitable[T]], *,
                      retry: bool, err: TextIO = sys.stderr) -> T:
    """Connect as client ``name``-<unique> and run ``session``; its result.

    A broker that cannot be reached or is lost: with ``retry`` (the live views), one
    line on ``err`` ("…; retrying in N s") and another attempt, backing off up to
    :data:`RETRY_MAX`, until Ctrl-C; without, an :class:`IslsError`. A refusal that
    trying again cannot fix (bad credentials, not authorized) is always an error."""
    delay = RETRY_FIRST
    while True:
        done = False
        try:
            async with make_client(mqtt, f"{name}-{time.monotonic_ns()}") as client:
                delay = RETRY_FIRST
                result = await session(client)
                done = True
        except aiomqtt.MqttError as exc:
            if done:
                return result  # only saying goodbye to the broker failed
            error, transient = broker_error(mqtt, exc)
            if not (retry and transient):
                raise error from None
            err.write(f"isls: {error}; retrying in {delay:.0f} s\n")
            err.flush()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)
            continue
        return result
