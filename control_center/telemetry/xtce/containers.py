"""Containers as packets: the concrete SequenceContainers nothing inherits from, each laid
out from its chain of BaseContainers (entries placed by LocationInContainerInBits,
ContainerRefEntry inlined, aggregates and arrays expanded, sizes read per packet) and
restricted (:mod:`.restrictions`)."""

from __future__ import annotations

from dataclasses import replace

from control_center.telemetry.xtce.model import (
    HEADER_ROLES,
    PRIMARY_HEADER_BITS,
    PacketField,
    PacketLayout,
    ParameterType,
    Size,
    SkipPacket,
    field_of,
)
from control_center.telemetry.xtce.parameter_types import TypeReader
from control_center.telemetry.xtce.reading import Xml
from control_center.telemetry.xtce.restrictions import Restrictions
from control_center.telemetry.xtce.systems import System, SystemTree, TreeReader


class ContainerReader(TreeReader):
    """Finds the packets among the containers and lays each out."""

    def __init__(self, tree: SystemTree, types: TypeReader) -> None:
        super().__init__(tree)
        self.types = types
        self.restrictions = Restrictions(tree)

    def _base(self, system: System, element: Xml) -> tuple[System, Xml] | None:
        base = self.kid(element, "BaseContainer")
        if base is None:
            return None
        ref = base.get("containerRef", "")
        found = self.tree.find(system, ref, "containers")
        if found is None:
            self.problem(base, system, f"containerRef {ref!r} names no container")
        return found

    def packet_containers(self) -> list[tuple[System, Xml]]:
        """The concrete containers nothing inherits from and that are not only parts of
        others (ContainerRefEntry), in file order."""
        containers = {(system.path, name): (system, element) for system in self.tree.systems()
                      for name, element in system.containers.items()}
        inherited: set[tuple[str, str]] = set()
        parts: set[tuple[str, str]] = set()
        for system, element in containers.values():
            base = self._base(system, element)
            if base is not None:
                inherited.add((base[0].path, base[1].get("name")))
            entries = self.kid(element, "EntryList")
            for entry in self.kids(entries) if entries is not None else []:
                # every reference checked here, so that a broken file is reported whole
                if self.tag(entry) == "ParameterRefEntry":
                    ref = entry.get("parameterRef", "")
                    if self.tree.find_parameter(system, ref) is None:
                        self.problem(entry, system, f"parameterRef {ref!r} names no parameter")
                if self.tag(entry) != "ContainerRefEntry":
                    continue
                found = self.tree.find(system, entry.get("containerRef", ""), "containers")
                if found is None:
                    self.problem(entry, system, f"containerRef {entry.get('containerRef')!r} "
                                 "names no container")
                elif self.kid(found[1], "BaseContainer") is None:
                    parts.add((found[0].path, found[1].get("name")))
        out = []
        for key, (system, element) in containers.items():
            if element.get("abstract", "false").lower() == "true" or key in inherited:
                continue
            if key in parts:
                continue
            out.append((system, element))
        out.sort(key=lambda item: item[1].sourceline or 0)
        return out

    def _chain(self, system: System, element: Xml) -> list[tuple[System, Xml]]:
        chain = [(system, element)]
        seen = {(system.path, element.get("name"))}
        while True:
            base = self._base(*chain[0])
            if base is None:
                return chain
            key = (base[0].path, base[1].get("name"))
            if key in seen:
                raise SkipPacket(element, system, "its BaseContainer chain loops")
            seen.add(key)
            chain.insert(0, base)

    def build(self, system: System, element: Xml) -> PacketLayout:
        """A packet laid out from its container chain (the header's container first)."""
        chain = self._chain(system, element)
        packet = PacketLayout(element, system, element.get("name", ""))
        for index, (link_system, link) in enumerate(chain):
            before = len(packet.fields)
            self._place_entries(packet, link_system, link, 0, ())
            if index:
                self.restrictions.restrict(packet, link_system, link, before)
        if packet.apid is None:
            raise SkipPacket(element, system, "no restriction fixes its CCSDS APID (a comparison "
                             "on the 11-bit field at bit 5)")
        return packet

    def _place_entries(self, packet: PacketLayout, system: System, container: Xml,
                       container_start: int | None, inside: tuple[str, ...]) -> None:
        """The container's entries, from ``container_start`` (the packet's start, or where
        a ContainerRefEntry puts it); ``inside``: the containers it is part of."""
        here = f"{system.path}/{container.get('name')}"
        if here in inside:
            raise SkipPacket(container, system, "the container contains itself")
        entries = self.kid(container, "EntryList")
        for entry in self.kids(entries) if entries is not None else []:
            for tag in ("RepeatEntry", "IncludeCondition"):
                found = self.kid(entry, tag)
                if found is not None:
                    raise SkipPacket(found, system, f"{tag} is not supported: the offsets after "
                                     "it would be wrong")
            tag = self.tag(entry)
            if tag == "ParameterRefEntry":
                start = self._location(packet, system, entry, container_start)
                ref = entry.get("parameterRef", "")
                found = self.tree.find_parameter(system, ref)
                if found is None:
                    self.problem(entry, system, f"parameterRef {ref!r} names no parameter")
                    raise SkipPacket(entry, system, f"parameterRef {ref!r} names no parameter")
                self._place_parameter(packet, entry, start, *found)
            elif tag == "ContainerRefEntry":
                start = self._location(packet, system, entry, container_start)
                found = self.tree.find(system, entry.get("containerRef", ""), "containers")
                if found is None:
                    raise SkipPacket(entry, system, "its containerRef names no container")
                if self.kid(found[1], "BaseContainer") is not None:
                    raise SkipPacket(entry, system, "a ContainerRefEntry to a container that "
                                     "inherits is not supported")
                packet.position = start
                self._place_entries(packet, found[0], found[1], start, (*inside, here))
            else:
                raise SkipPacket(entry, system, f"<{tag}> entries are not supported")
            for child in self.kids(entry):
                if self.tag(child) not in ("LocationInContainerInBits", "TimeAssociation",
                                           "AncillaryDataSet"):
                    self.unsupported(child, system, "not supported: ignored")

    def _location(self, packet: PacketLayout, system: System, entry: Xml,
                  container_start: int | None) -> int | None:
        location = self.kid(entry, "LocationInContainerInBits")
        reference, value = "previousEntry", 0
        if location is not None:
            reference = location.get("referenceLocation", "previousEntry")
            fixed = self.kid(location, "FixedValue")
            if fixed is None:
                raise SkipPacket(location, system, "a location that is not a FixedValue is not "
                                 "supported")
            value = self.integer(fixed, system, fixed.text, "FixedValue")
        if reference == "containerStart":
            if container_start is None:
                raise SkipPacket(location, system, "a containerStart location in a container that "
                                 "follows a variable-size field")
            return container_start + value
        if reference != "previousEntry":
            raise SkipPacket(location, system, f"referenceLocation {reference!r} is not supported "
                             "(containerStart and previousEntry are)")
        if packet.position is None:
            if value < 0:
                raise SkipPacket(location, system, "a negative offset after a variable-size field")
            if value:
                self._add_gap(packet, system, entry, value)
            return None
        return packet.position + value

    def _add_gap(self, packet: PacketLayout, system: System, element: Xml, bits: int) -> None:
        spare = ParameterType(element, system, "integer", ptype="unsigned", bits=bits)
        packet.fields.append(PacketField(("", f"gap{len(packet.fields)}", ()), "gap", element,
                                         system, spare, f"spare_{len(packet.fields)}", "", None,
                                         bits, spare=True))

    def _place_parameter(self, packet: PacketLayout, entry: Xml, start: int | None,
                         system: System, parameter: Xml, members: tuple[str, ...]) -> None:
        kind = self.types.type_of(system, parameter)
        if kind is None:
            raise SkipPacket(entry, system, f"parameter {parameter.get('name')!r} has no type")
        name = parameter.get("name", "")
        description = self.description(parameter)
        for member in members:
            found = next((m for m in kind.members if m.name == member), None)
            if found is None:
                raise SkipPacket(entry, system, f"{kind.kind} type has no member {member!r}")
            kind, description = found.type, found.description or description
            name = f"{name}_{member}"
        if kind.problem:
            raise SkipPacket(kind.element, kind.system, kind.problem)
        qualified = f"{system.path}/{parameter.get('name')}" + "".join(f".{m}" for m in members)
        data = self.ancillary(parameter)
        base = PacketField((system.path, parameter.get("name", ""), members), qualified, parameter,
                           system, kind, name, description, start, kind.bits, ancillary=data,
                           alias="" if members else self.alias(parameter),
                           spare=data.get("isls.spare") == "true")
        self._place_typed(packet, base, entry)

    def _place_typed(self, packet: PacketLayout, base: PacketField, entry: Xml) -> None:
        kind = base.type
        if kind.kind == "aggregate":
            packet.position = base.offset
            for member in kind.members:
                self._place_typed(packet, replace(
                    base, key=(*base.key[:2], (*base.key[2], member.name)),
                    qualified=f"{base.qualified}.{member.name}", type=member.type,
                    name_hint=f"{base.name_hint}_{member.name}",
                    description=member.description or base.description,
                    offset=packet.position, bits=member.type.bits, alias="",
                    ancillary={}), entry)
            return
        placed = base  # made for this entry: completed in place
        placed.bits = kind.bits
        if kind.kind == "array":
            assert kind.element_type is not None
            placed.type, placed.bits = kind.element_type, kind.element_type.bits
            if kind.count_size is None:
                placed.count = kind.count
            else:
                self._per_packet(packet, placed, "array", kind.count_size, kind.start_index)
        elif kind.size is not None:
            self._per_packet(packet, placed, "octets", kind.size, 0)
        packet.fields.append(placed)
        role = HEADER_ROLES.get((placed.offset, placed.span)) \
            if placed.offset is not None and placed.offset < PRIMARY_HEADER_BITS else None
        if role and placed.type.ptype in ("unsigned", "enum", "boolean") \
                and placed.type.calibration is None and placed.count == 1:
            placed.role = role
        packet.position = placed.end

    def _per_packet(self, packet: PacketLayout, placed: PacketField, what: str, size: Size,
                    start_index: int) -> None:
        """How an array's element count (``what`` "array") or a string or binary's size
        ("octets") is read per packet: from an earlier counter, or from the packet length
        (``expand``, once the fields after it are known)."""
        found = self.tree.find_parameter(size.system, size.ref)
        if found is None:
            self.problem(size.element, size.system, f"parameterRef {size.ref!r} names no "
                         "parameter")
            raise SkipPacket(size.element, size.system, f"its size refers to {size.ref!r}, no "
                             "parameter")
        counter = field_of(packet, found)
        if counter is None:
            raise SkipPacket(size.element, size.system, f"its size comes from {size.ref!r}, not an "
                             "earlier field of this packet")
        placed.dynamic = what
        if counter.role == "packet_length":
            placed.on_length = (size, start_index)
            return
        calibrated = counter.type.calibration is not None and size.calibrated
        if counter.type.ptype != "unsigned" or calibrated or not counter.fixed_size \
                or counter.count != 1:
            raise SkipPacket(size.element, size.system, f"its size comes from {size.ref!r}, which "
                             "must be an uncalibrated unsigned field of fixed size")
        if what == "array" and (size.slope != 1 or size.intercept != start_index - 1):
            raise SkipPacket(size.element, size.system, "an array's ending index must be the "
                             "counter minus 1 (intercept -1, slope 1): our count is the counter")
        if what == "octets" and (size.slope != 8 or size.intercept != 0):
            raise SkipPacket(size.element, size.system, "a dynamic size must be the counter in "
                             "octets (LinearAdjustment slope 8, intercept 0)")
        placed.counter = counter

    # the packet's document ---------------------------------------------------------
