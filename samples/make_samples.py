"""Make the sample files of ``samples/`` again, byte for byte.

``.venv/bin/python samples/make_samples.py`` writes:

* ``lander-descent.tlm``: the first two minutes of the lander's powered descent, as the
  lander simulator of ``isls up`` makes them (seed 0, the shipped telemetry database),
  packets back to back in the order they were generated; onboard time from
  2026-11-25T12:00:00Z. What ``isls import`` reads.
* ``ssat1-hk.csv`` and ``ssat1-hk.tlm``: a partner's packet definition in ccsdspy's CSV
  format and a file of its packets: ccsdspy's ``hs`` test set for APID 895 (the fake
  "SSAT1" spacecraft), the CSV as it is and the first packets of its file. What ``isls
  tmdb import-csv`` and then ``isls import`` read. ccsdspy (BSD 3-clause) is a
  development dependency, installed by ``make setup``.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import ccsdspy

from control_center.telemetry.tmdb_yaml import load_tmdb
from simulators.runner import PacketGenerator, make_model

SAMPLES = Path(__file__).resolve().parent
PROJECT = SAMPLES.parent

LANDER_START = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC).timestamp()
LANDER_SECONDS = 120
STEP = 0.1  # s of simulated time per call: packets come out in time order, step by step

HS_APID895 = Path(ccsdspy.__file__).parent / "tests" / "data" / "hs" / "apid895"
HS_PACKET_OCTETS = 34  # every APID 895 packet: 6 header octets + 28 of data
HS_PACKETS = 600  # of its 71,970: enough for a dashboard, small for the repository


def lander_descent() -> bytes:
    """The lander simulator's packets for the first ``LANDER_SECONDS`` of its descent."""
    tmdb = load_tmdb(PROJECT / "config" / "tmdb" / "lander.yaml")
    generator = PacketGenerator(make_model("lander", seed=0), tmdb, start_unix=LANDER_START)
    steps = round(LANDER_SECONDS / STEP)
    return b"".join(generator.advance_to((i + 1) * STEP) for i in range(steps))


def ssat1_packets() -> bytes:
    """The first ``HS_PACKETS`` packets of ccsdspy's APID 895 test file."""
    source = next(HS_APID895.glob("*.tlm"))
    return source.read_bytes()[:HS_PACKETS * HS_PACKET_OCTETS]


def main() -> None:
    (SAMPLES / "lander-descent.tlm").write_bytes(lander_descent())
    shutil.copyfile(HS_APID895 / "defs.csv", SAMPLES / "ssat1-hk.csv")
    (SAMPLES / "ssat1-hk.tlm").write_bytes(ssat1_packets())
    for name in ("lander-descent.tlm", "ssat1-hk.csv", "ssat1-hk.tlm"):
        print(f"samples/{name}: {(SAMPLES / name).stat().st_size} octets")


if __name__ == "__main__":
    main()
