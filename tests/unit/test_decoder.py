"""Unit tests of telemetry.decoder: the decode stage every path shares (live MQTT, serial
links, replay, import, reports).

It holds packets per (spacecraft, APID, source) until a batch is full or old enough,
decodes them with numpy, gives every packet its point time (onboard time + sequence
count, or receive time + place in its message) and counts every packet it cannot take.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from control_center.telemetry.codec import PacketCodec
from control_center.telemetry.decoder import Decoder
from control_center.telemetry.packets import CucTime
from control_center.telemetry.records import RawMessage
from control_center.telemetry.tmdb import Tmdb
from control_center.telemetry.tmdb_yaml import parse_tmdb

START = CucTime.from_unix(1_800_000_000)
START_NS = START.to_unix_ns()
RECEIVE_NS = 1_800_000_100 * 1_000_000_000


@pytest.fixture(scope="module")
def probe() -> Tmdb:
    """One onboard-time packet (CRC-protected) and one receive-time packet."""
    return parse_tmdb({"spacecraft": "probe", "packets": [
        {"name": "probe_hk", "apid": 1, "error_control": "crc16", "parameters": [
            {"name": "voltage", "bit_length": 16, "type": "unsigned",
             "calibration": {"polynomial": [0, 0.01]}},
            {"name": "mode", "bit_length": 8, "type": "enum", "states": {0: "OFF", 1: "ON"}},
        ]},
        {"name": "probe_beacon", "apid": 2, "time": "receive", "parameters": [
            {"name": "counter", "bit_length": 16, "type": "unsigned"},
        ]},
    ]}, "probe.yaml")


def hk(tmdb: Tmdb, count: int, *, first_count: int = 0, coarse: int | None = None) -> bytes:
    """``count`` probe_hk packets one second apart, voltage = 10.00 V + 0.01 V a packet."""
    codec = PacketCodec("probe", tmdb.packet("probe_hk"))
    seconds = np.arange(count, dtype=np.int64)
    return codec.encode(
        {"voltage": 10.0 + 0.01 * seconds, "mode": seconds % 2},
        coarse=(START.coarse if coarse is None else coarse) + seconds,
        fine=np.zeros(count, dtype=np.int64),
        sequence_counts=(first_count + seconds) % 16384)


def beacons(tmdb: Tmdb, counters: list[int]) -> bytes:
    codec = PacketCodec("probe", tmdb.packet("probe_beacon"))
    n = len(counters)
    return codec.encode({"counter": np.array(counters)}, coarse=np.zeros(n, dtype=np.int64),
                        fine=np.zeros(n, dtype=np.int64), sequence_counts=np.zeros(n))


def message(payload: bytes, *, receive_ns: int = RECEIVE_NS, source: str = "live",
            pass_id: str = "", shift_ns: int = 0, spacecraft: str = "probe") -> RawMessage:
    return RawMessage(spacecraft, payload, receive_ns, "test", source=source,
                      pass_id=pass_id, shift_ns=shift_ns)


def test_packets_wait_until_the_batch_is_full_or_old_enough(probe: Tmdb) -> None:
    decoder = Decoder([probe], batch_packets=10, batch_interval=0.5)
    decoder.feed(message(hk(probe, 4)), now=100.0)
    assert decoder.take(now=100.1) == []
    assert decoder.waiting == 4
    (batch,) = decoder.take(now=100.6)  # the oldest has waited batch_interval
    assert len(batch) == 4 and decoder.waiting == 0
    decoder.feed(message(hk(probe, 10, first_count=4)), now=200.0)
    (full,) = decoder.take(now=200.0)  # batch_packets wait: no need to wait longer
    assert len(full) == 10


def test_values_and_onboard_point_times(probe: Tmdb) -> None:
    decoder = Decoder([probe])
    decoder.feed(message(hk(probe, 5, first_count=16380)))
    (batch,) = decoder.take(force=True)
    assert batch.packet.name == "probe_hk"
    assert np.allclose(np.asarray(batch.values["voltage"], dtype=np.float64),
                       [10.0, 10.01, 10.02, 10.03, 10.04])
    assert list(batch.values["mode"]) == [0, 1, 0, 1, 0]
    # Onboard time + the 14-bit sequence count in ns, which wraps after 16383.
    counts = [16380, 16381, 16382, 16383, 0]
    assert list(batch.sequence_counts) == counts
    assert list(batch.times_ns) == [START_NS + i * 1_000_000_000 + c
                                    for i, c in enumerate(counts)]
    assert batch.source == "live" and batch.pass_id == ""
    assert decoder.stats.packets["probe"] == 5
    assert decoder.stats.packets_by_type["probe/probe_hk"] == 5
    assert decoder.stats.values["probe"] == 5 * 2
    assert decoder.stats.last_packet_ns["probe"] == batch.times_ns[-1]


def test_receive_time_packets_are_numbered_within_their_receive_time(probe: Tmdb) -> None:
    """Every packet of a message shares its receive time: its place among the message's
    packets of its type makes the point unique. A message fed in pieces with the same
    receive time (a file imported in chunks) numbers on; a new receive time restarts."""
    decoder = Decoder([probe])
    decoder.feed(message(beacons(probe, [1, 2, 3])))
    decoder.feed(message(beacons(probe, [4, 5])))  # the same receive time: numbered on
    decoder.feed(message(beacons(probe, [6]), receive_ns=RECEIVE_NS + 1_000_000_000))
    (batch,) = decoder.take(force=True)
    assert list(batch.values["counter"]) == [1, 2, 3, 4, 5, 6]
    assert list(batch.times_ns - RECEIVE_NS) == [0, 1, 2, 3, 4, 1_000_000_000]


def test_the_same_message_twice_gives_the_same_points(probe: Tmdb) -> None:
    """Point identity: a redelivered message (or a second station) lands on the points
    of the first delivery, so InfluxDB stores each packet once."""
    times = []
    for payload in (hk(probe, 3), beacons(probe, [7, 8, 9])):
        for _ in range(2):
            decoder = Decoder([probe])
            decoder.feed(message(payload))
            (batch,) = decoder.take(force=True)
            times.append(list(batch.times_ns))
    assert times[0] == times[1] and times[2] == times[3]


def test_replays_never_share_a_batch_with_live_data(probe: Tmdb) -> None:
    decoder = Decoder([probe])
    decoder.feed(message(hk(probe, 3)))
    decoder.feed(message(hk(probe, 3), source="replay", pass_id="probe-pass-1",
                         shift_ns=60_000_000_000))
    live, replay = sorted(decoder.take(force=True), key=lambda b: b.source)
    assert (live.source, live.pass_id) == ("live", "")
    assert (replay.source, replay.pass_id) == ("replay", "probe-pass-1")
    assert list(replay.times_ns - live.times_ns) == [60_000_000_000] * 3
    # A finished replay's batch slot is forgotten; the live one is kept.
    assert decoder.oldest_seq() is None and decoder.waiting == 0


def test_a_backlog_is_decoded_in_bounded_batches(probe: Tmdb) -> None:
    decoder = Decoder([probe], batch_packets=5)
    assert decoder.max_batch == 20
    decoder.feed(message(hk(probe, 45)))
    sizes = [len(b) for b in decoder.take(force=True)]
    assert sizes == [20, 20, 5]


def test_bad_input_is_counted_by_kind_and_good_packets_still_decoded(probe: Tmdb) -> None:
    decoder = Decoder([probe])
    good = hk(probe, 3)
    length = probe.packet("probe_hk").length
    bad_crc = bytearray(good[:length])
    bad_crc[-3] ^= 0xFF  # a parameter octet: the CRC no longer matches
    decoder.feed(message(b""))
    decoder.feed(message(good, spacecraft="stranger"))
    decoder.feed(message(bytes(bad_crc) + good[length:]))
    (batch,) = decoder.take(force=True)
    assert len(batch) == 2
    errors = decoder.stats.errors
    assert errors["empty_message"] == 1
    assert errors["unknown_spacecraft"] == 1
    assert errors["bad_crc"] == 1
    assert decoder.stats.messages == 3
    assert decoder.knows("probe") and not decoder.knows("stranger")


def test_onboard_times_far_in_the_future_are_counted_and_dropped(probe: Tmdb) -> None:
    """A flipped bit of the CUC coarse time is years ahead: it would sit on every
    dashboard's "now" for years."""
    decoder = Decoder([probe], max_future_days=1.0)
    now = CucTime.from_unix(time.time())
    decoder.feed(message(hk(probe, 2, coarse=now.coarse)))
    decoder.feed(message(hk(probe, 2, first_count=2, coarse=now.coarse + 3 * 86400)))
    (batch,) = decoder.take(force=True)
    assert len(batch) == 2
    assert decoder.stats.errors["future_time"] == 2
    assert decoder.stats.packets["probe"] == 2


def test_oldest_seq_is_the_oldest_message_still_waiting(probe: Tmdb) -> None:
    """What the ingest may acknowledge: every message before the oldest waiting one."""
    decoder = Decoder([probe], batch_packets=100, batch_interval=60.0)
    assert decoder.oldest_seq() is None
    decoder.feed(message(hk(probe, 1)), now=0.0, seq=7)
    decoder.feed(message(beacons(probe, [1])), now=0.0, seq=8)
    decoder.feed(message(hk(probe, 1, first_count=1)), now=0.0, seq=9)
    assert decoder.oldest_seq() == 7
    assert decoder.waiting == 3
    decoder.take(force=True)
    assert decoder.oldest_seq() is None
