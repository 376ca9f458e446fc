"""``isls network compare`` on real InfluxDB servers, one per site (two centers and a
partner), holding points in the shape of our InfluxDB contract: the same data everywhere
compares equal; a point missing at one center, a partner holding a spacecraft its
agreement does not share, and the same count of other points are each found, on their
spacecraft and hour; an InfluxDB that is down is reported by name, URL and reason."""

from __future__ import annotations

import contextlib
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from control_center.network.compare import (
    EXIT_DIFFERENT,
    EXIT_INCOMPLETE,
    EXIT_SAME,
    HOUR_NS,
    Comparison,
    Row,
    compare_network,
    format_comparison,
)
from control_center.network.sites import Network, load_network
from control_center.operations.servers import InfluxServer, free_port
from control_center.storage.contract import INGEST_MEASUREMENT
from tests.support.network import TMDB, agreement_toml, site_toml, spacecraft_toml, write_network

T0 = 1_800_000_000_000_000_000  # 2027-01-15 08:00:00 UTC, the start of an hour
DATABASE = "isls"
# (measurement, spacecraft) and points per hour: lander-1 has two packet types
PACKETS = (("lander_nav", "lander-1", 5), ("lander_power", "lander-1", 2),
           ("orbiter_nav", "orbiter-1", 4))
HOURS = 3


@dataclass
class Ground:
    network: Network
    influx: dict[str, InfluxServer]


@pytest.fixture
def ground(tmp_path: Path) -> Iterator[Ground]:
    """Two centers and a partner, each with its own running influxd; the partner's
    agreement forwards lander-1's raw telemetry (and orbiter-1's decoded parameters
    only, which are not stored as packets)."""
    ports = {name: (free_port(), free_port()) for name in ("moscow", "beijing", "partner-esa")}
    network = load_network(write_network(
        tmp_path, spacecraft_toml(["lander-1"], tmdb=TMDB / "lander.yaml"),
        spacecraft_toml(["orbiter-1"], tmdb=TMDB / "orbiter.yaml"),
        agreement_toml("moscow", "partner-esa", ["lander-1"], ["raw", "param"]),
        agreement_toml("beijing", "partner-esa", ["orbiter-1"], ["param"]),
        *(site_toml(name, "partner" if name.startswith("partner") else "center", name,
                    mqtt, influx) for name, (mqtt, influx) in ports.items()),
        state_dir=tmp_path / "state"))
    with contextlib.ExitStack() as stack:
        influx = {name: stack.enter_context(InfluxServer(tmp_path / name, influx_port))
                  for name, (_, influx_port) in ports.items()}
        for server in influx.values():
            server.query(f'CREATE DATABASE "{DATABASE}"')
        yield Ground(network, influx)


def line(measurement: str, spacecraft: str, time_ns: int, *, source: str = "live") -> str:
    """A packet point in our contract's shape: tags spacecraft and source, a parameter
    and sequence_count."""
    return (f"{measurement},source={source},spacecraft={spacecraft} "
            f"value=1.5,sequence_count={time_ns % 16384}i {time_ns}")


def stored(spacecraft: tuple[str, ...] = ("lander-1", "orbiter-1")) -> list[str]:
    """Every packet of ``spacecraft`` over HOURS hours, as a center stores them."""
    return [line(measurement, name, T0 + hour * HOUR_NS + k * 1_000_000_000)
            for hour in range(HOURS) for measurement, name, per_hour in PACKETS
            if name in spacecraft for k in range(per_hour)]


def write(server: InfluxServer, lines: list[str]) -> None:
    request = urllib.request.Request(f"{server.url}/write?db={DATABASE}&precision=ns",
                                     data="\n".join(lines).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 204


def fill(ground: Ground, centers: list[str] | None = None) -> None:
    """Both centers hold everything, the partner its share (lander-1)."""
    write(ground.influx["moscow"], centers or stored())
    write(ground.influx["beijing"], stored())
    write(ground.influx["partner-esa"], stored(("lander-1",)))


def row(comparison: Comparison, spacecraft: str, hour: int) -> Row:
    found = [r for r in comparison.rows
             if r.spacecraft == spacecraft and r.hour_ns == T0 + hour * HOUR_NS]
    assert len(found) == 1, f"{spacecraft} hour {hour}: {comparison.rows}"
    return found[0]


def test_the_same_data_everywhere_compares_equal(ground: Ground) -> None:
    fill(ground)
    # Neither a replay nor the ingest's health points are live telemetry: one center
    # alone holding them is no difference.
    write(ground.influx["moscow"], [line("lander_nav", "lander-1", T0 + 7, source="replay"),
                                    f"{INGEST_MEASUREMENT},ingest=x packets=3i {T0 + 9}"])
    comparison = compare_network(ground.network, database=DATABASE)
    text = format_comparison(comparison)
    assert comparison.exit_code == EXIT_SAME, text
    assert comparison.sites == ("moscow", "beijing", "partner-esa")
    assert len(comparison.rows) == 2 * HOURS, text
    # lander-1: 5 + 2 packets an hour at every site; orbiter-1 at the centers only.
    assert row(comparison, "lander-1", 1).counts == (7, 7, 7)
    assert row(comparison, "orbiter-1", 2).counts == (4, 4, 0)
    assert "orbiter-1   2027-01-15 10:00" in text and "SAME: 6 spacecraft-hour(s)" in text
    # The time range: [start, end) of whole hours.
    window = compare_network(ground.network, database=DATABASE, start_ns=T0 + HOUR_NS,
                             end_ns=T0 + 2 * HOUR_NS, points=True)
    assert {(r.spacecraft, r.hour_ns) for r in window.rows} == {
        ("lander-1", T0 + HOUR_NS), ("orbiter-1", T0 + HOUR_NS)}
    assert window.exit_code == EXIT_SAME, format_comparison(window)


def test_a_point_missing_at_one_center_flags_that_spacecraft_and_hour(ground: Ground) -> None:
    lost = line("orbiter_nav", "orbiter-1", T0 + 2 * HOUR_NS + 3_000_000_000)
    everything = stored()
    assert lost in everything
    fill(ground, centers=[x for x in everything if x != lost])  # moscow lost one packet
    comparison = compare_network(ground.network, database=DATABASE)
    assert comparison.exit_code == EXIT_DIFFERENT
    assert [(r.spacecraft, r.hour_ns) for r in comparison.differences] == [
        ("orbiter-1", T0 + 2 * HOUR_NS)]
    flagged = row(comparison, "orbiter-1", 2)
    assert flagged.counts == (3, 4, 0)
    assert flagged.problems == ("moscow 1 fewer",)
    text = format_comparison(comparison, only_differences=True)
    assert "orbiter-1" in text and "<< moscow 1 fewer" in text and "lander-1" not in text
    assert "DIFFERENT: 1 of 6 spacecraft-hour(s) differ" in text


def test_a_partner_holding_a_spacecraft_it_does_not_share_is_flagged(ground: Ground) -> None:
    fill(ground)
    # orbiter-1's agreement forwards decoded parameters only: no packet of it belongs here.
    write(ground.influx["partner-esa"], [line("orbiter_nav", "orbiter-1", T0 + 1000)])
    comparison = compare_network(ground.network, database=DATABASE)
    assert comparison.exit_code == EXIT_DIFFERENT
    assert [r.spacecraft for r in comparison.differences] == ["orbiter-1"]
    assert row(comparison, "orbiter-1", 0).problems == (
        "partner-esa holds 1 (its agreements forward only param of it)",)


def test_the_same_count_of_other_points_is_caught_by_the_point_check(ground: Ground) -> None:
    everything = stored()
    moved = line("lander_power", "lander-1", T0 + HOUR_NS + 1_000_000_000)
    assert moved in everything
    # moscow lost one packet and holds another (same hour, same type) that beijing lacks
    other = line("lander_power", "lander-1", T0 + HOUR_NS + 59 * 60_000_000_000)
    fill(ground, centers=[other if x == moved else x for x in everything])
    counts_only = compare_network(ground.network, database=DATABASE)
    assert counts_only.exit_code == EXIT_SAME, format_comparison(counts_only)
    deep = compare_network(ground.network, database=DATABASE, points=True)
    assert deep.exit_code == EXIT_DIFFERENT
    flagged = row(deep, "lander-1", 1)
    assert [r for r in deep.differences] == [flagged]
    assert flagged.counts == (7, 7, 7)
    assert flagged.problems == (
        "moscow lacks 1 point(s) others hold, first lander_power at 2027-01-15 "
        "09:00:01.000 UTC",
        "beijing lacks 1 point(s) others hold, first lander_power at 2027-01-15 "
        "09:59:00.000 UTC",
        "partner-esa lacks 1 point(s) others hold, first lander_power at 2027-01-15 "
        "09:59:00.000 UTC")
    assert "packet counts and point times" in format_comparison(deep)


def test_an_influxdb_that_is_down_is_reported_not_raised(ground: Ground) -> None:
    fill(ground)
    beijing = ground.influx["beijing"]
    beijing.kill()  # a crash: nothing answers on its port any more
    comparison = compare_network(ground.network, database=DATABASE, points=True)
    assert comparison.exit_code == EXIT_INCOMPLETE
    [problem] = comparison.unreachable
    assert (problem.site, problem.url) == ("beijing", beijing.url)
    assert "unreachable" in problem.reason and "refused" in problem.reason.lower()
    # The sites that answered are still compared with each other.
    assert row(comparison, "lander-1", 0).counts == (7, None, 7)
    assert not comparison.differences
    text = format_comparison(comparison)
    assert f"beijing: InfluxDB at {beijing.url}: unreachable: " in text
    assert "INCOMPLETE: 1 of 3 site(s) not read" in text
    assert "lander-1    2027-01-15 08:00" in text and " ? " in text
