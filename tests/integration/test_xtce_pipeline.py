"""Partners' XTCE files all the way into a real InfluxDB, checked against an independent
XTCE decoder (space-packet-parser, NASA/LASP) value by value.

- Real mission files written for space-packet-parser (its test data: JPSS-1
  geolocation, IMAP-IDEX science with polymorphic packets and binary waveform blocks of
  dynamic size) go through ``import_xtce`` (as a configuration naming the .xml loads
  them) and then the live MQTT path or ``isls import`` into InfluxDB; every stored point
  must hold what space-packet-parser decodes from the same file with the same XTCE.
- Our own lander TMDB exported as XTCE: space-packet-parser decodes the lander sample
  file with it and gets what our pipeline stores from that file.
"""

from __future__ import annotations

import asyncio
import io
import math
import os
import subprocess
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from space_packet_parser.generators import ccsds_generator
from space_packet_parser.xtce.definitions import XtcePacketDefinition

from control_center.archive.importer import import_files
from control_center.config import Config
from control_center.grafana.dashboards import build_dashboards
from control_center.operations.servers import InfluxServer
from control_center.pipeline.service import IngestService, wait_subscribed
from control_center.telemetry.tmdb import Parameter, Tmdb
from control_center.telemetry.tmdb_yaml import load_tmdb
from control_center.telemetry.xtce.export import export_xtce, validate_xtce
from drivers.mqtt import make_client, raw_properties, raw_topic
from simulators.runner import PacketGenerator, SimulatorService, make_model
from tests.conftest import CONFIG, ISLS, count_points, wait_for_async
from tests.support.dashboards import expand, non_null_values, series_of, targets
from tests.support.storage import same_float32
from tests.support.xtce_data import spp_file

ROOT = Path(__file__).resolve().parents[2]
ERT_NS = 1_800_000_000_000_000_000
START_UNIX = 1_800_000_000.0
START_NS = 1_800_000_000 * 1_000_000_000
CASES = {
    "jpss": ("jpss/jpss1_geolocation_xtce_v1.xml",
             "jpss/J01_G011_LZ_2021-04-09T00-00-00Z_V01.DAT1", 61),
    "idex": ("idex/idex_combined_science_definition.xml", "idex/sciData_2023_052_14_45_05", 4),
}


def spp_packets(xtce: Path, data: bytes, root: str = "CCSDSPacket") -> list[Any]:
    """space-packet-parser's decode; ``root``: the abstract header container's name (its
    default, CCSDSPacket, is what files written for it use; ours is ccsds_packet)."""
    definition = XtcePacketDefinition.from_xtce(xtce, root_container_name=root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [definition.parse_bytes(p) for p in ccsds_generator(data)]


def packets_of(data: bytes) -> list[bytes]:
    out, position = [], 0
    while position + 6 <= len(data):
        size = 7 + int.from_bytes(data[position + 4:position + 6], "big")
        out.append(data[position:position + size])
        position += size
    return out


def same(parameter: Parameter, stored: Any, theirs: Any) -> bool:
    """One stored InfluxDB value against space-packet-parser's engineering value."""
    if parameter.type == "binary":
        return bool(stored == bytes(theirs).hex())
    if parameter.type == "string":
        return bool(stored == str(theirs).rstrip("\x00"))
    if parameter.type == "enum":
        return bool(stored == int(getattr(theirs, "raw_value", theirs)))
    if parameter.type == "boolean":
        return bool(stored is bool(theirs))
    if parameter.is_float_value:
        if stored is None:  # a non-finite value is left out of its point
            return not math.isfinite(float(theirs))
        if parameter.is_float32:  # stored as its shortest float32 text: exact as float32
            return same_float32(stored, theirs)
        return math.isclose(float(stored), float(theirs), rel_tol=1e-12, abs_tol=1e-12)
    return bool(stored == int(theirs))


def assert_stored_like_spp(influxd: InfluxServer, database: str, tmdb: Tmdb,
                           theirs: list[Any]) -> int:
    """Every packet is one point of its type, holding space-packet-parser's values;
    returns the number of values compared."""
    by_key = {}
    for packet in theirs:
        values = list(packet.values())
        by_key[(int(values[3]), int(values[5]))] = {k.lower(): v for k, v in packet.items()}
    assert len(by_key) == len(theirs)  # (apid, sequence count) tells the packets apart
    stored_points = compared = 0
    for definition in tmdb.packets:
        # A variable type's fields after its variable one are in its layout only; a
        # string or binary of dynamic size is one field.
        fields = [p for p in definition.layout if p.type != "spare"
                  and (p.array is None or p.octets_value)] if definition.variable \
            else list(definition.parameters)
        columns = ", ".join(f'"{p.name}"' for p in fields)
        query = (f'SELECT "sequence_count", {columns} FROM "{definition.name}" '
                 f"WHERE spacecraft = '{tmdb.spacecraft}'")
        series = series_of(influxd.query(query, database), query)
        rows = series[0]["values"] if series else []
        stored_points += len(rows)
        for row in rows:
            packet = by_key[(definition.apid, row[1])]
            for parameter, stored in zip(fields, row[2:], strict=True):
                theirs_value = packet.get(parameter.name)
                if theirs_value is None and stored is None:
                    continue  # a field this packet's layout does not hold
                assert theirs_value is not None, (definition.name, parameter.name)
                assert same(parameter, stored, theirs_value), (
                    f"{definition.name}.{parameter.name} (sequence count {row[1]}): stored "
                    f"{stored!r}, space-packet-parser {theirs_value!r}")
                compared += 1
    assert stored_points == len(theirs), "packets lost or stored twice"
    return compared


async def publish(config: Config, tmdb: Tmdb, packets: list[bytes], per_message: int) -> None:
    stop = asyncio.Event()
    ingest = IngestService.from_config(config, [tmdb])
    task = asyncio.create_task(ingest.run(stop))
    try:
        await wait_subscribed(ingest)
        async with make_client(config.mqtt, "test-xtce") as client:
            for k, start in enumerate(range(0, len(packets), per_message)):
                await client.publish(raw_topic(tmdb.spacecraft),
                                     b"".join(packets[start:start + per_message]), qos=1,
                                     properties=raw_properties(ERT_NS + k * 1_000_000, "xtce"))
        await wait_for_async(lambda: sum(ingest.stats.packets.values())
                             + ingest.stats.errors.total() >= len(packets), timeout=60,
                             message="the ingest to decode every packet")
    finally:
        stop.set()
        await task
    assert ingest.stats.errors.total() == 0, dict(ingest.stats.errors)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("path", ["live", "import"])
def test_a_partners_xtce_file_is_stored_as_space_packet_parser_decodes_it(
        case: str, path: str, config: Config, influxd: InfluxServer, database: str) -> None:
    xtce_name, data_name, per_message = CASES[case]
    xtce, data_file = spp_file(xtce_name), spp_file(data_name)
    tmdb = load_tmdb(xtce)  # what a configuration naming the .xml loads
    data = data_file.read_bytes()
    theirs = spp_packets(xtce, data)
    if path == "live":
        asyncio.run(publish(config, tmdb, packets_of(data), per_message))
    else:
        summary = asyncio.run(import_files(config, [tmdb], [data_file],
                                           spacecraft=tmdb.spacecraft, out=io.StringIO()))
        assert not summary.errors, dict(summary.errors)
        assert sum(summary.packets.values()) == len(theirs)
    compared = assert_stored_like_spp(influxd, database, tmdb, theirs)
    assert compared > len(theirs) * 5


def test_space_packet_parser_reads_our_exported_xtce_as_we_store_the_packets(
        config: Config, influxd: InfluxServer, database: str, tmp_path: Path) -> None:
    tmdb = load_tmdb(ROOT / "config" / "tmdb" / "lander.yaml")
    exported = tmp_path / "lander.xml"
    exported.write_bytes(export_xtce(tmdb))
    sample = ROOT / "samples" / "lander-descent.tlm"
    theirs = spp_packets(exported, sample.read_bytes(), "ccsds_packet")
    summary = asyncio.run(import_files(config, [tmdb], [sample], spacecraft="lander",
                                       out=io.StringIO()))
    assert not summary.errors and sum(summary.packets.values()) == len(theirs) == 1380
    # Our export names a parameter that two packets share <packet>__<name>: map back.
    renamed = []
    for packet in theirs:
        name = next(p.name for p in tmdb.packets if p.apid == int(list(packet.values())[3]))
        renamed.append({k.removeprefix(f"{name}__"): v for k, v in packet.items()})
    assert_stored_like_spp(influxd, database, tmdb, renamed)
    assert count_points(influxd, database, "lander_nav") == 1200


def test_an_xtce_spacecraft_is_limit_checked_alarmed_and_shown_like_any_other(
        config: Config, influxd: InfluxServer, database: str, tmp_path: Path) -> None:
    """The lander's database handed over as XTCE and named by the configuration: the
    same database, its thruster fault raises the same alarm, and every query of its
    dashboards returns the stored data, with no step but naming the file."""
    yaml_tmdb = load_tmdb(ROOT / "config" / "tmdb" / "lander.yaml")
    xml = tmp_path / "lander.xml"
    xml.write_bytes(export_xtce(yaml_tmdb))
    tmdb = load_tmdb(xml)
    assert replace(tmdb, source="") == replace(yaml_tmdb, source="")

    async def fly() -> IngestService:
        stop = asyncio.Event()
        ingest = IngestService.from_config(config, [tmdb])
        task = asyncio.create_task(ingest.run(stop))
        try:
            await wait_subscribed(ingest)
            # The yaw thruster sticks open at 30 s of simulated time: 90 s are flown.
            model = make_model("lander", 3, "thruster-stuck", fault_until=1e9)
            await SimulatorService(PacketGenerator(model, tmdb, start_unix=START_UNIX),
                                   config.mqtt, speed=30.0).run(asyncio.Event(), 3.0)
        finally:
            stop.set()
            await task
        return ingest

    ingest = asyncio.run(fly())
    assert ingest.stats.errors.total() == 0, dict(ingest.stats.errors)
    # As tests/integration/test_alarms_e2e.py has it for the YAML database: the yaw rate
    # beyond its limit for 3 samples, 40-80 s into the flight.
    query = 'SELECT "transition" FROM "alarms" WHERE "subject" = \'imu_rate_z\''
    alarms = series_of(influxd.query(query, database), query)
    assert alarms and "raised" in [row[1] for row in alarms[0]["values"]], alarms
    start, end = START_NS - 60_000_000_000, START_NS + 3_600_000_000_000
    ran = 0
    for dashboard in build_dashboards(config, [tmdb]).dashboards:
        if "lander" not in dashboard.uid:
            continue
        for panel, target in targets(dashboard.model):
            query = expand(target["query"], dashboard.model, start, end)
            series = series_of(influxd.query(query, database), query)
            assert series and non_null_values(series) > 0, (dashboard.uid, panel["title"])
            ran += 1
    assert ran > 30


def test_the_xtce_commands_as_the_readme_gives_them(tmp_path: Path) -> None:
    """`isls tmdb import-xtce` and `export-xtce`, and a configuration naming an XTCE file:
    checked, and its dashboards written, with no other step."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISLS_")}

    def isls(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*ISLS, *args], env=env, capture_output=True, text=True,
                              timeout=120, cwd=tmp_path)

    jpss = spp_file("jpss/jpss1_geolocation_xtce_v1.xml")
    imported = isls("tmdb", "import-xtce", str(jpss), "--spacecraft", "jpss1", "--out",
                    "jpss1.yaml")
    assert imported.returncode == 0, imported.stderr
    assert "spacecraft jpss1, 1 packets, 20 parameters; 0 element(s) not supported" \
        in imported.stdout
    assert "is read by the decoder itself: not imported as parameters" in imported.stderr
    assert load_tmdb(tmp_path / "jpss1.yaml") == replace(load_tmdb(jpss), spacecraft="jpss1",
                                                         source=str(tmp_path / "jpss1.yaml"))
    exported = isls("--config", str(CONFIG), "tmdb", "export-xtce", "lander", "--out",
                    "lander.xml")
    assert exported.returncode == 0, exported.stderr
    assert "lander.xml: XTCE 1.2 of lander (3 packets, 34 parameters), valid against the " \
           "official schema" in exported.stdout
    assert validate_xtce(tmp_path / "lander.xml") == []
    # A configuration naming the partner's .xml and our exported one, as TMDBs.
    config = tmp_path / "isls.toml"
    config.write_text(f'[station]\nstate_dir = "{tmp_path / "state"}"\n'
                      f'[[spacecraft]]\nname = "jpss_geolocation_packets"\ntmdb = "{jpss}"\n'
                      f'[[spacecraft]]\nname = "lander"\ntmdb = "lander.xml"\n'
                      f'simulator = "lander"\n')
    check = isls("--config", str(config), "tmdb", "check")
    assert check.returncode == 0, check.stderr
    assert f"{jpss}: ok: spacecraft jpss_geolocation_packets, 1 packets, 20 parameters" \
        in check.stdout
    built = isls("--config", str(config), "dashboards", "build", "--out", "dashboards")
    assert built.returncode == 0, built.stderr
    written = {p.name for p in (tmp_path / "dashboards").rglob("*.json")}
    assert {"isls-jpss-geolocation-packets-all.json", "isls-lander-all.json"} <= written, written
    refused = isls("tmdb", "import-xtce", str(CONFIG))
    assert refused.returncode == 2
    assert f"isls: {CONFIG}:1: not well-formed XML" in refused.stderr
