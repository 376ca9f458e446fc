"""The SpaceSystem tree: each system's parameter types, parameters and containers by
name, and XTCE references resolved in it (a name in the referring system, then its
ancestors; relative and absolute paths; aggregate members)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from control_center.telemetry.xtce.elements import IGNORED, Findings, Reader
from control_center.telemetry.xtce.reading import Xml


@dataclass(eq=False)
class System:
    """One SpaceSystem: its telemetry definitions by name, and its place in the tree."""

    element: Xml
    name: str
    path: str  # "/Root/Sub"
    parent: System | None
    children: dict[str, System] = field(default_factory=dict)
    types: dict[str, Xml] = field(default_factory=dict)
    parameters: dict[str, Xml] = field(default_factory=dict)
    containers: dict[str, Xml] = field(default_factory=dict)

    def lineage(self) -> Iterator[System]:
        """This system, then its ancestors up to the root (the XTCE lookup order)."""
        system: System | None = self
        while system is not None:
            yield system
            system = system.parent


class SystemTree(Reader):
    """The file's SpaceSystems, indexed once (duplicates and nameless definitions are
    problems; what is not telemetry is listed as unsupported)."""

    def __init__(self, findings: Findings, namespace: str, root: Xml) -> None:
        super().__init__(findings, namespace)
        self.commands: list[tuple[Xml, System]] = []  # CommandMetaData elements
        self.root = self._index(root, None)

    def _index(self, element: Xml, parent: System | None) -> System:
        name = element.get("name") or ""
        path = f"{parent.path if parent else ''}/{name}"
        system = System(element, name, path, parent)
        if not name:
            self.problem(element, system, "a SpaceSystem needs a name")
        for child in self.kids(element):
            tag = self.tag(child)
            if tag == "TelemetryMetaData":
                self._index_telemetry(child, system)
            elif tag == "SpaceSystem":
                sub = self._index(child, system)
                if sub.name in system.children:
                    self.problem(child, system, f"a second SpaceSystem named {sub.name!r}")
                system.children.setdefault(sub.name, sub)
            elif tag == "CommandMetaData":
                self.commands.append((child, system))
            elif tag == "ServiceSet":
                self.unsupported(child, system, "services are not supported: ignored")
            elif tag not in IGNORED:
                self.unsupported(child, system, "not supported: ignored")
        return system

    def _index_telemetry(self, element: Xml, system: System) -> None:
        tables = {"ParameterTypeSet": system.types, "ParameterSet": system.parameters,
                  "ContainerSet": system.containers}
        for child in self.kids(element):
            tag = self.tag(child)
            table = tables.get(tag)
            if table is None:
                if tag == "AlgorithmSet":
                    for algorithm in self.kids(child):
                        self.unsupported(algorithm, system, "algorithms are not supported: "
                                         "their output parameters are not computed")
                else:
                    self.unsupported(child, system, "not supported: ignored")
                continue
            for item in self.kids(child):
                name = item.get("name")
                wanted = {"ParameterSet": "Parameter", "ContainerSet": "SequenceContainer"}
                if self.tag(item) != wanted.get(tag, self.tag(item)):
                    self.unsupported(item, system, "not supported: ignored")
                    continue
                if not name:
                    self.problem(item, system, "needs a name")
                elif name in table:
                    self.problem(item, system, f"a second definition named {name!r} in "
                                 f"{system.path}")
                else:
                    table[name] = item

    def find(self, system: System, ref: str, table: str) -> tuple[System, Xml] | None:
        """A definition by XTCE reference: a name (this system, then its ancestors), a
        relative path (``sub/name``, ``../name``) or an absolute one (``/Root/name``)."""
        head, _, name = ref.strip().rpartition("/")
        if ref.startswith("/"):
            parts = head.split("/")[1:]
            if not parts or parts[0] != self.root.name:
                return None
            starts: list[System] = [self.root]
            parts = parts[1:]
        else:
            parts = head.split("/") if head else []
            starts = list(system.lineage())
        for start in starts:
            current: System | None = start
            for part in parts:
                if current is None:
                    break
                if part == "..":
                    current = current.parent
                elif part not in (".", ""):
                    current = current.children.get(part)
            if current is not None:
                found = getattr(current, table).get(name)
                if found is not None:
                    return current, found
            if not parts and start is not system:
                continue
        return None

    def find_parameter(self, system: System, ref: str
                       ) -> tuple[System, Xml, tuple[str, ...]] | None:
        """A parameter reference, possibly to an aggregate member (``p.member`` as XTCE
        1.2 writes it, ``p/member`` as Yamcs does)."""
        ref = ref.strip()
        if "[" in ref:
            return None
        # "." separates members only in the last segment: "../x" is a path.
        path, slash, last = ref.rpartition("/")
        name, *dotted = last.split(".")
        head = f"{path}{slash}{name}"
        found = self.find(system, head, "parameters")
        if found is not None:
            return found[0], found[1], tuple(dotted)
        parts = head.split("/")
        for cut in range(len(parts) - 1, 0, -1):
            found = self.find(system, "/".join(parts[:cut]), "parameters")
            if found is not None:
                return found[0], found[1], (*parts[cut:], *dotted)
        return None

    def systems(self) -> Iterator[System]:
        """Every SpaceSystem, the root first, level by level."""
        pending = [self.root]
        while pending:
            system = pending.pop(0)
            yield system
            pending.extend(system.children.values())

    def report_commands(self) -> None:
        """One line for the whole command side: this is a telemetry import."""
        listings = [(listing, system) for element, system in self.commands
                    for listing in self.kids(element, "MetaCommandSet")]
        commands = [command for listing, _ in listings for command in self.kids(listing)
                    if command.get("abstract", "false").lower() != "true"]
        if listings:
            self.unsupported(listings[0][0], listings[0][1], f"{len(commands)} commands "
                             "skipped: this is a telemetry system")


class TreeReader(Reader):
    """A reader of one part of the file, that looks definitions up in its tree."""

    def __init__(self, tree: SystemTree) -> None:
        super().__init__(tree.findings, tree.ns)
        self.tree = tree
