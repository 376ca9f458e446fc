"""What real missions send, in the TMDB: strings, arrays, spares, byte orders, enum
ranges, calibrated floats, variable-length packets, another packet version.

Decoding is checked against values built here independently (struct/numpy packing);
tests/integration/test_real_missions.py checks the same features against ccsdspy on its files.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest

from control_center.errors import TmdbError
from control_center.telemetry.codec import PacketCodec
from control_center.telemetry.decoder import Decoder
from control_center.telemetry.packets import split_packets
from control_center.telemetry.records import RawMessage
from control_center.telemetry.tmdb import octet_permutation
from control_center.telemetry.tmdb_yaml import parse_tmdb


def tmdb_of(*parameters: dict[str, Any], **packet: Any) -> dict[str, Any]:
    return {"spacecraft": "craft", "packets": [
        {"name": "pk", "apid": 0x42, "time": "receive", "error_control": "none",
         **packet, "parameters": list(parameters)}]}


def problems_of(document: dict[str, Any]) -> list[str]:
    with pytest.raises(TmdbError) as caught:
        parse_tmdb(document, "craft.yaml")
    return caught.value.problems


def raw_packet(body: bytes, apid: int = 0x42, count: int = 0, version: int = 0) -> bytes:
    header = struct.pack(">HHH", (version << 13) | apid, 0xC000 | count, len(body) - 1)
    return header + body


@pytest.mark.parametrize(("order", "expected"), [
    ("big", (0, 1, 2, 3)), ("little", (3, 2, 1, 0)), ("1234", (0, 1, 2, 3)),
    ("4321", (3, 2, 1, 0)), ("2143", (1, 0, 3, 2)), ("3412", (2, 3, 0, 1)),
])
def test_octet_orders(order: str, expected: tuple[int, ...]) -> None:
    assert octet_permutation(order, 4) == expected


@pytest.mark.parametrize("order", ["12", "12345", "1224", "abcd", "middle"])
def test_bad_octet_orders_are_refused(order: str) -> None:
    assert octet_permutation(order, 4) is None
    problems = problems_of(tmdb_of({"name": "v", "type": "unsigned", "bit_length": 32,
                                    "byte_order": order}))
    assert any("byte_order must be big, little or an octet order" in p for p in problems)


def test_word_swapped_values_decode() -> None:
    """"3412" (16-bit words swapped) for an integer and a float, "2143" for an integer."""
    document = tmdb_of({"name": "a", "type": "unsigned", "bit_length": 32, "byte_order": "3412"},
                       {"name": "b", "type": "float", "bit_length": 32, "byte_order": "3412"},
                       {"name": "c", "type": "signed", "bit_length": 32, "byte_order": "2143"})
    packet = parse_tmdb(document, "x").packets[0]
    a, b, c = 0x11223344, 1.5, -2
    big_b = struct.pack(">f", b)
    big_c = struct.pack(">i", c)
    body = (struct.pack(">HH", a & 0xFFFF, a >> 16) + big_b[2:] + big_b[:2]
            + bytes([big_c[1], big_c[0], big_c[3], big_c[2]]))
    batch = PacketCodec("craft", packet).decode_packets([raw_packet(body)], np.zeros(1, np.int64))
    assert batch.values["a"].tolist() == [a]
    assert batch.values["b"].tolist() == [b]
    assert batch.values["c"].tolist() == [c]
    # and the encoder writes the same octets back
    again = PacketCodec("craft", packet).encode({"a": [a], "b": [b], "c": [c]}, coarse=0,
                                                 fine=0, sequence_counts=[0])
    assert again[6:] == body


def test_fixed_arrays_strings_and_spares() -> None:
    document = tmdb_of(
        {"name": "samples", "type": "signed", "bit_length": 12, "array": 4,
         "limits": {"red": [-100, 100]}},
        {"name": "pad", "type": "spare", "bit_length": 8},
        {"name": "label", "type": "string", "bit_length": 48},
        {"name": "counter", "type": "unsigned", "bit_length": 64})
    packet = parse_tmdb(document, "x").packets[0]
    assert [p.name for p in packet.parameters] == [
        "samples_0", "samples_1", "samples_2", "samples_3", "label", "counter"]
    assert {p.limits.red_high for p in packet.parameters[:4]} == {100}
    assert [p.bit_offset for p in packet.parameters] == [48, 60, 72, 84, 104, 152]
    assert packet.length == (152 + 64) // 8
    values = [-3, 2047, -2048, 5]
    bits = 0
    for v in values:
        bits = (bits << 12) | (v & 0xFFF)
    body = bits.to_bytes(6, "big") + b"\xff" + b"ab\"\\\x00\x00" \
        + ((1 << 64) - 2).to_bytes(8, "big")
    batch = PacketCodec("craft", packet).decode_packets([raw_packet(body)], np.zeros(1, np.int64))
    assert [batch.values[f"samples_{i}"][0] for i in range(4)] == values
    assert batch.values["label"].tolist() == ['ab"\\\\']  # a backslash doubled
    assert batch.values["counter"].tolist() == [(1 << 64) - 2]


def test_enum_ranges_and_calibrated_floats() -> None:
    document = tmdb_of(
        {"name": "mode", "type": "enum", "bit_length": 32,
         "states": {0: "OFF", "[1,3]": "LOW", "[4,100000]": "HIGH"}},
        {"name": "temp", "type": "float", "bit_length": 32,
         "calibration": {"polynomial": [-273.15, 1.0]}})
    packet = parse_tmdb(document, "x").packets[0]
    mode = packet.parameter("mode")
    assert (mode.state_label(0), mode.state_label(2), mode.state_label(70000),
            mode.state_label(100001)) == ("OFF", "LOW", "HIGH", None)
    assert mode.states[3] == "LOW"  # small ranges are spelt out for dashboards
    body = struct.pack(">If", 2, 300.5)
    batch = PacketCodec("craft", packet).decode_packets([raw_packet(body)], np.zeros(1, np.int64))
    assert batch.values["temp"].tolist() == [300.5 - 273.15]


@pytest.mark.parametrize(("parameters", "fragment"), [
    ([{"name": "v", "type": "unsigned", "bit_length": 8, "array": "n"}],
     "must name an earlier unsigned parameter"),
    ([{"name": "v", "type": "unsigned", "bit_length": 8, "array": "expand"},
      {"name": "w", "type": "unsigned", "bit_length": 8, "array": "expand"}],
     "only fixed-size parameters may follow an expand array"),
    ([{"name": "n", "type": "unsigned", "bit_length": 8},
      {"name": "v", "type": "unsigned", "bit_length": 8, "array": "n"},
      {"name": "w", "type": "unsigned", "bit_length": 8, "bit_offset": 200}],
     "bit_offset cannot be given after a variable-size array"),
    ([{"name": "s", "type": "string", "bit_length": 12}], "a string must start on an octet"),
    ([{"name": "s", "type": "string", "bit_length": 16, "array": 2}],
     "a string cannot be an array"),
    ([{"name": "m", "type": "enum", "bit_length": 4, "states": {"[3,1]": "X"}}],
     "is reversed"),
    ([{"name": "m", "type": "enum", "bit_length": 4, "states": {"[1,16]": "X"}}],
     "does not fit in 4 unsigned bits"),
    ([{"name": "m", "type": "enum", "bit_length": 4, "states": {"one": "X"}}],
     "neither a value nor a range"),
])
def test_layout_errors_name_packet_parameter_and_reason(parameters: list[dict[str, Any]],
                                                        fragment: str) -> None:
    problems = problems_of(tmdb_of(*parameters))
    assert any(p.startswith("craft.yaml: packet 'pk'") and fragment in p
               for p in problems), problems


def test_variable_packet_length_is_refused() -> None:
    problems = problems_of(tmdb_of(
        {"name": "v", "type": "unsigned", "bit_length": 8, "array": "expand"}, length=20))
    assert problems == ["craft.yaml: packet 'pk': length cannot be given for a packet with a "
                        "variable-size array: each packet's length comes from its primary "
                        "header"]


VARIABLE = tmdb_of(
    {"name": "count", "type": "unsigned", "bit_length": 8},
    {"name": "samples", "type": "unsigned", "bit_length": 16, "array": "count"},
    {"name": "tail", "type": "unsigned", "bit_length": 16, "array": "expand"},
    {"name": "footer", "type": "unsigned", "bit_length": 16})


def variable_packet(samples: list[int], tail: list[int], footer: int, count: int = 0) -> bytes:
    body = bytes([len(samples)]) + struct.pack(f">{len(samples)}H", *samples) \
        + struct.pack(f">{len(tail)}H", *tail) + struct.pack(">H", footer)
    return raw_packet(body, count=count)


def test_variable_packets_decode_by_layout_through_the_decoder() -> None:
    """Several layouts in one message: each packet's count field and length decide its
    elements; a packet whose fields cannot fit its length is counted, not stored."""
    tmdb = parse_tmdb(VARIABLE, "x")
    packet = tmdb.packets[0]
    assert packet.variable and packet.length == 0
    assert [p.name for p in packet.parameters] == ["count", "footer"]
    shapes = [([1, 2], [9], 100), ([], [], 101), ([5, 6, 7], [8, 8, 8, 8], 102),
              ([1, 2], [3], 103)]
    good = [variable_packet(s, t, f, count=i) for i, (s, t, f) in enumerate(shapes)]
    # count says 9 samples, but the packet holds 3 octets after it: it cannot fit.
    misfit = raw_packet(bytes([9]) + b"\x00\x01\x00", count=9)
    decoder = Decoder([tmdb])
    decoder.feed(RawMessage("craft", b"".join(good[:2]) + misfit + b"".join(good[2:]),
                            1_800_000_000_000_000_000, "test"))
    batches = decoder.take(force=True)
    assert decoder.stats.errors == {"bad_layout": 1}
    assert sorted(len(b) for b in batches) == [1, 1, 2]
    found = {}
    for batch in batches:
        names = [p.name for p in batch.packet.parameters]
        for row in range(len(batch)):
            samples = [int(batch.values[n][row]) for n in names if n.startswith("samples_")]
            tail = [int(batch.values[n][row]) for n in names if n.startswith("tail_")]
            found[int(batch.values["footer"][row])] = (samples, tail,
                                                      int(batch.sequence_counts[row]))
            # receive-time packets: the message's receive time plus the packet's place
            # in the message (the misfit, third, keeps its place)
            place = {0: 0, 1: 1, 2: 3, 3: 4}[int(batch.sequence_counts[row])]
            assert int(batch.times_ns[row]) == 1_800_000_000_000_000_000 + place
    assert found == {100: ([1, 2], [9], 0), 101: ([], [], 1), 102: ([5, 6, 7], [8, 8, 8, 8], 2),
                     103: ([1, 2], [3], 3)}


def test_packet_version_of_a_spacecraft() -> None:
    """ccsdspy's synthetic files carry version 1: a TMDB may say so; others stay bad."""
    document = tmdb_of({"name": "v", "type": "unsigned", "bit_length": 16})
    data = b"".join(raw_packet(struct.pack(">H", i), version=1) for i in range(3))
    plain = parse_tmdb(document, "x")
    assert split_packets(data, lengths={0x42: 8}).errors == {"bad_header": 3}
    versioned = parse_tmdb({**document, "packet_version": 1}, "x")
    assert versioned.packet_version == 1
    decoder = Decoder([versioned])
    decoder.feed(RawMessage("craft", data, 0, "test"))
    assert [b.values["v"].tolist() for b in decoder.take(force=True)] == [[0, 1, 2]]
    decoder = Decoder([plain])
    decoder.feed(RawMessage("craft", data, 0, "test"))
    assert decoder.take(force=True) == [] and decoder.stats.errors == {"bad_header": 3}
    assert any("packet_version must be 0..7" in p
               for p in problems_of({**document, "packet_version": 8}))
