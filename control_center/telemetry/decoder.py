"""The decode stage, free of I/O: raw messages in, decoded batches out.

Used alike by the live ingest, replay, `isls import` and pass reports, so every path
stores a packet at the same point (docs/contracts.md, "InfluxDB contract").
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from control_center.telemetry.codec import PacketCodec, Packets, SelectCodec
from control_center.telemetry.packets import rows_as_bytes, split_packets
from control_center.telemetry.records import DecodedBatch, RawMessage
from control_center.telemetry.tmdb import Tmdb

log = logging.getLogger("isls.ingest")


@dataclass(slots=True)
class IngestStats:
    """Counters the status display and tests read; mutated only by the ingest tasks."""

    messages: int = 0
    packets: Counter[str] = field(default_factory=Counter)  # by spacecraft
    packets_by_type: Counter[str] = field(default_factory=Counter)  # by packet name
    values: Counter[str] = field(default_factory=Counter)  # decoded values by spacecraft
    errors: Counter[str] = field(default_factory=Counter)  # by kind
    last_packet_ns: dict[str, int] = field(default_factory=dict)
    queue_depth: int = 0
    alarm_changes: int = 0
    events: int = 0


@dataclass(slots=True)
class _Pending:
    """Packets of one batch slot waiting to be decoded, as they came from each message:
    an ``(n, length)`` octet matrix when the split's numpy cut took the message (no
    ``bytes`` object per packet), else one ``bytes`` per packet."""

    chunks: list[Packets] = field(default_factory=list)
    receive_ns: list[int] = field(default_factory=list)  # per chunk: its message's
    first_ordinals: list[int] = field(default_factory=list)  # per chunk: its first ordinal
    count: int = 0  # packets in all chunks
    since: float = 0.0
    first_seq: int = 0  # the message the oldest waiting packet came from

    def add(self, packets: Packets, receive_ns: int, first_ordinal: int) -> None:
        self.chunks.append(packets)
        self.receive_ns.append(receive_ns)
        self.first_ordinals.append(first_ordinal)
        self.count += len(packets)

    def clear(self) -> None:
        self.chunks, self.receive_ns, self.first_ordinals, self.count = [], [], [], 0

    def receive_times(self) -> npt.NDArray[np.int64]:
        """Every packet's receive time: its message's."""
        return np.repeat(np.asarray(self.receive_ns, dtype=np.int64), self._sizes())

    def ordinals(self) -> npt.NDArray[np.int64]:
        """Every packet's place among its message's packets (numbered on per chunk)."""
        sizes = self._sizes()
        chunk_starts = np.cumsum(sizes) - sizes
        shift = np.asarray(self.first_ordinals, dtype=np.int64) - chunk_starts
        return np.repeat(shift, sizes) + np.arange(self.count, dtype=np.int64)

    def packets(self) -> Packets:
        """All the waiting packets in order: one octet matrix when they are all of one
        length and some came as a matrix, else one ``bytes`` each (as they came)."""
        if all(isinstance(c, list) for c in self.chunks):
            return [p for chunk in self.chunks for p in chunk]
        widths: set[int] = set()
        for chunk in self.chunks:
            if isinstance(chunk, np.ndarray):
                widths.add(chunk.shape[1])
            else:
                widths.update(len(p) for p in chunk)
        if len(widths) == 1:
            width = widths.pop()
            matrices = [c if isinstance(c, np.ndarray) else np.frombuffer(
                b"".join(c), dtype=np.uint8).reshape(len(c), width) for c in self.chunks]
            return matrices[0] if len(matrices) == 1 else np.concatenate(matrices)
        return [p for c in self.chunks
                for p in (rows_as_bytes(c) if isinstance(c, np.ndarray) else c)]

    def _sizes(self) -> npt.NDArray[np.int64]:
        return np.fromiter((len(c) for c in self.chunks), dtype=np.int64,
                           count=len(self.chunks))


def _octets_of(packets: Packets) -> bytes:
    """The packets back to back, as they were received."""
    return packets.tobytes() if isinstance(packets, np.ndarray) else b"".join(packets)


# Point identity (docs/contracts.md, "InfluxDB contract"). InfluxDB keeps one point per
# measurement, tag set and timestamp, so no two packets may share a timestamp:
# - onboard time: the packet's 14-bit CCSDS sequence count (133.0-B-2 §4.1.3.4.2.2) is
#   added in nanoseconds, so packets of a coarse clock or a burst (same onboard time,
#   consecutive counts) stay apart, and the same packet heard twice (a redelivered
#   message, a second station) lands on the same point. Two packets of one type could
#   only meet if their onboard times differed by exactly minus the difference of their
#   counts, under 16,384 ns: one packet per nanosecond, or a count that never moves;
# - receive time: every packet of a message shares its earth-receive time (µs), so the
#   packet's place among the message's packets of its type is added in nanoseconds.
# Both are functions of the message alone: a replay rebuilds the live points exactly.


def point_times(batch: DecodedBatch, ordinals: np.ndarray[Any, np.dtype[np.int64]]
                ) -> np.ndarray[Any, np.dtype[np.int64]]:
    """The InfluxDB timestamps of a decoded batch's packets (see above)."""
    if batch.packet.time == "cuc":
        return batch.times_ns + batch.sequence_counts.astype(np.int64)
    return batch.times_ns + ordinals


class Decoder:
    """The decode stage, free of I/O: feed raw messages, take decoded batches.

    Packets of one (spacecraft, APID) are held until ``batch_packets`` of them wait
    or the oldest has waited ``batch_interval`` seconds, then decoded together.
    """

    def __init__(self, tmdbs: Iterable[Tmdb], *, batch_packets: int = 2000,
                 batch_interval: float = 0.1, stats: IngestStats | None = None,
                 max_future_days: float = 366.0, max_batch: int | None = None) -> None:
        self.stats = stats or IngestStats()
        self.batch_packets = batch_packets
        self.batch_interval = batch_interval
        # The most packets one decoded batch holds (the rest of what waits comes in more
        # batches of this size): 4 x batch_packets unless given.
        self.max_batch = 4 * batch_packets if max_batch is None else max_batch
        # An onboard time this far past the clock is corrupt (a flipped bit of the CUC
        # coarse time is years): counted and skipped, or it would sit on every
        # dashboard's "now" for years.
        self.max_future_ns = int(max_future_days * 86400 * 1e9)
        self._codecs: dict[str, dict[int, PacketCodec | SelectCodec]] = {}
        self._lengths: dict[str, dict[int, int]] = {}
        self._crc: dict[str, frozenset[int]] = {}
        self._versions: dict[str, int] = {}
        for tmdb in tmdbs:
            variants = tmdb.variants()
            self._codecs[tmdb.spacecraft] = {
                # A lone type with a select still checks it (as an XTCE restriction
                # does): a packet its values do not name is counted, not decoded.
                apid: PacketCodec(tmdb.spacecraft, types[0])
                if len(types) == 1 and not types[0].select
                else SelectCodec(tmdb.spacecraft, types) for apid, types in variants.items()}
            # An APID shared by types of several lengths is checked per type, not split.
            # So is one whose packets may run past their fields (tail_skipped).
            self._lengths[tmdb.spacecraft] = {
                apid: types[0].length if len({p.length for p in types}) == 1
                and not any(p.tail_skipped for p in types) else 0
                for apid, types in variants.items()}
            self._crc[tmdb.spacecraft] = frozenset(p.apid for p in tmdb.packets
                                                   if p.error_control)
            self._versions[tmdb.spacecraft] = tmdb.packet_version
        # Keyed by spacecraft, APID and where the packets come from, so a replay and
        # the live stream never share a batch (they are stored under different tags).
        self._pending: dict[tuple[str, int, str, str, int], _Pending] = {}
        self._units: dict[tuple[str, int, str, str, int], tuple[int, int]] = {}
        # (spacecraft, reason, packets) that failed to decode, for the dead-letter store
        self.failed: list[tuple[str, str, bytes]] = []
        self._logged: set[str] = set()

    def knows(self, spacecraft: str) -> bool:
        """Whether a telemetry database describes ``spacecraft``."""
        return spacecraft in self._lengths

    def count_error(self, kind: str, count: int, detail: str) -> None:
        self.stats.errors[kind] += count
        if kind not in self._logged:
            self._logged.add(kind)
            log.warning("%s: %s (counted and skipped; further ones are only counted)",
                        kind.replace("_", " "), detail)

    def feed(self, message: RawMessage, now: float | None = None, seq: int = 0) -> None:
        self.stats.messages += 1
        lengths = self._lengths.get(message.spacecraft)
        if lengths is None:
            self.count_error("unknown_spacecraft", 1,
                              f"message for spacecraft {message.spacecraft!r}, which no "
                              f"telemetry database describes")
            return
        if not message.payload:
            self.count_error("empty_message", 1, f"empty message from link {message.link!r}")
            return
        result = split_packets(message.payload, check_crc=self._crc[message.spacecraft],
                               lengths=lengths, version=self._versions[message.spacecraft])
        for kind, count in result.errors.items():
            self.count_error(kind, count, f"{message.spacecraft} via {message.link}")
        moment = time.monotonic() if now is None else now
        # The numpy cut's octet matrices when it took the message: decoded where they lie.
        split: dict[int, Packets] = dict(result.matrices) if result.matrices is not None \
            else dict(result.by_apid)
        for apid, packets in split.items():
            key = (message.spacecraft, apid, message.source, message.pass_id, message.shift_ns)
            pending = self._pending.get(key)
            if pending is None:
                pending = self._pending[key] = _Pending(since=moment, first_seq=seq)
            elif not pending.count:
                pending.since = moment
                pending.first_seq = seq
            # Packets of one receive time are numbered on, so a file imported in
            # chunks (one receive time) or a message fed in pieces never restarts at 0.
            unit_ns, first = self._units.get(key, (None, 0))
            if unit_ns != message.receive_ns:
                first = 0
            # Moved to the end on every use: the bound below drops the least recent.
            self._units.pop(key, None)
            self._units[key] = (message.receive_ns, first + len(packets))
            if len(self._units) > 4096:  # replays come and go: keep the most recent
                del self._units[next(iter(self._units))]
            pending.add(packets, message.receive_ns, first)

    def take(self, *, now: float | None = None, force: bool = False) -> list[DecodedBatch]:
        """Decode and return every batch that is full, old enough, or all with ``force``."""
        moment = time.monotonic() if now is None else now
        batches: list[DecodedBatch] = []
        for (spacecraft, apid, source, pass_id, shift_ns), pending in self._pending.items():
            if not pending.count:
                continue
            if not force and pending.count < self.batch_packets \
                    and moment - pending.since < self.batch_interval:
                continue
            codec = self._codecs[spacecraft][apid]
            packets = pending.packets()
            receive_ns = pending.receive_times()
            all_ordinals = pending.ordinals()
            # At most max_batch packets a batch: a backlog taken in at once must not
            # become one million-line write (InfluxDB times those out).
            for start in range(0, pending.count, self.max_batch):
                chunk = slice(start, start + self.max_batch)
                ordinals = all_ordinals[chunk]
                try:
                    groups, misfits = codec.decode_groups(packets[chunk], receive_ns[chunk])
                except Exception as exc:
                    # A defect, never a reason to stop: these packets go to the
                    # dead-letter store (the service takes ``failed``) and are counted.
                    self.count_error("decode_failure", len(packets[chunk]),
                                     f"{spacecraft} {codec.name}: {exc!r}")
                    self.failed.append((spacecraft, f"decode failed: {exc!r}",
                                        _octets_of(packets[chunk])))
                    continue
                if misfits:
                    self.count_error("bad_layout", misfits,
                                     f"{spacecraft} {codec.name}: packets that fit none "
                                     f"of its layouts (variable-size fields beyond their "
                                     f"length, or no select of a shared APID matching)")
                for decoded, rows in groups:
                    batch = self._finish(decoded, ordinals[rows], shift_ns, source, pass_id)
                    if batch is not None:
                        batches.append(batch)
            pending.clear()
        # Replays come and go: forget their emptied batch slots.
        for key in [k for k, p in self._pending.items() if not p.count and k[2] != "live"]:
            del self._pending[key]
        return batches

    def _finish(self, batch: DecodedBatch, ordinals: np.ndarray[Any, np.dtype[np.int64]],
                shift_ns: int, source: str, pass_id: str) -> DecodedBatch | None:
        """Point times, replay shift and tags; far-future packets counted and dropped."""
        spacecraft = batch.spacecraft
        times = point_times(batch, ordinals)
        if shift_ns:
            times = times + shift_ns
        batch = replace(batch, times_ns=times)
        if source != "live" or pass_id:
            batch = replace(batch, source=source, pass_id=pass_id)
        future = batch.times_ns > time.time_ns() + self.max_future_ns
        if future.any():
            self.count_error("future_time", int(future.sum()),
                             f"{spacecraft} {batch.packet.name}: onboard time more than "
                             f"{self.max_future_ns / 86400e9:.0f} days ahead of the clock")
            batch = batch.take(np.flatnonzero(~future))
            if not len(batch):
                return None
        self.stats.packets[spacecraft] += len(batch)
        self.stats.packets_by_type[f"{spacecraft}/{batch.packet.name}"] += len(batch)
        self.stats.values[spacecraft] += len(batch) * len(batch.packet.parameters)
        self.stats.last_packet_ns[spacecraft] = int(batch.times_ns[-1])
        return batch

    def oldest_seq(self) -> int | None:
        """The sequence number of the oldest message with packets still waiting."""
        return min((p.first_seq for p in self._pending.values() if p.count), default=None)

    @property
    def waiting(self) -> int:
        return sum(p.count for p in self._pending.values())
