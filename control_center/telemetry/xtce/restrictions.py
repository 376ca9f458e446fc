"""Restrictions of inheriting containers: a comparison on the CCSDS APID gives the
packet's ``apid``, on the version its ``packet_version``, a telecommand (type 1) is left
out, and comparisons on other fields at fixed places become ``select`` (``> 1`` as the
list of raw values it allows)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from control_center.telemetry.xtce.conditions import ConditionReader, int_or
from control_center.telemetry.xtce.model import PacketField, PacketLayout, SkipPacket, field_of
from control_center.telemetry.xtce.reading import Xml
from control_center.telemetry.xtce.systems import System, SystemTree, TreeReader

# A restriction such as "> 1" becomes the list of raw values it allows; wider ones than
# this are not spelt out.
MAX_SELECT_VALUES = 4096
_OPERATORS = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b,
              "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
              ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


class Restrictions(TreeReader):
    """Reads the RestrictionCriteria of a container chain into its packet."""

    def __init__(self, tree: SystemTree) -> None:
        super().__init__(tree)
        self.conditions = ConditionReader(tree.findings, tree.ns)

    def restrict(self, packet: PacketLayout, system: System, container: Xml, before: int) -> None:
        """The container's restriction: on the fields before its entries (XTCE), or on
        its own (as the ISLS profile writes ``select``) when none of those is tested."""
        base = self.kid(container, "BaseContainer")
        criteria = self.kid(base, "RestrictionCriteria")
        if criteria is None:
            return
        if self.kid(criteria, "CustomAlgorithm") is not None \
                or self.kid(criteria, "NextContainer") is not None:
            raise SkipPacket(criteria, system, "a restriction by algorithm or NextContainer is not "
                             "supported")
        terms = self.conditions.read(system, criteria)
        if isinstance(terms, str):
            raise SkipPacket(criteria, system, terms)
        for ref, alternatives in terms:
            if "[" in ref:
                raise SkipPacket(criteria, system, f"{ref}: a test of an array element is not "
                                 "supported")
            found = self.tree.find_parameter(system, ref)
            if found is None:
                self.problem(criteria, system, f"parameterRef {ref!r} names no parameter")
                raise SkipPacket(criteria, system, f"parameterRef {ref!r} names no parameter")
            target = field_of(packet, found, before)
            if target is None:
                target = field_of(packet, found)
                if target is None:
                    raise SkipPacket(criteria, system, f"the restriction tests {ref!r}, which is "
                                     "not a field of this packet", listed=False)
                self.note(criteria, system, f"the restriction tests {ref!r}, a field of the "
                          "container's own entries: taken as a select (strict XTCE decoders "
                          "test the fields of the base container only)")
            values: frozenset[int] = frozenset()
            for operator, value, calibrated in alternatives:
                allowed = self._allowed(target, operator, value, calibrated)
                if isinstance(allowed, str):
                    raise SkipPacket(criteria, system, f"{ref} {operator} {value}: {allowed}")
                values |= allowed
                if operator.strip() != "==" and not target.role:
                    shown = sorted(allowed)
                    self.note(criteria, system, f"{ref} {operator} {value}: select lists the "
                              f"raw values {_ranges_text(shown)}")
            self._apply(packet, target, values, criteria, system)

    def _allowed(self, target: PacketField, operator: str, value: str, calibrated: bool
                 ) -> frozenset[int] | str:
        """The raw values of ``target`` that pass ``target <operator> value``, or why
        that cannot be listed."""
        kind, operator = target.type, operator.strip()
        test = _OPERATORS.get(operator)
        if test is None:
            return f"comparison operator {operator!r} is not supported"
        if kind.ptype not in ("unsigned", "signed", "enum", "boolean") \
                or not target.fixed_size or target.count != 1:
            return "only integer, enumerated and boolean fields can be tested"
        if calibrated and kind.calibration is not None:
            return "a test of a calibrated value is not supported (useCalibratedValue=false " \
                   "tests the raw one)"
        bits = target.bits
        low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if kind.ptype == "signed" \
            else (0, (1 << bits) - 1)
        if calibrated and kind.ptype == "enum":  # the value is a state name
            named = _raws_of(kind.states, value)
            if isinstance(named, str) or not named:
                return named or f"{value!r} is not one of its states"
            if operator == "==":
                return named
            if operator != "!=":
                return "a state name is tested with == or !="
            return self._listed(low, high, lambda raw: raw not in named)
        if calibrated and kind.ptype == "boolean":  # the value is true/false or a label
            if operator not in ("==", "!="):
                return "a boolean is tested with == or !="
            truth = value.strip().lower() in (
                "true", "1", kind.element.get("oneStringValue", "True").lower())
            if truth and bits > 1:
                return "a boolean of several bits tested for true is not supported"
            number = int(truth)
        else:
            parsed = int_or(value)
            if parsed is None:
                return f"{value!r} is not an integer"
            number = parsed
        if operator == "==":
            return frozenset([number]) if low <= number <= high else frozenset()
        wanted = number
        return self._listed(low, high, lambda raw: bool(test(raw, wanted)))

    @staticmethod
    def _listed(low: int, high: int, passes: Callable[[int], bool]) -> frozenset[int] | str:
        if high - low >= 1 << 20:
            return "the field is too wide to list the values the test allows"
        allowed = frozenset(raw for raw in range(low, high + 1) if passes(raw))
        if len(allowed) > MAX_SELECT_VALUES:
            return f"it allows {len(allowed)} values, more than the {MAX_SELECT_VALUES} a " \
                   "select lists"
        return allowed

    def _apply(self, packet: PacketLayout, target: PacketField, values: frozenset[int],
               criteria: Xml, system: System) -> None:
        role = target.role
        if role in ("apid", "version", "type"):
            if len(values) != 1:
                raise SkipPacket(criteria, system, f"the CCSDS {role} must be tested for one value",
                                 listed=False)
            (value,) = values
            if role == "type" and value == 1:
                raise SkipPacket(criteria, system, "a telecommand packet (CCSDS type 1)",
                                 listed=False, note_only=True)
            if role == "apid":
                packet.apid = value if packet.apid in (None, value) else -1
            elif role == "version":
                packet.version = value
            if packet.apid == -1:
                raise SkipPacket(criteria, system, "two different APIDs required", listed=False)
            return
        if role == "secondary_header":
            packet.secondary_header = values if packet.secondary_header is None \
                else packet.secondary_header & values
            return
        if role:
            raise SkipPacket(criteria, system, "a restriction on the CCSDS "
                             f"{role.replace('_', ' ')} is not supported")
        if target.offset is None:
            raise SkipPacket(criteria, system, f"{target.qualified} is tested but has no fixed "
                             "place (it follows a variable-size field)", listed=False)
        key = target.qualified
        if key in packet.select:
            values = packet.select[key][1] & values
        if not values:
            raise SkipPacket(criteria, system, f"no value of {target.qualified} passes its tests",
                             listed=False)
        packet.select[key] = (target, values)


def _ranges_text(values: list[int]) -> str:
    """``[2, 3, 4, 7]`` as "2..4, 7"."""
    parts: list[str] = []
    for _, run in itertools.groupby(enumerate(values), key=lambda item: item[1] - item[0]):
        numbers = [value for _, value in run]
        parts.append(str(numbers[0]) if len(numbers) == 1 else f"{numbers[0]}..{numbers[-1]}")
    return ", ".join(parts)


def _raws_of(states: dict[int | str, str], label: str) -> frozenset[int] | str:
    """The raw values an enumeration names ``label``."""
    out: set[int] = set()
    for key, name in states.items():
        if name != label:
            continue
        if isinstance(key, int):
            out.add(key)
            continue
        low, high = (int(v) for v in key.strip("[]").split(","))
        if high - low >= MAX_SELECT_VALUES:
            return f"state {label!r} covers {high - low + 1} values, too many to list"
        out.update(range(low, high + 1))
    return frozenset(out)
