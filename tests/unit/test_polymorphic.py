"""Unit tests of what XTCE files bring to the TMDB: polymorphic packets sharing an APID
(``select``), binary fields, and strings/binaries of dynamic size (``size``).

Packets are built octet by octet here (struct), not with our encoder, so a decoder and
encoder that agree on a wrong layout still fail.
"""

from __future__ import annotations

import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from control_center.errors import TmdbError
from control_center.telemetry.codec import PacketCodec
from control_center.telemetry.decoder import Decoder
from control_center.telemetry.records import DecodedBatch, RawMessage
from control_center.telemetry.tmdb import Tmdb
from control_center.telemetry.tmdb_yaml import parse_tmdb

RECEIVE_NS = 1_800_000_000 * 1_000_000_000


def science() -> Tmdb:
    """APID 0x590: a science packet whose type octet picks one of three layouts."""
    header = [{"name": "sci_type", "bit_length": 8, "type": "unsigned"},
              {"name": "event", "bit_length": 16, "type": "unsigned"}]
    return parse_tmdb({"spacecraft": "idex", "packets": [
        {"name": "sci_header", "apid": 0x590, "time": "receive", "error_control": "none",
         "select": {"sci_type": 0}, "parameters": [
             *header, {"name": "trigger_level", "bit_length": 16, "type": "signed"}]},
        {"name": "sci_waveform", "apid": 0x590, "time": "receive", "error_control": "none",
         "select": {"sci_type": ["1..2"]}, "parameters": [
             *header, {"name": "samples", "type": "binary", "size": "expand"}]},
        {"name": "sci_label", "apid": 0x590, "time": "receive", "error_control": "none",
         "select": {"sci_type": 3}, "parameters": [
             *header, {"name": "label_octets", "bit_length": 8, "type": "unsigned"},
             {"name": "label", "type": "string", "size": "label_octets"},
             {"name": "checksum", "bit_length": 16, "type": "unsigned"}]},
        {"name": "housekeeping", "apid": 0x10, "time": "receive", "error_control": "none",
         "parameters": [{"name": "dump", "bit_length": 32, "type": "binary"}]},
    ]}, "idex.yaml")


def packet(apid: int, body: bytes, count: int = 0) -> bytes:
    """A whole CCSDS packet, no secondary header, built by hand."""
    return struct.pack(">HHH", apid, 0xC000 | count, len(body) - 1) + body


def decode(tmdb: Tmdb, data: bytes) -> tuple[dict[str, DecodedBatch], Decoder]:
    decoder = Decoder([tmdb])
    decoder.feed(RawMessage(tmdb.spacecraft, data, RECEIVE_NS, "test"))
    batches = decoder.take(force=True)
    by_name: dict[str, DecodedBatch] = {}
    for batch in batches:  # the first batch of each type (one layout of a variable type)
        by_name.setdefault(batch.packet.name, batch)
    return by_name, decoder


def test_polymorphic_packets_go_to_the_type_their_select_names() -> None:
    tmdb = science()
    data = b"".join([
        packet(0x590, struct.pack(">BHh", 0, 7, -300), 0),
        packet(0x590, struct.pack(">BH", 1, 8) + bytes([0, 1, 2, 0]), 1),
        packet(0x590, struct.pack(">BH", 2, 9) + bytes([0xFF] * 6), 2),
        packet(0x590, struct.pack(">BHB", 3, 10, 4) + b"ABCD" + struct.pack(">H", 0xBEEF), 3),
        packet(0x590, struct.pack(">BHh", 9, 11, 0), 4),  # no type selects 9
        packet(0x10, bytes([0xDE, 0xAD, 0x00, 0x00]), 0),
    ])
    batches, decoder = decode(tmdb, data)
    header = batches["sci_header"]
    assert header.values["event"].tolist() == [7]
    assert header.values["trigger_level"].tolist() == [-300]
    waveform = [b for b in decoder_batches(tmdb, data) if b.packet.name == "sci_waveform"]
    samples = sorted((int(b.values["event"][0]), b.values["samples"][0]) for b in waveform)
    # Trailing zero octets are data in a binary field, unlike a string's NUL padding.
    assert samples == [(8, "00010200"), (9, "ffffffffffff")]
    label = batches["sci_label"]
    assert label.values["label"].tolist() == ["ABCD"]
    assert label.values["checksum"].tolist() == [0xBEEF]
    assert batches["housekeeping"].values["dump"].tolist() == ["dead0000"]
    assert decoder.stats.errors["bad_layout"] == 1  # type 9, counted, not guessed
    assert decoder.stats.packets["idex"] == 5


def decoder_batches(tmdb: Tmdb, data: bytes) -> list[DecodedBatch]:
    decoder = Decoder([tmdb])
    decoder.feed(RawMessage(tmdb.spacecraft, data, RECEIVE_NS, "test"))
    return decoder.take(force=True)


def test_a_fixed_type_of_a_shared_apid_refuses_a_packet_of_another_length() -> None:
    tmdb = science()
    short = packet(0x590, struct.pack(">BH", 0, 7), 0)  # sci_header needs 5 data octets
    batches, decoder = decode(tmdb, short + packet(0x590, struct.pack(">BHh", 0, 8, 5), 1))
    assert batches["sci_header"].values["event"].tolist() == [8]
    assert decoder.stats.errors["bad_layout"] == 1


def test_binary_and_select_encode_as_they_decode() -> None:
    tmdb = science()
    codec = PacketCodec("idex", tmdb.packet("housekeeping"))
    data = codec.encode({"dump": np.array(["0102", "ffeeddcc"], dtype=object)},
                        coarse=np.zeros(2), fine=np.zeros(2), sequence_counts=np.arange(2))
    assert data[6:10] == bytes([1, 2, 0, 0]) and data[16:20] == bytes([0xFF, 0xEE, 0xDD, 0xCC])
    header = PacketCodec("idex", tmdb.packet("sci_header"))
    # The type field left out: the encoder writes the value its select names.
    built = header.encode({"event": np.array([3]), "trigger_level": np.array([-1])},
                          coarse=np.zeros(1), fine=np.zeros(1), sequence_counts=np.zeros(1))
    assert built[6] == 0
    assert decode(tmdb, built)[0]["sci_header"].values["trigger_level"].tolist() == [-1]


@pytest.mark.parametrize(("change", "problem"), [
    ({"select": None}, "apid 1424 is already used by 'sci_header'; packets sharing an APID "
                       "each need select"),
    ({"select": {"nothing": 1}}, "select: 'nothing' must be an integer, enum or boolean "
                                 "parameter"),
    ({"select": {"sci_type": 256}}, "select: 'sci_type' takes raw values 0..255"),
    ({"select": {"sci_type": ["5..2"]}}, "or ranges written"),
    ({"select": {"sci_type": ["1..256"]}}, "takes raw values 0..255"),
    ({"error_control": "none"}, "packets sharing apid 1424 must agree on error_control "
                                "('sci_header' has crc16)"),
])
def test_select_problems_are_named(change: dict[str, object], problem: str) -> None:
    document = {"spacecraft": "idex", "packets": [
        {"name": "sci_header", "apid": 0x590, "select": {"sci_type": 0},
         "parameters": [{"name": "sci_type", "bit_length": 8, "type": "unsigned"}]},
        {"name": "sci_other", "apid": 0x590, "select": {"sci_type": 1},
         "parameters": [{"name": "sci_type", "bit_length": 8, "type": "unsigned"}]},
    ]}
    packets = document["packets"]
    assert isinstance(packets, list)
    packets[1].update(change)
    if packets[1]["select"] is None:
        del packets[1]["select"]
    with pytest.raises(TmdbError) as caught:
        parse_tmdb(document, "idex.yaml")
    assert any(problem in p for p in caught.value.problems), caught.value.problems


@pytest.mark.parametrize(("parameter", "problem"), [
    ({"name": "x", "type": "unsigned", "size": "expand"}, "size is for string and binary"),
    ({"name": "x", "type": "binary", "size": "expand", "bit_length": 8}, "either size"),
    ({"name": "x", "type": "binary", "bit_length": 12}, "a binary must start on an octet"),
    ({"name": "x", "type": "binary", "bit_length": 8, "calibration": {"polynomial": [0, 1]}},
     "a binary parameter takes no calibration"),
])
def test_binary_and_size_problems_are_named(parameter: dict[str, object], problem: str) -> None:
    with pytest.raises(TmdbError) as caught:
        parse_tmdb({"spacecraft": "probe", "packets": [
            {"name": "dump", "apid": 5, "parameters": [parameter]}]}, "probe.yaml")
    assert any(problem in p for p in caught.value.problems), caught.value.problems


def test_a_lone_type_with_select_still_checks_it() -> None:
    tmdb = parse_tmdb({"spacecraft": "probe", "packets": [
        {"name": "sci_only", "apid": 7, "time": "receive", "error_control": "none",
         "select": {"kind": 2}, "parameters": [
             {"name": "kind", "bit_length": 8, "type": "unsigned"},
             {"name": "value", "bit_length": 8, "type": "unsigned"}]}]}, "probe.yaml")
    batches, decoder = decode(tmdb, packet(7, bytes([2, 40])) + packet(7, bytes([3, 41]), 1))
    assert batches["sci_only"].values["value"].tolist() == [40]
    assert decoder.stats.errors["bad_layout"] == 1


def test_text_after_odd_sized_elements_must_fall_on_an_octet() -> None:
    """A counted string after 12-bit elements starts on an octet only for an even
    count: the other packets are counted, never read across octets."""
    tmdb = parse_tmdb({"spacecraft": "probe", "packets": [
        {"name": "samples", "apid": 8, "time": "receive", "error_control": "none",
         "parameters": [
             {"name": "count", "bit_length": 8, "type": "unsigned"},
             {"name": "sample", "bit_length": 12, "type": "unsigned", "array": "count"},
             {"name": "label_octets", "bit_length": 8, "type": "unsigned"},
             {"name": "label", "type": "string", "size": "label_octets"}]}]}, "probe.yaml")
    even = bytes([2, 0x12, 0x34, 0x56, 2]) + b"OK"  # samples 0x123, 0x456
    odd = bytes([1, 0x12, 0x30, 2]) + b"NO"  # the string would start mid-octet
    batches, decoder = decode(tmdb, packet(8, even) + packet(8, odd, 1))
    batch = batches["samples"]
    assert batch.values["sample_0"].tolist() == [0x123]
    assert batch.values["sample_1"].tolist() == [0x456]
    assert batch.values["label"].tolist() == ["OK"]
    assert decoder.stats.errors["bad_layout"] == 1


def test_a_float32_off_the_octet_grid() -> None:
    """CTIM's XTCE puts a float32 at bit 629: read from its 32 bits wherever they sit."""
    tmdb = parse_tmdb({"spacecraft": "probe", "packets": [
        {"name": "slew", "apid": 9, "time": "receive", "error_control": "none",
         "parameters": [{"name": "flags", "bit_length": 5, "type": "unsigned"},
                        {"name": "rate", "bit_length": 32, "type": "float"},
                        {"name": "tail", "bit_length": 3, "type": "unsigned"}]}]},
        "probe.yaml")
    bits = struct.unpack(">I", struct.pack(">f", -1.5))[0]
    word = (0b10101 << 35) | (bits << 3) | 0b011  # 5 + 32 + 3 bits = 5 octets
    batches, _ = decode(tmdb, packet(9, word.to_bytes(5, "big")))
    batch = batches["slew"]
    assert batch.values["rate"].tolist() == [-1.5]
    assert (batch.values["flags"].tolist(), batch.values["tail"].tolist()) == ([21], [3])
    codec = PacketCodec("probe", tmdb.packet("slew"))
    built = codec.encode({"flags": np.array([21]), "rate": np.array([-1.5]),
                          "tail": np.array([3])}, coarse=np.zeros(1), fine=np.zeros(1),
                         sequence_counts=np.zeros(1))
    assert built[6:] == word.to_bytes(5, "big")


def test_tail_skip_decodes_packets_longer_than_their_fields() -> None:
    """XTCE describes fields, not lengths (CTIM's packets run past theirs): with
    ``tail: skip`` a longer packet is decoded from its first ``length`` octets; a
    shorter one is a misfit. Without it, both are wrong_length."""
    document = {"spacecraft": "probe", "packets": [
        {"name": "hk", "apid": 4, "time": "receive", "error_control": "none", "tail": "skip",
         "parameters": [{"name": "volts", "bit_length": 16, "type": "unsigned"}]}]}
    data = (packet(4, struct.pack(">H", 28)) + packet(4, struct.pack(">HH", 29, 0xFFFF), 1)
            + packet(4, b"\x07", 2))
    batches, decoder = decode(parse_tmdb(document, "probe.yaml"), data)
    assert batches["hk"].values["volts"].tolist() == [28, 29]
    assert dict(decoder.stats.errors) == {"bad_layout": 1}
    del document["packets"][0]["tail"]  # type: ignore[attr-defined]
    batches, decoder = decode(parse_tmdb(document, "probe.yaml"), data)
    assert batches["hk"].values["volts"].tolist() == [28]
    assert dict(decoder.stats.errors) == {"wrong_length": 2}


def test_a_pass_of_a_partners_xtce_spacecraft_is_reported(tmp_path: Path) -> None:
    """IMAP-IDEX (polymorphic packets, binary waveforms) archived as a pass: `isls report`
    decodes it from the archive like any spacecraft; with its report flags set on the
    imported parameters, their plots come too."""
    from control_center.archive.recorder import ArchiveWriter
    from control_center.archive.report import write_report
    from control_center.telemetry.tmdb_yaml import load_tmdb
    from tests.support.xtce_data import spp_file

    tmdb = load_tmdb(spp_file("idex/idex_combined_science_definition.xml"))
    marked = replace(tmdb, packets=tuple(
        replace(p, parameters=tuple(replace(q, report=q.name.endswith("evtnum"))
                                    for q in p.parameters)) for p in tmdb.packets))
    data = spp_file("idex/sciData_2023_052_14_45_05").read_bytes()
    writer = ArchiveWriter(tmp_path / "archive", silence=60.0)
    pass_id = writer.record("idex", RECEIVE_NS, "partner", data)
    writer.close()
    summary = write_report(tmp_path / "archive", pass_id, [marked], tmp_path / "report")
    assert sum(summary.packets_decoded.values()) == 78
    assert summary.index.is_file() and summary.report_json.is_file()
    assert list((tmp_path / "report").glob("*.png"))
