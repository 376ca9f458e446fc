"""Unit tests of telemetry.codec: batch encode/decode against random and real TMDBs."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control_center.telemetry.codec import PacketCodec
from control_center.telemetry.packets import (
    CCSDS_TO_UNIX_SECONDS,
    CucTime,
    PrimaryHeader,
    split_packets,
)
from control_center.telemetry.tmdb import PacketDef, Parameter
from control_center.telemetry.tmdb_yaml import load_tmdb, parse_tmdb

PROJECT = Path(__file__).resolve().parents[2]
LANDER = PROJECT / "config/tmdb/lander.yaml"
ORBITER = PROJECT / "config/tmdb/orbiter.yaml"
# The first coarse count with TAI-UTC = 37 s (2017-01-01T00:00:00Z).
COARSE_2017 = 1_483_228_800 + 37 + CCSDS_TO_UNIX_SECONDS

EXAMPLES = settings(max_examples=300, deadline=None)
KINDS = ("unsigned", "signed", "float", "little", "enum", "boolean", "linear", "poly", "table")
IntArray = npt.NDArray[np.int64]


def align(offset: int) -> int:
    return -(-offset // 8) * 8


def bounds(parameter: Parameter) -> tuple[int, int]:
    if parameter.type == "signed":
        return -(1 << (parameter.bit_length - 1)), (1 << (parameter.bit_length - 1)) - 1
    return 0, (1 << parameter.bit_length) - 1


@st.composite
def packet_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A random, valid TMDB packet mapping exercising every kind of field."""
    time = draw(st.sampled_from(["cuc", "receive"]))
    error_control = draw(st.sampled_from(["crc16", "none"]))
    offset = 96 if time == "cuc" else 48
    parameters: list[dict[str, Any]] = []
    for index in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(KINDS))
        offset += draw(st.integers(0, 11))  # gaps, often leaving the next field unaligned
        doc: dict[str, Any] = {"name": f"p{index}_{kind}"}
        if kind in ("unsigned", "signed"):
            bit_length = draw(st.integers(1, 64))
            if offset % 8 + bit_length > 64:  # the TMDB limit: 8 octets at most
                offset = align(offset)
            doc.update(type=kind, bit_length=bit_length)
        elif kind == "float":
            offset = align(offset)
            doc.update(type="float", bit_length=draw(st.sampled_from([32, 64])))
        elif kind == "little":
            offset = align(offset)
            doc.update(type=draw(st.sampled_from(["unsigned", "signed"])), byte_order="little",
                       bit_length=8 * draw(st.integers(1, 8)))
        elif kind == "enum":
            bit_length = draw(st.integers(1, 16))
            keys = draw(st.sets(st.integers(0, (1 << bit_length) - 1), min_size=1, max_size=5))
            doc.update(type="enum", bit_length=bit_length,
                       states={k: f"STATE_{k}" for k in sorted(keys)})
        elif kind == "boolean":
            doc.update(type="boolean", bit_length=draw(st.integers(1, 3)))
        elif kind == "linear":
            sign = draw(st.sampled_from([1.0, -1.0]))
            doc.update(type=draw(st.sampled_from(["unsigned", "signed"])),
                       bit_length=draw(st.integers(1, 48)),
                       calibration={"polynomial": [
                           draw(st.floats(-1e3, 1e3)), sign * draw(st.floats(1e-4, 1e2))]})
        elif kind == "poly":
            # Monotonic cubic: c1 > 0 and non-negative higher terms for counts >= 0;
            # an odd cubic for signed counts. Possibly decreasing (all negated).
            ptype = draw(st.sampled_from(["unsigned", "signed"]))
            c0, c1 = draw(st.floats(-100, 100)), draw(st.floats(0.01, 10))
            if ptype == "unsigned":
                coefficients = [c0, c1, draw(st.floats(1e-6, 1e-3)), draw(st.floats(0, 1e-9))]
            else:
                coefficients = [c0, c1, 0.0, draw(st.floats(1e-12, 1e-8))]
            if draw(st.booleans()):
                coefficients = [-c for c in coefficients]
            doc.update(type=ptype, bit_length=draw(st.integers(2, 16)),
                       calibration={"polynomial": coefficients})
        else:  # table
            ptype = draw(st.sampled_from(["unsigned", "signed"]))
            bit_length = draw(st.integers(1, 24))
            low, high = ((-(1 << (bit_length - 1)), (1 << (bit_length - 1)) - 1)
                         if ptype == "signed" else (0, (1 << bit_length) - 1))
            raws = sorted(draw(st.sets(st.integers(low, high), min_size=2, max_size=6)))
            steps = draw(st.lists(st.floats(0.1, 100), min_size=len(raws), max_size=len(raws)))
            direction = draw(st.sampled_from([1.0, -1.0]))
            engs = np.cumsum(steps) * direction
            doc.update(type=ptype, bit_length=bit_length,
                       calibration={"table": [[r, float(e)] for r, e in zip(raws, engs,
                                                                             strict=True)]})
        doc["bit_offset"] = offset
        offset += doc["bit_length"]
        parameters.append(doc)
    packet: dict[str, Any] = {"name": "random", "apid": draw(st.integers(0, 0x7FE)),
                              "time": time, "error_control": error_control,
                              "parameters": parameters}
    if draw(st.booleans()):
        packet["length"] = align(offset) // 8 + (2 if error_control == "crc16" else 0) \
            + draw(st.integers(0, 4))
    return packet


def build(packet: dict[str, Any]) -> PacketDef:
    return parse_tmdb({"spacecraft": "test", "packets": [packet]}, "test").packets[0]


def raw_strategy(parameter: Parameter, below_2_63: bool = False) -> st.SearchStrategy[Any]:
    if parameter.type == "float" and parameter.bit_length == 32:
        return st.floats(width=32, allow_nan=False)
    if parameter.type == "float":
        return st.floats(allow_nan=False)
    low, high = bounds(parameter)
    return st.integers(low, min(high, (1 << 63) - 1) if below_2_63 else high)


def raw_array(parameter: Parameter, values: list[Any]) -> npt.NDArray[Any]:
    if parameter.type == "float":
        return np.array(values, dtype=np.float32 if parameter.bit_length == 32 else np.float64)
    if parameter.type == "signed":
        return np.array(values, dtype=np.int64)
    return np.array(values, dtype=np.uint64)


def engineering(parameter: Parameter, raw: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """The calibration curve, written out here independently of the codec."""
    x = raw.astype(np.float64)
    calibration = parameter.calibration
    if calibration.kind == "polynomial":
        return np.asarray(sum(c * x ** k for k, c in enumerate(calibration.coefficients)),
                          dtype=np.float64)
    assert calibration.kind == "table"
    xs = np.array([p[0] for p in calibration.table])
    ys = np.array([p[1] for p in calibration.table])
    return np.asarray(np.interp(x, xs, ys), dtype=np.float64)


def count_resolution(parameter: Parameter, raw: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """How much the engineering value changes for one count either side of ``raw``."""
    low, high = bounds(parameter)
    x = raw.astype(np.float64)
    centre = engineering(parameter, x)
    up = np.abs(engineering(parameter, np.minimum(x + 1, high)) - centre)
    down = np.abs(centre - engineering(parameter, np.maximum(x - 1, low)))
    return np.maximum(up, down)


def as_octets(data: bytes, packet: PacketDef) -> npt.NDArray[np.uint8]:
    return np.frombuffer(data, dtype=np.uint8).reshape(-1, packet.length)


def same_raw(decoded: npt.NDArray[Any], expected: npt.NDArray[Any]) -> bool:
    """Exact equality: integers as Python ints, floats bit for bit (keeps -0.0 apart)."""
    if expected.dtype.kind == "f":
        return decoded.astype(expected.dtype).tobytes() == expected.tobytes()
    return bool(decoded.tolist() == expected.tolist())


def draw_inputs(data: st.DataObject, packet: PacketDef, *, below_2_63: bool = False
                ) -> tuple[dict[str, npt.NDArray[Any]], IntArray, IntArray, IntArray]:
    n = data.draw(st.integers(1, 4), label="n")
    raw = {p.name: raw_array(p, data.draw(st.lists(raw_strategy(p, below_2_63), min_size=n,
                                                   max_size=n), label=p.name))
           for p in packet.parameters}
    coarse = np.array(data.draw(st.lists(st.integers(COARSE_2017, 0xFFFFFFFF), min_size=n,
                                         max_size=n), label="coarse"), dtype=np.int64)
    fine = np.array(data.draw(st.lists(st.integers(0, 0xFFFF), min_size=n, max_size=n),
                              label="fine"), dtype=np.int64)
    counts = np.array(data.draw(st.lists(st.integers(0, 0x3FFF), min_size=n, max_size=n),
                                label="counts"), dtype=np.int64)
    return raw, coarse, fine, counts


# --------------------------------------------------------------------- random definitions


@EXAMPLES
@given(packet_documents(), st.data())
def test_raw_round_trip_random_definitions(document: dict[str, Any], data: st.DataObject
                                           ) -> None:
    packet = build(document)
    codec = PacketCodec("test", packet)
    raw, coarse, fine, counts = draw_inputs(data, packet)
    n = counts.shape[0]
    encoded = codec.encode(raw, coarse=coarse, fine=fine, sequence_counts=counts, raw=True)
    assert len(encoded) == n * packet.length
    receive = np.arange(n, dtype=np.int64) * 7 + 1_700_000_000_000_000_000
    batch = codec.decode(as_octets(encoded, packet), receive_ns=receive)
    assert len(batch) == n
    for parameter in packet.parameters:
        name = parameter.name
        assert same_raw(np.asarray(batch.raw[name]), raw[name]), name
        values = np.asarray(batch.values[name])
        if parameter.type == "boolean":
            assert values.tolist() == (raw[name] != 0).tolist()
        elif parameter.calibration.kind != "none":
            np.testing.assert_allclose(values.astype(np.float64),
                                       engineering(parameter, raw[name]),
                                       rtol=1e-12, atol=1e-9)
        elif parameter.type == "float":
            assert values.dtype == np.float64
            assert values.tolist() == raw[name].astype(np.float64).tolist()
        elif not (parameter.bit_length == 64 and parameter.type == "unsigned"):
            # (Unsigned 64-bit values are cast to int64 engineering values, so counts
            # from 2**63 up wrap negative; see test_engineering_round_trip...)
            assert values.dtype == np.int64
            assert values.tolist() == raw[name].tolist()
    # Header, time and sequence count.
    assert batch.sequence_counts.tolist() == counts.tolist()
    if packet.time == "cuc":
        tai = coarse - CCSDS_TO_UNIX_SECONDS
        expected_ns = (tai - 37) * 1_000_000_000 + ((fine * 1_000_000_000) >> 16)
        assert batch.times_ns.tolist() == expected_ns.tolist()
    else:
        assert batch.times_ns.tolist() == receive.tolist()
    for row in range(n):
        header = PrimaryHeader.unpack(encoded[row * packet.length:])
        assert header == PrimaryHeader(apid=packet.apid, sequence_count=int(counts[row]),
                                       data_length=packet.length - 6,
                                       secondary_header=packet.time == "cuc")
        if packet.time == "cuc":
            start = row * packet.length + 6
            assert CucTime.unpack(encoded[start:start + 6]) == CucTime(int(coarse[row]),
                                                                        int(fine[row]))
    # The CRC closing each packet validates (and a flipped bit is caught).
    check = frozenset({packet.apid}) if packet.error_control else frozenset()
    split = split_packets(encoded, check_crc=check, lengths={packet.apid: packet.length})
    assert not split.errors
    assert b"".join(split.by_apid[packet.apid]) == encoded
    if packet.error_control:
        bit = data.draw(st.integers(48, packet.length * 8 - 1), label="flipped bit")
        corrupt = bytearray(encoded)
        corrupt[bit // 8] ^= 0x80 >> (bit % 8)
        assert split_packets(bytes(corrupt), check_crc=check).errors == {"bad_crc": 1}


@EXAMPLES
@given(packet_documents(), st.data())
def test_engineering_round_trip_random_definitions(document: dict[str, Any],
                                                   data: st.DataObject) -> None:
    """engineering -> raw -> engineering stays within one count of the calibration."""
    packet = build(document)
    codec = PacketCodec("test", packet)
    # Unsigned 64-bit engineering values are int64, so this stays below 2**63.
    raw, coarse, fine, counts = draw_inputs(data, packet, below_2_63=True)
    first = codec.decode(as_octets(codec.encode(raw, coarse=coarse, fine=fine,
                                                sequence_counts=counts, raw=True), packet))
    again = codec.decode(as_octets(codec.encode(first.values, coarse=coarse, fine=fine,
                                                sequence_counts=counts), packet))
    for parameter in packet.parameters:
        name = parameter.name
        before, after = np.asarray(first.values[name]), np.asarray(again.values[name])
        if parameter.calibration.kind == "none":
            # Uncalibrated values are the counts themselves: exact, even above 2**53.
            assert same_raw(after, before), name
            if parameter.type != "boolean":
                assert same_raw(np.asarray(again.raw[name]), raw[name]), name
            continue
        resolution = count_resolution(parameter, raw[name])
        error = np.abs(after.astype(np.float64) - before.astype(np.float64))
        assert np.all(error <= resolution * (1 + 1e-9)
                      + 1e-9 * np.abs(before.astype(np.float64))), \
            (name, error, resolution)
        # The counts come back within one, except where a table clamps: outside its
        # raw span every count has the same engineering value.
        inside = np.ones(raw[name].shape, dtype=bool)
        if parameter.calibration.kind == "table":
            first_raw, last_raw = parameter.calibration.table[0][0], \
                parameter.calibration.table[-1][0]
            inside = (raw[name] >= first_raw) & (raw[name] <= last_raw)
        moved = np.abs(np.asarray(again.raw[name]).astype(np.float64)
                       - raw[name].astype(np.float64))
        assert np.all(moved[inside] <= 1), name


# ----------------------------------------------------------------- targeted field tests


def single(parameter: dict[str, Any], **packet: Any) -> PacketDef:
    return build({"name": "one", "apid": 5, "parameters": [parameter], **packet})


@pytest.mark.parametrize("pad", [1, 8])
def test_63_bit_signed_field_extremes(pad: int) -> None:
    packet = build({"name": "wide", "apid": 3, "parameters": [
        {"name": "pad", "bit_length": pad, "type": "unsigned"},
        {"name": "value", "bit_length": 63, "type": "signed"}]})
    codec = PacketCodec("test", packet)
    values = np.array([-(1 << 62), (1 << 62) - 1, -1, 0, 1], dtype=np.int64)
    with np.errstate(over="raise"):  # no int64 overflow on the way
        batch = codec.decode(as_octets(codec.encode(
            {"pad": 0, "value": values}, coarse=np.zeros(5), fine=np.zeros(5),
            sequence_counts=np.arange(5), raw=True), packet))
    assert batch.raw["value"].tolist() == values.tolist()


def test_wide_calibrated_field_clips_instead_of_wrapping() -> None:
    packet = single({"name": "counter", "bit_length": 60, "type": "unsigned",
                     "calibration": {"polynomial": [0.0, 1.0]}})
    codec = PacketCodec("test", packet)
    parameter = packet.parameters[0]
    top = (1 << 60) - 1
    counts = codec.to_raw(parameter, [float(top), 1e30, -5.0, 12345.0])
    assert counts[0] > top - 256  # the nearest float64 below 2**60, not 0
    assert counts[1] == counts[0]  # over range: clipped to the top, not wrapped
    assert counts.tolist()[2:] == [0, 12345]
    encoded = codec.encode({"counter": [float(top), 1e30]}, coarse=[0, 0], fine=[0, 0],
                           sequence_counts=[0, 1])
    assert codec.decode(as_octets(encoded, packet)).raw["counter"].tolist() \
        == [int(counts[0])] * 2


@pytest.mark.parametrize(("ptype", "bits", "value"), [
    ("unsigned", 64, (1 << 63) - 3), ("unsigned", 57, (1 << 57) - 1),
    ("signed", 64, -(1 << 63) + 1), ("signed", 55, (1 << 54) - 1), ("enum", 60, (1 << 59) + 1),
])
def test_wide_integer_engineering_values_are_exact(ptype: str, bits: int, value: int) -> None:
    doc: dict[str, Any] = {"name": "big", "bit_length": bits, "type": ptype}
    if ptype == "enum":
        doc["states"] = {value: "HIGH"}
    packet = single(doc)
    codec = PacketCodec("test", packet)
    encoded = codec.encode({"big": np.array([value, 1])}, coarse=[0, 0], fine=[0, 0],
                           sequence_counts=[0, 1])
    batch = codec.decode(as_octets(encoded, packet))
    assert batch.values["big"].tolist() == [value, 1]


def test_integer_engineering_values_clip_to_the_field() -> None:
    packet = single({"name": "small", "bit_length": 4, "type": "signed"})
    codec = PacketCodec("test", packet)
    assert codec.to_raw(packet.parameters[0], np.array([-100, -8, 7, 100])).tolist() \
        == [-8, -8, 7, 7]
    assert codec.to_raw(packet.parameters[0], np.array([-8.4, 6.6])).tolist() == [-8, 7]


def test_little_endian_octets_on_the_wire() -> None:
    packet = build({"name": "le", "apid": 9, "time": "receive", "error_control": "none",
                    "parameters": [
                        {"name": "a", "bit_length": 24, "type": "unsigned", "byte_order": "little"},
                        {"name": "b", "bit_length": 16, "type": "signed", "byte_order": "little"},
                        {"name": "c", "bit_length": 32, "type": "unsigned"}]})
    codec = PacketCodec("test", packet)
    encoded = codec.encode({"a": 0x123456, "b": -2, "c": 0x89ABCDEF}, coarse=[0], fine=[0],
                           sequence_counts=[0], raw=True)
    assert encoded[6:] == bytes([0x56, 0x34, 0x12, 0xFE, 0xFF, 0x89, 0xAB, 0xCD, 0xEF])
    batch = codec.decode(as_octets(encoded, packet))
    assert batch.raw["a"].tolist() == [0x123456]
    assert batch.raw["b"].tolist() == [-2]


def test_overlay_fields_read_bits_written_by_others() -> None:
    packet = build({"name": "status", "apid": 7, "parameters": [
        {"name": "status_word", "bit_length": 16, "type": "unsigned"},
        {"name": "flag_top", "bit_offset": 96, "bit_length": 1, "type": "boolean",
         "overlay": True},
        {"name": "mode", "bit_offset": 100, "bit_length": 3, "type": "enum", "overlay": True,
         "states": {5: "FIVE"}},
        {"name": "low_byte", "bit_offset": 104, "bit_length": 8, "type": "signed",
         "overlay": True}]})
    codec = PacketCodec("test", packet)
    encoded = codec.encode({"status_word": [0b1000_1010_1111_1110, 0]}, coarse=[0, 0],
                           fine=[0, 0], sequence_counts=[0, 1], raw=True)
    batch = codec.decode(as_octets(encoded, packet))
    assert batch.values["flag_top"].tolist() == [True, False]
    assert batch.values["mode"].tolist() == [5, 0]
    assert batch.values["low_byte"].tolist() == [-2, 0]


def test_sequence_counts_wrap_to_14_bits() -> None:
    packet = single({"name": "x", "bit_length": 8, "type": "unsigned"})
    codec = PacketCodec("test", packet)
    encoded = codec.encode({"x": 1}, coarse=[0, 0, 0], fine=[0, 0, 0],
                           sequence_counts=[0x3FFF, 0x4000, 0x4005])
    assert codec.decode(as_octets(encoded, packet)).sequence_counts.tolist() == [0x3FFF, 0, 5]
    assert [PrimaryHeader.unpack(encoded[i * packet.length:]).sequence_flags
            for i in range(3)] == [0b11] * 3


def test_receive_time_packets_without_receive_times_decode_to_zero() -> None:
    packet = single({"name": "x", "bit_length": 8, "type": "unsigned"}, time="receive")
    codec = PacketCodec("test", packet)
    encoded = codec.encode({"x": [1, 2]}, coarse=[9, 9], fine=[9, 9], sequence_counts=[0, 1])
    assert packet.length == 6 + 1 + 2
    batch = codec.decode_packets([encoded[:9], encoded[9:]])
    assert batch.times_ns.tolist() == [0, 0]
    assert batch.values["x"].tolist() == [1, 2]


def test_decode_rejects_wrong_shape_and_encode_needs_every_value() -> None:
    packet = single({"name": "x", "bit_length": 8, "type": "unsigned"})
    codec = PacketCodec("test", packet)
    with pytest.raises(ValueError, match=r"expected \(n, 15\) octets"):
        codec.decode(np.zeros((2, 14), dtype=np.uint8))
    with pytest.raises(ValueError, match="expected"):
        codec.decode(np.zeros(15, dtype=np.uint8))
    with pytest.raises(KeyError, match="'x'"):
        codec.encode({}, coarse=[0], fine=[0], sequence_counts=[0])


# ------------------------------------------------------------------------- real TMDBs


def representative(parameter: Parameter) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """Engineering values for a parameter and the raw counts they must encode to."""
    if parameter.type == "float":
        values = np.array([0.0, -1.5, 1737.4, 3.0e38 if parameter.bit_length == 32 else 1e300,
                           -7.25e-3])
        if parameter.bit_length == 32:
            values = values.astype(np.float32).astype(np.float64)
        return values, values
    if parameter.type == "boolean":
        return np.array([True, False, True, True, False]), np.array([1, 0, 1, 1, 0])
    if parameter.type == "enum":
        keys = sorted(parameter.states)
        chosen = np.array([keys[i % len(keys)] for i in range(5)])
        return chosen, chosen
    low, high = bounds(parameter)
    counts = np.array([low, high, (low + high) // 2, low + 1, high // 3 + 1])
    if parameter.calibration.kind == "none":
        return counts, counts
    return engineering(parameter, counts), counts


@pytest.mark.parametrize("path", [LANDER, ORBITER], ids=["lander", "orbiter"])
def test_real_tmdb_round_trip(path: Path) -> None:
    tmdb = load_tmdb(path)
    when = 1_767_225_600 + 0.25  # 2026-01-01T00:00:00.25Z
    time = CucTime.from_unix(when)
    for packet in tmdb.packets:
        codec = PacketCodec(tmdb.spacecraft, packet)
        values: dict[str, npt.NDArray[Any]] = {}
        counts: dict[str, npt.NDArray[Any]] = {}
        for parameter in packet.parameters:
            values[parameter.name], counts[parameter.name] = representative(parameter)
        encoded = codec.encode(values, coarse=[time.coarse] * 5, fine=[time.fine] * 5,
                               sequence_counts=[10, 11, 12, 13, 14])
        split = split_packets(encoded, check_crc=frozenset({packet.apid}),
                              lengths={p.apid: p.length for p in tmdb.packets})
        assert not split.errors
        batch = codec.decode_packets(split.by_apid[packet.apid])
        assert batch.spacecraft == tmdb.spacecraft
        assert batch.times_ns.tolist() == [1_767_225_600_250_000_000] * 5
        assert batch.sequence_counts.tolist() == [10, 11, 12, 13, 14]
        for parameter in packet.parameters:
            name = parameter.name
            assert np.asarray(batch.raw[name]).tolist() == counts[name].tolist(), name
            # A float32 engineering value is the calibration rounded to float32: within
            # one float32 step of the reference's float64.
            np.testing.assert_allclose(np.asarray(batch.values[name], dtype=np.float64),
                                       values[name].astype(np.float64),
                                       rtol=2.0**-23 if parameter.is_float32 else 1e-12,
                                       err_msg=name)


def test_lander_nav_octets_by_hand() -> None:
    packet = load_tmdb(LANDER).packet("lander_nav")
    codec = PacketCodec("lander", packet)
    # 12 header octets, enum 1, 3 floats 12, throttle 2, quaternion 8, rates 6, flags 1, CRC 2
    assert packet.length == 44
    values = {"descent_phase": 3, "altitude": 1500.25, "vertical_velocity": -20.5,
              "horizontal_velocity": 3.0, "throttle": 62.5, "attitude_q0": 1.0,
              "attitude_q1": 0.0, "attitude_q2": -1.0, "attitude_q3": 0.25,
              "imu_rate_x": 12.34, "imu_rate_y": -5.0, "imu_rate_z": 0.0,
              "main_engine_on": True, "radar_lock": False, "legs_deployed": True,
              "touchdown_sensed": False, "gnc_spare": 0}
    octets = codec.encode(values, coarse=[COARSE_2017], fine=[0x8000],
                          sequence_counts=[77])
    assert octets[:6] == bytes([0x09, 0x10, 0xC0, 77, 0x00, 44 - 7])
    assert octets[6:12] == COARSE_2017.to_bytes(4, "big") + b"\x80\x00"
    assert octets[12] == 3
    assert octets[13:25] == struct.pack(">fff", 1500.25, -20.5, 3.0)
    assert octets[25:27] == (6250).to_bytes(2, "big")
    assert octets[27:35] == struct.pack(">hhhh", 32767, 0, -32767, 8192)
    assert octets[35:41] == struct.pack(">hhh", 1234, -500, 0)
    assert octets[41] == 0b1010_0000
    batch = codec.decode(as_octets(octets, packet))
    assert batch.values["descent_phase"].tolist() == [3]
    assert packet.parameter("descent_phase").states[3] == "TERMINAL"
    assert batch.values["throttle"].tolist() == pytest.approx([62.5])
    assert batch.values["imu_rate_x"].tolist() == pytest.approx([12.34])
    assert batch.values["legs_deployed"].tolist() == [True]
    assert batch.times_ns.tolist() == [1_483_228_800_500_000_000]


def test_lander_power_unaligned_and_little_endian_octets_by_hand() -> None:
    packet = load_tmdb(LANDER).packet("lander_power")
    codec = PacketCodec("lander", packet)
    values = {"battery_soc": 87.5, "battery_voltage": 28.8, "battery_current": -3.5,
              "solar_array_current": 4.2, "bus_voltage": 28.0, "load_current": 7.5,
              "propellant_mass": 412.5, "power_mode": 2, "heaters_enabled": True,
              "payload_powered": True, "power_spare": 0}
    octets = codec.encode(values, coarse=[COARSE_2017], fine=[0], sequence_counts=[0])
    assert octets[12:14] == (8750).to_bytes(2, "big")
    # battery_voltage 2880 = 0xB40 in 12 bits, battery_current -350 = 0xEA2 in 12 bits.
    assert octets[14:17] == bytes([0xB4, 0x0E, 0xA2])
    assert octets[17:19] == (4200).to_bytes(2, "big")
    assert octets[19:21] == (28000).to_bytes(2, "little")
    assert octets[21:23] == (7500).to_bytes(2, "big")
    assert octets[23:27] == struct.pack(">f", 412.5)
    assert octets[27:29] == bytes([2, 0b1100_0000])
    batch = codec.decode(as_octets(octets, packet))
    assert batch.raw["bus_voltage"].tolist() == [28000]
    assert batch.values["bus_voltage"].tolist() == pytest.approx([28.0])
    assert batch.values["battery_current"].tolist() == pytest.approx([-3.5])


def test_lander_thermal_table_calibration() -> None:
    packet = load_tmdb(LANDER).packet("lander_thermal")
    codec = PacketCodec("lander", packet)
    # Table points (1600, -20) and (2400, 40): 10 degC lies half-way, at 2000 counts.
    values = {"engine_temperature": 40.0, "battery_temperature": 10.0,
              "avionics_temperature": -150.0, "tank_temperature": 1000.0,
              "surface_temperature": -42.17, "heater_power": 12.5}
    batch = codec.decode(as_octets(codec.encode(values, coarse=[COARSE_2017], fine=[0],
                                                sequence_counts=[0]), packet))
    assert batch.raw["engine_temperature"].tolist() == [2400]
    assert batch.raw["battery_temperature"].tolist() == [2000]
    assert batch.raw["avionics_temperature"].tolist() == [0]
    assert batch.raw["tank_temperature"].tolist() == [4095]  # beyond the table: clamped
    assert batch.values["tank_temperature"].tolist() == [400.0]
    assert batch.raw["surface_temperature"].tolist() == [-4217]
    assert batch.values["battery_temperature"].tolist() == pytest.approx([10.0])


def test_orbiter_orbit_doubles() -> None:
    packet = load_tmdb(ORBITER).packet("orbiter_orbit")
    codec = PacketCodec("orbiter", packet)
    values: dict[str, Any] = {p.name: 0 for p in packet.parameters}
    values.update(position_x=1837.4123456789, position_y=-0.000123, position_z=1e-300,
                  altitude=100.0, latitude=-89.99, longitude=179.99, in_eclipse=True,
                  orbit_number=65535)
    octets = codec.encode(values, coarse=[COARSE_2017], fine=[0], sequence_counts=[0])
    assert octets[12:36] == struct.pack(">ddd", 1837.4123456789, -0.000123, 1e-300)
    batch = codec.decode(as_octets(octets, packet))
    assert batch.values["position_x"].tolist() == [1837.4123456789]
    assert batch.values["latitude"].tolist() == pytest.approx([-89.99])
    assert batch.values["orbit_number"].tolist() == [65535]
    assert batch.values["in_eclipse"].tolist() == [True]
    assert batch.values["earth_visible"].tolist() == [False]


@pytest.mark.parametrize("calibration", [
    {"polynomial": [0.5, 3.0518509475997192e-05]},
    {"polynomial": [-273.15, 0.01, 1e-7]},
    {"table": [[-32768, -100.0], [0, 0.1], [32767, 77.7]]},
])
def test_a_float32_engineering_value_is_the_float64_calibration_rounded_once(
        calibration: dict[str, Any]) -> None:
    """``engineering: float32`` rounds the float64 calibration to float32 at decode,
    nothing else: every count of a 16-bit field gives float32(the float64 value)."""
    wide = single({"name": "q", "bit_length": 16, "type": "signed",
                   "calibration": calibration})
    narrow = single({"name": "q", "bit_length": 16, "type": "signed",
                     "calibration": {**calibration, "engineering": "float32"}})
    counts = np.arange(-32768, 32768, dtype=np.int64)
    octets = counts.astype(">i2").view(np.uint8).reshape(-1, 2)
    header = np.zeros((counts.size, 12), dtype=np.uint8)
    matrix = np.hstack([header, octets, np.zeros((counts.size, 2), dtype=np.uint8)])
    as64 = PacketCodec("test", wide).decode(matrix).values["q"]
    as32 = PacketCodec("test", narrow).decode(matrix).values["q"]
    assert as32.dtype == np.float64
    assert as32.tobytes() == as64.astype(np.float32).astype(np.float64).tobytes()
    assert (as32 != as64).sum() > 30000  # most float64 values are not float32s
    assert narrow.parameters[0].is_float32 and not wide.parameters[0].is_float32
