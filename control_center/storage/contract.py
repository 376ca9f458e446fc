"""The InfluxDB contract, in one place: every measurement, tag and field the control
center writes, and the line protocol text of each (docs/contracts.md, "InfluxDB contract").

- one measurement per packet type, named after the packet: tags ``spacecraft`` and
  ``source`` (live, replay, import; ``pass`` for a replay), one field per parameter
  holding its engineering value, and ``sequence_count``; the point time is the packet's
  onboard (or receive) time in UTC ns made unique per packet
  (:func:`control_center.telemetry.decoder.point_times`);
- ``alarms``: every alarm change; ``events``: events, contact loss and acquisition;
- ``link``: a link's statistics; ``ingest``: the ingest's health.

Dashboards, reports and tests read the measurement names from here.
"""

from __future__ import annotations

import asyncio
import functools
import io
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from control_center.monitoring.alarms import AlarmChange
from control_center.monitoring.monitor import Event
from control_center.storage.health import WriterStats
from control_center.telemetry.decoder import IngestStats
from control_center.telemetry.records import DecodedBatch
from drivers.link import LinkStatus

ALARMS_MEASUREMENT = "alarms"
EVENTS_MEASUREMENT = "events"
LINK_MEASUREMENT = "link"
INGEST_MEASUREMENT = "ingest"


def escape_tag(value: str) -> str:
    """Line protocol tag keys/values: escape comma, equals sign and space."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


SEQUENCE_FIELD = "sequence_count"


def _field_template(name: str, kind: str) -> str:
    if kind in ("bool", "float32"):  # float32: already text (format_lines_reference)
        return f"{name}=%s"
    if kind == "float":
        return f"{name}=%r"
    if kind == "text":
        return f'{name}="%s"'
    return f"{name}=%di"


def escape_text(value: str) -> str:
    """A line protocol string field value: backslash and double quote escaped (the
    decoder's text holds no line break: :func:`control_center.telemetry.codec.render_text`)."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _columns(batch: DecodedBatch) -> list[tuple[str, str, np.ndarray[Any, Any]]]:
    """(field name, kind, column) in line order; kind is "float", "float32", "int",
    "bool" or "text" (strings, and unsigned 64-bit values as exact decimal text:
    InfluxDB 1.x has no unsigned type and would store those above 2**63 negative).

    "float32": an uncalibrated IEEE float32 parameter (array elements included) or a
    calibration declared ``engineering: float32``, whose decoded float64 is exactly a
    float32: the column is float32 again, written as its shortest float32 text
    (``format_lines``). Other calibrated values and derived values are "float".
    """
    columns: list[tuple[str, str, np.ndarray[Any, Any]]] = []
    for parameter in batch.packet.parameters:
        column = np.asarray(batch.values[parameter.name])
        if parameter.octets_value:  # string, or binary as hex
            columns.append((parameter.name, "text", column))
        elif parameter.is_wide_unsigned:
            columns.append((parameter.name, "text", column.astype(np.uint64).astype(str)))
        elif parameter.is_float32:
            # A value no float32 holds (a batch built by hand) overflows to inf, left out.
            with np.errstate(over="ignore"):
                columns.append((parameter.name, "float32",
                                column.astype(np.float32, copy=False)))
        elif parameter.is_float_value:
            columns.append((parameter.name, "float", column.astype(np.float64, copy=False)))
        elif column.dtype == np.bool_:
            columns.append((parameter.name, "bool", column))
        else:
            columns.append((parameter.name, "int", column.astype(np.int64, copy=False)))
    for derived in batch.packet.derived:
        columns.append((derived.name, "float",
                        np.asarray(batch.values[derived.name], dtype=np.float64)))
    # Every point carries its packet's CCSDS sequence count: it is what gap analysis
    # needs, and a field on every point makes COUNT("sequence_count") the number of
    # packets stored, even where non-finite values left other fields out.
    columns.append((SEQUENCE_FIELD, "int", batch.sequence_counts.astype(np.int64)))
    return columns


def _prefix(batch: DecodedBatch, tags: Mapping[str, str]) -> str:
    tag_text = ",".join(f"{escape_tag(k)}={escape_tag(v)}" for k, v in sorted(tags.items()))
    return f"{batch.packet.name},{tag_text} " if tag_text else f"{batch.packet.name} "


# The float32 magnitude (bits without the sign) whose shortest text double-rounds:
# "7.038531e-26" is nearest the double halfway between this float32 and the next one
# up, which narrows (ties to even) to that neighbour. The only one of all 2**32 bit
# patterns (checked exhaustively against polars' text); it is written as "%.9g"
# (7.03853069e-26), which any float32 survives.
_DOUBLE_ROUNDED_FLOAT32 = 0x15AE43FD


def _double_rounded(column: np.ndarray[Any, Any]) -> npt.NDArray[np.bool_]:
    """Where a float32 column holds ±_DOUBLE_ROUNDED_FLOAT32."""
    magnitudes = column.view(np.uint32) & np.uint32(0x7FFFFFFF)
    return np.asarray(magnitudes == _DOUBLE_ROUNDED_FLOAT32, dtype=np.bool_)


# Polars costs about 0.8 ms a call to set up (17 fields, the expressions cached):
# below this many packets (the live 10 Hz stream between bursts) the
# one-packet-at-a-time path is the faster one (lander_nav, 2026-11-30, interleaved
# medians: 1.03 against 0.93 ms at 32 packets, 0.85 against 0.91 at 48, 0.89 against
# 1.51 at 100; before the expressions were cached the crossover was near 100).
_COLUMNAR_MIN_ROWS = 40
# Up to this many packets polars joins the lines itself; above, its CSV writer wins.
_JOINED_MAX_ROWS = 5000


def format_lines(batch: DecodedBatch, tags: Mapping[str, str]) -> bytes:
    """One line per packet: ``packet,spacecraft=..,source=.. p1=..,p2=.. time_ns``.

    Wide lines (a field per parameter) are about four times cheaper for InfluxDB to
    ingest than a line per value. The text is built column by column in polars (Rust):
    numpy has no fast number-to-text kernel, and formatting one Python float at a
    time (``repr``) costs about 1 µs a value, which capped the ingest near 1 M values/s
    on one core (profiled: docs/performance.md). Polars writes floats in their
    shortest round-trip form, as ``repr`` does, so the stored values are the same
    (``format_lines_reference`` is the one-packet-at-a-time version the tests compare
    against); a float32 parameter as its shortest float32 text (``7726.142``, not the
    widened ``7726.14208984375``): the double InfluxDB parses from it narrows back to
    exactly the decoded float32. Non-finite floats cannot be stored in InfluxDB; a
    packet holding one is written without that field, through the reference path (as
    is the one float32 magnitude whose shortest text would not narrow back).
    """
    n = len(batch)
    if n < _COLUMNAR_MIN_ROWS:
        return format_lines_reference(batch, tags)
    columns = _columns(batch)
    if any(kind == "text" for _, kind, _ in columns):
        return format_lines_reference(batch, tags)  # rare: strings, unsigned 64-bit
    finite = np.ones(n, dtype=bool)
    for _, kind, column in columns:
        if kind in ("float", "float32"):
            finite &= np.isfinite(column)
        if kind == "float32":
            finite &= ~_double_rounded(column)  # its "%.9g", through the reference
    if not finite.all():
        # Rare (a sensor fault): keep packet order, the odd packets through the reference.
        rows: list[bytes] = [b""] * n
        good = np.flatnonzero(finite)
        if good.size:
            for index, line in zip(good.tolist(),
                                   format_lines(batch.take(good), tags).splitlines(True),
                                   strict=True):
                rows[index] = line
        for index in np.flatnonzero(~finite).tolist():
            rows[index] = format_lines_reference(batch.take(np.array([index])), tags)
        return b"".join(rows)
    # From a list of Series: a third faster than from a dict of arrays (220 against
    # 330 µs for lander_nav's 19 columns), a fixed cost paid by every live batch.
    frame = pl.DataFrame([pl.Series(f"c{i}", column) for i, (_, _, column) in enumerate(columns)]
                         + [pl.Series("time", batch.times_ns.astype(np.int64, copy=False))])
    each, joined = _line_expressions(_prefix(batch, tags),
                                     tuple((name, kind) for name, kind, _ in columns))
    if n <= _JOINED_MAX_ROWS:
        # One string out of polars, the lines joined in Rust: 1.1-1.5x faster than its
        # CSV writer from 100 to 3,000 packets (the live batches at high rates).
        text: str = frame.select(joined).item()
        return text.encode() + b"\n"
    out = io.BytesIO()  # big batches (an import): the CSV writer is the faster
    frame.select(each).write_csv(out, include_header=False, quote_style="never",
                                 line_terminator="\n")
    return out.getvalue()


@functools.lru_cache(maxsize=1024)
def _line_expressions(prefix: str, fields: tuple[tuple[str, str], ...]
                      ) -> tuple[pl.Expr, pl.Expr]:
    """The polars expressions of a packet type's lines (one line per row, and the lines
    joined), built once per measurement, tags and fields: building them took about a
    third of ``format_lines``' time for a live batch of a hundred packets."""
    pieces: list[pl.Expr] = []
    for i, (name, kind) in enumerate(fields):
        # A Float32 column's text is its shortest float32 round-trip text.
        text = (pl.col(f"c{i}").cast(pl.Float32) if kind == "float32"
                else pl.col(f"c{i}")).cast(pl.String)
        pieces.append(pl.lit((prefix if i == 0 else ",") + name + "="))
        pieces.append(text)
        if kind == "int":
            pieces.append(pl.lit("i"))
    pieces += [pl.lit(" "), pl.col("time").cast(pl.String)]
    line = pl.concat_str(pieces).alias("line")
    return line, line.str.join("\n")


async def format_lines_off_loop(batch: DecodedBatch, tags: Mapping[str, str]) -> bytes:
    """:func:`format_lines` in a worker thread for a batch that takes polars' path, in
    the calling thread for a small one. Polars formats with the GIL released, so the
    event loop goes on posting to InfluxDB and reading the broker meanwhile: formatting
    an import's 190,000-packet chunk held the loop for about 0.4 s, with influxd left
    idle once its two POSTs in flight were done."""
    if len(batch) < _COLUMNAR_MIN_ROWS:
        return format_lines(batch, tags)
    return await asyncio.to_thread(format_lines, batch, tags)


def format_lines_reference(batch: DecodedBatch, tags: Mapping[str, str]) -> bytes:
    """The same lines as ``format_lines``, one C-level ``%`` per packet (Python floats'
    ``repr``, float32 values as numpy's shortest float32 text: ``1e-07``,
    ``1.6777216e+07``, the same values as polars' ``1e-7``, ``16777216.0``); also the
    path for packets holding non-finite values."""
    if len(batch) == 0:
        return b""
    prefix = _prefix(batch, tags)
    columns = _columns(batch)
    templates = [_field_template(name, kind) for name, kind, _ in columns]
    lists: list[list[Any]] = [
        np.where(column, "true", "false").tolist() if kind == "bool"
        else [escape_text(str(v)) for v in column.tolist()] if kind == "text"
        else _float32_texts(column) if kind == "float32"
        else column.tolist() for _, kind, column in columns]
    times = batch.times_ns.astype(np.int64).tolist()
    out: list[str] = []
    for row in zip(*lists, times, strict=True):
        fields = [t % v for t, v in zip(templates, row[:-1], strict=True)
                  if not (isinstance(v, float) and not math.isfinite(v))]
        out.append(f"{prefix}{','.join(fields)} {row[-1]}\n")
    return "".join(out).encode()


def _float32_texts(column: np.ndarray[Any, Any]) -> list[Any]:
    """Each float32 as its shortest float32 text (numpy's, C-level), a non-finite one as
    NaN for the caller to leave out."""
    texts = column.astype(str).astype(object)
    for index in np.flatnonzero(_double_rounded(column)).tolist():
        texts[index] = f"{float(column[index]):.9g}"
    texts[~np.isfinite(column)] = math.nan
    out: list[Any] = texts.tolist()
    return out


def _string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def alarm_line(change: AlarmChange) -> str:
    """Measurement ``alarms``: tags spacecraft, subject, kind; the change as fields."""
    value = "" if change.value is None or not np.isfinite(change.value) \
        else f",value={change.value!r}"
    return (f"alarms,spacecraft={escape_tag(change.spacecraft)},"
            f"subject={escape_tag(change.subject)},kind={escape_tag(change.kind)} "
            f"alarm_id={_string(change.alarm_id)},transition={_string(change.transition)},"
            f"severity={_string(change.severity)},level={change.level}i,"
            f"state={_severity_code(change)}i,"
            f"acknowledged={'true' if change.acknowledged else 'false'},"
            f"message={_string(change.message)}{value} {change.time_ns}\n")


def _severity_code(change: AlarmChange) -> int:
    """0 none, 1 yellow, 2 red: what a state timeline colours."""
    return {"none": 0, "yellow": 1, "red": 2}.get(change.severity, 0)


def event_line(event: Event) -> str:
    return (f"events,spacecraft={escape_tag(event.spacecraft)},kind={escape_tag(event.kind)} "
            f"subject={_string(event.subject)},message={_string(event.message)},"
            f"value={_string(event.value)} {event.time_ns}\n")


def link_line(status: LinkStatus, now_ns: int) -> str:
    """One ``link`` point: tags spacecraft and link, a field per figure, and the age of
    the last good frame (none for a link that has no frame times: COBS)."""
    true_false = {True: "true", False: "false"}
    fields = [f"connected={true_false[status.connected]}", f"locked={true_false[status.locked]}",
              f"frames_good={status.frames_good}i", f"frames_bad={status.frames_bad}i",
              f"frames_gap={status.frames_gap}i", f"sync_losses={status.sync_losses}i",
              f"packets={status.packets}i", f"packets_dropped={status.packets_dropped}i",
              f"octets={status.octets}i", f"bit_rate={status.bit_rate!r}",
              f"reopens={status.reopens}i", f"unrouted_packets={status.unrouted_packets}i"]
    if status.last_frame_ns is not None:
        fields.append(f"last_frame_age={max(0.0, (now_ns - status.last_frame_ns) / 1e9)!r}")
    return (f"link,link={escape_tag(status.link)},spacecraft={escape_tag(status.spacecraft)} "
            f"{','.join(fields)} {now_ns}\n")


def health_line(identifier: str, stats: IngestStats, waiting: int, unread: int,
                writer: WriterStats, now_ns: int, extra: dict[str, int] | None = None,
                *, peak_memory_mb: float = 0.0) -> str:
    """One ``ingest`` point: tag ``ingest``, counters since start and current depths."""
    fields = {**(extra or {}),
        "messages": stats.messages, "packets": sum(stats.packets.values()),
        "values": sum(stats.values.values()), "errors": sum(stats.errors.values()),
        "unread_messages": unread, "queue_depth": stats.queue_depth,
        "waiting_packets": waiting,
        "pending_lines": writer.pending_lines, "lines_written": writer.lines_written,
        "values_written": writer.values_written, "write_retries": writer.retries,
        "rejected_lines": writer.rejected_lines, "spooled_lines": writer.spooled_lines,
        "backfilled_lines": writer.backfilled_lines, "spool_lines": writer.spool_lines,
        "spool_bytes": writer.spool_bytes, "dead_letter_lines": writer.dead_letter_lines,
        "auth_failures": writer.auth_failures, "missing_database": writer.missing_database,
    }
    text = ",".join(f"{name}={value}i" for name, value in fields.items())
    return (f"ingest,ingest={escape_tag(identifier)} {text},"
            f"spool_full={'true' if writer.spool_full else 'false'},"
            f"spool_failed={'true' if writer.spool_failed else 'false'},"
            f"peak_memory_mb={peak_memory_mb!r} {now_ns}\n")
