"""Batch decoding against ccsdspy, on the same octets and the same packet definition.

    python bench/decode.py [--packets N] [--json PATH]

Builds a file of ``N`` fixed-length ``lander_nav`` packets (config/tmdb/lander.yaml,
44 octets, CUC time and CRC) with ``PacketCodec.encode`` from a simulated descent,
writes the ccsdspy CSV definition of that packet (every field, CUC time and CRC
included, bit offsets from the packet start) and loads our definition from the same
CSV with ``import_ccsdspy_csv``, so both sides extract the same fields. Then, in one
process and on one ``bytes`` object, best of three runs each:

* ccsdspy: ``FixedLength.from_file(csv).load(BytesIO)``: raw values, no calibration;
* ours: ``split_packets`` + ``PacketCodec.decode`` on the ``(n, length)`` octet matrix
  the split keeps (``SplitResult.octets``: no ``bytes`` object per packet), calibration
  included;
* ours + limits: the same plus ``LimitChecker.check`` on every limit-checked parameter
  (limits, persistence and deadband copied from the YAML definition), as the ingest's
  monitor does.

The CSV-imported definition has no CRC and ``time: receive`` (the CUC octets and the
CRC are plain fields on both sides), so neither side checks a CRC: a fair comparison.
An extra row decodes with the YAML definition itself (CRC-16 checked on every packet,
CUC time converted to UTC), which ccsdspy does not do. It also times ``split_packets``
against the packet-by-packet walk (``_split_slow``) on a same-length and a mixed buffer.
MB are 10^6 octets of the packet file; values count the CSV fields of each packet.

The XTCE case (issue 15) compares with space-packet-parser, the XTCE decoder of NASA/LASP,
both sides reading the SAME XTCE file: the lander's TMDB exported by ``export_xtce`` (and
imported back by ``import_xtce`` for ours) on the first ``--xtce-packets`` packets of the
same file, and the real JPSS-1 geolocation file with the XTCE written for
space-packet-parser (its test data, fetched by scripts/setup). space-packet-parser parses
packet by packet in Python; every value is compared before anything is timed.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import ccsdspy
import numpy as np
import numpy.typing as npt
import yaml

from control_center.monitoring.limits import LimitChecker
from control_center.telemetry.ccsdspy_csv import import_ccsdspy_csv
from control_center.telemetry.codec import PacketCodec
from control_center.telemetry.packets import CucTime, _split_slow, build_packet, split_packets
from control_center.telemetry.tmdb import PacketDef
from control_center.telemetry.tmdb_yaml import parse_tmdb

ROOT = Path(__file__).resolve().parent.parent
LANDER_YAML = ROOT / "config" / "tmdb" / "lander.yaml"
PACKET = "lander_nav"
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "decode.json"
SPP_DATA = Path(sys.prefix) / "share" / "space-packet-parser-6.2.0" / "tests" / "test_data"
RUNS = 3
SPLIT_PACKETS = 100_000
_MONITORING_KEYS = ("limits", "persistence", "deadband")
T = TypeVar("T")


def lander_nav() -> tuple[PacketDef, dict[str, Any]]:
    """The packet definition from the lander TMDB, and its raw YAML mapping."""
    document = yaml.safe_load(LANDER_YAML.read_text())
    tmdb = parse_tmdb(document, str(LANDER_YAML))
    raw = next(p for p in document["packets"] if p["name"] == PACKET)
    return tmdb.packet(PACKET), raw


def descent_values(n: int, seed: int = 7) -> dict[str, npt.NDArray[Any]]:
    """Engineering values of a powered descent at 10 Hz, repeated over ``n`` packets."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64) / 10.0
    phase_t = (t % 720.0) / 720.0  # one descent every 12 minutes
    altitude = 15_000.0 * (1.0 - phase_t) ** 2
    angle = 0.5 * np.sin(t / 30.0)
    rates = rng.normal(0.0, 4.0, size=(3, n))
    spikes = rng.random((3, n)) < 0.002
    rates[spikes] *= 8.0  # occasional excursions past the yellow and red limits
    return {
        "descent_phase": np.minimum((phase_t * 6).astype(np.int64), 5),
        "altitude": altitude,
        "vertical_velocity": -60.0 * (1.0 - phase_t) + rng.normal(0.0, 0.2, n),
        "horizontal_velocity": np.abs(rng.normal(5.0, 1.0, n)),
        "throttle": np.clip(rng.normal(70.0, 12.0, n), 0.0, 100.8),
        "attitude_q0": np.cos(angle),
        "attitude_q1": np.sin(angle) * 0.6,
        "attitude_q2": np.sin(angle) * 0.8,
        "attitude_q3": np.zeros(n),
        "imu_rate_x": rates[0], "imu_rate_y": rates[1], "imu_rate_z": rates[2],
        "main_engine_on": phase_t < 0.9,
        "radar_lock": altitude < 8_000.0,
        "legs_deployed": phase_t > 0.6,
        "touchdown_sensed": phase_t > 0.98,
        "gnc_spare": np.zeros(n, dtype=np.int64),
    }


def build_file(packet: PacketDef, n: int) -> bytes:
    codec = PacketCodec("lander", packet)
    index = np.arange(n, dtype=np.int64)
    start = CucTime.from_unix(1_790_000_000.0).coarse
    return codec.encode(descent_values(n), coarse=start + index // 10,
                        fine=(index % 10) * 6554, sequence_counts=index & 0x3FFF)


def csv_rows(packet: PacketDef) -> list[dict[str, str]]:
    """ccsdspy CSV rows for every field after the primary header, CRC included."""
    rows = [{"name": "time_coarse", "data_type": "uint", "bit_offset": "48",
             "bit_length": "32", "calibration": ""},
            {"name": "time_fine", "data_type": "uint", "bit_offset": "80",
             "bit_length": "16", "calibration": ""}]
    kinds = {"float": "float", "signed": "int"}
    for parameter in packet.parameters:
        calibration = ""
        if parameter.calibration.kind == "polynomial":
            calibration = json.dumps({str(power): c for power, c
                                      in enumerate(parameter.calibration.coefficients)})
        elif parameter.states:
            calibration = json.dumps({str(k): v for k, v in parameter.states.items()})
        rows.append({"name": parameter.name, "data_type": kinds.get(parameter.type, "uint"),
                     "bit_offset": str(parameter.bit_offset),
                     "bit_length": str(parameter.bit_length), "calibration": calibration})
    rows.append({"name": "crc", "data_type": "uint", "bit_offset": str(8 * packet.length - 16),
                 "bit_length": "16", "calibration": ""})
    return rows


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def imported_definition(path: Path, packet: PacketDef, raw: dict[str, Any]) -> PacketDef:
    """Our definition read from the CSV, limits copied from the YAML definition."""
    mapping, _ = import_ccsdspy_csv(path, packet.apid, packet.name)
    monitoring = {p["name"]: p for p in raw["parameters"]}
    for parameter in mapping["parameters"]:
        source = monitoring.get(parameter["name"], {})
        parameter.update({k: source[k] for k in _MONITORING_KEYS if k in source})
    return parse_tmdb({"spacecraft": "lander", "packets": [mapping]}, str(path)).packet(
        packet.name)


def checkers(packet: PacketDef) -> dict[str, LimitChecker]:
    """One checker per limit-checked parameter, built as the monitor builds them."""
    out: dict[str, LimitChecker] = {}
    for parameter in packet.parameters:
        monitoring = parameter.monitoring
        if monitoring.checked:
            sets = [monitoring.limits, *(m.limits for m in monitoring.limit_sets)]
            out[parameter.name] = LimitChecker(sets, persistence=monitoring.persistence,
                                               deadband=monitoring.deadband)
    return out


def best_of(runs: int, work: Callable[[], T]) -> tuple[float, T]:
    best = float("inf")
    results: list[T] = []
    for _ in range(runs):
        results.clear()  # let the previous run's arrays go before the next
        start = time.perf_counter()
        results.append(work())
        best = min(best, time.perf_counter() - start)
    return best, results[0]


def ccsdspy_load(definition: Path, data: bytes) -> dict[str, npt.NDArray[Any]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. sequence-count notices
        result: dict[str, npt.NDArray[Any]] = ccsdspy.FixedLength.from_file(
            str(definition)).load(io.BytesIO(data))
    return result


def ours(codec: PacketCodec, data: bytes, *, check_crc: bool = False,
         limit_checkers: dict[str, LimitChecker] | None = None) -> tuple[int, int]:
    """Split and decode ``data``; optionally limit-check. Packets decoded, alarm samples."""
    packet = codec.packet
    split = split_packets(data, lengths={packet.apid: packet.length},
                          check_crc=frozenset({packet.apid}) if check_crc else frozenset())
    octets = split.octets(packet.apid)
    if octets is None:
        octets = np.zeros((0, packet.length), dtype=np.uint8)
    batch = codec.decode(octets, np.zeros(octets.shape[0], dtype=np.int64))
    alarms = 0
    for name, checker in (limit_checkers or {}).items():
        alarms += int(np.count_nonzero(checker.check(batch.values[name])))
    return len(batch), alarms


def mixed_buffer(n: int, seed: int = 5) -> tuple[bytes, dict[int, int]]:
    """Packets of three APIDs and lengths (28, 88, 148 octets) interleaved at random,
    and the lengths by APID."""
    rng = np.random.default_rng(seed)
    apids = rng.integers(0x100, 0x103, size=n)
    bodies = {apid: bytes(range(20 + 60 * (apid - 0x100))) for apid in (0x100, 0x101, 0x102)}
    data = b"".join(build_packet(a, i & 0x3FFF, bodies[a], time=None)
                    for i, a in enumerate(apids.tolist()))
    return data, {apid: len(body) + 8 for apid, body in bodies.items()}


def time_split(data: bytes, lengths: dict[int, int]) -> dict[str, float]:
    """The walk and split_packets on ``data``, every APID's CRC checked."""
    crc = frozenset(lengths)
    slow, slow_result = best_of(RUNS, lambda: _split_slow(data, check_crc=crc, lengths=lengths))
    fast, fast_result = best_of(RUNS, lambda: split_packets(data, check_crc=crc,
                                                           lengths=lengths))
    if slow_result != fast_result:
        raise SystemExit("error: split_packets and _split_slow disagree")
    packets = fast_result.count
    return {"packets": packets, "octets": len(data),
            "slow_packets_per_s": round(packets / slow),
            "fast_packets_per_s": round(packets / fast),
            "speedup": round(slow / fast, 2)}


def spp_decode(definition: Any, data: bytes) -> list[Any]:
    """space-packet-parser: every packet of ``data`` parsed with one XTCE definition."""
    from space_packet_parser.generators import ccsds_generator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [definition.parse_bytes(p) for p in ccsds_generator(data)]


def ours_xtce(tmdb: Any, data: bytes) -> list[Any]:
    """Ours: the Decoder every path uses (split, decode per type in numpy, calibrate)."""
    from control_center.telemetry.decoder import Decoder
    from control_center.telemetry.records import RawMessage

    decoder = Decoder([tmdb], batch_packets=1 << 30)
    decoder.feed(RawMessage(tmdb.spacecraft, data, 0, "bench"))
    return decoder.take(force=True)


def xtce_case(name: str, xtce: Path, data: bytes, root: str) -> dict[str, Any]:
    """One XTCE file, decoded by space-packet-parser and by us; values compared first.
    ``root``: the abstract header container space-packet-parser starts from."""
    from space_packet_parser.xtce.definitions import XtcePacketDefinition

    from control_center.telemetry.tmdb_yaml import load_tmdb

    definition = XtcePacketDefinition.from_xtce(xtce, root_container_name=root)
    tmdb = load_tmdb(xtce)
    theirs = spp_decode(definition, data)
    batches = ours_xtce(tmdb, data)
    decoded = sum(len(b) for b in batches)
    if decoded != len(theirs):
        raise SystemExit(f"error: {name}: space-packet-parser parsed {len(theirs)} packets, "
                         f"we decoded {decoded}")
    compared = _compare_with_spp(theirs, batches)
    spp_s, _ = best_of(1, lambda: spp_decode(definition, data))
    ours_s, _ = best_of(RUNS, lambda: ours_xtce(tmdb, data))
    n = len(theirs)
    return {"case": name, "packets": n, "values_compared": compared,
            "spp_packets_per_s": round(n / spp_s), "ours_packets_per_s": round(n / ours_s),
            "speed_vs_spp": round(spp_s / ours_s, 1)}


def _compare_with_spp(theirs: list[Any], batches: list[Any]) -> int:
    """Every value of ours equal to space-packet-parser's, packet by packet in file
    order within each APID (sequence counts wrap, so they do not pair packets)."""
    by_apid: dict[int, list[Any]] = {}
    for packet in theirs:
        by_apid.setdefault(int(list(packet.values())[3]), []).append(packet)
    taken: dict[int, int] = {}
    compared = 0
    for batch in batches:
        first = taken.get(batch.packet.apid, 0)
        taken[batch.packet.apid] = first + len(batch)
        for row in range(len(batch)):
            packet = by_apid[batch.packet.apid][first + row]
            lower = {k.lower(): k for k in packet}
            for parameter in batch.packet.parameters:
                key = lower.get(parameter.name) or lower.get(
                    f"{batch.packet.name}__{parameter.name}")
                if key is None:
                    continue
                mine, their = batch.values[parameter.name][row], packet[key]
                if parameter.type == "enum":
                    their = getattr(their, "raw_value", their)
                same = (np.isclose(float(mine), float(their), rtol=1e-12, equal_nan=True)
                        if parameter.is_float_value else mine == their)
                if not same:
                    raise SystemExit(f"error: {batch.packet.name}.{parameter.name}: ours "
                                     f"{mine!r}, space-packet-parser {their!r}")
                compared += 1
    return compared


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--packets", type=int, default=2_000_000,
                        help="lander_nav packets in the file (default 2,000,000)")
    parser.add_argument("--xtce-packets", type=int, default=20_000,
                        help="lander_nav packets space-packet-parser decodes (default 20,000: "
                             "it parses about 10,000 a second)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON,
                        help=f"where to write the figures (default {DEFAULT_JSON})")
    args = parser.parse_args(argv)
    logging.getLogger("ccsdspy").setLevel(logging.ERROR)  # out-of-order counts at wrap
    n: int = args.packets

    packet, raw = lander_nav()
    data = build_file(packet, n)
    rows = csv_rows(packet)
    fields = len(rows)
    megabytes = len(data) / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        definition = Path(tmp) / f"{PACKET}.csv"
        write_csv(definition, rows)
        imported = imported_definition(definition, packet, raw)
        codec = PacketCodec("lander", imported)
        yaml_codec = PacketCodec("lander", packet)

        # Both sides must read the same raw values before their speed means anything:
        # ours from the split's octet matrix (as timed) and packet by packet (bytes).
        theirs = ccsdspy_load(definition, data)
        whole = split_packets(data)
        matrix = whole.octets(packet.apid)
        assert matrix is not None
        checks = (codec.decode(matrix), codec.decode_packets(whole.by_apid[packet.apid]))
        for row in rows:
            for check in checks:
                if not np.array_equal(np.asarray(theirs[row["name"]]),
                                      np.asarray(check.raw[row["name"]])):
                    print(f"error: ccsdspy and ours disagree on {row['name']}",
                          file=sys.stderr)
                    return 1
        del theirs, whole, matrix, checks

        timings: dict[str, float] = {}
        timings["ccsdspy"], _ = best_of(RUNS, lambda: ccsdspy_load(definition, data))
        timings["ours"], _ = best_of(RUNS, lambda: ours(codec, data))
        timings["ours_limits"], limited = best_of(
            RUNS, lambda: ours(codec, data, limit_checkers=checkers(imported)))
        timings["ours_yaml_crc"], _ = best_of(RUNS, lambda: ours(yaml_codec, data,
                                                                 check_crc=True))

    from control_center.telemetry.tmdb_yaml import load_tmdb
    from control_center.telemetry.xtce.export import export_xtce

    xtce_cases: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        exported = Path(tmp) / "lander.xml"
        exported.write_bytes(export_xtce(load_tmdb(LANDER_YAML)))
        xtce_cases.append(xtce_case("lander_nav, our exported XTCE", exported,
                                    data[:packet.length * args.xtce_packets], "ccsds_packet"))
    jpss = SPP_DATA / "jpss"
    xtce_cases.append(xtce_case("JPSS-1 geolocation (real)", jpss / "jpss1_geolocation_xtce_v1.xml",
                                (jpss / "J01_G011_LZ_2021-04-09T00-00-00Z_V01.DAT1").read_bytes(),
                                "CCSDSPacket"))

    uniform = build_file(packet, SPLIT_PACKETS)
    mixed, mixed_lengths = mixed_buffer(SPLIT_PACKETS)
    split = {"same_length": time_split(uniform, {packet.apid: packet.length}),
             "mixed": time_split(mixed, mixed_lengths)}

    labels = {
        "ccsdspy": "ccsdspy FixedLength.load (raw)",
        "ours": "ours: split + decode (calibrated)",
        "ours_limits": "ours + limit checking",
        "ours_yaml_crc": "ours, YAML def (CRC + CUC time)",
    }
    results: dict[str, dict[str, float]] = {}
    for key, seconds in timings.items():
        results[key] = {
            "seconds": round(seconds, 4),
            "packets_per_s": round(n / seconds),
            "values_per_s": round(n * fields / seconds),
            "mb_per_s": round(megabytes / seconds, 2),
            "time_vs_ccsdspy": round(seconds / timings["ccsdspy"], 2),
            "speed_vs_ccsdspy": round(timings["ccsdspy"] / seconds, 2),
        }
    checked = sorted(checkers(imported))
    figures: dict[str, Any] = {
        "packet": PACKET, "packet_length": packet.length, "packets": n,
        "fields_per_packet": fields, "file_megabytes": round(megabytes, 3),
        "runs": RUNS, "limit_checked": checked, "samples_out_of_limits": limited[1],
        "results": results, "split_packets": split, "xtce": xtce_cases,
        "python": platform.python_version(), "machine": platform.machine(),
        "numpy": np.__version__, "ccsdspy": ccsdspy.__version__,
    }
    print(f"{n:,} {PACKET} packets of {packet.length} octets ({megabytes:.1f} MB, "
          f"{fields} fields each), best of {RUNS}, one process")
    print(f"  {'':<36} {'packets/s':>12} {'values/s':>14} {'MB/s':>8} {'time vs ccsdspy':>16}")
    for key, figure in results.items():
        print(f"  {labels[key]:<36} {figure['packets_per_s']:>12,} "
              f"{figure['values_per_s']:>14,} {figure['mb_per_s']:>8.1f} "
              f"{'x' + format(figure['time_vs_ccsdspy'], '.2f'):>16}")
    print(f"  limit-checked: {', '.join(checked)}")
    for name, figure in split.items():
        print(f"  split_packets, {name} ({figure['packets']:,} packets): walk "
              f"{figure['slow_packets_per_s']:,}/s, numpy path "
              f"{figure['fast_packets_per_s']:,}/s, x{figure['speedup']:.2f}")
    print("  XTCE: the same XTCE file read by space-packet-parser and by us, values compared")
    for case in xtce_cases:
        print(f"  {case['case']:<36} {case['packets']:>8,} packets: space-packet-parser "
              f"{case['spp_packets_per_s']:>9,}/s, ours {case['ours_packets_per_s']:>11,}/s, "
              f"x{case['speed_vs_spp']:,.0f} ({case['values_compared']:,} values equal)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"written {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
