"""Deframing throughput on one core: TM frames (``TmDeframer``) and COBS (``CobsDeframer``).

    python bench/deframe.py [--megabytes N] [--frame-length L] [--json PATH]

Builds a stream of TM frames (ASM included) full of packets on two virtual channels,
then times ``TmDeframer.feed`` over it in 64 KiB chunks, as a serial reader would
deliver them. In the same run, on the same octets, it times the irreducible part of
the work: one ``binascii.crc_hqx`` pass over every frame (the FECF check), so the
ratio says how much the Python around the C routines costs. The same packets framed
with COBS give the COBS line. MB are 10^6 octets of the framed stream.
"""

from __future__ import annotations

import argparse
import binascii
import json
import platform
import random
import sys
import time
from pathlib import Path

from control_center.telemetry.packets import build_packet
from drivers.cobs import CobsDeframer, cobs_frame
from drivers.tm_frames import TmDeframer, TmFramer

CHUNK = 64 * 1024
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "deframe.json"
SPACECRAFT_ID = 0x152
PACKET_LENGTHS = (16, 512)  # uniform, octets: a few packets per 1115-octet frame


def build_packets(octets: int, seed: int = 1) -> list[tuple[int, bytes]]:
    """(vcid, packet) pairs totalling about ``octets``, alternating VC 0 and 1."""
    rng = random.Random(seed)
    packets: list[tuple[int, bytes]] = []
    total = 0
    count = 0
    while total < octets:
        length = rng.randint(*PACKET_LENGTHS)
        vcid = count & 1
        packet = build_packet(0x100 + vcid, count & 0x3FFF, rng.randbytes(length - 6),
                              time=None, error_control=False)
        packets.append((vcid, packet))
        total += length
        count += 1
    return packets


def build_tm_stream(packets: list[tuple[int, bytes]], frame_length: int) -> tuple[bytes, int]:
    """The frames carrying ``packets``, and how many frames that is."""
    framer = TmFramer(SPACECRAFT_ID, frame_length)
    for vcid in (0, 1):
        framer.add_packets(vcid, b"".join(p for v, p in packets if v == vcid))
    frames = []
    while framer.pending():
        frames.append(framer.next_frame())
    return b"".join(frames), len(frames)


def chunks_of(stream: bytes) -> list[bytes]:
    # Sliced before timing: a serial reader hands over fresh bytes objects too.
    return [stream[i:i + CHUNK] for i in range(0, len(stream), CHUNK)]


def time_tm(stream: bytes, frame_length: int) -> tuple[float, int]:
    chunks = chunks_of(stream)
    deframer = TmDeframer(frame_length, spacecraft_id=SPACECRAFT_ID)
    delivered = 0
    start = time.perf_counter()
    for chunk in chunks:
        delivered += len(deframer.feed(chunk))
    return time.perf_counter() - start, delivered


def time_crc_baseline(stream: bytes, frame_length: int) -> tuple[float, int]:
    """One CRC-16 pass over each frame (ASM excluded), nothing else."""
    step = 4 + frame_length
    view = memoryview(stream)
    crc = binascii.crc_hqx
    bad = 0
    start = time.perf_counter()
    for offset in range(0, len(stream), step):
        if crc(view[offset + 4:offset + step], 0xFFFF):
            bad += 1
    return time.perf_counter() - start, bad


def time_cobs(stream: bytes) -> tuple[float, int]:
    chunks = chunks_of(stream)
    deframer = CobsDeframer()
    delivered = 0
    start = time.perf_counter()
    for chunk in chunks:
        delivered += len(deframer.feed(chunk))
    return time.perf_counter() - start, delivered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--megabytes", type=float, default=64.0,
                        help="size of the packet stream to deframe, 10^6 octets")
    parser.add_argument("--frame-length", type=int, default=1115,
                        help="TM frame length in octets, ASM excluded")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON,
                        help=f"where to write the figures (default {DEFAULT_JSON})")
    args = parser.parse_args(argv)

    packets = build_packets(int(args.megabytes * 1e6))
    tm_stream, frames = build_tm_stream(packets, args.frame_length)
    cobs_stream = b"".join(cobs_frame(p) for _, p in packets)

    tm_seconds, tm_packets = time_tm(tm_stream, args.frame_length)
    crc_seconds, crc_bad = time_crc_baseline(tm_stream, args.frame_length)
    cobs_seconds, cobs_packets = time_cobs(cobs_stream)
    if tm_packets != len(packets) or cobs_packets != len(packets) or crc_bad:
        print(f"error: delivered {tm_packets} (TM) and {cobs_packets} (COBS) of "
              f"{len(packets)} packets, {crc_bad} bad FECFs", file=sys.stderr)
        return 1

    tm_mb = len(tm_stream) / 1e6
    cobs_mb = len(cobs_stream) / 1e6
    figures = {
        "frame_length": args.frame_length,
        "stream_megabytes": round(tm_mb, 3),
        "frames": frames,
        "packets": len(packets),
        "packet_lengths": list(PACKET_LENGTHS),
        "chunk_octets": CHUNK,
        "deframe_mb_per_s": round(tm_mb / tm_seconds, 2),
        "crc_baseline_mb_per_s": round(tm_mb / crc_seconds, 2),
        "deframe_over_baseline_time": round(tm_seconds / crc_seconds, 2),
        "frames_per_s": round(frames / tm_seconds),
        "packets_per_s": round(len(packets) / tm_seconds),
        "cobs_stream_megabytes": round(cobs_mb, 3),
        "cobs_deframe_mb_per_s": round(cobs_mb / cobs_seconds, 2),
        "cobs_packets_per_s": round(len(packets) / cobs_seconds),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    rows = [
        ("TM deframe (TmDeframer.feed)", f"{figures['deframe_mb_per_s']:.1f} MB/s",
         f"{figures['frames_per_s']:,} frames/s", f"{figures['packets_per_s']:,} packets/s"),
        ("baseline: crc_hqx per frame", f"{figures['crc_baseline_mb_per_s']:.1f} MB/s",
         f"x{figures['deframe_over_baseline_time']:.2f} time", ""),
        ("COBS deframe (CobsDeframer.feed)", f"{figures['cobs_deframe_mb_per_s']:.1f} MB/s",
         "", f"{figures['cobs_packets_per_s']:,} packets/s"),
    ]
    print(f"{tm_mb:.1f} MB of {args.frame_length}-octet frames ({frames:,} frames, "
          f"{len(packets):,} packets of {PACKET_LENGTHS[0]}-{PACKET_LENGTHS[1]} octets), "
          f"{CHUNK // 1024} KiB chunks, one core")
    for row in rows:
        print(f"  {row[0]:<34} {row[1]:>12} {row[2]:>20} {row[3]:>22}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"written {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
