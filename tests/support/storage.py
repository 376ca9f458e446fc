"""Helpers shared by the unit and integration tests of storage."""

from __future__ import annotations

from typing import Any

import numpy as np

from control_center.telemetry.records import DecodedBatch
from control_center.telemetry.tmdb_yaml import parse_tmdb

PACKET = parse_tmdb({"spacecraft": "probe", "packets": [{
    "name": "probe_hk", "apid": 1, "parameters": [
        {"name": "voltage", "bit_length": 16, "type": "unsigned",
         "calibration": {"polynomial": [0, 0.01]}},
        {"name": "counter", "bit_length": 16, "type": "unsigned"},
        {"name": "mode", "bit_length": 8, "type": "enum", "states": {0: "OFF", 1: "ON"}},
        {"name": "heater", "bit_length": 8, "type": "boolean"},
        {"name": "ratio", "bit_length": 32, "type": "float"},
    ]}]}, "test").packets[0]


def _batch(n: int, ratio: np.ndarray | None = None) -> DecodedBatch:
    return DecodedBatch(
        spacecraft="probe", packet=PACKET,
        times_ns=np.arange(n, dtype=np.int64) * 1_000_000_000 + 1_700_000_000_000_000_000,
        sequence_counts=np.arange(n, dtype=np.uint16),
        values={"voltage": np.linspace(27.0, 28.0, n), "counter": np.arange(n),
                "mode": np.arange(n) % 2, "heater": np.arange(n) % 2 == 0,
                "ratio": np.full(n, 0.5) if ratio is None else ratio},
        raw={})


COLUMNAR_ROWS = 400  # above storage._COLUMNAR_MIN_ROWS


_EDGES = [5e-324, -5e-324, 1.7976931348623157e308, 1e20, 1e16, 1e-7, -0.0, 0.1 + 0.2,
          123456789012345678.0, 2.0**53 + 2]

# Float32 values ("ratio" is an uncalibrated float32 parameter), as bit patterns: the
# smallest and largest subnormals and normals, both signs of zero, around 1.0 and
# 2**24 (where numpy writes "1.6777216e+07" and polars "16777216.0"), 0.1, 1e-7, 1e-4
# ("1e-04"), and 7.038531e-26, the one float32 whose shortest text double-rounds
# (contract._DOUBLE_ROUNDED_FLOAT32).
_EDGES32 = np.array([0x00000001, 0x80000001, 0x007FFFFF, 0x00800000, 0x7F7FFFFF,
                     0xFF7FFFFF, 0x00000000, 0x80000000, 0x3F7FFFFF, 0x3F800001,
                     0x4B800000, 0x4B800001, 0x4B7FFFFF, 0x3DCCCCCD, 0x33D6BF95,
                     0x38D1B717, 0x15AE43FD, 0x95AE43FD, 0x15AE43FC, 0x15AE43FE],
                    dtype=np.uint32).view(np.float32)


def same_float32(ours: Any, theirs: Any) -> bool:
    """A value that is exactly a float32 (an uncalibrated float32 parameter, or a
    calibration declared ``engineering: float32``), stored as its shortest float32 text
    or decoded, against another's: both narrowed to float32 are the same bits, the sign
    of zero included (space-packet-parser calibrates in float64; InfluxDB parses the
    text to the nearest double)."""
    return np.float32(float(ours)).tobytes() == np.float32(float(theirs)).tobytes()
