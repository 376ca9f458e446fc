"""The pass archive on disk: record format, crash safety, passes split at silence, gaps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from control_center.archive.importer import _whole_packets
from control_center.archive.recorder import (
    FILE_MAGIC,
    KIND_PACKETS,
    ArchiveWriter,
    PassInfo,
    ReadStats,
    _count_one_by_one,
    _count_packets,
    _count_uniform,
    encode_record,
    find_pass,
    iter_pass_records,
    list_passes,
    read_segment,
)
from control_center.errors import IslsError

SECOND = 1_000_000_000


def _records(count: int, start_ns: int = 1_800_000_000 * SECOND) -> list[tuple[int, bytes]]:
    return [(start_ns + i * SECOND // 10, bytes([i % 256]) * (10 + i)) for i in range(count)]


def _archive(root: Path, spacecraft: str, link: str, records: list[tuple[int, bytes]]) -> Path:
    """Record one pass; its first segment."""
    writer = ArchiveWriter(root)
    for ert, payload in records:
        pass_id = writer.record(spacecraft, ert, link, payload)
    writer.close()
    return find_pass(root, pass_id) / "seg-0000.isla"


def test_records_round_trip_and_a_torn_tail_loses_only_the_last(tmp_path: Path) -> None:
    records = _records(5)
    segment = _archive(tmp_path, "lander", "sim-lander", records)
    whole = segment.read_bytes()
    read = list(read_segment(segment))
    assert [(r.ert_ns, r.payload) for r in read] == records
    assert {r.link for r in read} == {"sim-lander"}
    # A crash while writing the last record: cut it at every possible octet.
    last = encode_record(KIND_PACKETS, records[-1][0], "sim-lander", records[-1][1])
    for cut in range(1, len(last)):
        segment.write_bytes(whole[:len(whole) - len(last) + cut])
        stats = ReadStats()
        assert [(r.ert_ns, r.payload) for r in read_segment(segment, stats)] == records[:-1]
        assert stats.torn_tail


def test_damage_inside_a_segment_costs_only_the_damaged_record(tmp_path: Path) -> None:
    records = _records(6)
    segment = _archive(tmp_path, "orbiter", "l", records)
    data = bytearray(segment.read_bytes())
    third = len(FILE_MAGIC) + sum(len(encode_record(KIND_PACKETS, e, "l", p))
                                  for e, p in records[:2])
    data[third + 20] ^= 0xFF  # inside the third record's payload
    segment.write_bytes(bytes(data))
    stats = ReadStats()
    got = [(r.ert_ns, r.payload) for r in read_segment(segment, stats)]
    assert got == records[:2] + records[3:]
    assert stats.damaged == 1 and not stats.torn_tail


def test_passes_split_at_silence_and_segments_rotate(tmp_path: Path) -> None:
    writer = ArchiveWriter(tmp_path, silence=30.0, max_segment_bytes=300)
    first = _records(20)
    second = _records(10, start_ns=first[-1][0] + 31 * SECOND)  # after a 31 s silence
    for ert, payload in first + second:
        writer.record("lander", ert, "sim", payload)
    writer.tick(now_ns=second[-1][0] + 31 * SECOND)  # loss of signal closes the second
    passes = list_passes(tmp_path)
    assert len(passes) == 2 and all(p.closed for p in passes)
    assert passes[0].start_ns == first[0][0] and passes[0].end_ns == first[-1][0]
    assert passes[1].start_ns == second[0][0]
    assert passes[0].segments > 1  # rotated at 300 octets
    directory = find_pass(tmp_path, passes[0].id)
    assert [r.payload for r in iter_pass_records(directory)] == [p for _, p in first]
    with pytest.raises(IslsError, match="no pass 'lander-nope'"):
        find_pass(tmp_path, "lander-nope")


def test_gaps_count_missing_packets_not_reordered_ones(tmp_path: Path) -> None:
    from control_center.telemetry.packets import CucTime, build_packet

    def packet(sequence: int) -> bytes:
        return build_packet(0x111, sequence, b"\x00" * 4, time=CucTime(0, 0))

    writer = ArchiveWriter(tmp_path)
    # 0→2 one missing; 2→1 late, not 16,382 missing; 1→3 counts 2 again (a late packet
    # is counted once as missing); 3→7 three missing; 16383→0 is the counter wrapping.
    sequences = (0, 2, 1, 3, 7, 8, 16383, 0, 1)
    for sequence in sequences:
        pass_id = writer.record("lander", 1_800_000_000 * SECOND, "l", packet(sequence))
    writer.close()
    (info,) = list_passes(tmp_path)
    assert info.id == pass_id and info.packets == len(sequences)
    assert info.gaps == 1 + 1 + 3


def test_a_replay_window_outside_the_pass_is_an_error(tmp_path: Path) -> None:
    """`isls replay PASS --from +600 --to +900` on a 10 s pass: an error naming the pass's
    span, not a replay of 0 records that looks like success. Checked before any broker
    is contacted (there is none here)."""
    import asyncio

    from control_center.archive.replay import replay_pass
    from control_center.config import load_config
    from tests.conftest import CONFIG

    config = load_config(CONFIG, {"ISLS_STATE_DIR": str(tmp_path / "state"),
                                  "ISLS_MQTT_URL": "mqtt://127.0.0.1:1"})
    writer = ArchiveWriter(config.archive_dir, silence=60.0)
    for ert, payload in _records(100):  # 10 s of records
        pass_id = writer.record("lander", ert, "sim", payload)
    writer.close()
    with pytest.raises(IslsError, match=rf"--from \+600 --to \+900: the window is outside "
                                        rf"pass {pass_id}, .* \(10 s: --from \+0 to \+10\)"):
        asyncio.run(replay_pass(config, pass_id, start="+600", end="+900"))


def _burst(rng: np.random.Generator, n: int, length: int, apids: list[int]) -> bytes:
    """``n`` packets of ``length`` data octets, APIDs drawn from ``apids``, sequence
    counts mostly consecutive per APID with gaps, repeats and wraps."""
    out = bytearray()
    counters = {apid: int(rng.integers(0, 16384)) for apid in apids}
    for _ in range(n):
        apid = int(rng.choice(apids))
        step = int(rng.choice([1, 1, 1, 2, 5, 0, -3, 9000]))
        counters[apid] = (counters[apid] + step) % 16384
        out += bytes([0x08 | apid >> 8, apid & 0xFF, 0xC0 | counters[apid] >> 8,
                      counters[apid] & 0xFF]) + (length - 1).to_bytes(2, "big")
        out += rng.integers(0, 256, length, dtype=np.uint8).tobytes()
    return bytes(out)


@pytest.mark.parametrize("seed", range(40))
def test_a_uniform_burst_is_counted_as_packet_by_packet(seed: int) -> None:
    """The vectorised count gives the loop's packets, gaps and last sequence counts."""
    rng = np.random.default_rng(seed)
    apids = [int(a) for a in rng.choice([0x110, 0x111, 0x7FF, 5], int(rng.integers(1, 4)),
                                          replace=False)]
    length = int(rng.integers(1, 60))
    previous = {apid: int(rng.integers(0, 16384)) for apid in apids if rng.random() < 0.5}
    fast_info, slow_info = (PassInfo("p", "lander", 0, 0) for _ in range(2))
    fast_seen, slow_seen = dict(previous), dict(previous)
    for _ in range(3):  # messages in a row: the last counts carry over
        payload = _burst(rng, int(rng.integers(64, 300)), length, apids)
        assert _count_uniform(fast_info, fast_seen, payload)
        _count_one_by_one(slow_info, slow_seen, payload)
    assert (fast_info.packets, fast_info.gaps) == (slow_info.packets, slow_info.gaps)
    assert fast_seen == slow_seen


def test_a_mixed_or_short_message_is_left_to_the_loop() -> None:
    rng = np.random.default_rng(3)
    mixed = _burst(rng, 10, 20, [0x110]) + _burst(rng, 10, 30, [0x111])
    info = PassInfo("p", "lander", 0, 0)
    assert not _count_uniform(info, {}, mixed)
    assert not _count_uniform(info, {}, _burst(rng, 3, 20, [0x110]))  # below the minimum
    assert not _count_uniform(info, {}, _burst(rng, 10, 20, [0x110]) + b"\x01")  # a tail
    assert (info.packets, info.gaps) == (0, 0)
    _count_packets(info, {}, mixed)
    assert info.packets == 20


def _walk(buffer: bytes) -> int:
    """The header walk alone (the reference for the import's cut)."""
    position = 0
    while position + 6 <= len(buffer):
        length = int.from_bytes(buffer[position + 4:position + 6], "big")
        if position + 7 + length > len(buffer):
            break
        position += 7 + length
    return position


@pytest.mark.parametrize("seed", range(60))
def test_an_import_chunk_is_cut_where_the_header_walk_cuts_it(seed: int) -> None:
    """Uniform runs, a packet of another length part way, ragged tails, short buffers."""
    rng = np.random.default_rng(seed)
    length = int(rng.integers(1, 40))
    parts = [_burst(rng, int(rng.integers(0, 50)), length, [0x110])]
    if rng.random() < 0.5:
        parts.append(_burst(rng, int(rng.integers(1, 5)), int(rng.integers(1, 40)), [0x111]))
        parts.append(_burst(rng, int(rng.integers(0, 20)), length, [0x110]))
    buffer = b"".join(parts)
    buffer = buffer[:len(buffer) - int(rng.integers(0, min(len(buffer), 60) + 1))]
    assert _whole_packets(buffer) == _walk(buffer)
