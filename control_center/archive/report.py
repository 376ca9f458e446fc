"""Pass reports: ``isls report PASS_ID --out DIR``.

The pass is decoded straight from the archive (the source of truth: a report needs no
InfluxDB, and shows what arrived even if storing it failed), in chunks so that memory
stays bounded by the report parameters' values, not by the raw pass. ``DIR`` receives

``<packet>-<parameter>.png``
    one plot per parameter marked ``report: true`` that has samples in the pass: UTC
    time against the engineering value, limit lines, violating samples marked. The
    PNG's ``Description`` text chunk holds the plotted data's summary as JSON
    (parameter, packet, samples, min, max, first_ns, last_ns, yellow_violations,
    red_violations), so tests and analysts can check what a plot shows.
``index.html``
    a self-contained page: pass summary, limit violations per parameter, the plots.
``report.json``
    the same summary, machine-readable.

A sample violates red when it lies outside the red limits, and yellow when it lies
outside the yellow limits but inside the red ones: each violating sample counts once,
at its worst level. A value exactly on a limit is within it.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from matplotlib import dates as mdates
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from control_center.archive.recorder import (
    KIND_PACKETS,
    PassInfo,
    ReadStats,
    find_pass,
    iter_pass_records,
    pass_info,
)
from control_center.errors import IslsError
from control_center.telemetry.decoder import Decoder
from control_center.telemetry.records import DecodedBatch, RawMessage
from control_center.telemetry.tmdb import Limits, PacketDef, Parameter, Tmdb
from control_center.terminal import utc_text

FIGSIZE = (10.0, 4.0)  # inches; at DPI this makes every PNG 1000 x 400 pixels
DPI = 100
CHUNK_PACKETS = 20_000  # decode once this many packets wait: bounds the raw data held
MAX_LINE_POINTS = 4_000  # longer series are drawn as a min/max envelope (same picture)
YELLOW_LINE = "goldenrod"  # pure yellow is unreadable on white
YELLOW_MARK = "orange"
RED = "red"
LINE = "tab:blue"


def _stamp(ns: int | None) -> str:
    """Report times to the millisecond; a dash for a time the pass does not have."""
    return utc_text(ns, milliseconds=True, missing="—")

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class ParameterFigures:
    """What the report found for one report parameter."""

    parameter: str
    packet: str
    type: str
    unit: str
    description: str
    samples: int
    min: float | int | None  # over finite values; None without any
    max: float | int | None
    first_ns: int | None
    last_ns: int | None
    yellow_violations: int
    red_violations: int
    first_violation_ns: int | None
    worst_value: float | None  # the violating value furthest outside the limits
    limits: Limits
    png: Path | None  # None when the pass holds no sample of the parameter

    def plot_metadata(self) -> dict[str, Any]:
        """The JSON embedded in the PNG."""
        return {"parameter": self.parameter, "packet": self.packet, "samples": self.samples,
                "min": self.min, "max": self.max, "first_ns": self.first_ns,
                "last_ns": self.last_ns, "yellow_violations": self.yellow_violations,
                "red_violations": self.red_violations}


@dataclass(frozen=True, slots=True)
class ReportSummary:
    pass_info: PassInfo
    out: Path
    index: Path
    report_json: Path
    pngs: tuple[Path, ...]
    parameters: tuple[ParameterFigures, ...]
    packets_decoded: Mapping[str, int]  # by packet name
    decode_errors: Mapping[str, int]  # by kind (bad CRC, unknown APID, ...)
    archive_damaged: int  # damaged archive records skipped
    archive_torn_tail: bool

    @property
    def decoded(self) -> int:
        return sum(self.packets_decoded.values())


@dataclass(slots=True)
class _Series:
    """Values of the report parameters of one packet type, gathered chunk by chunk."""

    packet: PacketDef
    parameters: tuple[Parameter, ...]
    times: list[IntArray] = field(default_factory=list)
    values: dict[str, list[npt.NDArray[Any]]] = field(default_factory=dict)

    def add(self, batch: DecodedBatch) -> None:
        if not self.parameters:
            return
        self.times.append(np.asarray(batch.times_ns, dtype=np.int64))
        for parameter in self.parameters:
            # Copy: the batch's other columns (and raw counts) can then be freed.
            self.values.setdefault(parameter.name, []).append(
                np.array(batch.values[parameter.name]))

    def columns(self) -> tuple[IntArray, dict[str, npt.NDArray[Any]]]:
        """Times and values, sorted by time (chunks arrive in record order, which a
        store-and-forward link need not keep)."""
        if not self.times:
            return np.zeros(0, np.int64), {p.name: np.zeros(0) for p in self.parameters}
        times = np.concatenate(self.times)
        columns = {name: np.concatenate(chunks) for name, chunks in self.values.items()}
        if times.size > 1 and bool(np.any(np.diff(times) < 0)):
            order = np.argsort(times, kind="stable")
            times = times[order]
            columns = {name: column[order] for name, column in columns.items()}
        return times, columns


def write_report(archive_root: Path, pass_id: str, tmdbs: list[Tmdb], out: Path, *,
                 chunk_packets: int = CHUNK_PACKETS) -> ReportSummary:
    """Decode pass ``pass_id`` from the archive under ``archive_root``; write its plots,
    ``index.html`` and ``report.json`` into ``out`` (created if needed).

    Raises :class:`IslsError` for an unknown pass or a spacecraft without telemetry
    database. A pass without decodable packets still gets a report that says so.
    """
    info = pass_info(archive_root, pass_id)
    directory = find_pass(archive_root, pass_id)
    tmdb = next((t for t in tmdbs if t.spacecraft == info.spacecraft), None)
    if tmdb is None:
        known = ", ".join(t.spacecraft for t in tmdbs) or "none"
        raise IslsError(f"pass {pass_id!r} is of spacecraft {info.spacecraft!r}, which no "
                        f"telemetry database describes (configured: {known})")
    series = {p.name: _Series(p, tuple(q for q in p.fields if q.report))
              for p in tmdb.packets}
    decoder = Decoder([tmdb])
    read_stats = ReadStats()
    packets_decoded: dict[str, int] = {p.name: 0 for p in tmdb.packets}

    def collect() -> None:
        for batch in decoder.take(force=True):
            packets_decoded[batch.packet.name] += len(batch)
            series[batch.packet.name].add(batch)

    for record in iter_pass_records(directory, read_stats, kinds=frozenset({KIND_PACKETS})):
        decoder.feed(RawMessage(info.spacecraft, record.payload, record.ert_ns, record.link))
        # Bounded by packets, not records: one serial-link record may hold thousands.
        if decoder.waiting >= chunk_packets:
            collect()
    collect()

    out.mkdir(parents=True, exist_ok=True)
    figures: list[ParameterFigures] = []
    for packet in tmdb.packets:
        packet_series = series[packet.name]
        if not packet_series.parameters:
            continue
        times, columns = packet_series.columns()
        for parameter in packet_series.parameters:
            figures.append(_report_parameter(info, packet, parameter, times,
                                             columns[parameter.name], out))
    summary = ReportSummary(
        pass_info=info, out=out, index=out / "index.html", report_json=out / "report.json",
        pngs=tuple(f.png for f in figures if f.png is not None), parameters=tuple(figures),
        packets_decoded={k: v for k, v in packets_decoded.items() if v},
        decode_errors=dict(decoder.stats.errors), archive_damaged=read_stats.damaged,
        archive_torn_tail=read_stats.torn_tail)
    summary.report_json.write_text(json.dumps(_summary_document(summary), indent=1,
                                              allow_nan=False) + "\n")
    summary.index.write_text(_index_html(summary), encoding="utf-8")
    return summary


# -------------------------------------------------------------------- analysis


def _violations(values: FloatArray, limits: Limits) -> tuple[npt.NDArray[np.bool_],
                                                              npt.NDArray[np.bool_]]:
    """Masks of yellow-only and red samples; NaN compares false, so never violates."""
    red = np.zeros(values.shape, dtype=bool)
    yellow = np.zeros(values.shape, dtype=bool)
    if limits.red_low is not None:
        red |= values < limits.red_low
    if limits.red_high is not None:
        red |= values > limits.red_high
    if limits.yellow_low is not None:
        yellow |= values < limits.yellow_low
    if limits.yellow_high is not None:
        yellow |= values > limits.yellow_high
    return yellow & ~red, red


def _excess(values: FloatArray, limits: Limits) -> FloatArray:
    """How far each value lies outside the nominal band (yellow, else red, limits)."""
    low = limits.yellow_low if limits.yellow_low is not None else limits.red_low
    high = limits.yellow_high if limits.yellow_high is not None else limits.red_high
    none = np.full_like(values, -np.inf)
    below = none if low is None else low - values
    above = none if high is None else values - high
    return np.maximum(below, above)


def _number(value: Any, integral: bool) -> float | int | None:
    """A JSON-safe number: NaN and infinities become None (JSON has neither)."""
    if integral:
        return int(value)
    number = float(value)
    return number if math.isfinite(number) else None


def _report_parameter(info: PassInfo, packet: PacketDef, parameter: Parameter,
                      times: IntArray, column: npt.NDArray[Any], out: Path) -> ParameterFigures:
    integral = column.dtype.kind in "biu"
    values = column.astype(np.float64)
    finite = np.isfinite(values)
    yellow, red = _violations(values, parameter.limits)
    violating = yellow | red
    first_violation: int | None = None
    worst: float | None = None
    if violating.any():
        first_violation = int(times[violating][0])
        excess = _excess(values[violating], parameter.limits)
        worst = float(values[violating][int(np.argmax(excess))])
    samples = int(values.size)
    figures = ParameterFigures(
        parameter=parameter.name, packet=packet.name, type=parameter.type,
        unit=parameter.unit, description=parameter.description, samples=samples,
        min=_number(column[finite].min(), integral) if finite.any() else None,
        max=_number(column[finite].max(), integral) if finite.any() else None,
        first_ns=int(times[0]) if samples else None,
        last_ns=int(times[-1]) if samples else None,
        yellow_violations=int(yellow.sum()), red_violations=int(red.sum()),
        first_violation_ns=first_violation, worst_value=worst, limits=parameter.limits,
        png=out / f"{packet.name}-{parameter.name}.png" if samples else None)
    if figures.png is not None:
        _plot(info, packet, parameter, times, values, yellow, red, figures.png,
              figures.plot_metadata())
    return figures


# ------------------------------------------------------------------------ plots


def _envelope(values: FloatArray, points: int) -> IntArray:
    """Indices of each bucket's minimum and maximum, and of the first NaN of every run
    (so holes stay holes): a long series drawn from these looks the same, at a fraction
    of the cost."""
    n = values.size
    if n <= points:
        return np.arange(n, dtype=np.int64)
    size = math.ceil(n / (points // 2))
    whole = n // size * size
    nan = np.isnan(values)
    low = np.where(nan, np.inf, values)
    high = np.where(nan, -np.inf, values)
    starts = np.arange(0, whole, size)
    picks = [starts + low[:whole].reshape(-1, size).argmin(axis=1),
             starts + high[:whole].reshape(-1, size).argmax(axis=1),
             np.arange(whole, n), np.flatnonzero(nan & ~np.roll(nan, 1)),
             np.array([0, n - 1])]
    return np.unique(np.concatenate(picks)).astype(np.int64)


def _changes(values: FloatArray) -> IntArray:
    """Indices where a step series changes, plus its ends: drawn as steps-post, the
    same picture exactly."""
    changed = np.flatnonzero(values[1:] != values[:-1]) + 1
    return np.unique(np.concatenate([[0], changed, [values.size - 1]])).astype(np.int64)


def _gaps(times: IntArray, period: float | None) -> IntArray:
    """Indices of the first sample after a hole of more than five packet periods."""
    if period is None or times.size < 2:
        return np.zeros(0, dtype=np.int64)
    return (np.flatnonzero(np.diff(times) > 5 * period * 1e9) + 1).astype(np.int64)


def _limit_lines(axes: Axes, limits: Limits) -> None:
    for value, color, label in ((limits.yellow_low, YELLOW_LINE, "yellow limit"),
                                (limits.yellow_high, YELLOW_LINE, "yellow limit"),
                                (limits.red_low, RED, "red limit"),
                                (limits.red_high, RED, "red limit")):
        if value is not None:
            # One legend entry per colour: later lines of a colour get a hidden label.
            labels = {str(line.get_label()) for line in axes.get_lines()}
            axes.axhline(value, color=color, linestyle="--", linewidth=1.2,
                         label=label if label not in labels else f"_{label}")


def _plot(info: PassInfo, packet: PacketDef, parameter: Parameter, times: IntArray,
          values: FloatArray, yellow: npt.NDArray[np.bool_], red: npt.NDArray[np.bool_],
          path: Path, metadata: dict[str, Any]) -> None:
    # Figure + FigureCanvasAgg, not pyplot: no global state, no display, thread-safe.
    figure = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(figure)
    # Fixed margins (the legend goes on the right, state names need room on the left):
    # a layout engine would draw every figure twice, doubling the report's run time.
    longest = max((len(name) for name in parameter.states.values()), default=0)
    figure.subplots_adjust(left=min(0.4, max(0.09, 0.065 + 0.0075 * longest)), right=0.80,
                           bottom=0.14, top=0.84)
    axes = figure.add_subplot()
    # matplotlib.dates carries no annotations, hence the ignores on its calls.
    x = np.asarray(mdates.date2num(times.astype("datetime64[ns]")),  # type: ignore[no-untyped-call]
                   dtype=np.float64)
    steps = parameter.type in ("enum", "boolean")
    if values.size < 100:
        indices = np.arange(values.size, dtype=np.int64)
    else:
        indices = _changes(values) if steps else _envelope(values, MAX_LINE_POINTS)
    # Break the line where packets are missing rather than draw across the hole; the
    # samples either side of each hole are kept, so thinning cannot fake or hide one.
    gaps = _gaps(times, packet.period)
    indices = np.union1d(indices, np.concatenate([gaps - 1, gaps])).astype(np.int64)
    line_x, line_y = x[indices], values[indices]
    if gaps.size:
        breaks = np.flatnonzero(np.isin(indices, gaps))
        line_x = np.insert(line_x, breaks, np.nan)
        line_y = np.insert(line_y, breaks, np.nan)
    axes.plot(line_x, line_y, color=LINE, linewidth=1.0,
              drawstyle="steps-post" if steps else "default",
              marker="." if values.size < 100 and not steps else "", label=parameter.name)
    _limit_lines(axes, parameter.limits)
    for mask, color, level in ((yellow, YELLOW_MARK, "yellow"), (red, RED, "red")):
        count = int(mask.sum())
        if count:
            axes.plot(x[mask], values[mask], linestyle="none", marker="o", markersize=4,
                      color=color, label=f"{level} violation ({count})")
    if parameter.type == "enum":
        seen = {int(v) for v in np.unique(values[np.isfinite(values)])}
        # A large state table would crowd the axis: then only the states that occur.
        shown = sorted(set(parameter.states) | seen) if len(parameter.states) <= 16 \
            else sorted(seen)
        axes.set_yticks(shown, [parameter.states.get(v, f"{v} (unknown)") for v in shown])
        axes.set_ylabel("state")
    elif parameter.type == "boolean":
        axes.set_yticks([0, 1], ["false (0)", "true (1)"])
        axes.set_ylim(-0.15, 1.15)
        axes.set_ylabel("value")
    else:
        axes.set_ylabel(f"{parameter.name} [{parameter.unit}]" if parameter.unit
                        else parameter.name)
    locator = mdates.AutoDateLocator(tz=UTC)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(
        mdates.ConciseDateFormatter(locator, tz=UTC))  # type: ignore[no-untyped-call]
    axes.set_xlabel("time (UTC)")
    axes.grid(True, alpha=0.3)
    title = parameter.name + (f": {parameter.description}" if parameter.description else "")
    # An explicit y skips matplotlib's search for top tick labels to dodge (none here),
    # a tenth of the drawing time.
    axes.set_title(title, fontsize=11, y=1.0)
    figure.suptitle(f"{info.spacecraft} pass {info.id}, packet {packet.name}", fontsize=8,
                    color="dimgray")
    # Outside the axes: loc="best" costs a pass over every point, and covers none here.
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small",
                frameon=False)
    figure.savefig(path, format="png", metadata={
        "Title": title, "Description": json.dumps(metadata, allow_nan=False)})


# ---------------------------------------------------------------- index, json



def _duration(seconds: float) -> str:
    hours, rest = divmod(seconds, 3600.0)
    minutes, rest = divmod(rest, 60.0)
    if hours:
        return f"{int(hours)} h {int(minutes):02d} min {rest:04.1f} s"
    if minutes:
        return f"{int(minutes)} min {rest:04.1f} s"
    return f"{rest:.1f} s"


def _limits_text(limits: Limits, unit: str) -> str:
    """The allowed range per level, e.g. ``yellow 26 … 33.6 V, red ≥ 24 V``."""
    suffix = f" {unit}" if unit else ""
    parts = []
    for level, low, high in (("yellow", limits.yellow_low, limits.yellow_high),
                             ("red", limits.red_low, limits.red_high)):
        if low is not None and high is not None:
            parts.append(f"{level} {low:g} … {high:g}{suffix}")
        elif low is not None:
            parts.append(f"{level} ≥ {low:g}{suffix}")
        elif high is not None:
            parts.append(f"{level} ≤ {high:g}{suffix}")
    return ", ".join(parts) or "none"


def _value_text(value: float | int | None) -> str:
    if value is None:
        return "—"
    return str(value) if isinstance(value, int) else f"{value:.6g}"


def _summary_document(summary: ReportSummary) -> dict[str, Any]:
    info = summary.pass_info
    parameters = []
    for figures in summary.parameters:
        entry = asdict(figures)
        entry["png"] = figures.png.name if figures.png is not None else None  # relative
        parameters.append(entry)
    return {
        "pass": {**asdict(info), "start_utc": _stamp(info.start_ns), "end_utc": _stamp(info.end_ns),
                 "duration_s": info.duration},
        "decoded_packets": dict(summary.packets_decoded),
        "decode_errors": dict(summary.decode_errors),
        "archive": {"damaged_records": summary.archive_damaged,
                    "torn_tail": summary.archive_torn_tail},
        "no_data": summary.decoded == 0,
        "parameters": parameters,
    }


_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1100px; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.red td { background: #fdd; }
tr.yellow td { background: #ffefc2; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #444; }
.warning { background: #ffefc2; padding: 0.6em; border: 1px solid #e0c060; }
"""


def _index_html(summary: ReportSummary) -> str:
    e = html.escape
    info = summary.pass_info
    rows = [
        ("pass", info.id), ("spacecraft", info.spacecraft),
        ("start", f"{_stamp(info.start_ns)} (acquisition of signal)"),
        ("end", f"{_stamp(info.end_ns)} ({'loss of signal' if info.closed else 'still open'})"),
        ("duration", _duration(info.duration)),
        ("packets", f"{info.packets} recorded, {summary.decoded} decoded"),
        ("octets", str(info.octets)),
        ("gaps", f"{info.gaps} packets missing by sequence count"),
        ("links", ", ".join(info.links) or "—"),
        ("decode errors", ", ".join(f"{k.replace('_', ' ')} {v}" for k, v
                                    in sorted(summary.decode_errors.items())) or "none"),
    ]
    if summary.archive_damaged or summary.archive_torn_tail:
        rows.append(("archive damage", f"{summary.archive_damaged} damaged records skipped"
                     + (", torn last record" if summary.archive_torn_tail else "")))
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>Pass report {e(info.id)}</title>", f"<style>{_STYLE}</style>", "</head>",
        "<body>", f"<h1>Pass report {e(info.id)}</h1>",
        '<table class="summary">',
        *(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows),
        "</table>",
    ]
    if summary.decoded == 0:
        parts.append('<p class="warning">No decodable packets in this pass: nothing to '
                     "plot. The decode errors above say what arrived instead.</p>")
    parts += ["<h2>Limit violations</h2>", '<table class="violations">',
              "<tr><th>parameter</th><th>packet</th><th>limits</th><th>samples</th>"
              "<th>yellow</th><th>red</th><th>first violation</th><th>worst value</th></tr>"]
    for f in summary.parameters:
        level = "red" if f.red_violations else "yellow" if f.yellow_violations else "ok"
        worst = "—" if f.worst_value is None else \
            f"{f.worst_value:.6g}" + (f" {f.unit}" if f.unit else "")
        parts.append(
            f'<tr class="{level}" id="violations-{e(f.packet)}-{e(f.parameter)}">'
            f"<td>{e(f.parameter)}</td><td>{e(f.packet)}</td>"
            f"<td>{e(_limits_text(f.limits, f.unit))}</td><td class=\"n\">{f.samples}</td>"
            f'<td class="n">{f.yellow_violations}</td><td class="n">{f.red_violations}</td>'
            f"<td>{e(_stamp(f.first_violation_ns))}</td><td>{e(worst)}</td></tr>")
    parts += ["</table>", "<h2>Plots</h2>"]
    for f in summary.parameters:
        label = f.parameter + (f" [{f.unit}]" if f.unit else "")
        if f.png is None:
            parts.append(f"<p>{e(label)}: no samples in this pass.</p>")
            continue
        caption = (f"{label} ({f.packet}): {f.description} — {f.samples} samples, "
                   f"{_value_text(f.min)} … {_value_text(f.max)}, "
                   f"{f.yellow_violations} yellow and {f.red_violations} red violations")
        parts.append(f'<figure id="plot-{e(f.packet)}-{e(f.parameter)}">'
                     f'<img src="{e(f.png.name)}" alt="{e(label)}" width="{int(FIGSIZE[0] * DPI)}"'
                     f' height="{int(FIGSIZE[1] * DPI)}">'
                     f"<figcaption>{e(caption)}</figcaption></figure>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)
