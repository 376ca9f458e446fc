"""Line protocol and the InfluxDB writer, against a real influxd."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from control_center.storage import contract as storage
from control_center.storage.contract import escape_tag, format_lines, format_lines_reference
from tests.support.storage import _EDGES, COLUMNAR_ROWS, _batch


def test_line_protocol_types_and_tags() -> None:
    lines = format_lines(_batch(2), {"spacecraft": "probe", "source": "live"}).decode()
    first, second = lines.splitlines()
    assert first == ("probe_hk,source=live,spacecraft=probe voltage=27.0,counter=0i,mode=0i,"
                     "heater=true,ratio=0.5,sequence_count=0i 1700000000000000000")
    assert second.startswith("probe_hk,source=live,spacecraft=probe voltage=28.0,counter=1i,"
                             "mode=1i,heater=false")


def test_non_finite_floats_are_left_out_of_their_line_only() -> None:
    ratio = np.array([0.5, np.nan, np.inf, 0.25])
    lines = format_lines(_batch(4, ratio), {"spacecraft": "probe"}).decode().splitlines()
    assert len(lines) == 4
    assert "ratio=0.5" in lines[0] and "ratio=0.25" in lines[3]
    assert "ratio" not in lines[1] and "ratio" not in lines[2]
    assert "nan" not in "".join(lines) and "inf" not in "".join(lines)


def _parsed(text: bytes) -> list[tuple[str, dict[str, object], int]]:
    """Lines as (measurement and tags, field values as numbers/booleans, time)."""
    out: list[tuple[str, dict[str, object], int]] = []
    for line in text.decode().splitlines():
        head, fields, stamp = line.split(" ")
        values: dict[str, object] = {}
        for item in fields.split(","):
            name, value = item.split("=")
            if value in ("true", "false"):
                values[name] = value == "true"
            elif value.endswith("i"):
                values[name] = int(value[:-1])
            else:
                values[name] = float(value)
        out.append((head, values, int(stamp)))
    return sorted(out, key=lambda row: row[2])


_FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_FLOATS, st.integers(0, 65535), st.integers(0, 255), st.booleans(),
                          st.sampled_from(_EDGES) | _FLOATS), min_size=1, max_size=40))
def test_columnar_lines_hold_exactly_the_reference_values(
        rows: list[tuple[float, int, int, bool, float]]) -> None:
    """Polars' float text parses back to the same float64 as Python's repr, row by row,
    with non-finite fields left out exactly as the reference does."""
    assert COLUMNAR_ROWS > storage._COLUMNAR_MIN_ROWS
    rows = (rows * (COLUMNAR_ROWS // len(rows) + 1))[:COLUMNAR_ROWS]  # the columnar path
    n = len(rows)
    batch = replace(_batch(n), values={
        "voltage": np.array([r[0] for r in rows]), "counter": np.array([r[1] for r in rows]),
        "mode": np.array([r[2] for r in rows]), "heater": np.array([r[3] for r in rows]),
        "ratio": np.array([r[4] for r in rows])})
    tags = {"spacecraft": "probe", "source": "live"}
    fast = _parsed(format_lines(batch, tags))
    assert fast == _parsed(format_lines_reference(batch, tags))
    for (_, values, _), row in zip(fast, rows, strict=True):
        if np.isfinite(row[4]):
            stored = values["ratio"]
            assert isinstance(stored, float)
            assert np.float64(stored).tobytes() == np.float64(row[4]).tobytes()


def test_tag_escaping() -> None:
    assert escape_tag("a b,c=d") == "a\\ b\\,c\\=d"
