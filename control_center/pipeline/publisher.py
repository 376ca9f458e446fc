"""The publisher stage: live output from the ingest to the broker, best effort.

Every other stage offers what it has for live consumers (engineering values on
``isls/<spacecraft>/tm/param``, alarm changes, events, the active alarms, link status,
and the raw packets of a serial link republished on ``isls/<spacecraft>/tm/raw``) to one
outbox, bounded in messages and in bytes; a publisher session of its own empties it
into the broker. Storage never waits on the broker: when the publisher is behind or the
broker away, the oldest message goes, counted as ``publish_dropped``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from control_center.config import MqttSettings
from control_center.telemetry.decoder import IngestStats
from control_center.telemetry.records import DecodedBatch
from drivers.mqtt import (
    expiring_properties,
    make_client,
    param_topic,
    raw_properties,
    with_reconnect,
)

# Live output waiting for the broker, at most.
OUTBOX_MAX_MESSAGES = 1000
OUTBOX_MAX_BYTES = 16 << 20


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message for the broker."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: tuple[int, str] | None = None  # (earth-receive ns, link) of raw telemetry
    expiry: int = 0  # seconds until the broker drops it (retained or queued); 0: never


def param_message(batch: DecodedBatch) -> bytes:
    """JSON for ``isls/<spacecraft>/tm/param``: the batch's engineering values by column.

    orjson writes numpy arrays in C (non-finite floats as ``null``): the stdlib encoder
    walking Python lists took 60 % of the ingest's time at 400,000 values/s
    (docs/performance.md). A float32 parameter goes out as its shortest float32 text,
    as InfluxDB stores it (docs/contracts.md); other floats as float64.
    """
    float32 = {p.name for p in batch.packet.parameters if p.is_float32}
    values: dict[str, np.ndarray[Any, Any] | list[Any]] = {}
    for name, column in batch.values.items():
        array = np.asarray(column)
        if array.dtype.kind == "f":
            with np.errstate(over="ignore"):  # no float32 holds it: inf, written null
                array = array.astype(np.float32 if name in float32 else np.float64,
                                     copy=False)
        elif array.dtype == np.uint64:
            values[name] = array.tolist()  # exact above 2**63 (orjson writes any uint64)
            continue
        elif array.dtype.kind in "iu":
            array = array.astype(np.int64, copy=False)
        elif array.dtype.kind in "OUS":
            values[name] = [str(v) for v in array.tolist()]  # strings
            continue
        values[name] = np.ascontiguousarray(array)
    return orjson.dumps({
        "spacecraft": batch.spacecraft, "packet": batch.packet.name,
        "time_ns": np.ascontiguousarray(batch.times_ns, dtype=np.int64), "values": values,
    }, option=orjson.OPT_SERIALIZE_NUMPY)


class Publisher:
    """The outbox and the MQTT session that empties it."""

    def __init__(self, settings: MqttSettings, client_id: str, stats: IngestStats) -> None:
        self.settings = settings
        self.client_id = client_id
        self.stats = stats  # publish_dropped is counted with the ingest's other errors
        self._outbox: asyncio.Queue[Outgoing] = asyncio.Queue(OUTBOX_MAX_MESSAGES)
        self._outbox_bytes = 0

    def offer(self, message: Outgoing) -> None:
        """Queue ``message`` for the broker, dropping the oldest to make room."""
        # Bounded in bytes too: at a million values/s the tm/param JSON alone is tens of
        # MB/s, and a queue of 1,000 such messages held 600 MB.
        while not self._outbox.empty() and (
                self._outbox.full()
                or self._outbox_bytes + len(message.payload) > OUTBOX_MAX_BYTES):
            dropped = self._outbox.get_nowait()
            self._outbox_bytes -= len(dropped.payload)
            self.stats.errors["publish_dropped"] += 1
        self._outbox.put_nowait(message)
        self._outbox_bytes += len(message.payload)

    def offer_params(self, batch: DecodedBatch) -> None:
        """A decoded batch's engineering values for ``isls/<spacecraft>/tm/param``."""
        self.offer(Outgoing(param_topic(batch.spacecraft), param_message(batch)))

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set and the outbox is empty, reconnecting as needed."""
        await with_reconnect("publisher", self.settings, lambda: self._session(stop), stop)

    async def _session(self, stop: asyncio.Event) -> None:
        async with make_client(self.settings, self.client_id) as client:
            while True:
                if stop.is_set() and self._outbox.empty():
                    return
                try:
                    message = await asyncio.wait_for(self._outbox.get(), 0.2)
                    self._outbox_bytes -= len(message.payload)
                except TimeoutError:
                    continue
                properties = None
                if message.properties is not None:
                    properties = raw_properties(message.properties[0], message.properties[1],
                                                stored=True)
                elif message.expiry:
                    properties = expiring_properties(message.expiry)
                await client.publish(message.topic, message.payload, qos=message.qos,
                                     retain=message.retain, properties=properties)
