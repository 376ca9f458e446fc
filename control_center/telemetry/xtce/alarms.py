"""Alarms of parameter types: static alarm ranges as yellow and red limits,
``minViolations`` as persistence, and context alarms on an enumerated parameter (the
TMDB's limit sets)."""

from __future__ import annotations

from typing import Any

from control_center.telemetry.xtce.conditions import ConditionReader
from control_center.telemetry.xtce.model import ContextAlarm, ParameterType
from control_center.telemetry.xtce.reading import Xml
from control_center.telemetry.xtce.systems import System, SystemTree, TreeReader

_YELLOW = ("WarningRange", "WatchRange")  # first found wins
_RED = ("CriticalRange", "DistressRange", "SevereRange")


class AlarmReader(TreeReader):
    """Reads the DefaultAlarm and ContextAlarmList of numeric parameter types."""

    def __init__(self, tree: SystemTree) -> None:
        super().__init__(tree)
        self.conditions = ConditionReader(tree.findings, tree.ns)

    def of_type(self, system: System, element: Xml, parsed: ParameterType) -> dict[str, Any]:
        """limits, persistence and context alarms of a numeric type."""
        out: dict[str, Any] = {}
        default = self.kid(element, "DefaultAlarm")
        contexts = self.kid(element, "ContextAlarmList")
        numeric = parsed.ptype in ("unsigned", "signed", "float") and parsed.kind != "time"
        if not numeric:
            # Our export gives an enum or boolean's persistence as a DefaultAlarm that
            # holds nothing else.
            if default is not None and not self.kids(default):
                out["persistence"] = self._violations(system, default)
            for holder in (default if out.get("persistence") is None else None, contexts):
                if holder is not None:
                    self.unsupported(holder, system, f"alarms of a {parsed.kind} are not "
                                     "supported (limits are numeric)")
            return out
        if default is not None:
            limits = self._ranges(system, default)
            if limits is not None:
                out["limits"] = limits
            out["persistence"] = self._violations(system, default)
        alarms: list[ContextAlarm] = []
        for context in self.kids(contexts, "ContextAlarm") if contexts is not None else []:
            alarm = self._context_alarm(system, context, out.get("persistence", 1))
            if alarm is not None:
                alarms.append(alarm)
        out["context_alarms"] = tuple(alarms)
        return out

    def _violations(self, system: System, alarm: Xml) -> int:
        for attribute in ("maxViolations", "minConformance"):
            if alarm.get(attribute) is not None:
                self.note(alarm, system, f"{attribute} ignored (our persistence is the "
                          "number of samples out before the level changes)")
        persistence = self.integer(alarm, system, alarm.get("minViolations"), "minViolations",
                                   default=1)
        return max(1, min(persistence, 10_000))

    def _ranges(self, system: System, alarm: Xml) -> dict[str, list[float | None]] | None:
        for tag in ("ChangeAlarmRanges", "AlarmMultiRanges", "CustomAlarm"):
            found = self.kid(alarm, tag)
            if found is not None:
                self.unsupported(found, system, "not supported: only static ranges become limits")
        ranges = self.kid(alarm, "StaticAlarmRanges")
        if ranges is None:
            return None
        limits: dict[str, list[float | None]] = {}
        for level, tags in (("yellow", _YELLOW), ("red", _RED)):
            present = [r for tag in tags for r in self.kids(ranges, tag)]
            if not present:
                continue
            chosen = present[0]
            for other in present[1:]:
                self.note(other, system, f"{self.tag(other)} ignored: {self.tag(chosen)} is "
                          f"taken as the {level} limits")
            if self.tag(chosen) not in ("WarningRange", "CriticalRange"):
                self.note(chosen, system, f"{self.tag(chosen)} taken as the {level} limits")
            low, high = self._bound(system, chosen, "min"), self._bound(system, chosen, "max")
            if low is not None or high is not None:
                limits[level] = [low, high]
        problem = self._limits_problem(limits)
        if problem:
            self.unsupported(ranges, system, f"{problem}: these limits are left out")
            return None
        return limits or None

    def _bound(self, system: System, element: Xml, side: str) -> float | None:
        inclusive, exclusive = element.get(f"{side}Inclusive"), element.get(f"{side}Exclusive")
        if exclusive is not None:
            # Ours: a value equal to a limit is within it (control_center.monitoring.limits).
            self.note(element, system, f"{side}Exclusive taken as inclusive: a value equal to "
                      "the limit is within it")
        text = inclusive if inclusive is not None else exclusive
        return None if text is None else self.number(element, system, text, f"{side} limit")

    @staticmethod
    def _limits_problem(limits: dict[str, list[float | None]]) -> str:
        yellow = limits.get("yellow", [None, None])
        red = limits.get("red", [None, None])
        for level, (low, high) in (("yellow", yellow), ("red", red)):
            if low is not None and high is not None and low >= high:
                return f"the {level} range is empty ({low}..{high})"
        if yellow[0] is not None and red[0] is not None and red[0] > yellow[0]:
            return "the red low limit is above the yellow one"
        if yellow[1] is not None and red[1] is not None and red[1] < yellow[1]:
            return "the red high limit is below the yellow one"
        return ""

    def _context_alarm(self, system: System, context: Xml, persistence: int
                       ) -> ContextAlarm | None:
        match = self.kid(context, "ContextMatch")
        terms = self.conditions.read(system, match) if match is not None else None
        if isinstance(terms, str) or not terms or len(terms) != 1:
            reason = terms if isinstance(terms, str) else "it does not test one parameter"
            self.unsupported(context, system, f"a context alarm is imported when it tests "
                             f"one enumerated parameter for one or more states; {reason}: "
                             "left out")
            return None
        ref, alternatives = terms[0]
        mode = self.tree.find_parameter(system, ref)
        if mode is None:
            self.problem(match, system, f"parameterRef {ref!r} names no parameter")
            return None
        operators = {op for op, _, _ in alternatives}
        if operators != {"=="}:
            self.unsupported(context, system, "a context alarm tests its mode with ==: left out")
            return None
        ranges = self._ranges(system, context)
        if ranges is None:
            return None
        if self._violations(system, context) != persistence:
            self.note(context, system, "minViolations of a context alarm ignored: the "
                      "default alarm's (the parameter's persistence) applies")
        return ContextAlarm(context, system, mode,
                            tuple((value, calibrated) for _, value, calibrated in alternatives),
                            ranges)

    # conditions --------------------------------------------------------------------
