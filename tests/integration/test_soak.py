"""The soak of issue 13 in `make test`: 60 s at 37,000 values/s through every fault
(bench/soak.py: InfluxDB, broker and ingest SIGKILL, a clean restart, a full spool
disk, a dropped database, poison messages). Every good packet stored exactly once."""

from __future__ import annotations

import json
import os
from pathlib import Path

from bench import soak


def test_sixty_seconds_of_faults_lose_nothing(tmp_path: Path) -> None:
    results_path = tmp_path / "soak.json"
    code = soak.main(["--seconds", "60", "--json", str(results_path)])
    results = json.loads(results_path.read_text())
    assert results["checks"] == {
        "every good packet stored exactly once": True,
        "no poison packet stored": True,
        "every poison message in the dead-letter store": True,
        "peak memory under 400.0 MB": True,
        "every fault visible": True,
    }, results
    assert code == 0
    assert results["stored_points"] == results["published_packets"] > 100_000
    assert results["poison_sent"] >= 5
    faults = [f["fault"] for f in results["faults"] if not f.get("skipped")]
    # The full-disk fault mounts a tmpfs: root only (CI and these machines run as root).
    assert len(faults) == (6 if os.geteuid() == 0 else 5), results["faults"]
