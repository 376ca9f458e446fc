"""Mission dashboard layouts: which rows and panels a spacecraft's mission dashboard has,
and which parameters each panel plots. Read once, checked against the telemetry database.

One YAML file per spacecraft in ``dashboards/`` beside the configuration file (the
shipped ones: ``config/dashboards/lander.yaml`` and ``orbiter.yaml``)::

    spacecraft: lander
    rows:
      - title: Descent profile
        panels:
          - title: Velocity
            packet: lander_nav
            parameters: [vertical_velocity, horizontal_velocity]
            width: 8          # of Grafana's 24 grid columns; default 8

A panel plots parameters of one packet (one InfluxDB measurement). Every parameter must
be one of that packet's parameters or derived parameters in the spacecraft's TMDB: a
renamed parameter fails the build and ``isls tmdb check`` instead of silently dropping
its panel. Every problem of every file is reported at once, each naming the file, the
row or panel and the reason, with a close name when there is one. A spacecraft without
a layout has no mission dashboard (its all-parameters dashboard remains).
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from control_center.errors import LayoutError, Problems
from control_center.telemetry.tmdb import NAME_PATTERN, PacketDef, Tmdb

LAYOUT_DIRECTORY = "dashboards"  # beside the configuration file
GRID_WIDTH = 24  # Grafana's dashboard grid: columns across
DEFAULT_WIDTH = 8  # a third of the grid

_TOP_KEYS = ("spacecraft", "rows")
_ROW_KEYS = ("title", "panels")
_PANEL_KEYS = ("title", "packet", "parameters", "width")


@dataclass(frozen=True, slots=True)
class PanelLayout:
    """One panel: a state timeline if its parameters are all enums and booleans, else a
    time series; its units, limits and states come from the TMDB."""

    title: str
    packet: str  # the packet (measurement) every parameter belongs to
    parameters: tuple[str, ...]  # parameter or derived parameter names, in legend order
    width: int = DEFAULT_WIDTH  # grid columns, 1..24


@dataclass(frozen=True, slots=True)
class RowLayout:
    title: str
    panels: tuple[PanelLayout, ...]


@dataclass(frozen=True, slots=True)
class MissionLayout:
    spacecraft: str
    rows: tuple[RowLayout, ...]
    source: str  # the file, for messages


def layout_dir(config_file: str | Path) -> Path:
    """Where the layouts of a configuration live: ``dashboards/`` beside its file."""
    return Path(config_file).resolve().parent / LAYOUT_DIRECTORY


def load_layouts(directory: Path, tmdbs: Sequence[Tmdb]) -> tuple[MissionLayout, ...]:
    """Every ``*.yaml`` layout in ``directory`` (none if it does not exist), each checked
    against the TMDB of its spacecraft among ``tmdbs``; a layout of another spacecraft
    is read and its form checked, not its parameters. Raise :class:`LayoutError`
    listing every problem of every file."""
    if not directory.is_dir():
        return ()
    problems: list[str] = []
    layouts: list[MissionLayout] = []
    by_spacecraft = {t.spacecraft: t for t in tmdbs}
    owners: dict[str, str] = {}
    for path in sorted(directory.glob("*.yaml")):
        errors = Problems(str(path))
        layout = _parse_layout(_read(path, errors), errors)
        if layout is not None:
            if layout.spacecraft in owners:
                errors.add("spacecraft", f"{layout.spacecraft!r} already has its layout in "
                                         f"{owners[layout.spacecraft]}")
            owners.setdefault(layout.spacecraft, layout.source)
            tmdb = by_spacecraft.get(layout.spacecraft)
            if tmdb is not None:
                _check_against(layout, tmdb, errors)
            layouts.append(layout)
        problems.extend(errors.problems)
    if problems:
        raise LayoutError(problems)
    return tuple(layouts)


def _read(path: Path, errors: Problems) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        errors.add("(file)", f"cannot read: {exc.strerror}")
    except UnicodeDecodeError as exc:
        errors.add("(file)", f"not UTF-8 text ({exc.reason} at byte {exc.start})")
    except yaml.YAMLError as exc:
        errors.add("(file)", f"not valid YAML: {' '.join(str(exc).split())}")
    return None


def _unknown_keys(raw: dict[Any, Any], known: Sequence[str], where: str,
                  errors: Problems) -> None:
    for key in raw:
        if key not in known:
            errors.add(where, f"unknown key {key!r} (expected {', '.join(known)})")


def _title(raw: dict[Any, Any], where: str, errors: Problems) -> str | None:
    title = raw.get("title")
    if not isinstance(title, str) or not title.strip():
        errors.add(where, f"title must be text, got {title!r}")
        return None
    return title


def _parse_layout(document: Any, errors: Problems) -> MissionLayout | None:
    """The layout as written, or None if nothing usable is in it; a problem of one row or
    panel leaves that row or panel out and the rest is still read (and checked)."""
    if document is None and errors.problems:
        return None  # unreadable: already said why
    if not isinstance(document, dict):
        errors.add("(file)", "a layout must be a mapping with spacecraft and rows")
        return None
    _unknown_keys(document, _TOP_KEYS, "top level", errors)
    spacecraft = document.get("spacecraft")
    if not isinstance(spacecraft, str) or not NAME_PATTERN.match(spacecraft):
        errors.add("spacecraft", f"must be the lower_snake_case name of a spacecraft, "
                                 f"got {spacecraft!r}")
        spacecraft = None
    raw_rows = document.get("rows")
    rows: list[RowLayout] = []
    if not isinstance(raw_rows, list) or not raw_rows:
        errors.add("rows", "must be a non-empty list of {title, panels}")
    else:
        for index, raw_row in enumerate(raw_rows):
            row = _parse_row(raw_row, f"row #{index + 1}", errors)
            if row is not None:
                rows.append(row)
    if spacecraft is None:
        return None
    return MissionLayout(spacecraft=spacecraft, rows=tuple(rows), source=errors.source)


def _parse_row(raw: Any, where: str, errors: Problems) -> RowLayout | None:
    if not isinstance(raw, dict):
        errors.add(where, "a row must be a mapping with title and panels")
        return None
    title = _title(raw, where, errors)
    if title is not None:
        where = f"row {title!r}"
    _unknown_keys(raw, _ROW_KEYS, where, errors)
    raw_panels = raw.get("panels")
    panels: list[PanelLayout] = []
    if not isinstance(raw_panels, list) or not raw_panels:
        errors.add(where, "panels must be a non-empty list of {title, packet, parameters, "
                          "width}")
    else:
        for index, raw_panel in enumerate(raw_panels):
            panel = _parse_panel(raw_panel, where, index, errors)
            if panel is not None:
                panels.append(panel)
    if title is None:
        return None
    return RowLayout(title=title, panels=tuple(panels))


def _parse_panel(raw: Any, row: str, index: int, errors: Problems) -> PanelLayout | None:
    where = f"{row} panel #{index + 1}"
    if not isinstance(raw, dict):
        errors.add(where, "a panel must be a mapping with title, packet, parameters and width")
        return None
    title = _title(raw, where, errors)
    if title is not None:
        where = f"{row} panel {title!r}"
    _unknown_keys(raw, _PANEL_KEYS, where, errors)
    packet = raw.get("packet")
    if not isinstance(packet, str) or not NAME_PATTERN.match(packet):
        errors.add(where, f"packet must be the lower_snake_case name of a packet, "
                          f"got {packet!r}")
        packet = None
    names = raw.get("parameters")
    if not isinstance(names, list) or not names or not all(
            isinstance(name, str) for name in names):
        errors.add(where, f"parameters must be a non-empty list of parameter names, "
                          f"got {names!r}")
        names = None
    else:
        for name in sorted({n for n in names if names.count(n) > 1}):
            errors.add(where, f"parameter {name!r} is named twice")
    width = raw.get("width", DEFAULT_WIDTH)
    if isinstance(width, bool) or not isinstance(width, int) or not 1 <= width <= GRID_WIDTH:
        errors.add(where, f"width must be a whole number of grid columns, 1..{GRID_WIDTH}, "
                          f"got {width!r}")
        width = None
    if title is None or packet is None or names is None or width is None:
        return None
    return PanelLayout(title=title, packet=packet, parameters=tuple(names), width=width)


def _check_against(layout: MissionLayout, tmdb: Tmdb, errors: Problems) -> None:
    """Every packet and parameter a panel names is in the spacecraft's TMDB."""
    packets = {packet.name: packet for packet in tmdb.packets}
    named = {name for row in layout.rows for panel in row.panels for name in panel.parameters}
    for row in layout.rows:
        for panel in row.panels:
            where = f"row {row.title!r} panel {panel.title!r}"
            packet = packets.get(panel.packet)
            if packet is None:
                errors.add(where, f"{tmdb.source} has no packet {panel.packet!r}"
                                  f"{_did_you_mean(panel.packet, packets)}")
                continue
            fields = {field.name for field in packet.fields}
            for name in panel.parameters:
                if name not in fields:
                    errors.add(where, f"parameter {name!r} is not in packet {packet.name!r} "
                                      f"of {tmdb.source}{_hint(name, packet, tmdb, named)}")


def _hint(name: str, packet: PacketDef, tmdb: Tmdb, named: Collection[str]) -> str:
    """Where the parameter went: another packet of the spacecraft, or a close name. A
    renamed parameter is one the layout does not name yet, so those come first."""
    for other in tmdb.packets:
        if name in {field.name for field in other.fields}:
            return f" (it is in packet {other.name!r})"
    here = [field.name for field in packet.fields]
    hint = (_did_you_mean(name, [n for n in here if n not in named])
            or _did_you_mean(name, here))
    if hint:
        return hint
    elsewhere = {field.name: other.name for other in tmdb.packets for field in other.fields}
    close = difflib.get_close_matches(name, list(elsewhere), n=1)
    return (f" (did you mean {close[0]!r} of packet {elsewhere[close[0]]!r}?)" if close
            else "")


def _did_you_mean(name: str, candidates: Collection[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
