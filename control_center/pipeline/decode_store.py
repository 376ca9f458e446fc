"""The decode-and-store stage: raw messages from the intake queue to InfluxDB, and each
message acknowledged to the broker only once its packets are stored.

It takes what the sources queued (a few batches' worth at a time, so that writes and
acknowledgements keep flowing), keeps live messages in the archive as received, splits
them into packets and batches them per packet type (:class:`Decoder`), writes each
decoded batch to InfluxDB with its tags, and hands it on: to the publisher
(``isls/<spacecraft>/tm/param``) and to the alarm stage. A message that cannot be taken
in is quarantined and acknowledged; it never stops the service.

Acknowledgement after store: every message is numbered as it is taken; the writer is
told (``mark``) the number up to which every message's packets have been written, and
reports back (:meth:`DecodeStore.stored`) once those writes are in InfluxDB or the
spool, and the acknowledgements go out in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from control_center.archive.recorder import ArchiveWriter
from control_center.config import IngestSettings
from control_center.pipeline.publisher import Publisher
from control_center.pipeline.quarantine import Quarantine, archive_as_received
from control_center.pipeline.sources import Intake
from control_center.storage.contract import format_lines_off_loop
from control_center.storage.writer import InfluxWriter
from control_center.telemetry.decoder import Decoder, IngestStats
from control_center.telemetry.records import DecodedBatch, RawMessage

log = logging.getLogger("isls.ingest")


class DecodeStore:
    """Decodes the intake queue's messages and stores them, acknowledging in order."""

    def __init__(self, settings: IngestSettings, intake: Intake, decoder: Decoder, *,
                 stats: IngestStats, quarantine: Quarantine, archive: ArchiveWriter | None,
                 publisher: Publisher,
                 batches: asyncio.Queue[DecodedBatch | None] | None) -> None:
        self.settings = settings
        self.intake = intake
        self.decoder = decoder
        self.stats = stats
        self.quarantine = quarantine
        self.archive = archive
        self.publisher = publisher
        # The alarm stage's queue (None without one); ``None`` on it: no more batches.
        self.batches = batches
        self._seq = 0  # messages taken so far
        self._unacked: deque[tuple[int, Callable[[], None]]] = deque()

    @property
    def unacknowledged(self) -> int:
        """Messages taken and not acknowledged yet (their packets not yet stored)."""
        return len(self._unacked)

    def stored(self, seq: int) -> None:
        """Every message up to ``seq`` is stored or spooled: acknowledge them, in order
        (the writer's ``on_stored``)."""
        while self._unacked and self._unacked[0][0] <= seq:
            self._unacked.popleft()[1]()

    async def run(self, writer: InfluxWriter) -> None:
        """Decode and store until ``None`` comes off the intake queue, then what is left."""
        try:
            await self._decode_loop(writer)
        finally:
            if self.batches is not None:
                await self.batches.put(None)

    async def _decode_loop(self, writer: InfluxWriter) -> None:
        interval = self.settings.batch_interval
        tags_cache: dict[tuple[str, str, str], dict[str, str]] = {}
        finished = False
        while not finished:
            try:
                item = await asyncio.wait_for(self.intake.get(), interval)
                if item is None:
                    finished = True
                else:
                    self._accept(item.message, item.acknowledge)
                    # Take what is already queued before decoding (bigger batches), up
                    # to a few batches' worth, so writes and acknowledgements keep flowing.
                    while not self.intake.empty() \
                            and self.decoder.waiting < self.decoder.max_batch:
                        more = self.intake.get_nowait()
                        if more is None:
                            finished = True
                            break
                        self._accept(more.message, more.acknowledge)
            except TimeoutError:
                pass
            self.stats.queue_depth = self.intake.qsize()
            if self.archive is not None:
                self.archive.tick()
            # Decode at once when no message waits behind these: low latency at low
            # rates (no packet waits batch_interval for company that is not coming; at
            # 100,000 values/s p99 publish -> queryable fell from 180 to 44 ms); while
            # messages keep arriving they gather into bigger batches above (throughput
            # at high rates), as the writer does with its posts. The price: smaller
            # batches at middle rates, more ingest CPU per value (README, Performance).
            batches = self.decoder.take(force=finished or self.intake.empty())
            self.quarantine.undecodable()
            for batch in batches:
                key = (batch.spacecraft, batch.source, batch.pass_id)
                tags = tags_cache.get(key)
                if tags is None:
                    tags = tags_cache[key] = {"spacecraft": batch.spacecraft,
                                              "source": batch.source}
                    if batch.pass_id:
                        tags["pass"] = batch.pass_id
                lines = await format_lines_off_loop(batch, tags)
                await writer.write(lines, len(batch), len(batch) * len(batch.packet.parameters))
                if self.settings.publish_params and batch.source == "live":
                    self.publisher.offer_params(batch)
                if self.batches is not None:
                    await self.batches.put(batch)
            # Messages whose packets have all been written (none still wait in the
            # decoder) are acknowledged once those writes are stored.
            oldest = self.decoder.oldest_seq()
            writer.mark(self._seq if oldest is None else oldest - 1)

    def _accept(self, message: RawMessage, acknowledge: Callable[[], None] | None) -> None:
        # Recording comes first: the archive keeps what arrived even if decoding it fails.
        try:
            archive_as_received(self.archive, self.decoder, message)
            self.decoder.feed(message, seq=self._seq + 1)
        except Exception as exc:
            # Whatever a message holds, the service goes on: the message is kept in the
            # dead-letter store and acknowledged, and the ones behind it are stored.
            log.exception("message from %s via %s could not be taken", message.spacecraft,
                          message.link)
            self.quarantine.message(message, f"processing failed: {type(exc).__name__}: {exc}",
                                    archive=False)
            if acknowledge is not None:
                acknowledge()
            return
        self._seq += 1
        if acknowledge is not None:
            # Acknowledged once its packets are in InfluxDB or in the spool (stored).
            self._unacked.append((self._seq, acknowledge))
