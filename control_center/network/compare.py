"""``isls network compare``: does every center hold the same telemetry, and every partner
exactly its share? (docs/network.md)

Each center stores every spacecraft of the network in its own InfluxDB, fed by the
stations' store-and-forward bridges; a partner stores what its agreements forward. After
a WAN outage, a bridge queue that overflowed or an ingest that was down, the question is
which spacecraft and which hours differ. InfluxDB answers it cheaply: every packet is one
point carrying ``sequence_count`` (docs/contracts.md, "InfluxDB contract"), so

    SELECT COUNT("sequence_count") FROM <every packet measurement>
    WHERE "source" = 'live' GROUP BY time(1h), "spacecraft"

is the number of packets stored per spacecraft and UTC hour. Only live points are
counted: a replay or an import is stored under another ``source`` tag, at one center, by
an operator's choice.

The rule, per spacecraft and hour:

- every center holds the same count (every center stores every spacecraft);
- a partner whose agreements forward the spacecraft's raw telemetry holds that count too;
- any other partner holds none of it (an agreement broken is a finding, not noise).

Counts can agree while the points do not: one center lost a packet, the other another
packet of the same hour. ``points=True`` also compares the point times of each
spacecraft-hour as sets (point identity makes a packet the same point at every site),
one spacecraft-hour at a time so that memory stays bounded.

A site whose InfluxDB cannot be read is reported (site, URL, reason) and left out of
the comparison; the exit code then says the comparison is incomplete.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from control_center.config import InfluxSettings
from control_center.errors import IslsError
from control_center.network.sites import Network, Site
from control_center.storage.contract import (
    ALARMS_MEASUREMENT,
    EVENTS_MEASUREMENT,
    INGEST_MEASUREMENT,
    LINK_MEASUREMENT,
    SEQUENCE_FIELD,
)
from control_center.storage.posting import influx_headers
from control_center.terminal import utc_text

HOUR_NS = 3_600_000_000_000
# InfluxDB 1.x's own time bounds. A GROUP BY time() query without an upper bound stops
# at now(), and simulated or onboard-timed telemetry may well lie in the future, so the
# bounds are always explicit.
MIN_TIME_NS = -9_223_372_036_854_775_806
MAX_TIME_NS = 9_223_372_036_854_775_806
# Measurements of the contract that are not packets: no spacecraft hour to compare.
NOT_TELEMETRY = frozenset({ALARMS_MEASUREMENT, EVENTS_MEASUREMENT, LINK_MEASUREMENT,
                           INGEST_MEASUREMENT})
LIVE = "live"
CHUNK_POINTS = 10_000  # chunked answers: no max-row-limit can cut a long range short

T = TypeVar("T")

EXIT_SAME = 0
EXIT_DIFFERENT = 1
EXIT_INCOMPLETE = 2  # a site could not be read: nothing can be said of it


@dataclass(frozen=True, slots=True)
class SiteProblem:
    """A site whose InfluxDB could not be read."""

    site: str
    url: str
    reason: str


@dataclass(frozen=True, slots=True)
class Row:
    """One spacecraft and UTC hour: the packets each site holds, and what is wrong."""

    spacecraft: str
    hour_ns: int  # start of the hour, ns since 1970 UTC
    counts: tuple[int | None, ...]  # per Comparison.sites; None: the site was not read
    expected: tuple[bool, ...]  # per site: whether it should hold this spacecraft
    problems: tuple[str, ...] = ()

    @property
    def differs(self) -> bool:
        return bool(self.problems)


@dataclass(frozen=True, slots=True)
class Comparison:
    database: str
    start_ns: int | None
    end_ns: int | None
    sites: tuple[str, ...]  # centers, then partners, in network file order
    kinds: tuple[str, ...]  # per site: center or partner
    rows: tuple[Row, ...]  # by spacecraft, then hour
    unreachable: tuple[SiteProblem, ...] = ()
    notes: tuple[str, ...] = ()
    points_checked: bool = False

    @property
    def differences(self) -> tuple[Row, ...]:
        return tuple(row for row in self.rows if row.differs)

    @property
    def exit_code(self) -> int:
        """0 every site read and all the same, 1 differences, 2 a site not read (as
        diff(1): a script can tell "different" from "could not tell")."""
        if self.unreachable:
            return EXIT_INCOMPLETE
        return EXIT_DIFFERENT if self.differences else EXIT_SAME


class _Unreadable(Exception):
    """Why a site's InfluxDB gave no usable answer (the message is for the operator)."""


@dataclass(frozen=True, slots=True)
class _Influx:
    """The v1 HTTP query endpoint of one site's InfluxDB."""

    site: str
    url: str
    database: str
    headers: Mapping[str, str]
    timeout: float

    def query(self, influxql: str, *, database: bool = True) -> Iterator[dict[str, Any]]:
        """Every series of the answer (chunked: a long range arrives in pieces, each
        piece a JSON document of its own); raise :class:`_Unreadable` with the reason."""
        form = {"q": influxql, "epoch": "ns", "chunked": "true",
                "chunk_size": str(CHUNK_POINTS)}
        if database:
            form["db"] = self.database
        # POST: the measurement list of a large mission does not fit a URL, and the
        # credentials travel in a header, never in a logged query string.
        request = urllib.request.Request(f"{self.url}/query",
                                         data=urllib.parse.urlencode(form).encode(),
                                         headers=dict(self.headers), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                raise _Unreadable("it refused the credentials (401); set ISLS_INFLUX_USER "
                                  "and ISLS_INFLUX_PASSWORD, or ISLS_INFLUX_TOKEN") from None
            text = exc.read().decode(errors="replace").strip()[:200]
            raise _Unreadable(f"it answered HTTP {exc.code}: {text}") from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            text = getattr(reason, "strerror", None) or str(reason)
            raise _Unreadable(f"unreachable: {text}") from None
        except TimeoutError:
            raise _Unreadable(f"no answer within {self.timeout:g} s") from None
        except OSError as exc:  # the connection reset, refused after connecting...
            raise _Unreadable(f"unreachable: {exc.strerror or exc}") from None
        except http.client.HTTPException as exc:  # an answer cut short
            raise _Unreadable(f"broken answer ({type(exc).__name__}: {str(exc).strip()})"
                              ) from None
        for line in body.splitlines():
            if not line.strip():
                continue
            try:
                document = json.loads(line)
            except ValueError:
                raise _Unreadable("its answer is not InfluxDB JSON (is this port an "
                                  "InfluxDB?)") from None
            if not isinstance(document, dict):
                raise _Unreadable("its answer is not InfluxDB JSON")
            if "error" in document:
                raise _Unreadable(f"query refused: {document['error']}")
            for result in document.get("results", []):
                if "error" in result:
                    raise _Unreadable(f"query refused: {result['error']}")
                yield from result.get("series", [])


def account_headers(environ: Mapping[str, str]) -> dict[str, str]:
    """The Authorization header for InfluxDBs with authentication on, from the same
    variables the ingest reads (ISLS_INFLUX_TOKEN, or ISLS_INFLUX_USER and
    ISLS_INFLUX_PASSWORD); none when they are unset (the sites `isls up --network`
    starts have authentication off)."""
    return influx_headers(InfluxSettings(username=environ.get("ISLS_INFLUX_USER") or None,
                                         password=environ.get("ISLS_INFLUX_PASSWORD") or None,
                                         token=environ.get("ISLS_INFLUX_TOKEN") or None))


def parse_utc(text: str, option: str) -> int:
    """An ISO 8601 time (UTC unless it says otherwise), as ns since 1970."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise IslsError(f"{option} {text!r}: expected an ISO 8601 UTC time such as "
                        f"2027-01-15T08:00 or 2027-01-15T08:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # Exact integer arithmetic: a float timestamp would round away nanoseconds' worth.
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def _quote_name(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _quote_text(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _time_clause(start_ns: int, end_ns: int) -> str:
    return f"time >= {start_ns} AND time < {end_ns}"


@dataclass(frozen=True, slots=True)
class _SiteCounts:
    counts: dict[tuple[str, int], int]
    measurements: tuple[str, ...]
    note: str = ""


def _packet_measurements(influx: _Influx) -> tuple[tuple[str, ...], str]:
    """The site's packet measurements, and a note if it has no database at all."""
    databases = {value[0] for series in influx.query("SHOW DATABASES", database=False)
                 for value in series.get("values") or [] if value}
    if influx.database not in databases:
        return (), (f"{influx.site}: no database {influx.database!r} (nothing stored yet?): "
                    f"counted as holding nothing")
    names = [value[0] for series in influx.query("SHOW MEASUREMENTS")
             for value in series.get("values") or [] if value]
    return tuple(sorted(n for n in names if n not in NOT_TELEMETRY)), ""


def _count(influx: _Influx, start_ns: int, end_ns: int) -> _SiteCounts:
    measurements, note = _packet_measurements(influx)
    counts: dict[tuple[str, int], int] = {}
    if not measurements:
        return _SiteCounts(counts, measurements, note)
    query = (f"SELECT COUNT({_quote_name(SEQUENCE_FIELD)}) FROM "
             f"{','.join(_quote_name(m) for m in measurements)} "
             f"WHERE \"source\" = {_quote_text(LIVE)} AND {_time_clause(start_ns, end_ns)} "
             f"GROUP BY time(1h), \"spacecraft\" fill(none)")
    for series in influx.query(query):
        spacecraft = str((series.get("tags") or {}).get("spacecraft", ""))
        for hour_ns, count in series.get("values") or []:
            if count:
                key = (spacecraft, int(hour_ns))
                counts[key] = counts.get(key, 0) + int(count)
    return _SiteCounts(counts, measurements, note)


def _point_times(influx: _Influx, measurements: Sequence[str], spacecraft: str,
                 start_ns: int, end_ns: int) -> set[tuple[str, int]]:
    """(measurement, time) of every live point of one spacecraft in [start, end)."""
    if not measurements:
        return set()
    query = (f"SELECT {_quote_name(SEQUENCE_FIELD)} FROM "
             f"{','.join(_quote_name(m) for m in measurements)} "
             f"WHERE \"spacecraft\" = {_quote_text(spacecraft)} AND \"source\" = "
             f"{_quote_text(LIVE)} AND {_time_clause(start_ns, end_ns)}")
    return {(str(series.get("name", "")), int(value[0]))
            for series in influx.query(query) for value in series.get("values") or []}


def _expected(network: Network, site: Site, spacecraft: str) -> bool:
    """Whether ``site`` should hold the packets of ``spacecraft``: a center holds every
    spacecraft; a partner those its agreements forward raw (decoded parameters and
    alarms are not stored as packets)."""
    if site.kind == "center":
        return True
    return "raw" in network.partner_share(site.name).get(spacecraft, ())


def _count_problems(network: Network, sites: Sequence[Site], spacecraft: str,
                    counts: Sequence[int | None], expected: Sequence[bool]) -> list[str]:
    held = [(site, count) for site, count, wanted in zip(sites, counts, expected, strict=True)
            if wanted and count is not None]
    problems: list[str] = []
    if held:
        most = max(count for _, count in held)
        problems += [f"{site.name} {most - count} fewer" for site, count in held
                     if count < most]
    for site, count, wanted in zip(sites, counts, expected, strict=True):
        if not wanted and count:
            kinds = network.partner_share(site.name).get(spacecraft, ())
            why = (f"its agreements forward only {'/'.join(kinds)} of it" if kinds
                   else "not in its agreements")
            problems.append(f"{site.name} holds {count} ({why})")
    return problems


def _point_problems(sites: Sequence[Site], times: Mapping[str, set[tuple[str, int]]]
                    ) -> list[str]:
    """Sites lacking points another site holds, with the first such point."""
    every: set[tuple[str, int]] = set().union(*times.values()) if times else set()
    problems: list[str] = []
    for site in sites:
        if site.name not in times:
            continue
        missing = every - times[site.name]
        if missing:
            measurement, time_ns = min(missing, key=lambda p: (p[1], p[0]))
            problems.append(f"{site.name} lacks {len(missing)} point(s) others hold, first "
                            f"{measurement} at {utc_text(time_ns, milliseconds=True)}")
    return problems


def compare_network(network: Network, *, start_ns: int | None = None,
                    end_ns: int | None = None, database: str = "isls", points: bool = False,
                    headers: Mapping[str, str] | None = None,
                    timeout: float = 30.0) -> Comparison:
    """Count the live packets per spacecraft and UTC hour at every center and partner of
    ``network`` and compare them (see the module documentation); ``points`` compares the
    point times of each spacecraft-hour as well. Never raises for a site that cannot be
    read: it is in :attr:`Comparison.unreachable`."""
    low = MIN_TIME_NS if start_ns is None else start_ns
    high = MAX_TIME_NS if end_ns is None else end_ns
    if high <= low:
        raise IslsError(f"the time range is empty: {utc_text(low)} is not before "
                        f"{utc_text(high)} UTC")
    sites = (*network.of_kind("center"), *network.of_kind("partner"))
    influxes = [_Influx(site.name, f"http://127.0.0.1:{site.influx_port}", database,
                        headers or {}, timeout) for site in sites]
    unreachable: list[SiteProblem] = []
    site_counts: list[_SiteCounts | None] = []
    # Every site at once: an unreachable one costs its timeout once, not once per site.
    with ThreadPoolExecutor(max_workers=max(1, len(influxes))) as pool:
        outcomes = list(pool.map(lambda influx: _attempt(_count, influx, low, high),
                                 influxes))
        for influx, outcome in zip(influxes, outcomes, strict=True):
            if isinstance(outcome, _Unreadable):
                unreachable.append(SiteProblem(influx.site, influx.url, str(outcome)))
                site_counts.append(None)
            else:
                site_counts.append(outcome)
        keys = sorted({key for counts in site_counts if counts is not None
                       for key in counts.counts})
        rows: list[Row] = []
        for spacecraft, hour_ns in keys:
            counts = tuple(None if c is None else c.counts.get((spacecraft, hour_ns), 0)
                           for c in site_counts)
            expected = tuple(_expected(network, site, spacecraft) for site in sites)
            problems = _count_problems(network, sites, spacecraft, counts, expected)
            if points:
                times = _row_times(pool, influxes, site_counts, expected, unreachable,
                                   spacecraft, max(low, hour_ns), min(high, hour_ns + HOUR_NS))
                problems += _point_problems(sites, times)
            rows.append(Row(spacecraft, hour_ns, counts, expected, tuple(problems)))
    notes = tuple(c.note for c in site_counts if c is not None and c.note)
    return Comparison(database=database, start_ns=start_ns, end_ns=end_ns,
                      sites=tuple(s.name for s in sites), kinds=tuple(s.kind for s in sites),
                      rows=tuple(rows), unreachable=tuple(unreachable), notes=notes,
                      points_checked=points)


def _attempt(function: Callable[..., T], *args: Any) -> T | _Unreadable:
    """``function(*args)``, or the :class:`_Unreadable` it raised (for a thread pool)."""
    try:
        return function(*args)
    except _Unreadable as exc:
        return exc


def _row_times(pool: ThreadPoolExecutor, influxes: Sequence[_Influx],
               site_counts: Sequence[_SiteCounts | None], expected: Sequence[bool],
               unreachable: list[SiteProblem], spacecraft: str, start_ns: int, end_ns: int
               ) -> dict[str, set[tuple[str, int]]]:
    """The point times of one spacecraft-hour at every site that should hold it and was
    read; a site that stops answering joins ``unreachable`` and is left out."""
    chosen = [(influx, counts) for influx, counts, wanted
              in zip(influxes, site_counts, expected, strict=True)
              if wanted and counts is not None
              and all(p.site != influx.site for p in unreachable)]
    outcomes = list(pool.map(
        lambda pair: _attempt(_point_times, pair[0], pair[1].measurements, spacecraft,
                              start_ns, end_ns), chosen))
    times: dict[str, set[tuple[str, int]]] = {}
    for (influx, _), outcome in zip(chosen, outcomes, strict=True):
        if isinstance(outcome, _Unreadable):
            unreachable.append(SiteProblem(influx.site, influx.url, f"point check: {outcome}"))
        else:
            times[influx.site] = outcome
    return times


def _cell(count: int | None, expected: bool) -> str:
    if count is None:
        return "?"  # the site was not read
    if not expected and count == 0:
        return "-"  # not this site's to hold, and it holds none
    return str(count)


def format_comparison(comparison: Comparison, *, only_differences: bool = False) -> str:
    """The comparison as operators read it: a row per spacecraft and UTC hour, a column
    per site, ``<<`` and the reason on every row that differs; then the unreachable
    sites and a verdict."""
    c = comparison
    lines: list[str] = []
    span = " ".join([*([f"from {utc_text(c.start_ns)}"] if c.start_ns is not None else []),
                     *([f"until {utc_text(c.end_ns)}"] if c.end_ns is not None else [])])
    span = f"{span} UTC" if span else "all times"
    what = "packet counts and point times" if c.points_checked else "packet counts"
    lines.append(f"live {what} per spacecraft and UTC hour, database {c.database!r}, "
                 f"{span}")
    shown = c.differences if only_differences else c.rows
    headers = [f"{name} ({kind})" for name, kind in zip(c.sites, c.kinds, strict=True)]
    cells = [[_cell(n, e) for n, e in zip(row.counts, row.expected, strict=True)]
             for row in shown]
    width_sc = max([len("spacecraft"), *(len(row.spacecraft) for row in shown)])
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    if shown or not only_differences:
        lines.append("  ".join([f"{'spacecraft':<{width_sc}}", f"{'hour (UTC)':<16}",
                                *(f"{h:>{w}}" for h, w in zip(headers, widths, strict=True))]
                               ).rstrip())
    for row, row_cells in zip(shown, cells, strict=True):
        text = "  ".join([f"{row.spacecraft or '(none)':<{width_sc}}",
                          utc_text(row.hour_ns)[:16],
                          *(f"{v:>{w}}" for v, w in zip(row_cells, widths, strict=True))])
        if row.differs:
            text += "  << " + "; ".join(row.problems)
        lines.append(text)
    if not c.rows:
        lines.append("(no live packets stored in this range at any site read)")
    lines += [f"note: {note}" for note in c.notes]
    for problem in c.unreachable:
        lines.append(f"{problem.site}: InfluxDB at {problem.url}: {problem.reason}; "
                     f"not compared")
    total, differing = len(c.rows), len(c.differences)
    read = len(c.sites) - len({p.site for p in c.unreachable})
    if c.unreachable:
        verdict = (f"INCOMPLETE: {len({p.site for p in c.unreachable})} of {len(c.sites)} "
                   f"site(s) not read; {differing} of {total} spacecraft-hour(s) differ "
                   f"among the {read} read")
    elif differing:
        verdict = f"DIFFERENT: {differing} of {total} spacecraft-hour(s) differ"
    else:
        verdict = f"SAME: {total} spacecraft-hour(s) agree at all {len(c.sites)} site(s)"
    lines.append(verdict)
    return "\n".join(lines)
