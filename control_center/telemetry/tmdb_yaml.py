"""The TMDB's YAML format: read and validated once, every problem of a file reported at
once with its place (docs/contracts.md, "Telemetry database")."""

from __future__ import annotations

import itertools
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import yaml

from control_center.errors import Problems, TmdbError
from control_center.telemetry.tmdb import (
    CRC_BITS,
    CUC_BITS,
    MAX_NUMBER_BITS,
    MAX_PACKET_BYTES,
    NAME_PATTERN,
    OCTET_TYPES,
    PARAMETER_TYPES,
    PRIMARY_HEADER_BITS,
    Calibration,
    DerivedParameter,
    Limits,
    ModeLimits,
    Monitoring,
    PacketDef,
    Parameter,
    ParameterType,
    TimeSource,
    Tmdb,
    expand_array,
    octet_permutation,
)

log = logging.getLogger("isls.tmdb")

# The largest range of enum values spelt out into single states; a wider one stays a
# range (looked up with Parameter.state_label).
_RANGE_SPELL_OUT = 256


def _number(value: Any, where: str, key: str, errors: Problems) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        errors.add(where, f"{key} must be a number, got {value!r}")
        return None
    if not math.isfinite(value):
        # YAML spells .nan and .inf; nan compares false with everything, so it would
        # slip past every range check here and fail in the ingest instead.
        errors.add(where, f"{key} must be a finite number, got {value} "
                          f"(leave a limit out or null for none)")
        return None
    return float(value)


def _int(value: Any, where: str, key: str, errors: Problems, *, minimum: int = 0,
         maximum: int | None = None) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        errors.add(where, f"{key} must be an integer, got {value!r}")
        return None
    if value < minimum or (maximum is not None and value > maximum):
        limit = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        errors.add(where, f"{key} must be {limit}, got {value}")
        return None
    return value


_MONITORING_KEYS = {"limit_sets", "persistence", "deadband", "event"}
_PARAMETER_KEYS = {"name", "bit_offset", "bit_length", "type", "byte_order", "calibration",
                   "states", "unit", "limits", "description", "overlay", "report", "array",
                   "size", *_MONITORING_KEYS}
_DERIVED_KEYS = {"name", "expression", "unit", "description", "limits", "report",
                 *_MONITORING_KEYS}
_PACKET_KEYS = {"name", "apid", "description", "period", "time", "error_control", "length",
                "parameters", "derived", "select", "tail"}
_TOP_KEYS = {"spacecraft", "spacecraft_id", "mission", "agency", "description", "packets",
             "packet_version"}


def _parse_limits(raw: Any, where: str, errors: Problems) -> Limits:
    if raw is None:
        return Limits()
    if not isinstance(raw, dict):
        errors.add(where, "limits must be a mapping with keys yellow and/or red")
        return Limits()
    values: dict[str, float | None] = {}
    for level in ("yellow", "red"):
        pair = raw.get(level)
        if pair is None:
            values[f"{level}_low"] = values[f"{level}_high"] = None
            continue
        if not isinstance(pair, list) or len(pair) != 2:
            errors.add(where, f"limits.{level} must be [low, high] (null for no limit)")
            continue
        values[f"{level}_low"] = _number(pair[0], where, f"limits.{level}[0]", errors)
        values[f"{level}_high"] = _number(pair[1], where, f"limits.{level}[1]", errors)
    for key in raw:
        if key not in ("yellow", "red"):
            errors.add(where, f"limits: unknown key {key!r} (expected yellow, red)")
    limits = Limits(**values)
    # Red must lie outside yellow: an operator expects warning before critical.
    if limits.yellow_low is not None and limits.red_low is not None \
            and limits.red_low > limits.yellow_low:
        errors.add(where, "limits: red low must not be above yellow low")
    if limits.yellow_high is not None and limits.red_high is not None \
            and limits.red_high < limits.yellow_high:
        errors.add(where, "limits: red high must not be below yellow high")
    for level in ("yellow", "red"):
        low, high = values.get(f"{level}_low"), values.get(f"{level}_high")
        if low is not None and high is not None and low >= high:
            errors.add(where, f"limits.{level}: low {low} must be below high {high}")
    return limits


def _parse_calibration(raw: Any, where: str, errors: Problems) -> Calibration:
    if raw is None:
        return Calibration()
    if isinstance(raw, dict) and "engineering" in raw:
        raw = dict(raw)
        engineering = raw.pop("engineering")
        if engineering not in ("float32", "float64"):
            errors.add(where, f"calibration.engineering must be float32 or float64, not "
                              f"{engineering!r}")
            return Calibration()
        return replace(_parse_calibration(raw, where, errors), engineering=engineering)
    if not isinstance(raw, dict) or len(raw) != 1:
        errors.add(where, "calibration must be {polynomial: [c0, c1, ...]} "
                          "or {table: [[raw, eng], ...]}, and may add engineering: float32")
        return Calibration()
    (kind, value), = raw.items()
    if kind == "polynomial":
        if not isinstance(value, list) or not value:
            errors.add(where, "calibration.polynomial must be a non-empty list of coefficients")
            return Calibration()
        coefficients = [_number(c, where, "calibration.polynomial", errors) for c in value]
        if any(c is None for c in coefficients):
            return Calibration()
        return Calibration("polynomial", coefficients=tuple(cast(list[float], coefficients)))
    if kind == "table":
        if not isinstance(value, list) or len(value) < 2 or not all(
                isinstance(p, list) and len(p) == 2 for p in value):
            errors.add(where, "calibration.table must list at least two [raw, eng] points")
            return Calibration()
        points = [(_number(r, where, "calibration.table raw", errors),
                   _number(e, where, "calibration.table eng", errors)) for r, e in value]
        if any(r is None or e is None for r, e in points):
            return Calibration()
        table = tuple((float(cast(float, r)), float(cast(float, e))) for r, e in points)
        if any(b[0] <= a[0] for a, b in itertools.pairwise(table)):
            errors.add(where, "calibration.table raw values must be strictly increasing")
        return Calibration("table", table=table)
    errors.add(where, f"calibration: unknown kind {kind!r} (expected polynomial or table)")
    return Calibration()


_RANGE_KEY = re.compile(r"^\s*(?:\[\s*(\d+)\s*,\s*(\d+)\s*\]|(\d+)\s*\.\.\s*(\d+))\s*$")


def _parse_states(raw_states: Any, bit_length: int, where: str, errors: Problems
                  ) -> tuple[dict[int, str], tuple[tuple[int, int, str], ...]]:
    states: dict[int, str] = {}
    ranges: list[tuple[int, int, str]] = []
    if not isinstance(raw_states, dict) or not raw_states:
        errors.add(where, "an enum needs states: {value: NAME, ...} (a key may be a range "
                          "\"[low,high]\")")
        return states, ()
    top = (1 << bit_length) - 1
    for key, label in raw_states.items():
        if not isinstance(label, str) or not label:
            errors.add(where, f"state {key!r} needs a name")
            continue
        if isinstance(key, int) and not isinstance(key, bool):
            low = high = key
        else:
            match = _RANGE_KEY.match(str(key)) if isinstance(key, str) else None
            if match is None:
                errors.add(where, f"state key {key!r} is neither a value nor a range "
                                  f"\"[low,high]\"")
                continue
            numbers = [int(g) for g in match.groups() if g is not None]
            low, high = numbers
        if low < 0 or high > top or low > high:
            what = f"state value {key!r}" if low == high else f"state range {key!r}"
            errors.add(where, f"{what} does not fit in {bit_length} unsigned bits "
                              f"(0..{top})" if low <= high else f"{what} is reversed")
            continue
        if high - low < _RANGE_SPELL_OUT:
            for value in range(low, high + 1):
                states.setdefault(value, label)
        else:
            ranges.append((low, high, label))
    return states, tuple(ranges)


def _parse_parameter(raw: Any, where: str, next_offset: int | None,
                     errors: Problems) -> Parameter | None:
    """One parameter as written; ``next_offset`` is None after a variable-size field
    (the parameter then follows it and may not give a bit_offset)."""
    if not isinstance(raw, dict):
        errors.add(where, "a parameter must be a mapping")
        return None
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        errors.add(where, f"name must be lower_snake_case letters, digits and _, got {name!r}")
        return None
    where = f"{where} {name!r}"
    for key in raw:
        if key not in _PARAMETER_KEYS:
            errors.add(where, f"unknown key {key!r}")
    ptype = raw.get("type")
    if ptype not in PARAMETER_TYPES:
        errors.add(where, f"type must be one of {', '.join(PARAMETER_TYPES)}, got {ptype!r}")
        return None
    numeric = ptype not in ("string", "binary", "spare")
    maximum = MAX_NUMBER_BITS if numeric else MAX_PACKET_BYTES * 8
    size = raw.get("size")
    if size is not None:
        # A string or binary of dynamic size: one value of ``size`` octets, read per
        # packet (an earlier counter) or the rest of the packet (expand).
        if ptype not in OCTET_TYPES:
            errors.add(where, f"size is for string and binary parameters, not {ptype}")
            size = None
        elif "bit_length" in raw or "array" in raw:
            errors.add(where, "give either size (dynamic, in octets) or bit_length, not both, "
                              "and no array")
            size = None
        elif not isinstance(size, str) or (size != "expand" and not NAME_PATTERN.match(size)):
            errors.add(where, f"size must be \"expand\" or the name of an earlier unsigned "
                              f"parameter holding the size in octets, got {size!r}")
            size = None
    bit_length = 8 if size is not None else _int(
        raw.get("bit_length"), where, "bit_length", errors, minimum=1, maximum=maximum)
    if next_offset is None:
        if "bit_offset" in raw:
            errors.add(where, "bit_offset cannot be given after a variable-size array: "
                              "the parameter follows it")
        bit_offset: int | None = -1
    else:
        bit_offset = _int(raw.get("bit_offset", next_offset), where, "bit_offset", errors)
    if bit_length is None or bit_offset is None:
        return None
    array = raw.get("array")
    if array is not None:
        if isinstance(array, bool) or not isinstance(array, int | str) \
                or (isinstance(array, int) and array < 1) \
                or (isinstance(array, str) and array != "expand"
                    and not NAME_PATTERN.match(array)):
            errors.add(where, f"array must be an element count, \"expand\" or the name of an "
                              f"earlier parameter holding the count, got {array!r}")
            array = None
        elif ptype in ("string", "binary", "spare"):
            errors.add(where, f"a {ptype} cannot be an array (a dynamic size is size:)")
            array = None
    if size is not None:
        array = size
    byte_order = raw.get("byte_order", "big")
    # -1 (follows a variable field): its place, and so its alignment, is known per packet
    # only (codec.resolve_layouts counts a packet where it falls off an octet).
    aligned = bit_offset < 0 or bit_offset % 8 == 0
    if not isinstance(byte_order, str | int) or octet_permutation(
            str(byte_order), max(1, bit_length // 8)) is None:
        errors.add(where, f"byte_order must be big, little or an octet order such as 2143 "
                          f"with one digit per octet, got {byte_order!r}")
        byte_order = "big"
    byte_order = str(byte_order)
    if ptype == "float" and (bit_length not in (32, 64) or not (aligned or bit_length == 32)):
        errors.add(where, "a float must be 32 or 64 bits, and a 64-bit one start on an octet "
                          "boundary")
    if byte_order != "big" and (not aligned or bit_length % 8):
        errors.add(where, "a field with a byte order other than big must start on an octet "
                          "and fill whole octets")
    if ptype in OCTET_TYPES and (not aligned or bit_length % 8):
        errors.add(where, f"a {ptype} must start on an octet and fill whole octets")
    if numeric and not aligned and bit_offset % 8 + bit_length > 64:
        errors.add(where, "a field not starting on an octet must fit in 8 octets")
    states: dict[int, str] = {}
    ranges: tuple[tuple[int, int, str], ...] = ()
    raw_states = raw.get("states")
    if ptype == "enum":
        states, ranges = _parse_states(raw_states, bit_length, where, errors)
    elif raw_states is not None:
        errors.add(where, "states are only for type enum")
    calibration = _parse_calibration(raw.get("calibration"), where, errors)
    if calibration.kind != "none" and ptype in ("enum", "boolean", "string", "binary", "spare"):
        errors.add(where, f"a {ptype} parameter takes no calibration")
    limits = _parse_limits(raw.get("limits"), where, errors)
    if limits.defined and ptype in ("enum", "boolean", "string", "binary", "spare"):
        errors.add(where, f"a {ptype} parameter takes no numeric limits")
    for key in ("unit", "description"):
        if not isinstance(raw.get(key, ""), str):
            errors.add(where, f"{key} must be text")
    for key in ("overlay", "report"):
        if not isinstance(raw.get(key, False), bool):
            errors.add(where, f"{key} must be true or false")
    monitoring = _parse_monitoring(raw, limits, where, errors)
    if monitoring.event and ptype not in ("enum", "boolean"):
        errors.add(where, "event: true is for enum and boolean parameters (mode changes)")
    return Parameter(
        name=name, bit_offset=bit_offset, bit_length=bit_length,
        type=cast(ParameterType, ptype), byte_order=byte_order,
        calibration=calibration, states=states, unit=str(raw.get("unit", "")),
        limits=limits, description=str(raw.get("description", "")),
        overlay=bool(raw.get("overlay", False)), report=bool(raw.get("report", False)),
        monitoring=monitoring, state_ranges=ranges, array=array,
    )


def _parse_monitoring(raw: dict[str, Any], limits: Limits, where: str,
                      errors: Problems) -> Monitoring:
    persistence = _int(raw.get("persistence", 1), where, "persistence", errors, minimum=1,
                       maximum=10_000) or 1
    deadband = _number(raw.get("deadband", 0.0), where, "deadband", errors) or 0.0
    if deadband < 0:
        errors.add(where, "deadband must not be negative")
    event = raw.get("event", False)
    if not isinstance(event, bool):
        errors.add(where, "event must be true or false")
        event = False
    sets: list[ModeLimits] = []
    raw_sets = raw.get("limit_sets", [])
    if not isinstance(raw_sets, list):
        errors.add(where, "limit_sets must be a list of {when: {MODE: [STATE, ...]}, limits: ...}")
        raw_sets = []
    for index, entry in enumerate(raw_sets):
        swhere = f"{where} limit_sets[{index}]"
        when = entry.get("when") if isinstance(entry, dict) else None
        if not isinstance(when, dict) or len(when) != 1:
            errors.add(swhere, "needs when: {MODE_PARAMETER: [STATE, ...]}")
            continue
        (mode, names), = when.items()
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            errors.add(swhere, f"when.{mode} must list state names")
            continue
        sets.append(ModeLimits(mode=str(mode), states=(), limits=_parse_limits(
            entry.get("limits"), swhere, errors), state_names=tuple(names)))
    return Monitoring(limits=limits, limit_sets=tuple(sets), persistence=persistence,
                      deadband=float(deadband), event=event)


def _parse_derived(raw: Any, where: str, known: set[str],
                   errors: Problems) -> DerivedParameter | None:
    from control_center.telemetry.expressions import Expression, ExpressionError

    if not isinstance(raw, dict):
        errors.add(where, "a derived parameter must be a mapping")
        return None
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        errors.add(where, f"name must be lower_snake_case, got {name!r}")
        return None
    where = f"{where} {name!r}"
    for key in raw:
        if key not in _DERIVED_KEYS:
            errors.add(where, f"unknown key {key!r}")
    text = raw.get("expression")
    if not isinstance(text, str) or not text.strip():
        errors.add(where, "expression is required, e.g. bus_voltage * load_current")
        return None
    try:
        Expression.parse(text, parameter=name, known=known)
    except ExpressionError as exc:
        errors.add(where, str(exc))
        return None
    limits = _parse_limits(raw.get("limits"), where, errors)
    return DerivedParameter(
        name=name, expression=text, unit=str(raw.get("unit", "")),
        description=str(raw.get("description", "")), limits=limits,
        report=bool(raw.get("report", False)),
        monitoring=_parse_monitoring(raw, limits, where, errors))


def _parse_packet(raw: Any, where: str, errors: Problems) -> PacketDef | None:
    if not isinstance(raw, dict):
        errors.add(where, "a packet must be a mapping")
        return None
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        errors.add(where, f"name must be lower_snake_case, got {name!r}")
        return None
    where = f"packet {name!r}"
    for key in raw:
        if key not in _PACKET_KEYS:
            errors.add(where, f"unknown key {key!r}")
    apid = _int(raw.get("apid"), where, "apid", errors, maximum=0x7FE)
    time_source = raw.get("time", "cuc")
    if time_source not in ("cuc", "receive"):
        errors.add(where, f"time must be cuc or receive, got {time_source!r}")
        time_source = "cuc"
    error_control = raw.get("error_control", "crc16")
    if error_control not in ("crc16", "none"):
        errors.add(where, f"error_control must be crc16 or none, got {error_control!r}")
    period = _number(raw.get("period"), where, "period", errors)
    if period is not None and period <= 0:
        errors.add(where, "period must be positive seconds")
    raw_parameters = raw.get("parameters")
    if not isinstance(raw_parameters, list) or not raw_parameters:
        errors.add(where, "parameters must be a non-empty list")
        return None
    header_bits = PRIMARY_HEADER_BITS + (CUC_BITS if time_source == "cuc" else 0)
    next_offset: int | None = header_bits
    layout: list[Parameter] = []  # as declared: arrays unexpanded, spares kept
    parameters: list[Parameter] = []  # fixed-size arrays expanded, spares left out
    fixed_end = header_bits
    expand_seen = False
    for index, raw_parameter in enumerate(raw_parameters):
        pwhere = f"{where} parameter #{index + 1}"
        parameter = _parse_parameter(raw_parameter, pwhere, next_offset, errors)
        if parameter is None:
            continue
        layout.append(parameter)
        pwhere = f"{pwhere} {parameter.name!r}"
        array = parameter.array
        if isinstance(array, str):
            if expand_seen:
                errors.add(pwhere, "only fixed-size parameters may follow an expand array")
            if array == "expand":
                expand_seen = True
            else:
                counter = next((q for q in layout[:-1] if q.name == array), None)
                if counter is None or counter.type not in ("unsigned", "enum") \
                        or counter.array is not None:
                    errors.add(pwhere, f"array: {array!r} must name an earlier unsigned "
                                       f"parameter of this packet holding the element count")
            next_offset = None  # everything after it follows it
            continue
        if parameter.type == "spare":
            if next_offset is not None:
                next_offset = max(next_offset, parameter.bit_offset + parameter.bit_length)
                fixed_end = max(fixed_end, next_offset)
            continue
        count = array if isinstance(array, int) else 1
        if next_offset is None:
            if array is not None:
                errors.add(pwhere, "a fixed-size array after a variable-size one is not "
                                   "supported")
            parameters.append(parameter)  # place known per packet only (bit_offset -1)
            continue
        if array is not None:
            parameters.extend(expand_array(parameter, count, parameter.bit_offset))
        else:
            parameters.append(parameter)
        next_offset = max(next_offset, parameter.bit_offset + parameter.bit_length * count)
        fixed_end = max(fixed_end, next_offset)
    variable = next_offset is None
    trailer = CRC_BITS if error_control == "crc16" else 0
    needed = math.ceil(fixed_end / 8) + trailer // 8
    length_raw = raw.get("length")
    if variable:
        if length_raw is not None:
            errors.add(where, "length cannot be given for a packet with a variable-size array: "
                              "each packet's length comes from its primary header")
        length = 0
    elif length_raw is None:
        length = needed
    else:
        length = _int(length_raw, where, "length", errors, minimum=7,
                      maximum=MAX_PACKET_BYTES) or needed
    data_end = (length * 8) - trailer if length else MAX_PACKET_BYTES * 8
    names: set[str] = set()
    for p in parameters:
        pwhere = f"{where} parameter {p.name!r}"
        if p.name in names:
            errors.add(pwhere, "duplicate parameter name")
        names.add(p.name)
        if p.bit_offset < 0:
            continue  # follows a variable-size array
        if p.bit_offset + p.bit_length > data_end:
            errors.add(pwhere, f"bits {p.bit_offset}..{p.bit_offset + p.bit_length - 1} "
                               f"lie outside the packet's {data_end} data bits")
        if p.bit_offset < header_bits and not p.overlay:
            errors.add(pwhere, f"bit_offset {p.bit_offset} overlaps the packet headers "
                               f"(bits 0..{header_bits - 1}); mark it overlay: true if meant")
    # Overlaps are errors unless the later field says it overlays on purpose
    # (a status word and the flags inside it).
    # Sort by span only (Parameters do not compare), and check each field against the
    # furthest-reaching earlier one, not just its neighbour, so every overlap is reported.
    spans = sorted(((p.bit_offset, p.bit_offset + p.bit_length, p) for p in parameters
                    if not p.overlay and p.bit_offset >= 0), key=lambda span: (span[0], span[1]))
    reach: tuple[int, Parameter] | None = None
    for start, end, b in spans:
        if reach is not None and start < reach[0]:
            errors.add(f"{where} parameter {b.name!r}",
                       f"overlaps parameter {reach[1].name!r}; mark one overlay: true if meant")
        if reach is None or end > reach[0]:
            reach = (end, b)
    select = _parse_select(raw.get("select"), parameters, where, errors)
    tail = raw.get("tail", "error")
    if tail not in ("error", "skip"):
        errors.add(where, f"tail must be skip (packets may run past length: the rest is "
                          f"skipped) or error (the default: counted as wrong_length), got "
                          f"{tail!r}")
    derived: list[DerivedParameter] = []
    raw_derived = raw.get("derived", [])
    if not isinstance(raw_derived, list):
        errors.add(where, "derived must be a list")
        raw_derived = []
    for index, entry in enumerate(raw_derived):
        known = names | {d.name for d in derived}
        item = _parse_derived(entry, f"{where} derived #{index + 1}", known, errors)
        if item is not None:
            if item.name in known:
                errors.add(f"{where} derived {item.name!r}", "duplicate parameter name")
            derived.append(item)
    if apid is None:
        return None
    return PacketDef(
        name=name, apid=apid, length=length, parameters=tuple(parameters),
        description=str(raw.get("description", "")), period=period,
        time=cast(TimeSource, time_source), error_control=error_control == "crc16",
        derived=tuple(derived), layout=tuple(layout) if variable else (), select=select,
        tail_skipped=tail == "skip" and not variable,
    )


def _select_values(items: list[Any]) -> list[int]:
    """Raw values and inclusive ranges ("2..255") spelt out; [] if any item is neither."""
    values: list[int] = []
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool):
            values.append(item)
            continue
        match = re.fullmatch(r"\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*", item) \
            if isinstance(item, str) else None
        if match is None or int(match[1]) > int(match[2]) \
                or int(match[2]) - int(match[1]) > 1 << 16:
            return []
        values.extend(range(int(match[1]), int(match[2]) + 1))
    return values


def _parse_select(raw: Any, parameters: list[Parameter], where: str, errors: Problems
                  ) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """``select: {name: raw value or [raw values]}``: which packets of a shared APID are
    this type, told by integer parameters at fixed places of the packet."""
    if raw is None:
        return ()
    if not isinstance(raw, dict) or not raw:
        errors.add(where, "select must map parameter names to raw values, e.g. "
                          "{sci_type: 1} or {sci_type: [1, 2]}")
        return ()
    by_name = {p.name: p for p in parameters}
    out: list[tuple[str, tuple[int, ...]]] = []
    for name, value in raw.items():
        parameter = by_name.get(name)
        if parameter is None or parameter.bit_offset < 0 \
                or parameter.type not in ("unsigned", "signed", "enum", "boolean"):
            errors.add(where, f"select: {name!r} must be an integer, enum or boolean "
                              f"parameter of this packet at a fixed place (before any "
                              f"variable-size field)")
            continue
        low, high = ((-(1 << (parameter.bit_length - 1)), (1 << (parameter.bit_length - 1)) - 1)
                     if parameter.type == "signed" else (0, (1 << parameter.bit_length) - 1))
        values = _select_values(value if isinstance(value, list) else [value])
        if not values or any(not low <= v <= high for v in values):
            errors.add(where, f"select: {name!r} takes raw values {low}..{high}: one, a list, "
                              f"or ranges written \"2..255\", got {value!r}")
            continue
        out.append((name, tuple(values)))
    return tuple(out)


def _resolve_modes(packets: list[PacketDef], errors: Problems) -> list[PacketDef]:
    """Turn the state names of mode-dependent limit sets into raw enum values."""
    enums = {p.name: p for packet in packets for p in packet.parameters if p.type == "enum"}

    def resolve(owner: str, monitoring: Monitoring) -> Monitoring:
        if not monitoring.limit_sets:
            return monitoring
        resolved: list[ModeLimits] = []
        for mode_limits in monitoring.limit_sets:
            mode = enums.get(mode_limits.mode)
            if mode is None:
                errors.add(owner, f"limit_sets: mode {mode_limits.mode!r} is not an enum "
                                  f"parameter of this spacecraft")
                continue
            by_name = {label: value for value, label in mode.states.items()}
            unknown = [n for n in mode_limits.state_names if n not in by_name]
            if unknown:
                errors.add(owner, f"limit_sets: {mode.name} has no state "
                                  f"{', '.join(unknown)} (states: {', '.join(by_name)})")
                continue
            resolved.append(replace(mode_limits, states=tuple(
                by_name[n] for n in mode_limits.state_names)))
        return replace(monitoring, limit_sets=tuple(resolved))

    out: list[PacketDef] = []
    for packet in packets:
        parameters = tuple(replace(p, monitoring=resolve(
            f"packet {packet.name!r} parameter {p.name!r}", p.monitoring))
            for p in packet.parameters)
        derived = tuple(replace(d, monitoring=resolve(
            f"packet {packet.name!r} derived {d.name!r}", d.monitoring)) for d in packet.derived)
        out.append(replace(packet, parameters=parameters, derived=derived))
    return out


def parse_tmdb(document: Any, source: str) -> Tmdb:
    """Validate a parsed YAML document; raise :class:`TmdbError` listing every problem."""
    errors = Problems(source)
    if not isinstance(document, dict):
        raise TmdbError([f"{source}: the file must be a mapping with spacecraft and packets"])
    for key in document:
        if key not in _TOP_KEYS:
            errors.add("top level", f"unknown key {key!r}")
    spacecraft = document.get("spacecraft")
    if not isinstance(spacecraft, str) or not NAME_PATTERN.match(spacecraft):
        errors.add("spacecraft", f"must be a lower_snake_case name, got {spacecraft!r}")
        spacecraft = "unknown"
    spacecraft_id = _int(document.get("spacecraft_id", 0), "spacecraft_id", "spacecraft_id",
                         errors, maximum=0x3FF)
    packet_version = _int(document.get("packet_version", 0), "packet_version",
                          "packet_version", errors, maximum=7)
    raw_packets = document.get("packets")
    packets: list[PacketDef] = []
    if not isinstance(raw_packets, list) or not raw_packets:
        errors.add("packets", "must be a non-empty list")
    else:
        for index, raw_packet in enumerate(raw_packets):
            packet = _parse_packet(raw_packet, f"packet #{index + 1}", errors)
            if packet is not None:
                packets.append(packet)
    seen_names: dict[str, str] = {}
    seen_apids: dict[int, PacketDef] = {}
    for packet in packets:
        if packet.name in seen_names:
            errors.add(f"packet {packet.name!r}", "duplicate packet name")
        other = seen_apids.get(packet.apid)
        if other is not None and not (other.select and packet.select):
            # Packets may share an APID only when values inside them tell them apart.
            errors.add(f"packet {packet.name!r}",
                       f"apid {packet.apid} is already used by {other.name!r}; packets "
                       f"sharing an APID each need select: (the values that tell them apart)")
        elif other is not None and other.error_control != packet.error_control:
            # The CRC is checked as packets are split, before their type is known.
            errors.add(f"packet {packet.name!r}",
                       f"packets sharing apid {packet.apid} must agree on error_control "
                       f"({other.name!r} has {'crc16' if other.error_control else 'none'})")
        seen_names[packet.name] = packet.name
        seen_apids.setdefault(packet.apid, packet)
    packets = _resolve_modes(packets, errors)
    if errors.problems:
        raise TmdbError(errors.problems)
    return Tmdb(
        spacecraft=spacecraft, packets=tuple(packets), spacecraft_id=spacecraft_id or 0,
        mission=str(document.get("mission", "")), agency=str(document.get("agency", "")),
        description=str(document.get("description", "")), source=source,
        packet_version=packet_version or 0,
    )


def load_tmdb(path: Path) -> Tmdb:
    """A TMDB file: our YAML, or a partner's XTCE (``.xml``) imported as it loads."""
    if path.suffix.lower() == ".xml":
        from control_center.telemetry.xtce import import_xtce

        result = import_xtce(path)
        if result.unsupported:
            log.info("%s: %d XTCE element(s) not supported (`isls tmdb import-xtce %s` "
                     "lists them)", path, len(result.unsupported), path)
        return parse_tmdb(result.document, str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TmdbError([f"{path}: cannot read: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        raise TmdbError([f"{path}: cannot read: not UTF-8 text ({exc.reason} "
                         f"at byte {exc.start})"]) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TmdbError([f"{path}: not valid YAML: {exc}"]) from None
    return parse_tmdb(document, str(path))


def load_tmdbs(paths: Sequence[Path]) -> list[Tmdb]:
    """Load several files, reporting the problems of all of them together."""
    problems: list[str] = []
    tmdbs: list[Tmdb] = []
    for path in paths:
        try:
            tmdbs.append(load_tmdb(path))
        except TmdbError as exc:
            problems.extend(exc.problems)
    names: dict[str, str] = {}
    for tmdb in tmdbs:
        if tmdb.spacecraft in names:
            problems.append(f"{tmdb.source}: spacecraft: {tmdb.spacecraft!r} is also defined "
                            f"in {names[tmdb.spacecraft]}")
        names[tmdb.spacecraft] = tmdb.source
    if problems:
        raise TmdbError(problems)
    return tmdbs
