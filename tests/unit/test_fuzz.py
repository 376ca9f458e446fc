"""Fuzzing the decoders and deframers: any input is counted and skipped, never a crash,
and a good packet after the garbage is still decoded.

The suite runs a fixed budget (ISLS_FUZZ_EXAMPLES, 150 by default, and the
atheris harness: 20,000 runs); longer campaigns:

    ISLS_FUZZ_EXAMPLES=20000 .venv/bin/pytest -q tests/unit/test_fuzz.py
    .venv/bin/python fuzz/fuzz_decoders.py -max_total_time=600"""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from control_center.telemetry.codec import PacketCodec
from control_center.telemetry.decoder import Decoder
from control_center.telemetry.packets import CucTime
from control_center.telemetry.records import RawMessage
from control_center.telemetry.tmdb import Tmdb
from drivers.cobs import CobsDeframer, cobs_frame
from drivers.tm_frames import TmDeframer, TmFramer
from tests.support.fuzz import FUZZ


def _good(tmdb: Tmdb, name: str = "lander_power", coarse: int | None = None) -> bytes:
    packet = tmdb.packet(name)
    codec = PacketCodec(tmdb.spacecraft, packet)
    time = CucTime.from_unix(1_750_000_000)
    values = {p.name: np.zeros(1) for p in packet.parameters if not p.overlay}
    return codec.encode(values, coarse=[time.coarse if coarse is None else coarse],
                        fine=[0], sequence_counts=[1])


def _decoded(decoder: Decoder) -> int:
    return sum(len(b) for b in decoder.take(force=True))


@FUZZ
@given(garbage=st.binary(max_size=600))
def test_garbage_payloads_never_crash_the_decoder(tmdbs: list[Tmdb], garbage: bytes) -> None:
    decoder = Decoder(tmdbs)
    decoder.feed(RawMessage("lander", garbage, 0, "fuzz"))
    decoder.take(force=True)
    decoder.feed(RawMessage("lander", _good(tmdbs[0]), 0, "fuzz"))
    assert _decoded(decoder) == 1


@FUZZ
@given(data=st.data())
def test_mutated_packets_are_counted_and_skipped(tmdbs: list[Tmdb], data: st.DataObject) -> None:
    """Truncated, extended, bit-flipped and re-lengthed versions of good packets."""
    good = _good(tmdbs[0]) * 3
    mutated = bytearray(good)
    for _ in range(data.draw(st.integers(1, 6))):
        index = data.draw(st.integers(0, len(mutated) - 1))
        mutated[index] ^= 1 << data.draw(st.integers(0, 7))
    cut = data.draw(st.integers(0, len(mutated) + 40))
    tail = data.draw(st.binary(max_size=40))
    decoder = Decoder(tmdbs)
    decoder.feed(RawMessage("lander", bytes(mutated[:cut]) + tail, 0, "fuzz"))
    decoded = _decoded(decoder)
    errors = sum(decoder.stats.errors.values())
    assert decoded <= 3 + len(tail) // len(_good(tmdbs[0]))
    if bytes(mutated[:cut]) + tail != good:
        assert decoded < 3 or errors > 0 or tail  # a change is either harmless or counted


@FUZZ
@given(chunks=st.lists(st.binary(max_size=200), max_size=8))
def test_cobs_deframer_survives_any_stream(tmdbs: list[Tmdb], chunks: list[bytes]) -> None:
    deframer = CobsDeframer()
    for chunk in chunks:
        deframer.feed(chunk)
    packet = _good(tmdbs[0])
    assert packet in deframer.feed(b"\x00" + cobs_frame(packet))


@FUZZ
@given(noise=st.binary(max_size=3000))
def test_tm_deframer_survives_any_stream(tmdbs: list[Tmdb], noise: bytes) -> None:
    framer = TmFramer(tmdbs[0].spacecraft_id, 223)
    packet = _good(tmdbs[0])
    framer.add_packets(0, packet * 12)
    frames = bytearray()
    while framer.pending():
        frames += framer.next_frame()
    deframer = TmDeframer(223, spacecraft_id=tmdbs[0].spacecraft_id)
    out = deframer.feed(noise) + deframer.feed(bytes(frames))
    framer.add_packets(0, packet * 12)
    while framer.pending():
        out += deframer.feed(framer.next_frame())
    # Noise never comes out as a packet (the frame CRC and the packet checks stop it),
    # and the stream after it is decoded once the deframer has locked again.
    assert all(p == packet for _, p in out)
    assert len(out) >= 12


def test_far_future_onboard_times_are_counted_not_stored(tmdbs: list[Tmdb]) -> None:
    decoder = Decoder(tmdbs)
    future = _good(tmdbs[0], coarse=0xFFFFFF00)  # a corrupted coarse time: year 2094
    decoder.feed(RawMessage("lander", future + _good(tmdbs[0]), 0, "fuzz"))
    assert _decoded(decoder) == 1
    assert decoder.stats.errors["future_time"] == 1
