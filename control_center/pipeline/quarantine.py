"""The poison-message policy, shared by the stages that meet bad input.

A message that cannot be trusted (a property out of range) or that failed to be taken
in, and packets the decoder could not decode, are counted, kept in the dead-letter
store (to list and replay) and skipped: they never stop the ingest, and they never
hold up the messages behind them. The archive keeps live messages as received, poison
included.
"""

from __future__ import annotations

import contextlib

from control_center.archive.recorder import ArchiveWriter
from control_center.storage.dead_letters import DeadLetterStore
from control_center.telemetry.decoder import Decoder
from control_center.telemetry.records import RawMessage


def archive_as_received(archive: ArchiveWriter | None, decoder: Decoder,
                        message: RawMessage) -> None:
    """Record a live message in the archive, as it arrived.

    Only configured spacecraft: the name comes from the topic, and the archive makes a
    directory of it (a topic "isls/../tm/raw" must not write above it)."""
    if archive is not None and message.source == "live" \
            and decoder.knows(message.spacecraft):
        archive.record(message.spacecraft, message.receive_ns, message.link, message.payload)


class Quarantine:
    """Counts poison on the decoder's error counters and keeps it in ``dead_letters``."""

    def __init__(self, dead_letters: DeadLetterStore, decoder: Decoder,
                 archive: ArchiveWriter | None) -> None:
        self.dead_letters = dead_letters
        self.decoder = decoder
        self.archive = archive

    def message(self, message: RawMessage, reason: str, *, archive: bool) -> None:
        """A poison message: counted, archived as received (``archive``: not archived
        yet), kept in the dead-letter store, never decoded."""
        self.decoder.count_error("poison_message", 1,
                                 f"{message.spacecraft} via {message.link}: {reason} "
                                 f"(kept in {self.dead_letters.directory})")
        if archive:
            with contextlib.suppress(Exception):
                archive_as_received(self.archive, self.decoder, message)
        self.dead_letters.put(reason, topic=message.topic or f"isls/{message.spacecraft}/tm/raw",
                              spacecraft=message.spacecraft, payload=message.payload,
                              properties=dict(message.properties))

    def undecodable(self) -> None:
        """The packets the decoder gave up on since last asked (counted by the decoder
        already), kept in the dead-letter store."""
        for spacecraft, reason, packets in self.decoder.failed:
            self.dead_letters.put(reason, topic=f"isls/{spacecraft}/tm/raw",
                                  spacecraft=spacecraft, payload=packets)
        self.decoder.failed.clear()
