"""XTCE elements read in the file's namespace, and what reading them finds: problems that
make the file unusable, notes on what was taken with a change, and elements not
supported, each with its file, line, element and SpaceSystem."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lxml import etree

from control_center.telemetry.xtce.reading import Xml

if TYPE_CHECKING:
    from control_center.telemetry.xtce.systems import System

# Children that carry nothing the TMDB keeps (display hints, provenance).
IGNORED = {"Header", "ToString", "ParameterProperties", "TimeAssociation",
           "DefaultRateInStream", "RateInStreamSet", "BinaryEncoding", "UnitSet",
           "AliasSet", "AncillaryDataSet", "LongDescription"}


@dataclass(eq=False)
class Findings:
    """What one import finds, shared by every reader of the file."""

    where: str  # the file, as messages name it
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unsupported: dict[str, str] = field(default_factory=dict)  # by the element's XPath
    noted: set[str] = field(default_factory=set)

    @property
    def unsupported_list(self) -> tuple[str, ...]:
        return tuple(self.unsupported.values())


class Reader:
    """Reads XTCE elements (children in the file's namespace, texts, numbers) and reports
    into the import's findings."""

    def __init__(self, findings: Findings, namespace: str) -> None:
        self.findings = findings
        self.where = findings.where
        self.ns = namespace

    # reporting ---------------------------------------------------------------------

    @staticmethod
    def tag(element: Xml) -> str:
        return str(etree.QName(element).localname)

    def describe(self, element: Xml) -> str:
        tag = self.tag(element)
        for attribute in ("name", "parameterRef", "containerRef", "typeRef"):
            if element.get(attribute) is not None:
                return f"<{tag} {attribute}='{element.get(attribute)}'>"
        return f"<{tag}>"

    def here(self, element: Xml, system: System) -> str:
        return f"{self.where}:{element.sourceline}: {self.describe(element)} in {system.path}"

    def unsupported(self, element: Xml, system: System, reason: str) -> None:
        """List ``element`` as not supported, once (the first reason found)."""
        key = str(element.getroottree().getpath(element))  # unique, even on one line
        self.findings.unsupported.setdefault(key, f"{self.here(element, system)}: {reason}")

    def problem(self, element: Xml, system: System, reason: str) -> None:
        text = f"{self.here(element, system)}: {reason}"
        if text not in self.findings.problems:
            self.findings.problems.append(text)

    def note(self, element: Xml | None, system: System | None, text: str) -> None:
        line = f"{self.here(element, system)}: {text}" if element is not None \
            and system is not None else f"{self.where}: {text}"
        if line not in self.findings.noted:
            self.findings.noted.add(line)
            self.findings.notes.append(line)

    # XML ---------------------------------------------------------------------------

    def is_xtce(self, element: Xml) -> bool:
        return isinstance(element.tag, str) and (etree.QName(element).namespace or "") == self.ns

    def kids(self, element: Xml, name: str | None = None) -> list[Xml]:
        return [child for child in element if self.is_xtce(child)
                and (name is None or etree.QName(child).localname == name)]

    def kid(self, element: Xml | None, *path: str) -> Xml | None:
        for name in path:
            if element is None:
                return None
            found = self.kids(element, name)
            element = found[0] if found else None
        return element

    def text(self, element: Xml | None) -> str:
        return (element.text or "").strip() if element is not None else ""

    def description(self, element: Xml) -> str:
        long = self.text(self.kid(element, "LongDescription"))
        return long or (element.get("shortDescription") or "").strip()

    def ancillary(self, element: Xml) -> dict[str, str]:
        found = self.kid(element, "AncillaryDataSet")
        return {item.get("name", ""): self.text(item)
                for item in (self.kids(found, "AncillaryData") if found is not None else [])}

    def alias(self, element: Xml, namespace: str = "isls") -> str:
        found = self.kid(element, "AliasSet")
        for item in self.kids(found, "Alias") if found is not None else []:
            if item.get("nameSpace") == namespace:
                return str(item.get("alias", ""))
        return ""

    def integer(self, element: Xml, system: System, text: str | None, what: str,
                default: int | None = None) -> int:
        if text is None or not text.strip():
            if default is not None:
                return default
            self.problem(element, system, f"{what} is missing")
            return 0
        try:
            return int(text.strip())
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            if value.is_integer():
                return int(value)
            self.problem(element, system, f"{what} must be an integer, got {text.strip()!r}")
            return 0

    def number(self, element: Xml, system: System, text: str | None, what: str) -> float:
        try:
            value = float((text or "").strip())
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            self.problem(element, system, f"{what} must be a finite number, got {text!r}")
            return 0.0
        return value
