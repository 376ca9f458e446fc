"""Real mission packet files that no one here wrote, stored exactly like ccsdspy reads them.

ccsdspy ships real and reference packet files with their definitions inside its wheel
(``ccsdspy/tests/data``). Each definition goes through our ccsdspy CSV importer into a
TMDB; the file's packets then go through one of the two ways into a real InfluxDB:

- live: published to a real Mosquitto on the raw topic, several whole packets per MQTT
  message (7, 25, 3 …: counts aligned to nothing), stored by an ``IngestService``;
- import: ``control_center.archive.replay.import_files`` (what ``isls import`` runs) on the
  file itself.

Every stored point is then compared with ccsdspy's own decode of the same file, value by
value: integers and enum state numbers exactly, floats bit for bit (a float32 field, stored
as its shortest float32 text, once narrowed back to float32; a non-finite value must be
absent from exactly its own point), polynomial calibrations with rtol 1e-12
against ccsdspy's ``PolyConverter``, strings, unsigned 64-bit values as exact decimal
text; ``sequence_count`` against each packet's header, the point times against the
InfluxDB contract (docs/contracts.md: receive time + the packet's place in its message, in ns),
and the number of points against the number of packets (none lost, none merged).
"""

from __future__ import annotations

import asyncio
import csv
import functools
import io
import json
import math
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import ccsdspy
import numpy as np
import numpy.typing as npt
import pytest
from ccsdspy import PacketArray, PacketField
from ccsdspy.converters import PolyConverter

from control_center.archive.importer import import_files
from control_center.config import Config
from control_center.operations.servers import InfluxServer
from control_center.pipeline.service import IngestService, wait_subscribed
from control_center.telemetry.ccsdspy_csv import import_ccsdspy_csv
from control_center.telemetry.tmdb import Tmdb
from control_center.telemetry.tmdb_yaml import parse_tmdb
from drivers.mqtt import make_client, raw_properties, raw_topic
from tests.conftest import count_points, wait_for_async

DATA = Path(ccsdspy.__file__).parent / "tests" / "data"
BYTE_ORDERS = ("1", "12", "21", "123", "321", "1234", "2143", "3412", "4321", "123456",
               "1234567", "12345678", "78563412", "87654321")
LIVE_PACKETS = 3000  # at most this many packets of a file take the live path
ERT_NS = 1_800_000_000_000_000_000  # earth-receive time of the first live message
MESSAGE_SPACING_NS = 1_000_000  # between live messages (ert has µs resolution)
# ccsdspy's var_length and byte_order generators write 0x1800 + 0x08E2 = 0x20E2 as the
# first header word: version 1 (the carry), APID 0x0E2.
APID_E2 = 0x0E2

Array = npt.NDArray[Any]


# --------------------------------------------------------------------- definitions


@dataclass(frozen=True)
class Row:
    """One field of a ccsdspy packet definition, as a CSV row gives it."""

    name: str
    data_type: str  # uint, int, float or str, with an array shape: uint(80), uint(expand)
    bit_length: int
    bit_offset: int | None = None
    calibration: str = ""  # JSON, as in the hs CSVs
    byte_order: str = ""

    @property
    def base(self) -> str:
        return self.data_type.split("(")[0]

    @property
    def shape(self) -> int | str | None:
        if "(" not in self.data_type:
            return None
        inner = self.data_type[self.data_type.index("(") + 1:-1]
        return int(inner) if inner.isdigit() else inner

    @property
    def kind(self) -> str:
        """How the value is stored: string, enum, poly, float, float32 (an uncalibrated
        32-bit float: its shortest float32 text), wide (uint64) or int."""
        calibration = json.loads(self.calibration) if self.calibration else {}
        if self.base == "str":
            return "string"
        if calibration and all(isinstance(v, str) for v in calibration.values()):
            return "enum"
        if calibration:
            return "poly"
        if self.base == "float":
            return "float32" if self.bit_length == 32 else "float"
        if self.base == "uint" and self.bit_length == 64:
            return "wide"
        return "int"


INFLUX_TYPE = {"string": "string", "enum": "integer", "poly": "float", "float": "float",
               "float32": "float", "wide": "string", "int": "integer"}


def read_rows(path: Path) -> list[Row]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [Row(r["name"], r["data_type"], int(r["bit_length"]),
                    int(r["bit_offset"]) if r.get("bit_offset") else None,
                    r.get("calibration") or "", r.get("byte_order") or "")
                for r in csv.DictReader(handle, skipinitialspace=True)]


def write_rows(path: Path, rows: list[Row]) -> Path:
    columns = ["name", "data_type", "bit_length"]
    if any(r.bit_offset is not None for r in rows):
        columns.append("bit_offset")
    if any(r.byte_order for r in rows):
        columns.append("byte_order")
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for r in rows:
            writer.writerow([{"name": r.name, "data_type": r.data_type,
                              "bit_length": r.bit_length, "bit_offset": r.bit_offset,
                              "byte_order": r.byte_order}[c] for c in columns])
    return path


def ccsdspy_fields(rows: list[Row]) -> list[Any]:
    """The same definition built with ccsdspy's own classes (its CSV reader has no
    byte order column)."""
    fields: list[Any] = []
    for r in rows:
        order = r.byte_order or "big"
        if r.shape is None:
            fields.append(PacketField(name=r.name, data_type=r.base, bit_length=r.bit_length,
                                      bit_offset=r.bit_offset, byte_order=order))
        else:
            fields.append(PacketArray(name=r.name, data_type=r.base, bit_length=r.bit_length,
                                      bit_offset=r.bit_offset, array_shape=r.shape,
                                      byte_order=order))
    return fields


# ------------------------------------------------------------------ expected values


@dataclass(frozen=True)
class Column:
    """What one InfluxDB field must hold, packet by packet (None: the field is absent)."""

    kind: str
    values: list[Any]

    def take(self, index: list[int]) -> Column:
        return Column(self.kind, [self.values[i] for i in index])


def stored_text(octets: bytes) -> str:
    """A str field as the InfluxDB contract stores it: UTF-8 text as it is, a backslash
    doubled, a control character or an octet that is not UTF-8 as the text \\xNN;
    ccsdspy (numpy's S dtype) has already dropped trailing NULs. Written character by
    character here, apart from the product's regex-based rendering."""
    out = []
    for character in octets.decode("utf-8", "surrogateescape"):
        code = ord(character)
        if 0xDC80 <= code <= 0xDCFF:  # an octet that was not UTF-8
            out.append(f"\\x{code - 0xDC00:02x}")
        elif character == "\\":
            out.append("\\\\")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        else:
            out.append(character)
    return "".join(out)


def stored_values(row: Row, raw: Array) -> list[Any]:
    """ccsdspy's decode of one field, as the InfluxDB contract says it is stored."""
    kind = row.kind
    if kind == "string":
        return [stored_text(v) for v in raw.tolist()]
    if kind in ("int", "enum"):
        return [int(v) for v in raw.tolist()]
    if kind == "wide":
        return [str(int(v)) for v in raw.tolist()]
    # Read at the hs CSVs' offsets some floats are signalling NaNs: numpy flags those
    # as "invalid" when widening them; a power of a huge raw value overflows to inf.
    with np.errstate(invalid="ignore", over="ignore"):
        if kind == "poly":
            by_power = {int(k): float(v) for k, v in json.loads(row.calibration).items()}
            coefficients = [by_power.get(p, 0.0) for p in range(max(by_power), -1, -1)]
            floats = PolyConverter(coefficients).convert(raw)
        else:
            floats = raw.astype(np.float64)
    return [v if math.isfinite(v) else None for v in floats.tolist()]


def expected_columns(row: Row, name: str, raw: Array) -> dict[str, Column]:
    """The stored fields of one ccsdspy field: one, or one per array element."""
    if raw.dtype == object:  # a variable-size array: ccsdspy gives one array per packet
        per_packet = [stored_values(row, np.asarray(v)) for v in raw.tolist()]
        width = max(len(v) for v in per_packet)
        return {f"{name}_{i}": Column(row.kind, [v[i] if i < len(v) else None
                                                 for v in per_packet])
                for i in range(width)}
    if raw.ndim == 2:
        return {f"{name}_{i}": Column(row.kind, stored_values(row, raw[:, i]))
                for i in range(raw.shape[1])}
    assert raw.ndim == 1, row.name
    return {name: Column(row.kind, stored_values(row, raw))}


# ------------------------------------------------------------------------- streams


@dataclass(frozen=True)
class Stream:
    """One packet file, our TMDB made from its definition, and ccsdspy's decode of it."""

    tmdb: Tmdb
    path: Path
    packets: list[bytes]  # the file's packets, in file order
    sequence_counts: list[int]  # from each packet's primary header
    columns: dict[str, Column]  # every stored field but sequence_count

    @property
    def spacecraft(self) -> str:
        return self.tmdb.spacecraft

    @property
    def measurement(self) -> str:
        return self.tmdb.packets[0].name

    def head(self, count: int) -> Stream:
        """A slice of ``count`` packets from the middle of the file (the whole file if it
        is not longer)."""
        if len(self.packets) <= count:
            return self
        start = (len(self.packets) - count) // 2
        index = list(range(start, start + count))
        return replace(self, packets=self.packets[start:start + count],
                       sequence_counts=self.sequence_counts[start:start + count],
                       columns={k: c.take(index) for k, c in self.columns.items()})


def file_packets(path: Path) -> list[bytes]:
    """The back-to-back packets of a file, walked by their primary headers."""
    data = path.read_bytes()
    packets: list[bytes] = []
    position = 0
    while position < len(data):
        (length,) = struct.unpack_from(">H", data, position + 4)
        packets.append(data[position:position + length + 7])
        position += length + 7
    assert position == len(data), path
    return packets


def make_stream(spacecraft: str, apid: int, name: str, csv_path: Path, rows: list[Row],
                tlm: Path, theirs: dict[str, Array], *, length: int | None = None,
                packet_version: int = 0) -> Stream:
    mapping, _notes = import_ccsdspy_csv(csv_path, apid, name, length=length)
    document: dict[str, Any] = {"spacecraft": spacecraft, "packets": [mapping]}
    if packet_version:
        document["packet_version"] = packet_version
    tmdb = parse_tmdb(document, str(csv_path))
    parameters = mapping["parameters"]
    assert len(parameters) == len(rows)
    packets = file_packets(tlm)
    columns: dict[str, Column] = {}
    for row, parameter in zip(rows, parameters, strict=True):
        raw = np.asarray(theirs[row.name])
        assert raw.shape[0] == len(packets), row.name
        for field, column in expected_columns(row, parameter["name"], raw).items():
            assert field not in columns, f"two fields named {field!r}"
            columns[field] = column
    counts = [struct.unpack_from(">H", p, 2)[0] & 0x3FFF for p in packets]
    return Stream(tmdb, tlm, packets, counts, columns)


@functools.cache
def hs_stream(apid: int) -> Stream:
    directory = DATA / "hs" / f"apid{apid:03d}"
    defs = directory / "defs.csv"
    tlm = next(directory.glob("*.tlm"))
    rows = read_rows(defs)
    first_length = struct.unpack_from(">H", tlm.read_bytes(), 4)[0] + 7
    stream = make_stream("ssat1", apid, f"hs_apid{apid}", defs, rows, tlm,
                         ccsdspy.FixedLength.from_file(str(defs)).load(str(tlm)),
                         length=first_length)
    # Field names: lower_snake_case already, "name[3]" becomes "name_3".
    assert list(stream.columns) == [re.sub(r"\[(\d+)\]$", r"_\1", r.name) for r in rows]
    return stream


def europa_stream(tmp_path: Path) -> Stream:
    """Europa Clipper's APID 1227 as ccsdspy's test_regression.py test_odd_length_neg_ints
    defines it: 480 samples of 24-bit signed integers, then housekeeping."""
    rows = [Row("Instrument SCLK Time second", "uint", 32),
            Row("Instrument SCLK Time subsec", "uint", 16),
            Row("Accountability ID", "uint", 32)]
    rows += [Row(f"FGx_CH{c}_{i}", "int", 24) for i in range(160) for c in (3, 2, 1)]
    rows += [Row(n, "int", 24) for n in (
        "FGx_-4.7VHK", "FGx_+4.7VHK", "FGx_2VREF", "FGx_1VREF", "FGx_DRV_SNS",
        "FGx_OP_PRTA", "FGx_FBX", "FGx_FBY", "FGx_FBZ", "FGx_BPFX", "FGx_BPFY", "FGx_BPFZ",
        "FGx_+4.7_I", "FGx_-4.7_I", "FGx_HK_CH14", "FGx_HK_CH15")]
    rows += [Row("Register 80", "uint", 16), Row("PEC (CRC-16-CCITT)", "uint", 16)]
    tlm = DATA / "europa_clipper" / "apid01227.tlm"
    theirs = ccsdspy.FixedLength(ccsdspy_fields(rows)).load(str(tlm))
    stream = make_stream("europa", 1227, "fgx_hf", write_rows(tmp_path / "apid01227.csv", rows),
                         rows, tlm, theirs)
    # 501 fields: "FGx_-4.7VHK" and "FGx_+4.7VHK" (and the two "_4.7_I") stay apart.
    assert len(stream.columns) == len(rows) == 501
    # ccsdspy's own check on this file (its issue #76: odd-length negative integers).
    assert np.asarray(theirs["FGx_CH1_134"]).tolist() == [-88] * len(stream.packets)
    return stream


def var_length_stream(tmp_path: Path, double: bool) -> Stream:
    """The variable-length packets of ccsdspy's tests/data/var_length, defined as in its
    test_var_length.py: an expanding array, or two arrays sized by fields, then a footer."""
    if double:
        rows = [Row("data1_len", "uint", 8), Row("data1", "uint(data1_len)", 16),
                Row("data2_len", "uint", 8), Row("data2", "uint(data2_len)", 16),
                Row("footer", "uint", 16)]
        tlm = DATA / "var_length" / "var_length_packets_double_varfield_with_footer.bin"
    else:
        rows = [Row("data", "uint(expand)", 16), Row("footer", "uint", 16)]
        tlm = DATA / "var_length" / "var_length_packets_with_footer.bin"
    theirs = ccsdspy.VariableLength(ccsdspy_fields(rows)).load(str(tlm))
    name = "var_length_double" if double else "var_length"
    return make_stream(name, APID_E2, name, write_rows(tmp_path / f"{name}.csv", rows), rows,
                       tlm, theirs, packet_version=1)


def byte_order_stream(tmp_path: Path, order: str) -> Stream:
    """ccsdspy's byte order files: 80 unsigned values of len(order) octets a packet, in
    that octet order; the CSV beside each file holds the values written."""
    rows = [Row("body", "uint(80)", 8 * len(order), byte_order=order)]
    tlm = DATA / "byte_order" / f"byteorder_{order}.bin"
    theirs = ccsdspy.FixedLength(ccsdspy_fields(rows)).load(str(tlm))
    name = f"byteorder_{order}"
    stream = make_stream(name, APID_E2, name, write_rows(tmp_path / f"{name}.csv", rows), rows,
                         tlm, theirs, packet_version=1)
    # ccsdspy agrees with the values the generator wrote (a check of the reference).
    truth = np.loadtxt(tlm.with_suffix(".csv"), delimiter=",", dtype=np.uint64)
    assert np.asarray(theirs["body"]).tolist() == truth.tolist()
    return stream


# ----------------------------------------------------------------------- comparison


def query_rows(influxd: InfluxServer, database: str, measurement: str,
               fields: list[str]) -> tuple[list[str], list[list[Any]]]:
    selected = ", ".join(f'"{f}"' for f in ["sequence_count", *fields])
    result = influxd.query(f'SELECT {selected} FROM "{measurement}"', database)
    series = result["results"][0].get("series")  # type: ignore[index]
    assert series, f"nothing stored in {measurement}"
    assert len(series) == 1, f"{measurement}: several series {[s.get('tags') for s in series]}"
    columns: list[str] = series[0]["columns"]
    rows: list[list[Any]] = series[0]["values"]
    return columns, rows


def field_types(influxd: InfluxServer, database: str, measurement: str) -> dict[str, str]:
    result = influxd.query(f'SHOW FIELD KEYS FROM "{measurement}"', database)
    series = result["results"][0].get("series") or []  # type: ignore[index]
    return {name: kind for s in series for name, kind in s["values"]}


def float_bits(value: Any) -> str | None:
    # InfluxDB's JSON writes a whole float without a point ("2"): json gives an int.
    return None if value is None else float(value).hex()


def mismatches(kind: str, stored: list[Any], expected: list[Any]) -> list[int]:
    """Indices where the stored values differ from the expected ones."""
    if kind == "float":
        got, want = [float_bits(v) for v in stored], [float_bits(v) for v in expected]
        return [i for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
    if kind == "float32":  # the stored double narrows back to exactly the decoded float32
        return [i for i, (g, w) in enumerate(zip(stored, expected, strict=True))
                if (g is None) != (w is None)
                or (g is not None and np.float32(g) != np.float32(w))]
    if kind == "poly":
        bad: list[int] = []
        for i, (g, w) in enumerate(zip(stored, expected, strict=True)):
            if (g is None) != (w is None) or (
                    g is not None and not math.isclose(g, w, rel_tol=1e-12, abs_tol=1e-9)):
                bad.append(i)
        return bad
    # Integers, enum state numbers and strings exactly; bool is not an int here.
    return [i for i, (g, w) in enumerate(zip(stored, expected, strict=True))
            if g != w or type(g) is not type(w)]


def chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def assert_stored_like_ccsdspy(influxd: InfluxServer, database: str, stream: Stream,
                               times_ns: list[int]) -> None:
    """Every packet of ``stream`` is one point holding exactly ccsdspy's values, at
    ``times_ns`` (packet by packet, in file order)."""
    measurement, n = stream.measurement, len(stream.packets)
    assert count_points(influxd, database, measurement) == n, "packets lost or merged"
    # A field exists once a point holds it: a float that is never finite has none.
    assert field_types(influxd, database, measurement) == {
        "sequence_count": "integer", **{f: INFLUX_TYPE[c.kind] for f, c in stream.columns.items()
                                        if any(v is not None for v in c.values)}}
    # Points come back in time order; pair them with the packets by sequence count
    # (then order), so that the values are checked whatever the times are.
    by_count = sorted(range(n), key=lambda i: (stream.sequence_counts[i], i))
    fields = list(stream.columns)
    problems: list[str] = []
    stored_times: list[int] = []
    for group in chunks(fields, 100):
        columns, rows = query_rows(influxd, database, measurement, group)
        assert len(rows) == n
        assert columns == ["time", "sequence_count", *group]
        order = sorted(range(n), key=lambda r: (rows[r][1], rows[r][0]))
        rows = [rows[r] for r in order]
        assert [r[1] for r in rows] == [stream.sequence_counts[i] for i in by_count], \
            "stored sequence counts differ from the packets' headers"
        stored_times = [r[0] for r in rows]
        for position, field in enumerate(group, start=2):
            expected = stream.columns[field].take(by_count)
            stored = [r[position] for r in rows]
            for i in mismatches(expected.kind, stored, expected.values)[:3]:
                problems.append(f"{measurement}.{field} packet {by_count[i]} (sequence count "
                                f"{stream.sequence_counts[by_count[i]]}): stored {stored[i]!r}, "
                                f"ccsdspy {expected.values[i]!r}")
    assert not problems, "\n".join(problems)
    assert stored_times == [times_ns[i] for i in by_count], \
        f"{measurement}: point times differ from the contract " \
        f"(first stored {stored_times[:3]}, expected {[times_ns[i] for i in by_count][:3]})"


# -------------------------------------------------------------------------- the tests


def load_data_set(name: str, tmp_path: Path) -> list[Stream]:
    if name.startswith("hs_apid"):
        return [hs_stream(int(name.removeprefix("hs_apid")))]
    if name == "europa_clipper_1227":
        return [europa_stream(tmp_path)]
    if name == "var_length":
        return [var_length_stream(tmp_path, double=False)]
    if name == "var_length_double":
        return [var_length_stream(tmp_path, double=True)]
    assert name == "byte_order"
    return [byte_order_stream(tmp_path, order) for order in BYTE_ORDERS]


# (data set, packets per MQTT message): counts that line up with nothing, a short last
# message included.
LIVE_CASES = [("hs_apid001", 7), ("hs_apid010", 25), ("hs_apid035", 7), ("hs_apid130", 25),
              ("hs_apid251", 7), ("hs_apid895", 25), ("europa_clipper_1227", 7),
              ("var_length", 3), ("var_length_double", 3), ("byte_order", 3)]
DATA_SETS = [name for name, _ in LIVE_CASES]


async def publish_and_store(config: Config, streams: list[Stream], per_message: int
                            ) -> tuple[IngestService, dict[str, list[int]]]:
    """Publish every stream's packets, ``per_message`` to an MQTT message, through a real
    Mosquitto into a real ingest; return once it has decoded them all and stopped
    (stopping drains its writes), with each packet's contracted point time."""
    stop = asyncio.Event()
    ingest = IngestService.from_config(config, [s.tmdb for s in streams])
    task = asyncio.create_task(ingest.run(stop))
    times: dict[str, list[int]] = {}
    try:
        await wait_subscribed(ingest)
        async with make_client(config.mqtt, "test-real-missions") as client:
            for stream in streams:
                times[stream.spacecraft] = []
                for k, start in enumerate(range(0, len(stream.packets), per_message)):
                    message = stream.packets[start:start + per_message]
                    ert = ERT_NS + k * MESSAGE_SPACING_NS
                    await client.publish(raw_topic(stream.spacecraft), b"".join(message),
                                         qos=1, properties=raw_properties(ert, "ccsdspy"))
                    # Receive time, plus the packet's place in its message in ns.
                    times[stream.spacecraft] += [ert + j for j in range(len(message))]
        await wait_for_async(
            lambda: sum(ingest.stats.packets.values()) + ingest.stats.errors.total()
            >= sum(len(s.packets) for s in streams),
            timeout=60, message="the ingest to decode every packet")
    finally:
        stop.set()
        await task
    return ingest, times


@pytest.mark.parametrize(("data_set", "per_message"), LIVE_CASES)
def test_live_mqtt_stores_every_packet_as_ccsdspy_decodes_it(
        data_set: str, per_message: int, config: Config, influxd: InfluxServer,
        database: str, tmp_path: Path) -> None:
    streams = [s.head(LIVE_PACKETS) for s in load_data_set(data_set, tmp_path)]
    ingest, times = asyncio.run(publish_and_store(config, streams, per_message))
    assert ingest.stats.errors.total() == 0, dict(ingest.stats.errors)
    for stream in streams:
        assert ingest.stats.packets[stream.spacecraft] == len(stream.packets)
        assert_stored_like_ccsdspy(influxd, database, stream, times[stream.spacecraft])


async def import_streams(config: Config, streams: list[Stream]) -> list[Any]:
    tmdbs = [s.tmdb for s in streams]
    return [await import_files(config, tmdbs, [s.path], spacecraft=s.spacecraft,
                               out=io.StringIO())
            for s in streams]


@pytest.mark.parametrize("data_set", DATA_SETS)
def test_import_stores_every_packet_as_ccsdspy_decodes_it(
        data_set: str, config: Config, influxd: InfluxServer, database: str,
        tmp_path: Path) -> None:
    streams = load_data_set(data_set, tmp_path)
    summaries = asyncio.run(import_streams(config, streams))
    for stream, summary in zip(streams, summaries, strict=True):
        n = len(stream.packets)
        assert dict(summary.packets) == {f"{stream.spacecraft}/{stream.measurement}": n}
        assert not summary.errors, dict(summary.errors)
        assert [(f.packets, f.problem) for f in summary.by_file] == [(n, "")]
        # The file is one message whose receive time is its modification time.
        mtime_ns = stream.path.stat().st_mtime_ns
        assert_stored_like_ccsdspy(influxd, database, stream, [mtime_ns + i for i in range(n)])


def test_the_data_sets_hold_every_kind_of_value(tmp_path: Path) -> None:
    """Keep the comparisons above honest: what they check does occur in these files."""
    streams = [s for name in DATA_SETS for s in load_data_set(name, tmp_path)]
    by_name = {s.measurement: s for s in streams}

    def values(kind: str, *, live: bool = False) -> list[Any]:
        return [v for s in streams for c in (s.head(LIVE_PACKETS) if live else s).columns.values()
                if c.kind == kind for v in c.values if v is not None]

    # Floats, some non-finite (absent) and some not, within one field and on both paths.
    for live in (False, True):
        column = by_name["hs_apid130"].head(LIVE_PACKETS if live else 1 << 30) \
            .columns["pkt130_flt_sin_1m"]
        assert None in column.values and any(v is not None for v in column.values)
    # Float32 fields (compared as float32) beside float64 ones (compared bit for bit).
    assert values("float32") and values("float")
    # Unsigned 64-bit values at and above 2**63, negative 24-bit integers, enums and
    # polynomials on unsigned, signed and float raw values.
    assert max(int(v) for v in values("wide")) >= 1 << 63
    assert min(v for c in by_name["fgx_hf"].columns.values() for v in c.values) < 0
    assert len(set(values("enum"))) > 2
    poly_bases = {row.base for row in read_rows(DATA / "hs" / "apid035" / "defs.csv")
                  + read_rows(DATA / "hs" / "apid130" / "defs.csv")
                  + read_rows(DATA / "hs" / "apid251" / "defs.csv") if row.kind == "poly"}
    assert poly_bases == {"uint", "int", "float"}
    # Strings with octets that are not UTF-8, line breaks and NULs.
    text = "".join(values("string", live=True))
    # (rendered: a line break is the text \x0a, a NUL \x00)
    assert "\\xff" in text or "\\xfe" in text
    assert "\\x0a" in text and "\\x0d" in text and "\\x00" in text
    # Variable-size arrays: elements that only some packets hold.
    assert None in by_name["var_length_double"].columns["data2_41"].values
    # Several packets share a sequence count in the longer files (14 bits wrap).
    counts = by_name["hs_apid895"].sequence_counts
    assert len(set(counts)) < len(counts)
