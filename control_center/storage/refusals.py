"""Which lines of a body InfluxDB refused (a 400 partial write or a 413): read from its
words where they prove it, else found by posting smaller groups again.

Pure: no I/O. What InfluxDB 1.6.7 says is described on :class:`Refusal`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from control_center.storage.answers import Answer

_UNPARSABLE = "unable to parse '"
_CONFLICT = re.compile(r'field type conflict: input field "(?P<field>.*?)" on measurement '
                       r'"(?P<measurement>.*?)" is type (?P<kind>\w+)')
_DROPPED = re.compile(r"\s*dropped=(\d+)\s*$")


@dataclass(frozen=True, slots=True)
class Refusal:
    """What InfluxDB 1.x says in a 400 about the lines it refused. Measured on 1.6.7:

    * unparsable lines are named one by one, and the others are stored:
      ``partial write: unable to parse 'm v=oops= 4': invalid boolean\\nunable to parse
      'bad line': invalid field format dropped=0`` (without ``partial write`` when no line
      parsed: then nothing was stored);
    * a field type conflict names only the measurement, the field and the type of the
      first conflict, and how many points it dropped:
      ``partial write: field type conflict: input field "v" on measurement "m" is type
      integer, already exists as type float dropped=1``; unparsable lines in the same
      body are then not mentioned at all.
    """

    unparsable: dict[bytes, str]  # quoted line -> InfluxDB's words about it
    parse_errors: int  # how many "unable to parse" it lists
    conflict: tuple[str, str, str] | None  # (measurement, field, type of the input)
    dropped: int | None
    partial: bool
    only_parse_errors: bool


def read_refusal(message: str) -> Refusal:
    """What a 400 answer's text says about the lines InfluxDB refused."""
    partial = message.startswith("partial write: ")
    text = message.removeprefix("partial write: ")
    dropped_match = _DROPPED.search(text)
    dropped = int(dropped_match.group(1)) if dropped_match else None
    if dropped_match:
        text = text[:dropped_match.start()]
    unparsable: dict[bytes, str] = {}
    segments = text.split("\n")
    parse_errors = 0
    for segment in segments:
        if not segment.startswith(_UNPARSABLE):
            continue
        parse_errors += 1
        quoted = segment[len(_UNPARSABLE):]
        # The line ends at a "': " (a line may hold that too: every cut is a candidate;
        # only one can be a line of the body).
        cut = quoted.find("': ")
        while cut >= 0:
            unparsable.setdefault(quoted[:cut].encode(), segment)
            cut = quoted.find("': ", cut + 1)
        if quoted.endswith("'"):
            unparsable.setdefault(quoted[:-1].encode(), segment)
    conflict = _CONFLICT.search(text)
    return Refusal(
        unparsable=unparsable, parse_errors=parse_errors,
        conflict=None if conflict is None else (conflict["measurement"], conflict["field"],
                                                conflict["kind"]),
        dropped=dropped, partial=partial,
        only_parse_errors=parse_errors > 0 and parse_errors == sum(1 for s in segments if s))


def _scan(line: str, start: int, stops: str) -> int:
    """Index of the first unescaped character of ``stops`` at or after ``start``."""
    index = start
    while index < len(line):
        char = line[index]
        if char == "\\":
            index += 2
            continue
        if char in stops:
            return index
        index += 1
    return len(line)


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def line_fields(line: bytes) -> tuple[str, dict[str, str]]:
    """A line protocol line's measurement and its fields as written (``"text"``,
    ``12i``, ``true``, ``1.5``), names unescaped."""
    text = line.decode(errors="replace").lstrip()
    key_end = _scan(text, 0, " ")
    measurement = _unescape(text[:min(_scan(text, 0, ","), key_end)])
    fields: dict[str, str] = {}
    index = key_end + 1
    while index < len(text):
        equals = _scan(text, index, "=")
        name = _unescape(text[index:equals])
        start = equals + 1
        if text.startswith('"', start):
            end = start + 1
            while end < len(text) and text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            end += 1
        else:
            end = start
            while end < len(text) and text[end] not in ", ":
                end += 1
        fields[name] = text[start:end]
        if end >= len(text) or text[end] == " ":
            break
        index = end + 1
    return measurement, fields


def value_type(value: str) -> str:
    """InfluxDB's name for the type a field value is written as."""
    if value.startswith('"'):
        return "string"
    if value in ("t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"):
        return "boolean"
    if value.endswith("i"):
        return "integer"
    if value.endswith("u"):
        return "unsigned"
    return "float"


def _conflicts(line: bytes, measurement: str, field: str, kind: str) -> bool:
    name, fields = line_fields(line)
    value = fields.get(field)
    return name == measurement and value is not None and value_type(value) == kind


@dataclass(frozen=True, slots=True)
class RefusalPlan:
    """What to do with a piece InfluxDB answered 400: lines proven refused (with why),
    how many lines it did store, and groups of lines to post again to learn more."""

    dead: list[tuple[str, list[bytes]]]
    stored: int
    repost: list[list[bytes]]


def plan_refusal(lines: list[bytes], answer: Answer) -> RefusalPlan:
    """Find exactly which lines InfluxDB refused, from its words where they prove it,
    else by posting smaller groups again (a point written twice with the same values
    is the same point, so posting stored lines again changes nothing). Every step makes
    the groups smaller, so it ends, at worst with single lines."""
    refusal = read_refusal(answer.message)
    reason = f"refused by InfluxDB ({answer.status}): {answer.message}"
    dead: list[tuple[str, list[bytes]]] = []
    rest: list[bytes] = []
    for line in lines:
        why = refusal.unparsable.get(line.lstrip())
        if why is None:
            rest.append(line)
        else:
            dead.append((f"refused by InfluxDB ({answer.status}): {why}", [line]))
    named = len(lines) - len(rest)
    if refusal.partial and refusal.only_parse_errors and refusal.dropped in (0, None) \
            and named == refusal.parse_errors:
        return RefusalPlan(dead, len(rest), [])  # it named every bad line, stored the rest
    if not rest:
        return RefusalPlan(dead, 0, [])
    if refusal.dropped is not None and refusal.dropped == len(rest):
        # It dropped as many points as there are lines left: it refused every one.
        return RefusalPlan([*dead, (reason, rest)], 0, [])
    if refusal.conflict is not None:
        matching = [_conflicts(line, *refusal.conflict) for line in rest]
        if any(matching) and not all(matching):
            # Post the others, and those writing the named field with the named type
            # apart: their own answer then proves they are refused (dropped == count).
            return RefusalPlan(dead, 0, [
                [line for line, hit in zip(rest, matching, strict=True) if not hit],
                [line for line, hit in zip(rest, matching, strict=True) if hit]])
    if named:
        return RefusalPlan(dead, 0, [rest])
    if len(rest) == 1:
        return RefusalPlan([(reason, rest)], 0, [])
    half = len(rest) // 2
    return RefusalPlan(dead, 0, [rest[:half], rest[half:]])


def plan_too_large(lines: list[bytes], answer: Answer, size: int) -> RefusalPlan:
    """What to do with a body of ``size`` bytes InfluxDB answered 413: post it in halves
    until it fits; a single line too big for the server is a dead letter saying so."""
    if len(lines) > 1:
        half = len(lines) // 2
        return RefusalPlan([], 0, [lines[:half], lines[half:]])
    return RefusalPlan([(f"refused by InfluxDB ({answer.detail}): a single line of {size} "
                         f"bytes is over its max-body-size", lines)], 0, [])
