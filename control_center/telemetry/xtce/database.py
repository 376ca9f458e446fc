"""The spacecraft's whole TMDB document, across its packets: one CCSDS version, APIDs
shared only when ``select`` tells the packets apart, derived parameters, limit sets on
an enumerated mode, and the parameters no imported packet holds."""

from __future__ import annotations

from collections import Counter
from typing import Any

from control_center.telemetry.ccsdspy_csv import clean_name
from control_center.telemetry.xtce.conditions import int_or
from control_center.telemetry.xtce.documents import PacketDocuments
from control_center.telemetry.xtce.model import (
    HEADER_ROLES,
    PacketField,
    PacketLayout,
    ParameterType,
)
from control_center.telemetry.xtce.parameter_types import TypeReader
from control_center.telemetry.xtce.systems import SystemTree, TreeReader


class DatabaseWriter(TreeReader):
    """Puts the packets' documents together as the spacecraft's document."""

    def __init__(self, tree: SystemTree, types: TypeReader, documents: PacketDocuments,
                 spacecraft: str | None) -> None:
        super().__init__(tree)
        self.types = types
        self.documents = documents
        self.spacecraft = spacecraft
        self.version = 0
        self.used: set[tuple[str, str]] = set()  # parameters placed in an imported packet
        # XTCE parameter -> its TMDB name and type in the first packet holding it
        self.placed: dict[tuple[str, str, tuple[str, ...]], tuple[str, str, PacketField]] = {}
        self.header_fields: dict[str, None] = {}  # the CCSDS primary header's, in order
        self._pending_sets: list[tuple[PacketField, dict[str, Any]]] = []  # derived limit sets

    def versions(self, built: list[tuple[PacketLayout, dict[str, Any]]]
                 ) -> list[tuple[PacketLayout, dict[str, Any]]]:
        """The packets of the spacecraft's CCSDS version (``isls.packet_version``, else the
        one most packets are restricted to); the others skipped."""
        said = self.ancillary(self.tree.root.element).get("isls.packet_version")
        versions = Counter(p.version for p, _ in built if p.version is not None)
        if said is not None:
            self.version = self.integer(self.tree.root.element, self.tree.root, said,
                                        "isls.packet_version")
        else:
            self.version = versions.most_common(1)[0][0] if versions else 0
        out = []
        for packet, document in built:
            if packet.version not in (None, self.version):
                self.unsupported(packet.container, packet.system, f"packet skipped: CCSDS "
                                 f"version {packet.version}, the spacecraft's packets carry "
                                 f"{self.version}")
                continue
            out.append((packet, document))
        return out

    def shared_apids(self, built: list[tuple[PacketLayout, dict[str, Any]]]
                     ) -> list[tuple[PacketLayout, dict[str, Any]]]:
        """Packets may share an APID only when select tells them apart."""
        first: dict[int, PacketLayout] = {}
        names: set[str] = set()
        out = []
        for packet, document in built:
            other = first.get(document["apid"])
            if other is not None and not (other.select and packet.select):
                self.unsupported(packet.container, packet.system, f"packet skipped: APID "
                                 f"{document['apid']} is also {other.name!r} and no field "
                                 "tells them apart")
                continue
            first.setdefault(document["apid"], packet)
            name, suffix = document["name"], 2
            while name in names:
                name = f"{document['name']}_{suffix}"
                suffix += 1
            if name != document["name"]:
                self.note(packet.container, packet.system, f"packet named {name!r}: "
                          f"{document['name']!r} is taken")
                document["name"] = name
            names.add(name)
            out.append((packet, document))
        return out

    def remember(self, packet: PacketLayout) -> None:
        """The parameters an imported packet holds, and under which names."""
        for placed in packet.fields:
            self.used.add(placed.key[:2])
            if placed.role in HEADER_ROLES.values():
                self.header_fields.setdefault(placed.qualified, None)
            if placed.name:
                self.used.add(placed.key[:2])
                self.placed.setdefault(placed.key, (placed.name, placed.type.ptype, placed))

    def derived(self, packets: list[dict[str, Any]]) -> None:
        """Our export's derived parameters: in no container, isls.expression and
        isls.packet say what and where."""
        by_name = {p["name"]: p for p in packets}
        for system in self.tree.systems():
            for name, parameter in system.parameters.items():
                data = self.ancillary(parameter)
                if "isls.expression" not in data:
                    continue
                self.used.add((system.path, name))
                target = by_name.get(data.get("isls.packet", ""))
                if target is None:
                    self.note(parameter, system, f"derived parameter of packet "
                              f"{data.get('isls.packet')!r}, which is not imported: left out")
                    continue
                kind = self.types.type_of(system, parameter)
                item: dict[str, Any] = {"name": self.alias(parameter) or clean_name(name),
                                        "expression": data["isls.expression"]}
                if kind is not None and not kind.problem:
                    if kind.unit:
                        item["unit"] = kind.unit
                    if kind.limits:
                        item["limits"] = {k: list(v) for k, v in kind.limits.items()}
                placed = PacketField((system.path, name, ()), f"{system.path}/{name}", parameter,
                                     system, kind or ParameterType(parameter, system, "float"),
                                     name, "", None, 64, ancillary=data)
                if kind is not None:
                    self.documents.extras(placed, item)
                description = self.description(parameter)
                if description:
                    item["description"] = description
                target.setdefault("derived", []).append(item)
                self._pending_sets.append((placed, item))

    def limit_sets(self, packet: PacketLayout, document: dict[str, Any]) -> None:
        """The packet's context alarms as limit sets on the mode parameter's states."""
        items = {item["name"]: item for item in document["parameters"]}
        for placed in packet.fields:
            if placed.type.context_alarms and placed.name in items:
                self._resolve_sets(placed, items[placed.name])

    def _resolve_sets(self, placed: PacketField, item: dict[str, Any]) -> None:
        sets: list[dict[str, Any]] = []
        for alarm in placed.type.context_alarms:
            system, element, members = alarm.mode
            mode = self.placed.get((system.path, element.get("name"), members))
            if mode is None or mode[1] != "enum":
                self.unsupported(alarm.element, alarm.system, "the context is not an "
                                 "enumerated parameter of an imported packet: left out")
                continue
            states = mode[2].type.states
            labels: list[str] = []
            for value, calibrated in alarm.values:
                label = value if calibrated else _state_label(states, int_or(value))
                if label is None or label not in states.values():
                    self.unsupported(alarm.element, alarm.system, f"{value!r} is not a state of "
                                     f"{mode[2].qualified}: left out")
                    labels = []
                    break
                labels.append(label)
            if labels:
                sets.append({"when": {mode[0]: labels}, "limits": {
                    level: list(pair) for level, pair in alarm.limits.items()}})
        if sets:
            item["limit_sets"] = sets

    def derived_limit_sets(self) -> None:
        """The derived parameters' limit sets, once every packet's fields are named."""
        for placed, item in self._pending_sets:
            self._resolve_sets(placed, item)

    def report_unused(self) -> None:
        """What was read but not imported as parameters: the primary header, and
        parameters in no imported packet."""
        if self.header_fields:
            self.note(None, None, "the CCSDS primary header (" + ", ".join(self.header_fields)
                      + ") is read by the decoder itself: not imported as parameters")
        unused = [f"{system.path}/{name}" for system in self.tree.systems()
                  for name in system.parameters if (system.path, name) not in self.used]
        if unused:
            shown = ", ".join(unused[:8]) + (", ..." if len(unused) > 8 else "")
            self.note(None, None, f"{len(unused)} parameters are in no imported packet: "
                      f"not imported ({shown})")

    def document(self, packets: list[dict[str, Any]]) -> dict[str, Any]:
        """The spacecraft's TMDB document holding ``packets``."""
        root = self.tree.root
        data = self.ancillary(root.element)
        spacecraft = self.spacecraft or clean_name(root.name) or "imported"
        if not self.spacecraft and spacecraft != root.name:
            self.note(None, None, f"spacecraft {spacecraft!r}: the root SpaceSystem "
                      f"{root.name!r} made lower_snake_case")
        document: dict[str, Any] = {"spacecraft": spacecraft}
        if "isls.spacecraft_id" in data:
            document["spacecraft_id"] = self.integer(root.element, root,
                                                     data["isls.spacecraft_id"],
                                                     "isls.spacecraft_id")
        for key in ("mission", "agency"):
            if data.get(f"isls.{key}"):
                document[key] = data[f"isls.{key}"]
        description = self.description(root.element)
        if description:
            document["description"] = description
        if self.version:
            document["packet_version"] = self.version
        document["packets"] = packets
        return document


def _state_label(states: dict[int | str, str], raw: int | None) -> str | None:
    if raw is None:
        return None
    if raw in states:
        return states[raw]
    for key, label in states.items():
        if isinstance(key, str):
            low, high = (int(v) for v in key.strip("[]").split(","))
            if low <= raw <= high:
                return label
    return None
