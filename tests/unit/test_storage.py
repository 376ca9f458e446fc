"""Line protocol and the InfluxDB writer, against a real influxd."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control_center.pipeline.publisher import param_message
from control_center.storage import contract as storage
from control_center.storage.contract import (
    escape_tag,
    format_lines,
    format_lines_off_loop,
    format_lines_reference,
)
from control_center.telemetry.records import DecodedBatch
from tests.support.storage import _EDGES, _EDGES32, COLUMNAR_ROWS, PACKET, _batch, same_float32


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
_FLOATS32 = st.floats(allow_nan=True, allow_infinity=True, width=32)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_EDGES) | _FLOATS, st.integers(0, 65535),
                          st.integers(0, 255), st.booleans(),
                          st.sampled_from(_EDGES32.tolist()) | _FLOATS32),
                min_size=1, max_size=40))
def test_columnar_lines_hold_exactly_the_reference_values(
        rows: list[tuple[float, int, int, bool, float]]) -> None:
    """Polars' float text parses back to the same float64 as Python's repr, row by row,
    and a float32 parameter's ("ratio") to the same float64 as numpy's float32 text,
    which narrows back to the float32; non-finite fields are left out exactly as the
    reference does."""
    assert COLUMNAR_ROWS > storage._COLUMNAR_MIN_ROWS
    rows = (rows * (COLUMNAR_ROWS // len(rows) + 1))[:COLUMNAR_ROWS]  # the columnar path
    n = len(rows)
    batch = replace(_batch(n), values={
        "voltage": np.array([r[0] for r in rows]), "counter": np.array([r[1] for r in rows]),
        "mode": np.array([r[2] for r in rows]), "heater": np.array([r[3] for r in rows]),
        "ratio": np.array([r[4] for r in rows])})
    tags = {"spacecraft": "probe", "source": "live"}
    fast = _parsed(format_lines(batch, tags))
    reference = _parsed(format_lines_reference(batch, tags))
    assert fast == reference
    for (_, values, _), (_, reference_values, _), row in zip(fast, reference, rows,
                                                             strict=True):
        for name, expected in (("voltage", row[0]), ("ratio", row[4])):
            assert (name in values) == bool(np.isfinite(expected))
            if name in values:
                stored, other = values[name], reference_values[name]
                assert isinstance(stored, float) and isinstance(other, float)
                assert stored.hex() == other.hex()  # the same double, even a zero's sign
                if name == "voltage":
                    assert np.float64(stored).tobytes() == np.float64(expected).tobytes()
                else:
                    assert same_float32(stored, expected)


def _float32_fields(text: bytes) -> list[float]:
    """Every line's ``ratio`` value, as InfluxDB parses it (Go's strconv.ParseFloat and
    Python's float both give the double nearest the text)."""
    return [float(line.split(b"ratio=")[1].split(b",")[0]) for line in text.splitlines()]


def test_float32_parameters_are_written_at_their_real_precision() -> None:
    """An uncalibrated float32 parameter is written as its shortest float32 text, a
    float64 one (voltage, calibrated) as its shortest float64 text, on both paths."""
    for n in (2, COLUMNAR_ROWS):
        value = float(np.float32(7726.142))  # 7726.14208984375
        batch = replace(_batch(n), values={**_batch(n).values, "voltage": np.full(n, value),
                                           "ratio": np.full(n, value)})
        for text in (format_lines(batch, {}), format_lines_reference(batch, {})):
            first = text.decode().splitlines()[0]
            assert "ratio=7726.142," in first and "voltage=7726.14208984375," in first


def test_a_float32_engineering_value_is_written_at_its_real_precision() -> None:
    """A calibration declared ``engineering: float32`` is written as its shortest
    float32 text on both paths, as tm/param carries it."""
    voltage = replace(PACKET.parameters[0], calibration=replace(
        PACKET.parameters[0].calibration, engineering="float32"))
    packet = replace(PACKET, parameters=(voltage, *PACKET.parameters[1:]))
    value = float(np.float32(0.01 * 2749))  # 27.489999771118164
    for n in (2, COLUMNAR_ROWS):
        batch = replace(_batch(n), packet=packet,
                        values={**_batch(n).values, "voltage": np.full(n, value)})
        for text in (format_lines(batch, {}), format_lines_reference(batch, {})):
            assert text.decode().splitlines()[0].startswith("probe_hk voltage=27.49,")
        assert b'"voltage":[27.49,' in param_message(batch)


def test_every_float32_bit_pattern_narrows_back_from_its_stored_double() -> None:
    """Random float32 bit patterns (every exponent, subnormals, both zeros, ±max) and
    the values around every power of two: the double parsed from each path's text is
    the same, and narrows back to the float32 exactly. 7.038531e-26, the one float32
    whose shortest text would double-round (found by an exhaustive run over all 2**32
    patterns), is among them and is written with 9 significant digits."""
    rng = np.random.default_rng(17)
    exponents = np.arange(0, 255, dtype=np.int64) << 23
    around = (exponents[:, None] + np.arange(-3, 4)[None, :]).ravel()
    bits = np.concatenate([rng.integers(0, 1 << 32, 100_000, dtype=np.uint64),
                           np.clip(around, 0, None), around[around >= 0] | (1 << 31),
                           _EDGES32.view(np.uint32)]).astype(np.uint32)
    values = bits.view(np.float32)
    values = values[np.isfinite(values)]
    n = len(values)
    batch = replace(_batch(n), values={**_batch(n).values, "ratio": values.astype(np.float64)})
    columnar = format_lines(batch, {})
    stored = np.array(_float32_fields(columnar))
    assert stored.view(np.uint64).tolist() == \
        np.array(_float32_fields(format_lines_reference(batch, {}))).view(np.uint64).tolist()
    assert stored.astype(np.float32).view(np.uint32).tolist() == values.view(np.uint32).tolist()
    assert b"ratio=7.03853069e-26," in columnar and b"ratio=-7.03853069e-26," in columnar
    assert b"ratio=7.0385313e-26," in columnar  # its neighbour: shortest text


def test_tag_escaping() -> None:
    assert escape_tag("a b,c=d") == "a\\ b\\,c\\=d"


def test_a_big_batch_is_formatted_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same lines either way; a batch that takes polars' path is formatted in a worker
    thread (the loop goes on posting meanwhile), a small one where it is."""
    threads: list[str] = []
    real = storage.format_lines

    def spy(batch: DecodedBatch, tags: Mapping[str, str]) -> bytes:
        threads.append(threading.current_thread().name)
        return real(batch, tags)

    monkeypatch.setattr(storage, "format_lines", spy)
    tags = {"spacecraft": "probe", "source": "live"}
    for n in (3, COLUMNAR_ROWS):
        batch = _batch(n)
        assert asyncio.run(format_lines_off_loop(batch, tags)) == real(batch, tags)
    assert threads[0] == "MainThread" and threads[1] != "MainThread"
