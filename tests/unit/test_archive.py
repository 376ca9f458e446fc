"""The pass archive on disk: record format, crash safety, passes split at silence, gaps."""

from __future__ import annotations

from pathlib import Path

import pytest

from control_center.archive.recorder import (
    FILE_MAGIC,
    KIND_PACKETS,
    ArchiveWriter,
    ReadStats,
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
