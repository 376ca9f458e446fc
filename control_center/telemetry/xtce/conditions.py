"""Restrictions and context matches as comparisons: Comparison, ComparisonList and
BooleanExpression read as an AND of groups, each an OR of tests of one parameter; and
the values they compare with."""

from __future__ import annotations

from control_center.telemetry.xtce.elements import Reader
from control_center.telemetry.xtce.reading import Xml
from control_center.telemetry.xtce.systems import System


class ConditionReader(Reader):
    """Reads RestrictionCriteria and ContextMatch elements as comparisons."""

    def read(self, system: System, holder: Xml
             ) -> list[tuple[str, list[tuple[str, str, bool]]]] | str:
        """A restriction or context match as an AND of groups, each an OR of tests of one
        parameter: ``[(parameterRef, [(operator, value, calibrated), ...]), ...]``; or why
        it cannot be read that way."""
        groups: list[list[tuple[str, str, str, bool]]] = []
        for child in self.kids(holder):
            tag = self.tag(child)
            if tag == "Comparison":
                groups.append([self._comparison(child)])
            elif tag == "ComparisonList":
                groups.extend([self._comparison(c)] for c in self.kids(child, "Comparison"))
            elif tag == "BooleanExpression":
                found = self._boolean(child)
                if isinstance(found, str):
                    return found
                groups.extend(found)
            else:
                return f"a <{tag}> cannot be read as comparisons"
        out: list[tuple[str, list[tuple[str, str, bool]]]] = []
        for group in groups:
            if len({ref for ref, _, _, _ in group}) != 1:
                return "an OR across different parameters cannot be expressed"
            out.append((group[0][0], [(op, value, calibrated)
                                      for _, op, value, calibrated in group]))
        return out

    def _comparison(self, element: Xml) -> tuple[str, str, str, bool]:
        return (element.get("parameterRef", ""), element.get("comparisonOperator", "=="),
                element.get("value", ""),
                element.get("useCalibratedValue", "true").lower() == "true")

    def _condition(self, element: Xml) -> tuple[str, str, str, bool] | str:
        refs = self.kids(element, "ParameterInstanceRef")
        if len(refs) != 1:
            return ""  # compares two parameters
        return (refs[0].get("parameterRef", ""),
                self.text(self.kid(element, "ComparisonOperator")) or "==",
                self.text(self.kid(element, "Value")),
                refs[0].get("useCalibratedValue", "true").lower() == "true")

    def _boolean(self, element: Xml) -> list[list[tuple[str, str, str, bool]]] | str:
        """A BooleanExpression as an AND of ORs of conditions."""
        children = self.kids(element)
        if len(children) != 1:
            return "an empty BooleanExpression"
        return self._and(children[0])

    def _and(self, element: Xml) -> list[list[tuple[str, str, str, bool]]] | str:
        tag = self.tag(element)
        if tag == "Condition":
            condition = self._condition(element)
            return [[condition]] if not isinstance(condition, str) else \
                "a condition comparing two parameters cannot be expressed"
        if tag == "ANDedConditions":
            out: list[list[tuple[str, str, str, bool]]] = []
            for child in self.kids(element):
                found = self._and(child)
                if isinstance(found, str):
                    return found
                out.extend(found)
            return out
        if tag == "ORedConditions":
            alternatives: list[tuple[str, str, str, bool]] = []
            for child in self.kids(element):
                found = self._and(child)
                if isinstance(found, str):
                    return found
                if len(found) != 1:
                    return "an AND inside an OR cannot be expressed"
                alternatives.extend(found[0])
            return [alternatives]
        return f"a <{tag}> cannot be read as conditions"


def int_or(text: str) -> int | None:
    """An integer written in decimal (``5``, ``5.0``) or hexadecimal (``0x1F``)."""
    text = text.strip()
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number.is_integer() else None
