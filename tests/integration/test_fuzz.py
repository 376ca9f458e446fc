"""Fuzzing the running ingest (operator alarm commands of any bytes) and the atheris
campaign over the decoders and deframers (fuzz/fuzz_decoders.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from control_center.pipeline.service import IngestService
from control_center.telemetry.tmdb import Tmdb
from tests.support.fuzz import FUZZ

ROOT = Path(__file__).resolve().parents[2]


@FUZZ
@given(payload=st.binary(max_size=200))
def test_alarm_commands_of_any_bytes_are_counted(config: object, tmdbs: list[Tmdb],
                                                  payload: bytes) -> None:
    """Invalid UTF-8, JSON that is not an object, or anything else: counted, no crash."""
    from control_center.config import Config

    assert isinstance(config, Config)
    service = IngestService(config, tmdbs, archive=None, monitor=None)
    service._command(payload)
    try:
        valid = isinstance(json.loads(payload), dict)
    except ValueError:
        valid = False
    assert service.decoder.stats.errors.get("bad_command", 0) == (0 if valid else 1)


def test_atheris_campaign_finds_nothing(tmp_path: Path) -> None:
    """Coverage-guided (libFuzzer) over the decoder and both deframers, fixed budget."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "fuzz" / "fuzz_decoders.py"), "-runs=20000", "-seed=1",
         f"-artifact_prefix={tmp_path}/"], cwd=ROOT, capture_output=True, text=True,
        timeout=240, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Done 20000 runs" in result.stderr
    assert not list(tmp_path.glob("crash-*"))
