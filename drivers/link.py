"""Links behind one typed interface: a link runs until stopped and reports its status
and counts as a :class:`LinkStatus` (the Yamcs model: every link, whatever its kind, with
a status and counts).

A :class:`LinkStatus` travels end to end: the ingest writes it to InfluxDB
(:func:`control_center.storage.contract.link_line`) and publishes it, retained, as JSON
on ``isls/<spacecraft>/link`` (:meth:`LinkStatus.to_json`), where ``isls link status``
reads it back (:meth:`LinkStatus.from_json`).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class LinkStatus:
    """One link's state and counts since the ingest started, at one moment.

    The field order is the key order of the JSON on ``isls/<spacecraft>/link``."""

    link: str  # the link's configured name
    spacecraft: str  # whose downlink it is
    device: str
    framing: str  # "tm" (CCSDS TM transfer frames) or "cobs"
    connected: bool  # the device is open
    reopens: int  # times the device was lost and opened again
    octets: int  # octets read
    bit_rate: float  # bit/s over the last few seconds, to 0.1
    unrouted_packets: int  # on a virtual channel the configuration does not map
    locked: bool  # frame synchronisation (COBS: connected and a good frame seen)
    frames_good: int
    frames_bad: int
    frames_gap: int  # frames missing by frame count jumps (always 0 for COBS)
    sync_losses: int  # always 0 for COBS
    packets: int  # packets delivered
    packets_dropped: int
    last_frame_ns: int | None  # wall clock of the last good frame (None for COBS)

    def to_json(self) -> bytes:
        """The retained message on ``isls/<spacecraft>/link``."""
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, payload: bytes | str) -> LinkStatus:
        """A link message read back. ``link`` and ``spacecraft`` are required (a
        ``KeyError`` without them); an absent figure reads as zero, false or never.
        ``ValueError`` or ``TypeError`` for what is not a link status."""
        document = json.loads(payload)
        if not isinstance(document, dict):
            raise TypeError("a link status is a JSON object")
        last = document.get("last_frame_ns")
        return cls(
            link=str(document["link"]), spacecraft=str(document["spacecraft"]),
            device=str(document.get("device", "")), framing=str(document.get("framing", "")),
            connected=bool(document.get("connected")), reopens=_count(document, "reopens"),
            octets=_count(document, "octets"),
            bit_rate=float(document.get("bit_rate") or 0.0),
            unrouted_packets=_count(document, "unrouted_packets"),
            locked=bool(document.get("locked")), frames_good=_count(document, "frames_good"),
            frames_bad=_count(document, "frames_bad"), frames_gap=_count(document, "frames_gap"),
            sync_losses=_count(document, "sync_losses"), packets=_count(document, "packets"),
            packets_dropped=_count(document, "packets_dropped"),
            last_frame_ns=last if isinstance(last, int) and not isinstance(last, bool) else None,
        )


def _count(document: dict[str, Any], name: str) -> int:
    return int(document.get(name) or 0)


class LinkSource(Protocol):
    """What the ingest needs of a link: run it, and ask it how it is."""

    @property
    def name(self) -> str: ...

    @property
    def spacecraft(self) -> str: ...

    async def run(self, stop: asyncio.Event) -> None: ...

    def snapshot(self) -> LinkStatus: ...
