"""Import a ccsdspy packet definition CSV as a TMDB packet mapping.

ccsdspy (``FixedLength.from_file`` / ``VariableLength.from_file``) reads a CSV with a
header row naming its columns, in any order:

``name``, ``data_type``, ``bit_length``
    required (the "3-column" form): the fields follow the 48-bit CCSDS primary header
    back to back (CCSDS 133.0-B-2 §4.1.3).
``bit_offset``
    optional (the "4-column" form): the field's first bit counted from the packet
    start, primary header included, as in ccsdspy's ``PacketField``. A field that
    starts inside the primary header or overlaps an earlier one becomes an ``overlay``.
``calibration``
    optional (the "5-column" form of the ``hs`` data set): JSON, either polynomial
    coefficients by power ``{"0": c0, "1": c1}`` or enum states
    ``{"0": "NAME", "[1,3]": "RANGE_NAME"}`` (a range is inclusive).
``byte_order``
    optional: ``big`` (the default), ``little`` or a digit order such as ``2143``,
    ``3412`` or ``4321`` (ccsdspy's ``PacketField(byte_order=...)``).

``data_type`` is ``uint``, ``int``, ``float``, ``str`` or ``fill``, optionally with
an array shape: ``uint(4)``, ``int(12, 24)`` (flattened in C order), ``uint(expand)``
(the rest of the packet) or ``uint(OTHER_FIELD)`` (the element count is the value of
an earlier field). ``name[3]`` rows, the way the ``hs`` files list array elements
with explicit offsets, stay separate parameters named ``name_3``.

Names become lower_snake_case (the TMDB's ``[a-z][a-z0-9_]*``); a sign character is
spelled out (``FGx_-4.7VHK`` → ``fgx_minus4_7vhk``) and a collision that remains gets
``_2``, ``_3`` … with a note naming both original names. Each parameter's description
keeps its original name.

The result is the plain mapping a TMDB YAML file holds for one packet (docs/contracts.md,
"Telemetry database"), plus notes: one line per row taken with a change, naming the
file, line, original name and why. Rows that leave the definition unusable raise one
:class:`TmdbError` listing every problem of the file.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from control_center.errors import TmdbError

__all__ = ["clean_name", "import_ccsdspy_csv"]

PRIMARY_HEADER_BITS = 48  # CCSDS 133.0-B-2 §4.1.3: 6 octets, counted in ccsdspy's offsets
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")

COLUMNS = ("name", "data_type", "bit_length", "bit_offset", "calibration", "byte_order")
REQUIRED_COLUMNS = ("name", "data_type", "bit_length")
TYPES = {"uint": "unsigned", "int": "signed", "float": "float", "str": "string",
         "fill": "spare"}
MAX_INTEGER_BITS = 64
FLOAT_BITS = (32, 64)  # IEEE 754 single and double

# The TMDB form of an array size: a fixed element count, "expand" or a field's name.
Shape = tuple[int, ...] | str
_DATA_TYPE = re.compile(r"^([A-Za-z]+)\s*(?:\((.*)\))?$")
_INTEGER = re.compile(r"^[+-]?\d+$")
_RANGE_KEY = re.compile(r"^\[\s*([+-]?\d+)\s*,\s*([+-]?\d+)\s*\]$")


# ------------------------------------------------------------------------------ names


def _spell_signs(name: str) -> str:
    """Spell ``+``/``-`` used as signs: before a number (``_-4.7V`` → ``_minus4.7V``)
    or ending a word (``V+`` → ``V_plus``). Other ``+``/``-`` are separators."""
    out: list[str] = []
    for index, char in enumerate(name):
        if char not in "+-":
            out.append(char)
            continue
        word = "plus" if char == "+" else "minus"
        before = name[index - 1] if index else ""
        after = name[index + 1:]
        if re.match(r"\.?\d", after) and not before.isalnum():
            out.append(word)
        elif before.isalnum() and (not after or not after[0].isalnum()):
            out.append(f"_{word}")
        else:
            out.append("_")
    return "".join(out)


def clean_name(name: str) -> str:
    """The TMDB name (lower_snake_case) of a ccsdspy field or packet name.

    A name that is already valid once lower-cased is kept as it is; otherwise signs
    are spelled out, accents dropped, ``name[3]`` becomes ``name_3`` and every other
    run of characters outside ``[a-z0-9_]`` one ``_``. A name that would start with a
    digit gets ``p_`` in front. Returns "" for a name with no letter or digit.
    """
    lowered = name.strip().lower()
    if NAME_PATTERN.match(lowered):
        return lowered
    text = unicodedata.normalize("NFKD", _spell_signs(name.strip()))
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = re.sub(r"_*[^a-z0-9_]+_*", "_", text).strip("_")
    if not re.search(r"[a-z0-9]", text):
        return ""
    return text if text[0].isalpha() else f"p_{text}"


def _element_index(name: str) -> tuple[str, int] | None:
    """``("v", 3)`` for ``v_3``: the array and index the name would be an element of
    (the TMDB names the elements of array ``v`` ``v_0``, ``v_1`` …)."""
    prefix, _, index = name.rpartition("_")
    if prefix and index.isdigit() and str(int(index)) == index:
        return prefix, int(index)
    return None


@dataclass
class _Names:
    """The names taken so far, and the arrays whose elements the TMDB will name."""

    owners: dict[str, str] = field(default_factory=dict)  # name -> "'ORIGINAL' (line N)"
    arrays: dict[str, tuple[int | None, str]] = field(default_factory=dict)
    # array name -> (element count, None when variable; owner)

    def conflict(self, name: str, elements: int | None, variable: bool) -> str | None:
        """Whose name (or array element name) ``name`` would clash with, if anyone's."""
        if name in self.owners:
            return self.owners[name]
        element = _element_index(name)
        if element is not None and element[0] in self.arrays:
            count, owner = self.arrays[element[0]]
            if count is None:
                return f"{owner}, whose elements are {element[0]}_<i>"
            if element[1] < count:
                return f"{owner}, element {element[1]}"
        if elements is not None or variable:
            for taken, owner in self.owners.items():
                element = _element_index(taken)
                if element is not None and element[0] == name \
                        and (variable or element[1] < (elements or 0)):
                    return f"{owner} (named like an element of this array)"
        return None

    def take(self, name: str, owner: str, elements: int | None, variable: bool) -> None:
        self.owners[name] = owner
        if elements is not None or variable:
            self.arrays[name] = (elements, owner)


# -------------------------------------------------------------------------- row fields


def _parse_data_type(text: str) -> tuple[str, Shape | None]:
    """``uint`` → ("uint", None); ``int(12, 24)`` → ("int", (12, 24));
    ``uint(expand)`` → ("uint", "expand"); ``uint(LEN)`` → ("uint", "LEN")."""
    match = _DATA_TYPE.match(text)
    if not match:
        raise ValueError(f"data_type {text!r} is not TYPE or TYPE(SHAPE), e.g. uint or "
                         "uint(4)")
    base = match[1].lower()
    if base not in TYPES:
        raise ValueError(f"data_type {text!r}: {match[1]!r} is not one of "
                         f"{', '.join(TYPES)}")
    if match[2] is None:
        return base, None
    inner = match[2].strip()
    parts = [part.strip() for part in inner.split(",")]
    if inner.lower() == "expand":
        return base, "expand"
    if all(_INTEGER.match(part) for part in parts):
        dims = tuple(int(part) for part in parts)
        if any(dim <= 0 for dim in dims):
            raise ValueError(f"data_type {text!r}: array dimensions must be positive")
        return base, dims
    if len(parts) == 1 and parts[0] and not re.search(r"[()\[\]]", parts[0]):
        return base, parts[0]
    raise ValueError(f"data_type {text!r}: the array shape must be a count (4), "
                     "dimensions (12, 24), expand, or the name of an earlier field")


def _parse_int(text: str, column: str, minimum: int) -> int:
    if not _INTEGER.match(text) or int(text) < minimum:
        kind = "a positive integer" if minimum > 0 else "an integer >= 0"
        raise ValueError(f"{column} must be {kind}, got {text!r}")
    return int(text)


def _parse_byte_order(text: str, bit_length: int) -> str:
    """ccsdspy's byte orders: big, little, or the octets' order as digits ("2143")."""
    order = text.lower() or "big"
    if order in ("big", "little"):
        if order == "little" and bit_length % 8:
            raise ValueError(f"byte_order little needs whole octets, bit_length is "
                             f"{bit_length}")
        return order
    if not order.isdigit():
        raise ValueError(f"byte_order must be big, little or a digit order such as 2143, "
                         f"got {text!r}")
    octets = len(order)
    if sorted(order) != [str(i) for i in range(1, octets + 1)] or octets > 9:
        raise ValueError(f"byte_order {text!r} must order the octets 1..{octets}, each once")
    if octets * 8 != bit_length:
        raise ValueError(f"byte_order {text!r} orders {octets} octets but bit_length is "
                         f"{bit_length}")
    if order == "".join(str(i) for i in range(1, octets + 1)):
        return "big"
    return order


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ValueError(f"key {repeated[0]!r} given twice")
    return dict(pairs)


@dataclass(frozen=True)
class _State:
    key: str  # as written in the CSV
    low: int  # inclusive
    high: int  # inclusive
    label: str
    is_range: bool  # written as [low,high]; kept as a range key, even [101,101]


@dataclass(frozen=True)
class _Calibration:
    states: tuple[_State, ...] = ()
    polynomial: tuple[float, ...] = ()


def _parse_calibration(text: str) -> _Calibration:
    try:
        raw = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"calibration is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError('calibration must be a JSON object: {"0": c0, "1": c1} or '
                         '{"0": "STATE", "[1,3]": "STATE"}')
    if not raw:
        return _Calibration()
    values = list(raw.values())
    if all(isinstance(v, str) for v in values):
        states: list[_State] = []
        for key, label in raw.items():
            if not label.strip():
                raise ValueError(f"calibration state {key!r} has an empty name")
            single, span = _INTEGER.match(key.strip()), _RANGE_KEY.match(key.strip())
            if single:
                states.append(_State(key, int(key), int(key), label, is_range=False))
            elif span:
                low, high = int(span[1]), int(span[2])
                if low > high:
                    raise ValueError(f"calibration state range {key!r} has low > high")
                states.append(_State(key, low, high, label, is_range=True))
            else:
                raise ValueError(f"calibration state key {key!r} is neither an integer "
                                 "nor a range [low,high]")
        return _Calibration(states=tuple(states))
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        by_power: dict[int, float] = {}
        for key, coefficient in raw.items():
            if not key.strip().isdigit():
                raise ValueError(f"calibration power {key!r} is not an integer >= 0")
            if not math.isfinite(coefficient):
                raise ValueError(f"calibration coefficient {key!r} is not finite")
            by_power[int(key)] = float(coefficient)
        return _Calibration(polynomial=tuple(by_power.get(power, 0.0)
                                             for power in range(max(by_power) + 1)))
    if all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in values):
        raise ValueError("calibration mixes state names and polynomial coefficients")
    raise ValueError("calibration values must be all numbers (polynomial coefficients) "
                     "or all text (state names)")


def _enum_states(calibration: tuple[_State, ...], base: str,
                 bit_length: int) -> tuple[dict[int | str, str], bool]:
    """The TMDB ``states`` of a uint/int field, and whether negative values were mapped
    to their two's complement (an enum reads the field's raw unsigned bits)."""
    if base == "int":
        low_limit, high_limit = -(1 << (bit_length - 1)), (1 << (bit_length - 1)) - 1
    else:
        low_limit, high_limit = 0, (1 << bit_length) - 1
    wrap = 1 << bit_length
    states: list[_State] = []
    for state in calibration:
        if state.low < low_limit or state.high > high_limit:
            kind = "signed" if base == "int" else "unsigned"
            raise ValueError(f"calibration state {state.key!r} does not fit in "
                             f"{bit_length} {kind} bits ({low_limit}..{high_limit})")
        if state.high < 0:
            states.append(_State(state.key, state.low + wrap, state.high + wrap,
                                 state.label, state.is_range))
        elif state.low < 0:  # a range across zero: two ranges of raw values
            states.append(_State(state.key, state.low + wrap, wrap - 1, state.label, True))
            states.append(_State(state.key, 0, state.high, state.label, True))
        else:
            states.append(state)
    ordered = sorted(states, key=lambda s: (s.low, s.high))
    for first, second in itertools.pairwise(ordered):
        if second.low <= first.high:
            raise ValueError(f"calibration states {first.key!r} ({first.label}) and "
                             f"{second.key!r} ({second.label}) overlap at raw value "
                             f"{second.low}")
    mapped = any(state.low < 0 for state in calibration)
    return {(f"[{s.low},{s.high}]" if s.is_range else s.low): s.label
            for s in states}, mapped


# ------------------------------------------------------------------------------- file


def _read(path: Path) -> tuple[int, list[str], list[tuple[int, list[str]]]]:
    """The header's line and columns (lower-case) and the data rows with their first
    line; blank lines are skipped, every value stripped."""
    where = str(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, skipinitialspace=True)
            rows: list[tuple[int, list[str]]] = []
            line = 1
            for values in reader:
                if any(value.strip() for value in values):
                    rows.append((line, [value.strip() for value in values]))
                line = reader.line_num + 1
    except OSError as exc:
        raise TmdbError([f"{where}: cannot read: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        raise TmdbError([f"{where}: cannot read: not UTF-8 text ({exc.reason} "
                         f"at byte {exc.start})"]) from None
    except csv.Error as exc:
        raise TmdbError([f"{where}:{line}: not a readable CSV file: {exc}"]) from None
    if not rows:
        raise TmdbError([f"{where}: empty: needs a header row naming the columns "
                         f"{', '.join(REQUIRED_COLUMNS)}"])
    (header_line, header), *data = rows
    return header_line, [column.lower() for column in header], data


@dataclass
class _Row:
    """A CSV row once read: what later rows need to know about it."""

    line: int
    original: str
    name: str = ""  # its TMDB name (once taken; the cleaned name otherwise)
    base: str = ""
    shape: Shape | None = None
    taken: bool = False


@dataclass
class _Layout:
    """Where the fields sit, as far as the rows before the current one say."""

    has_offsets: bool  # the CSV has a bit_offset column
    next_offset: int = PRIMARY_HEADER_BITS  # where a field without bit_offset starts
    fixed_end: int = PRIMARY_HEADER_BITS  # end of the fields at known offsets
    covered: list[tuple[int, int]] = field(default_factory=list)
    variable_line: int | None = None  # the first variable-length array
    expand_line: int | None = None
    lost: bool = False  # a row in error left the offsets after it unknown

    def place(self, offset: int, span: int) -> bool:
        """Record a field at a known offset; True if it is an overlay."""
        end = offset + span
        overlay = self.has_offsets and (offset < PRIMARY_HEADER_BITS or any(
            start < end and offset < stop for start, stop in self.covered))
        self.covered.append((offset, end))
        self.next_offset = max(self.next_offset, end) if self.has_offsets else end
        self.fixed_end = max(self.fixed_end, end)
        return overlay


class _Importer:
    """One pass over the rows: parameters, notes and problems."""

    def __init__(self, path: Path, header_line: int, header: list[str],
                 rows: list[tuple[int, list[str]]]) -> None:
        self.path = path
        self.where = str(path)
        self.header_line = header_line
        self.header = header
        self.rows = rows
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.parameters: list[dict[str, Any]] = []
        self.columns: dict[str, int] = {}
        self.first_line: dict[str, int] = {}  # original name -> first line that has it
        self.earlier: dict[str, _Row] = {}  # original name -> latest row of that name
        self.earlier_clean: dict[str, _Row] = {}  # cleaned name -> first row taken
        self.names = _Names()
        self.layout = _Layout(has_offsets=False)

    def read_header(self) -> None:
        for index, column in enumerate(self.header):
            if column in self.columns:
                self.problems.append(f"{self.where}:{self.header_line}: column "
                                     f"{column!r} is given twice")
            elif column in COLUMNS:
                self.columns[column] = index
            else:
                self.notes.append(f"{self.where}:{self.header_line}: column {column!r} "
                                  "is not one of "
                                  f"ccsdspy's ({', '.join(COLUMNS)}): ignored")
        missing = [column for column in REQUIRED_COLUMNS if column not in self.columns]
        if missing:
            self.problems.append(f"{self.where}:{self.header_line}: needs columns "
                                 f"{', '.join(REQUIRED_COLUMNS)} (missing: "
                                 f"{', '.join(missing)})")
        if not self.rows:
            self.problems.append(f"{self.where}: no field rows after the header")
        self.layout = _Layout(has_offsets="bit_offset" in self.columns)
        for line, values in self.rows:
            self.first_line.setdefault(self.cell(values, "name"), line)

    def cell(self, values: list[str], column: str) -> str:
        index = self.columns.get(column)
        return values[index] if index is not None and index < len(values) else ""

    def run(self) -> None:
        self.read_header()
        if self.problems:
            return
        for line, values in self.rows:
            self.row(line, values)

    # ------------------------------------------------------------------------ one row

    def row(self, line: int, values: list[str]) -> None:
        original = self.cell(values, "name")
        here = f"{self.where}:{line}: {original!r}"
        if not original:
            self.problems.append(f"{self.where}:{line}: the name is empty")
            return
        row = _Row(line, original, name=clean_name(original))
        earlier_row = self.earlier.get(original)
        self.earlier[original] = row
        problems: list[str] = []
        if any(value for value in values[len(self.header):]):
            problems.append(f"{len(values)} values for the {len(self.header)} columns of "
                            "the header")
        base: str | None = None
        shape: Shape | None = None
        try:
            base, shape = _parse_data_type(self.cell(values, "data_type"))
        except ValueError as exc:
            problems.append(str(exc))
        row.base, row.shape = base or "", shape
        bit_length: int | None = None
        try:
            bit_length = _parse_int(self.cell(values, "bit_length"), "bit_length", 1)
        except ValueError as exc:
            problems.append(str(exc))
        bit_offset: int | None = None
        if self.cell(values, "bit_offset"):
            try:
                bit_offset = _parse_int(self.cell(values, "bit_offset"), "bit_offset", 0)
            except ValueError as exc:
                problems.append(str(exc))
        calibration = _Calibration()
        if self.cell(values, "calibration"):
            try:
                calibration = _parse_calibration(self.cell(values, "calibration"))
            except ValueError as exc:
                problems.append(str(exc))
            else:
                if not (calibration.states or calibration.polynomial):
                    self.notes.append(f"{here}: empty calibration {{}}: ignored")

        # The array shape: its element count, or what makes the packet variable.
        elements = math.prod(shape) if isinstance(shape, tuple) else None
        variable = isinstance(shape, str)
        if base == "str" and shape is not None:
            problems.append("an array of str is not supported: give each string its own "
                            "row, or read the octets as uint(N) with bit_length 8")
        if shape == "expand" and self.layout.expand_line is not None:
            problems.append(f"a second expand array (the first is at line "
                            f"{self.layout.expand_line}): ccsdspy allows one per packet")
        elif isinstance(shape, str) and shape != "expand":
            shape = self.size_field(shape, original, earlier_row, here, problems)
        layout = self.layout
        if variable and bit_offset is not None:
            problems.append("a variable-length array (expand or sized by a field) takes "
                            "no bit_offset: its place is worked out per packet, as in "
                            "ccsdspy's VariableLength")
        elif layout.variable_line is not None and bit_offset is not None:
            problems.append(f"bit_offset after the variable-length array at line "
                            f"{layout.variable_line}: this field moves with that array's "
                            "size; leave bit_offset empty")
        offset = bit_offset
        if offset is None and layout.variable_line is None and not variable \
                and not layout.lost:
            offset = layout.next_offset
            if layout.has_offsets:
                self.notes.append(f"{here}: no bit_offset: placed at bit {offset}, after "
                                  "the fields before it")

        if base is not None and bit_length is not None:
            problems.extend(_type_problems(base, bit_length, offset))
        byte_order = "big"
        order_text = self.cell(values, "byte_order")
        if order_text and base in ("str", "fill"):
            if order_text.lower() != "big":
                self.notes.append(f"{here}: byte_order {order_text!r} ignored: a {base} "
                                  "field has no byte order")
        elif order_text and bit_length is not None:
            try:
                byte_order = _parse_byte_order(order_text, bit_length)
            except ValueError as exc:
                problems.append(str(exc))
            if byte_order != "big" and offset is not None and offset % 8:
                problems.append(f"byte_order {order_text!r} needs a field starting on an "
                                f"octet; it starts at bit {offset}")

        ptype = TYPES.get(base or "", "")
        states: dict[int | str, str] | None = None
        if (calibration.states or calibration.polynomial) and base in ("str", "fill"):
            self.notes.append(f"{here}: calibration ignored: a {base} field has no "
                              "numeric value")
            calibration = _Calibration()
        elif calibration.states and base == "float":
            problems.append("calibration states need an integer field, this is a float")
        elif calibration.states and base in ("uint", "int") and bit_length is not None \
                and bit_length <= MAX_INTEGER_BITS:
            try:
                states, mapped = _enum_states(calibration.states, base, bit_length)
            except ValueError as exc:
                problems.append(str(exc))
            else:
                ptype = "enum"
                if base == "int":
                    self.notes.append(
                        f"{here}: signed field with states taken as an enum of its raw "
                        "unsigned bits" + (": negative state values as their two's "
                                           "complement" if mapped else ""))

        if problems:
            self.problems.extend(f"{here}: {problem}" for problem in problems)
            if offset is not None and base is not None and bit_length is not None \
                    and not variable:
                layout.place(offset, bit_length * (elements or 1))
            else:  # no later offset can be worked out, nor checked
                layout.lost = True
            return
        assert base is not None and bit_length is not None
        final = self.take_name(row, here, elements, variable)
        if not final:
            return

        parameter: dict[str, Any] = {"name": final, "type": ptype, "bit_length": bit_length}
        if layout.has_offsets and offset is not None:
            parameter["bit_offset"] = offset
        if byte_order != "big":
            parameter["byte_order"] = byte_order
        if isinstance(shape, tuple):
            parameter["array"] = elements
            if len(shape) > 1:
                self.notes.append(f"{here}: {' x '.join(map(str, shape))} array flattened "
                                  f"in C (row-major) order: elements {final}_0 .. "
                                  f"{final}_{(elements or 1) - 1}")
        elif shape is not None:
            parameter["array"] = shape
        if offset is not None and layout.place(offset, bit_length * (elements or 1)):
            parameter["overlay"] = True
        if variable:
            layout.variable_line = layout.variable_line or line
            if shape == "expand":
                layout.expand_line = line
        if states is not None:
            parameter["states"] = states
        if calibration.polynomial:
            parameter["calibration"] = {"polynomial": list(calibration.polynomial)}
        parameter["description"] = f"imported from {self.path.name}: {original}"
        self.parameters.append(parameter)

    def size_field(self, shape: str, original: str, earlier_row: _Row | None, here: str,
                   problems: list[str]) -> str:
        """The TMDB name of the field giving an array's element count (``uint(LEN)``)."""
        target = earlier_row if shape == original else self.earlier.get(shape)
        if target is None and shape != original:
            target = self.earlier_clean.get(clean_name(shape))
            if target is not None:
                self.notes.append(f"{here}: array size {shape!r} taken as the field "
                                  f"{target.original!r} (line {target.line}), the same "
                                  "name once cleaned")
        if target is None:
            if shape == original:
                problems.append(f"array size {shape!r} is this field itself: it must name "
                                "an earlier field")
            elif shape in self.first_line:
                problems.append(f"array size {shape!r} is a field defined later (line "
                                f"{self.first_line[shape]}): it must name an earlier field")
            else:
                problems.append(f"array size {shape!r} is not a field of this packet: it "
                                "must name an earlier field")
            return shape
        if target.taken and target.base != "uint":
            problems.append(f"array size field {shape!r} has data_type {target.base}: the "
                            "element count must come from a uint field")
        elif target.taken and target.shape is not None:
            self.notes.append(f"{here}: array size field {shape!r} (line {target.line}) is "
                              "itself an array: taken as written, but no decoder (ccsdspy "
                              "included) can read one count from it")
        return target.name

    def take_name(self, row: _Row, here: str, elements: int | None, variable: bool) -> str:
        """The row's TMDB name: cleaned, then made unique (array elements included)."""
        cleaned = clean_name(row.original)
        if not cleaned:
            self.problems.append(f"{here}: the name has no letter or digit to make a TMDB "
                                 "name from")
            return ""
        final = cleaned
        clash = self.names.conflict(final, elements, variable)
        suffix = 2
        while self.names.conflict(final, elements, variable) is not None:
            final = f"{cleaned}_{suffix}"
            suffix += 1
        if clash is not None:
            self.notes.append(f"{here}: named {final!r}: {cleaned!r} is already {clash}")
        self.names.take(final, f"{row.original!r} (line {row.line})", elements, variable)
        row.name, row.taken = final, True
        self.earlier_clean.setdefault(cleaned, row)
        return final


def _type_problems(base: str, bit_length: int, offset: int | None) -> list[str]:
    problems: list[str] = []
    if base in ("uint", "int") and bit_length > MAX_INTEGER_BITS:
        problems.append(f"a {base} field is at most {MAX_INTEGER_BITS} bits, got "
                        f"{bit_length}")
    if base == "float" and bit_length not in FLOAT_BITS:
        problems.append(f"a float is 32 or 64 bits, got {bit_length}")
    if base == "str" and bit_length % 8:
        problems.append(f"a str field is whole octets: bit_length {bit_length} is not a "
                        "multiple of 8")
    if base in ("float", "str") and offset is not None and offset % 8:
        problems.append(f"a {base} field must start on an octet; it starts at bit {offset}")
    return problems


def import_ccsdspy_csv(path: Path, apid: int, name: str,
                       length: int | None = None) -> tuple[dict[str, Any], list[str]]:
    """Turn a ccsdspy packet definition CSV into a TMDB packet mapping and notes.

    ``length`` is the whole packet in octets, for a fixed layout whose fields do not
    reach the packet's end; without it a fixed layout's length is where its fields end
    (rounded up to an octet, with a note). A variable layout (``expand`` or an array
    sized by a field) has no length: each packet's header gives it. Packets imported
    this way carry no CUC secondary header or CRC of ours: their time is the receive
    time.

    Returns the mapping and the notes (``FILE:LINE: 'ORIGINAL NAME': what changed and
    why``). Raises :class:`TmdbError` listing every row that makes the definition
    unusable, each as ``FILE:LINE: 'ORIGINAL NAME': reason``.
    """
    importer = _Importer(path, *_read(path))
    importer.run()
    where, layout, notes = str(path), importer.layout, importer.notes
    octets = -(-layout.fixed_end // 8)
    if not importer.problems and layout.variable_line is None and length is not None \
            and length * 8 < layout.fixed_end:
        importer.problems.append(f"{where}: length {length} octets is shorter than the "
                                 f"fields, which end at bit {layout.fixed_end} ({octets} "
                                 "octets)")
    if importer.problems:
        raise TmdbError(importer.problems)

    packet: dict[str, Any] = {"name": clean_name(name) or "packet", "apid": apid,
                              "time": "receive", "error_control": "none",
                              "description": f"imported from {path.name}"}
    if layout.variable_line is not None:
        if length is not None:
            notes.append(f"{where}:{layout.variable_line}: length {length} given, but this "
                         "array makes the packet variable-length: each packet's own header "
                         "length is used and the given length is ignored")
    elif length is not None:
        packet["length"] = length
    else:
        packet["length"] = octets
        if layout.fixed_end % 8:
            notes.append(f"{where}: the fields end at bit {layout.fixed_end}, not on an "
                         f"octet: length rounded up to {octets} octets")
    packet["parameters"] = importer.parameters
    return packet, notes
