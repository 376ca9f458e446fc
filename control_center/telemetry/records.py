"""The records that travel between the ingest's stages: a raw message as a link
delivered it, and a decoded batch of one packet type. Frozen: a stage never changes
what another handed it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from control_center.telemetry.tmdb import PacketDef

Array = npt.NDArray[np.generic]


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One raw telemetry message as the ingest sees it."""

    spacecraft: str
    payload: bytes
    receive_ns: int
    link: str
    stored: bool = False  # already stored by the ingest that read it from a serial link
    source: str = "live"  # live, replay or import: the InfluxDB source tag
    pass_id: str = ""  # the pass a replay comes from (InfluxDB pass tag)
    shift_ns: int = 0  # added to every point time (replay --shift-to-now)
    # Why the message cannot be trusted (a property out of range...): such a message
    # is quarantined, never decoded (control_center.storage.dead_letters).
    problem: str = ""
    topic: str = ""
    properties: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    """Engineering values of ``n`` packets of one type, columns by parameter name."""

    spacecraft: str
    packet: PacketDef
    times_ns: npt.NDArray[np.int64]  # UTC nanoseconds since 1970 (onboard or receive time)
    sequence_counts: npt.NDArray[np.uint16]
    values: Mapping[str, Array]
    raw: Mapping[str, Array]
    source: str = "live"  # live, replay or import
    pass_id: str = ""  # the replayed pass, if any

    def __len__(self) -> int:
        return int(self.times_ns.shape[0])

    def take(self, rows: npt.NDArray[np.intp]) -> DecodedBatch:
        """The same batch restricted to ``rows`` (indices, in order)."""
        return replace(self, times_ns=self.times_ns[rows],
                       sequence_counts=self.sequence_counts[rows],
                       values={k: np.asarray(v)[rows] for k, v in self.values.items()},
                       raw={k: np.asarray(v)[rows] for k, v in self.raw.items()})
