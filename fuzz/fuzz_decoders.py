"""Coverage-guided fuzzing (atheris, libFuzzer) of everything that parses link input:
the ingest's decoder (split, CRC, decode, limits of nothing), the TM and COBS deframers.

    .venv/bin/python fuzz/fuzz_decoders.py -runs=200000          # a longer campaign
    .venv/bin/python fuzz/fuzz_decoders.py -max_total_time=600   # ten minutes

Any exception is a finding: libFuzzer stops and writes the input as crash-<sha1>.
The test suite runs it for a fixed number of runs (tests/test_fuzz.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["control_center", "drivers"]):
    from control_center.telemetry.decoder import Decoder
    from control_center.telemetry.records import RawMessage
    from control_center.telemetry.tmdb_yaml import load_tmdbs
    from drivers.cobs import CobsDeframer
    from drivers.tm_frames import TmDeframer

ROOT = Path(__file__).resolve().parent.parent
TMDBS = load_tmdbs([ROOT / "config/tmdb/lander.yaml", ROOT / "config/tmdb/orbiter.yaml"])


def one_input(data: bytes) -> None:
    if not data:
        return
    selector, payload = data[0], data[1:]
    if selector % 3 == 0:
        decoder = Decoder(TMDBS)
        decoder.feed(RawMessage("lander" if selector & 4 else "orbiter", payload, 0, "fuzz"))
        decoder.take(force=True)
    elif selector % 3 == 1:
        TmDeframer(223, spacecraft_id=TMDBS[0].spacecraft_id).feed(payload)
    else:
        CobsDeframer().feed(payload)


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
