"""Packets kept in one octet matrix from split to decode (issue 17).

The decoder reads every field of a batch in place in the ``(n, length)`` octet matrix the
split's numpy cut keeps, a block of rows at a time, and calibrates polynomials by Horner
in place. Every value must stay what the per-field reading gave, bit for bit and dtype
for dtype: that reading (the implementation it replaced) is kept here as the reference
and run on random octets of random and real packet definitions. The matrix path and the
``bytes``-per-packet path must give the same batches, through the codec and the Decoder.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any
from unittest.mock import patch

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control_center.telemetry import codec as codec_module
from control_center.telemetry import decoder as decoder_module
from control_center.telemetry.codec import (
    PacketCodec,
    SelectCodec,
    _Field,
    _polynomial,
    render_text,
)
from control_center.telemetry.decoder import Decoder, point_times
from control_center.telemetry.packets import (
    CucTime,
    _split_slow,
    build_packet,
    cuc_to_unix_ns,
    split_packets,
)
from control_center.telemetry.records import DecodedBatch, RawMessage
from control_center.telemetry.tmdb import PacketDef, Parameter, Tmdb
from control_center.telemetry.tmdb_yaml import load_tmdb, parse_tmdb
from tests.support.xtce_data import spp_file

PROJECT = Path(__file__).resolve().parents[2]
Array = npt.NDArray[Any]
# Random coefficients overflow to infinities, on both sides alike.
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
RECEIVE_NS = 1_800_000_000 * 1_000_000_000


# ------------------------------------------------------------------- the reference


def reference_extract(octets: npt.NDArray[np.uint8], field: _Field) -> Array:
    """A field's raw values as the codec read them before issue 17."""
    column = octets[:, field.first:field.first + field.octets]
    if field.order is not None:
        column = column[:, list(field.order)]
    if field.view_dtype is not None:
        if field.view_dtype.kind in "SV":
            return np.ascontiguousarray(column).view(field.view_dtype)[:, 0]
        return np.ascontiguousarray(column).view(field.view_dtype)[:, 0].astype(
            field.view_dtype.newbyteorder("="))
    acc = np.zeros(octets.shape[0], dtype=np.uint64)
    for k in range(field.octets):
        acc = (acc << np.uint64(8)) | column[:, k].astype(np.uint64)
    value = (acc >> np.uint64(field.shift)) & np.uint64(field.mask)
    if field.parameter.type == "signed":
        if field.parameter.bit_length == 64:  # fixed in issue 17 (it raised OverflowError)
            return value.view(np.int64)
        signed = value.astype(np.int64)
        sign = np.int64(1 << (field.parameter.bit_length - 1))
        return np.where(signed >= sign, signed - sign - sign, signed)
    if field.parameter.type == "float":
        return value.astype(np.uint32).view(np.float32)
    return value


def reference_calibrate(parameter: Parameter, raw: Array) -> Array:
    calibration = parameter.calibration
    if parameter.type == "string":
        return np.array([render_text(v) for v in raw.tolist()], dtype=object)
    if parameter.type == "binary":
        return np.array([bytes(v).hex() for v in raw.tolist()], dtype=object)
    if parameter.type == "boolean":
        return np.asarray(raw != 0)
    if calibration.kind != "none":
        if calibration.kind == "polynomial":
            value = np.asarray(np.polynomial.polynomial.polyval(raw.astype(np.float64),
                                                                calibration.coefficients))
        else:
            xs = np.array([x for x, _ in calibration.table])
            ys = np.array([y for _, y in calibration.table])
            value = np.asarray(np.interp(raw.astype(np.float64), xs, ys))
        # Added with `engineering: float32` (after the matrix decoder): rounded once.
        if calibration.engineering == "float32":
            with np.errstate(over="ignore"):
                return value.astype(np.float32).astype(np.float64)
        return value
    if parameter.type == "float":
        return raw.astype(np.float64)
    if parameter.is_wide_unsigned:
        return raw.astype(np.uint64)
    return raw.astype(np.int64)


def reference_decode(codec: PacketCodec, octets: npt.NDArray[np.uint8],
                     receive_ns: npt.NDArray[np.int64]) -> DecodedBatch:
    if codec.packet.time == "cuc":
        time_octets = np.ascontiguousarray(octets[:, 6:12])
        coarse = time_octets[:, :4].copy().view(">u4")[:, 0]
        fine = time_octets[:, 4:6].copy().view(">u2")[:, 0]
        times_ns = cuc_to_unix_ns(coarse, fine)
    else:
        times_ns = receive_ns.astype(np.int64)
    sequence_counts = (np.ascontiguousarray(octets[:, 2:4]).view(">u2")[:, 0]
                       & 0x3FFF).astype(np.uint16)
    raw: dict[str, Array] = {}
    values: dict[str, Array] = {}
    with np.errstate(invalid="ignore"):
        for field in codec._fields:
            column = reference_extract(octets, field)
            raw[field.parameter.name] = column
            values[field.parameter.name] = reference_calibrate(field.parameter, column)
    for name, expression in codec._derived:
        values[name] = expression.evaluate(values)
    return DecodedBatch(codec.spacecraft, codec.packet, times_ns, sequence_counts, values,
                        raw)


def assert_same_array(got: Any, expected: Any, what: str) -> None:
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.dtype == expected.dtype, f"{what}: dtype {got.dtype} != {expected.dtype}"
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != {expected.shape}"
    if expected.dtype == object:
        assert got.tolist() == expected.tolist(), what
    else:  # bit for bit: NaN payloads and -0.0 included
        assert np.ascontiguousarray(got).tobytes() == np.ascontiguousarray(
            expected).tobytes(), what


def assert_same_batch(got: DecodedBatch, expected: DecodedBatch) -> None:
    assert got.packet.name == expected.packet.name
    assert_same_array(got.times_ns, expected.times_ns, "times_ns")
    assert_same_array(got.sequence_counts, expected.sequence_counts, "sequence_counts")
    assert list(got.values) == list(expected.values)
    assert list(got.raw) == list(expected.raw)
    for name in expected.values:
        assert_same_array(got.values[name], expected.values[name], f"value {name}")
    for name in expected.raw:
        assert_same_array(got.raw[name], expected.raw[name], f"raw {name}")


@contextmanager
def block_rows(rows: int) -> Iterator[None]:
    """Decode a few rows at a time, so small batches cross block boundaries."""
    with patch.object(codec_module, "BLOCK_ROWS", rows):
        yield


def octet_matrix(seed: int, n: int, length: int, fill: str) -> npt.NDArray[np.uint8]:
    if fill == "random":
        return np.random.default_rng(seed).integers(0, 256, (n, length), dtype=np.uint8)
    return np.full((n, length), 0xFF if fill == "ones" else 0x00, dtype=np.uint8)


def check_decode(codec: PacketCodec, octets: npt.NDArray[np.uint8]) -> None:
    receive = np.arange(octets.shape[0], dtype=np.int64) * 1_000 + RECEIVE_NS
    expected = reference_decode(codec, octets, receive)
    assert_same_batch(codec.decode(octets, receive), expected)
    with block_rows(3):
        assert_same_batch(codec.decode(octets, receive), expected)
    # Rows that are not contiguous: the first ``length`` octets of longer packets.
    wider = np.zeros((octets.shape[0], octets.shape[1] + 5), dtype=np.uint8)
    wider[:, :octets.shape[1]] = octets
    with block_rows(2):
        assert_same_batch(codec.decode(wider[:, :octets.shape[1]], receive), expected)


# ------------------------------------------------------------- random definitions


_ORDERS = {2: ["big", "little", "21"], 3: ["big", "little", "213", "132"],
           4: ["big", "little", "3412", "2143"], 8: ["big", "little", "78563412"]}
_COEFFICIENT = st.one_of(st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.01, 1e300, -1e-300]),
                         st.floats(-1e6, 1e6, allow_nan=False))


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """A random packet of every kind of field the codec reads: bit fields of 1 to 8
    octets anywhere, whole-octet fields in any byte order, floats on and off the octet
    grid, strings and binaries, overlays, and polynomial (degree 0 to 4, zero or
    negative-zero leading terms) and table calibrations, on integers and floats."""
    time = draw(st.sampled_from(["cuc", "receive"]))
    offset = 96 if time == "cuc" else 48
    parameters: list[dict[str, Any]] = []
    for index in range(draw(st.integers(1, 9))):
        kind = draw(st.sampled_from(["bits", "octets", "float", "float_off_grid", "string",
                                     "binary", "enum", "boolean"]))
        offset += draw(st.integers(0, 9))
        doc: dict[str, Any] = {"name": f"p{index}"}
        if kind == "bits":
            length = draw(st.integers(1, 64))
            if offset % 8 + length > 64:
                offset = -(-offset // 8) * 8
            doc.update(type=draw(st.sampled_from(["unsigned", "signed"])), bit_length=length)
        elif kind == "octets":
            offset = -(-offset // 8) * 8
            octets = draw(st.sampled_from(sorted(_ORDERS)))
            doc.update(type=draw(st.sampled_from(["unsigned", "signed"])),
                       bit_length=8 * octets,
                       byte_order=draw(st.sampled_from(_ORDERS[octets])))
        elif kind in ("float", "float_off_grid"):
            if kind == "float":
                offset = -(-offset // 8) * 8
                length = draw(st.sampled_from([32, 64]))
                doc.update(byte_order=draw(st.sampled_from(_ORDERS[length // 8])))
            else:
                length = 32
            doc.update(type="float", bit_length=length)
        elif kind in ("string", "binary"):
            offset = -(-offset // 8) * 8
            doc.update(type=kind, bit_length=8 * draw(st.integers(1, 12)))
        elif kind == "enum":
            doc.update(type="enum", bit_length=draw(st.integers(1, 12)), states={0: "ZERO"})
        else:
            doc.update(type="boolean", bit_length=draw(st.integers(1, 3)))
        if doc["type"] in ("unsigned", "signed", "float"):
            calibration = draw(st.sampled_from(["none", "polynomial", "polynomial", "table"]))
            if calibration == "polynomial":
                doc["calibration"] = {"polynomial": draw(st.lists(_COEFFICIENT, min_size=1,
                                                                  max_size=5))}
            elif calibration == "table":
                doc["calibration"] = {"table": [[-5, -1.0], [0, 2.5], [300, 7.0]]}
        doc["bit_offset"] = offset
        offset += doc["bit_length"]
        parameters.append(doc)
        if draw(st.integers(0, 5)) == 0:  # another view of the same bits
            parameters.append({"name": f"p{index}_overlay", "type": "unsigned",
                               "bit_offset": doc["bit_offset"], "overlay": True,
                               "bit_length": min(doc["bit_length"], 8)})
    return {"name": "random", "apid": 0x123, "time": time,
            "error_control": draw(st.sampled_from(["crc16", "none"])),
            "parameters": parameters}


@settings(max_examples=300, deadline=None)
@given(document=documents(), seed=st.integers(0, 2**32 - 1), n=st.integers(0, 12),
       fill=st.sampled_from(["random", "random", "random", "ones", "zeros"]))
def test_random_definitions_decode_as_before(document: dict[str, Any], seed: int, n: int,
                                             fill: str) -> None:
    packet = parse_tmdb({"spacecraft": "test", "packets": [document]}, "test").packets[0]
    check_decode(PacketCodec("test", packet), octet_matrix(seed, n, packet.length, fill))


@functools.cache
def real_tmdbs() -> tuple[Tmdb, ...]:
    return (load_tmdb(PROJECT / "config/tmdb/lander.yaml"),
            load_tmdb(PROJECT / "config/tmdb/orbiter.yaml"),
            load_tmdb(spp_file("jpss/jpss1_geolocation_xtce_v1.xml")),
            load_tmdb(spp_file("idex/idex_combined_science_definition.xml")))


def test_real_definitions_decode_as_before() -> None:
    """The lander and orbiter, and real missions' XTCE (JPSS, IDEX's fixed types), on
    random octets."""
    decoded = 0
    for tmdb in real_tmdbs():
        for seed, packet in enumerate(tmdb.packets):
            if packet.variable:
                continue
            codec = PacketCodec(tmdb.spacecraft, packet)
            check_decode(codec, octet_matrix(seed, 9, packet.length, "random"))
            decoded += 1
    assert decoded > 8


# --------------------------------------------------------------------- calibration


_RAW_DTYPES = [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64,
               np.uint64, np.float32, np.float64]


@settings(max_examples=300, deadline=None)
@given(coefficients=st.lists(st.one_of(_COEFFICIENT, st.floats()), min_size=1, max_size=5),
       dtype=st.sampled_from(_RAW_DTYPES), seed=st.integers(0, 2**32 - 1))
def test_polynomials_bit_for_bit_as_polyval(coefficients: list[float], dtype: type,
                                            seed: int) -> None:
    """Horner in place against numpy's polyval, on the extreme counts of every integer
    type, and on floats with NaN, infinities and signed zeros."""
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        raw = np.concatenate((np.array([info.min, info.max, 0, 1], dtype=dtype),
                              rng.integers(info.min, info.max, 40, dtype=dtype,
                                           endpoint=True)))
    else:
        raw = np.concatenate(([math.nan, math.inf, -math.inf, 0.0, -0.0],
                              rng.normal(0, 1e6, 40))).astype(dtype)
    with np.errstate(all="ignore"):
        expected = np.asarray(np.polynomial.polynomial.polyval(raw.astype(np.float64),
                                                               tuple(coefficients)))
        assert_same_array(_polynomial(raw, tuple(coefficients)), expected, "polynomial")


def test_nan_coefficients_keep_polyvals_nan() -> None:
    """Two NaNs meeting in a sum give one operand's payload: with NaN coefficients the
    order of polyval's operations decides which, so those take polyval itself."""
    nan_a, nan_b = np.array([0x7FF8000000000001, 0xFFF8000000000002],
                            dtype=np.uint64).view(np.float64).tolist()
    raw = np.arange(-3, 4, dtype=np.int16)
    for coefficients in ((nan_a, nan_b), (1.0, nan_a, nan_b), (nan_a, 2.0, nan_b)):
        assert_same_array(_polynomial(raw, coefficients), np.polynomial.polynomial.polyval(
            raw.astype(np.float64), coefficients), f"polynomial {coefficients}")


# ----------------------------------------------------- matrices from split to decode


def lander_nav() -> tuple[PacketDef, PacketCodec]:
    tmdb = real_tmdbs()[0]
    packet = tmdb.packet("lander_nav")
    return packet, PacketCodec(tmdb.spacecraft, packet)


def lander_packets(codec: PacketCodec, n: int, seed: int = 1) -> bytes:
    """``n`` lander_nav packets: random octets under a valid header and CRC."""
    rng = np.random.default_rng(seed)
    packet = codec.packet
    return b"".join(build_packet(packet.apid, i & 0x3FFF, rng.bytes(packet.length - 14),
                                 time=CucTime(2_000_000_000 + i)) for i in range(n))


def test_the_split_keeps_a_uniform_buffer_as_one_matrix_of_the_buffer() -> None:
    packet, codec = lander_nav()
    data = lander_packets(codec, 300)
    split = split_packets(data, check_crc=frozenset({packet.apid}),
                          lengths={packet.apid: packet.length})
    assert split.matrices is not None and list(split.matrices) == [packet.apid]
    octets = split.octets(packet.apid)
    assert octets is not None and octets.shape == (300, packet.length)
    assert np.shares_memory(octets, np.frombuffer(data, dtype=np.uint8))  # no copy
    batch = codec.decode_packets(octets)
    assert split._by_apid is None  # decoded with no bytes object per packet
    # The packets one by one, built when asked for, are the walk's.
    assert_same_batch(batch, codec.decode_packets(split.by_apid[packet.apid]))
    assert split == _split_slow(data, check_crc=frozenset({packet.apid}),
                                lengths={packet.apid: packet.length})
    assert split.count == 300


def test_dropped_packets_and_several_apids_give_one_matrix_each() -> None:
    packet, codec = lander_nav()
    good = [bytes(p) for p in np.frombuffer(lander_packets(codec, 40), dtype=np.uint8)
            .reshape(40, packet.length)]
    other = [build_packet(0x55, i, bytes(packet.length - 8), time=None) for i in range(10)]
    corrupt = good[7][:-1] + bytes([good[7][-1] ^ 1])
    packets = [*good[:7], corrupt, *other[:5], *good[8:], *other[5:]]
    data = b"".join(packets)
    lengths = {packet.apid: packet.length, 0x55: packet.length}
    split = split_packets(data, check_crc=frozenset({packet.apid}), lengths=lengths)
    assert split.matrices is not None and list(split.matrices) == [packet.apid, 0x55]
    assert split.errors == {"bad_crc": 1}
    assert [bytes(r) for r in split.matrices[packet.apid]] == good[:7] + good[8:]
    assert [bytes(r) for r in split.matrices[0x55]] == other
    assert split.by_apid == {packet.apid: good[:7] + good[8:], 0x55: other}
    assert split.octets(0x99) is None
    walked = _split_slow(data, check_crc=frozenset({packet.apid}), lengths=lengths)
    assert walked.matrices is None and walked.octets(0x55) is not None
    assert [bytes(r) for r in walked.octets(0x55)] == other  # type: ignore[union-attr]


def science() -> Tmdb:
    """Polymorphic and variable packets (a select on a type octet, an expand binary, a
    counted string), a tail-skipped type, and a fixed one."""
    header = [{"name": "kind", "bit_length": 8, "type": "unsigned"},
              {"name": "event", "bit_length": 16, "type": "signed"}]
    return parse_tmdb({"spacecraft": "probe", "packets": [
        {"name": "sci_short", "apid": 0x590, "time": "receive", "error_control": "none",
         "select": {"kind": 0}, "parameters": [
             *header, {"name": "level", "bit_length": 16, "type": "signed"}]},
        {"name": "sci_wave", "apid": 0x590, "time": "receive", "error_control": "none",
         "select": {"kind": ["1..2"]}, "parameters": [
             *header, {"name": "samples", "type": "binary", "size": "expand"}]},
        {"name": "sci_label", "apid": 0x590, "time": "receive", "error_control": "none",
         "select": {"kind": 3}, "parameters": [
             *header, {"name": "label_octets", "bit_length": 8, "type": "unsigned"},
             {"name": "label", "type": "string", "size": "label_octets"},
             {"name": "check", "bit_length": 16, "type": "unsigned"}]},
        {"name": "counted", "apid": 0x20, "time": "receive", "error_control": "none",
         "parameters": [
             {"name": "count", "bit_length": 8, "type": "unsigned"},
             {"name": "values", "bit_length": 12, "type": "signed", "array": "count"},
             {"name": "rest", "bit_length": 8, "type": "unsigned", "array": "expand"}]},
        {"name": "hk_tail", "apid": 0x30, "time": "receive", "error_control": "none",
         "tail": "skip", "parameters": [
             {"name": "volts", "bit_length": 16, "type": "unsigned",
              "calibration": {"polynomial": [0.5, 0.001]}}]},
        {"name": "hk", "apid": 0x40, "time": "cuc", "error_control": "crc16",
         "parameters": [{"name": "amps", "bit_length": 12, "type": "unsigned"},
                        {"name": "temp", "bit_length": 20, "type": "signed"}]},
    ]}, "probe.yaml")


def science_bodies(apid: int, length: int, n: int, seed: int) -> list[bytes]:
    """``n`` random bodies of ``length`` octets; type octets 0 to 4 (4 selects none).
    No label packet too short for its size octet: the codec fails on those (see the
    report of issue 17), whichever way the packets come."""
    rng = np.random.default_rng(seed)
    bodies = []
    for _ in range(n):
        body = bytearray(rng.bytes(length))
        if apid == 0x590:
            body[0] = int(rng.choice([0, 1, 2, 3, 4] if length >= 4 else [0, 1, 2, 4]))
            if body[0] == 3 and length > 4:
                body[3] = int(rng.integers(0, length - 3))  # sometimes past the end
        elif apid == 0x20:
            body[0] = int(rng.integers(0, 5))
        bodies.append(bytes(body))
    return bodies


def same_groups(got: tuple[list[tuple[DecodedBatch, npt.NDArray[np.intp]]], int],
                expected: tuple[list[tuple[DecodedBatch, npt.NDArray[np.intp]]], int]
                ) -> None:
    assert got[1] == expected[1]  # misfits
    assert len(got[0]) == len(expected[0])
    for (batch, rows), (batch_expected, rows_expected) in zip(got[0], expected[0],
                                                              strict=True):
        assert rows.tolist() == rows_expected.tolist()
        assert_same_batch(batch, batch_expected)


@pytest.mark.parametrize("length", [1, 3, 5, 9, 12, 40])
def test_decode_groups_of_a_matrix_are_those_of_bytes(length: int) -> None:
    """Every kind of codec (select, variable, tail skipped, fixed) gives the same
    batches, rows and misfits from a matrix of same-length packets as from bytes."""
    tmdb = science()
    failures = 0
    for apid, codec in Decoder([tmdb])._codecs[tmdb.spacecraft].items():
        data_length = codec.codecs[0].packet.length if isinstance(codec, SelectCodec) \
            else codec.packet.length
        for body_length in {length, max(1, data_length - 6)}:
            bodies = science_bodies(apid, body_length, 30, seed=apid + length)
            packets = [struct.pack(">HHH", apid, 0xC000 | i, body_length - 1) + body
                       for i, body in enumerate(bodies)]
            matrix = np.frombuffer(b"".join(packets), dtype=np.uint8).reshape(
                len(packets), -1)
            receive = RECEIVE_NS + np.arange(len(packets), dtype=np.int64)
            try:
                expected = codec.decode_groups(packets, receive)
            except ValueError as exc:  # a fixed type given packets of another length
                with pytest.raises(ValueError) as caught:
                    codec.decode_groups(matrix, receive)
                assert str(caught.value) == str(exc)  # the same failure, dead-lettered
                failures += 1
                continue
            same_groups(codec.decode_groups(matrix, receive), expected)
            with block_rows(4):
                same_groups(codec.decode_groups(matrix, receive), expected)
    assert failures == (length != 12)  # hk (12 octets of data) on other lengths


def messages(tmdb: Tmdb) -> list[bytes]:
    """Messages of every APID: large ones of same-length packets (the numpy cut),
    small and mixed ones (the walk), bad packets among them."""
    out = []
    for seed, (apid, length) in enumerate([(0x590, 5), (0x590, 30), (0x20, 12), (0x30, 2),
                                           (0x30, 9), (0x40, tmdb.packet("hk").length - 6)]):
        for count in (40, 3, 25):
            bodies = science_bodies(apid, length, count, seed=seed * 7 + count)
            packets = [struct.pack(">HHH", apid | (0x800 if apid == 0x40 else 0),
                                   0xC000 | i, length - 1) + body
                       for i, body in enumerate(bodies)]
            out.append(b"".join(packets))
    out.append(out[0] + out[4])  # two lengths in one message
    out.append(out[2][:-3])  # truncated
    return out


def decoded(monkeypatch: pytest.MonkeyPatch, walk: bool, batch_packets: int = 2000
            ) -> tuple[list[DecodedBatch], Decoder]:
    if walk:  # every message cut packet by packet: one bytes object each
        monkeypatch.setattr(decoder_module, "split_packets", _split_slow)
    else:
        monkeypatch.setattr(decoder_module, "split_packets", split_packets)
    tmdb = science()
    decoder = Decoder([tmdb], batch_packets=batch_packets)
    decoder.max_batch = 64  # backlogs cut into several batches
    batches: list[DecodedBatch] = []
    for i, message in enumerate(messages(tmdb)):
        decoder.feed(RawMessage("probe", message, RECEIVE_NS + (i // 3) * 1000, "test"),
                     now=float(i), seq=i)
        if i % 5 == 4:
            batches += decoder.take(now=float(i))
    return batches + decoder.take(force=True), decoder


def test_the_decoder_gives_the_same_batches_from_matrices_as_from_bytes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    walked, walker = decoded(monkeypatch, walk=True)
    cut, cutter = decoded(monkeypatch, walk=False)
    assert len(cut) == len(walked) > 10
    for batch, expected in zip(cut, walked, strict=True):
        assert_same_batch(batch, expected)
    assert cutter.stats == walker.stats
    assert cutter.stats.errors["bad_layout"] > 0  # misfits counted on both paths
    assert cutter.waiting == walker.waiting == 0


def test_decoder_keeps_matrices_while_packets_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """A message the numpy cut takes waits as its matrix, not as bytes per packet."""
    packet, codec = lander_nav()
    decoder = Decoder([real_tmdbs()[0]], batch_packets=10_000)
    data = lander_packets(codec, 500)
    decoder.feed(RawMessage("lander", data, RECEIVE_NS, "test"), now=0.0, seq=3)
    decoder.feed(RawMessage("lander", data[:packet.length * 5], RECEIVE_NS, "test"),
                 now=0.0, seq=4)
    decoder.feed(RawMessage("lander", data[:packet.length * 20], RECEIVE_NS + 1, "test"),
                 now=0.0, seq=5)
    [pending] = decoder._pending.values()
    assert [type(c) for c in pending.chunks] == [np.ndarray, list, np.ndarray]
    assert decoder.waiting == 525 and decoder.oldest_seq() == 3
    # Numbered on within one receive time, from 0 again at the next.
    assert pending.ordinals().tolist() == [*range(505), *range(20)]
    assert pending.receive_times().tolist() == [RECEIVE_NS] * 505 + [RECEIVE_NS + 1] * 20
    stacked = pending.packets()
    assert isinstance(stacked, np.ndarray) and stacked.shape == (525, packet.length)
    assert stacked.tobytes() == data + data[:packet.length * 5] + data[:packet.length * 20]
    expected = codec.decode(stacked)
    [batch] = decoder.take(force=True)
    assert_same_batch(batch, replace(expected, times_ns=point_times(
        expected, np.array([*range(505), *range(20)], dtype=np.int64))))
    assert decoder.waiting == 0 and decoder.oldest_seq() is None


def test_a_packet_ending_before_its_size_counter_is_a_misfit_not_a_failure() -> None:
    """A label packet (kind 3) cut before its size octet, among good ones: it is counted
    as a misfit (bad_layout) and the others decode; it used to raise IndexError, which
    sent every packet of the APID in the batch to the dead letters."""
    tmdb = science()
    codec = Decoder([tmdb])._codecs[tmdb.spacecraft][0x590]
    bodies = [bytes([3]) + struct.pack(">h", 7) + bytes([2]) + b"ab" + struct.pack(">H", 9),
              bytes([3]) + struct.pack(">h", 8),  # ends where label_octets would start
              bytes([0]) + struct.pack(">hh", 5, -4)]
    packets = [struct.pack(">HHH", 0x590, 0xC000 | i, len(body) - 1) + body
               for i, body in enumerate(bodies)]
    groups, misfits = codec.decode_groups(packets, RECEIVE_NS + np.arange(3, dtype=np.int64))
    assert misfits == 1
    decoded = {batch.packet.name: (rows.tolist(), batch) for batch, rows in groups}
    assert sorted(decoded) == ["sci_label", "sci_short"]
    rows, label = decoded["sci_label"]
    assert rows == [0] and label.values["label"].tolist() == ["ab"]
    assert label.values["check"].tolist() == [9]
    rows, short = decoded["sci_short"]
    assert rows == [2] and short.values["level"].tolist() == [-4]


def test_a_64_bit_signed_field_in_a_digit_byte_order_decodes() -> None:
    """"78563412" puts the octets of a 64-bit value out of order; its sign bit, 2**63,
    is no int64, and the field raised OverflowError on every packet."""
    packet = parse_tmdb({"spacecraft": "probe", "packets": [
        {"name": "odd", "apid": 0x41, "time": "receive", "error_control": "none",
         "parameters": [{"name": "big", "bit_length": 64, "type": "signed",
                         "byte_order": "78563412"}]}]}, "probe.yaml").packets[0]
    codec = PacketCodec("probe", packet)
    wanted = [-2, 2**63 - 1, -(2**63), 1]
    order = [int(c) - 1 for c in "78563412"]  # octet k of the packet: big-endian octet
    rows = []
    for value in wanted:
        plain = value.to_bytes(8, "big", signed=True)
        rows.append(struct.pack(">HHH", 0x41, 0xC000, 7)
                    + bytes(plain[order.index(k)] for k in range(8)))
    matrix = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), -1)
    batch = codec.decode(matrix, RECEIVE_NS + np.arange(len(rows), dtype=np.int64))
    assert batch.values["big"].dtype == np.int64
    assert batch.values["big"].tolist() == wanted
