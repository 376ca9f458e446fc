"""A packet's fields as the TMDB holds them: a size on the packet length made ``expand``,
our export's arrays regrouped, names made unique, overlays marked and places checked."""

from __future__ import annotations

import bisect
import math
import re
from typing import Any

from control_center.telemetry.ccsdspy_csv import clean_name
from control_center.telemetry.xtce.elements import Reader
from control_center.telemetry.xtce.model import (
    MAX_PACKET_BITS,
    PacketField,
    PacketLayout,
    ParameterType,
    SkipPacket,
)

PACKET_LENGTH_BIAS_BITS = 56  # whole packet = (packet length field + 7) octets
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


class PacketFields(Reader):
    """Makes a laid-out packet's fields the TMDB's."""

    def sizes_on_length(self, packet: PacketLayout) -> None:
        """A size on the packet length is ``expand``: the rest of the packet before the
        fields after it; a spare fills the bits it stops short of them."""
        for placed in [f for f in packet.fields if f.on_length is not None]:
            assert placed.on_length is not None
            size, start_index = placed.on_length
            index = packet.fields.index(placed)
            after = packet.fields[index + 1:]
            if placed.offset is None or not all(f.fixed_size for f in after):
                raise SkipPacket(size.element, size.system, "a size on the packet length needs a "
                                 "fixed place and only fields of fixed size after it")
            # The packet is 8*L + 56 bits for a length field L; the size is slope*L +
            # intercept bits, or (slope*L + intercept - first index + 1) elements.
            unit = placed.bits if placed.dynamic == "array" else 1
            if not math.isclose(size.slope * unit, 8, rel_tol=1e-9):
                raise SkipPacket(size.element, size.system, "a size on the packet length must grow "
                                 "by 8 bits per octet of it (slope 8, or 8 / element bits)")
            constant = (size.intercept - start_index + 1) * unit \
                if placed.dynamic == "array" else size.intercept
            exact = PACKET_LENGTH_BIAS_BITS - placed.offset - sum(f.span for f in after) \
                - constant
            gap = round(exact)  # slope 2/3 and the like are written rounded
            if gap < 0 or abs(exact - gap) > 1e-6:
                raise SkipPacket(size.element, size.system, f"its size on the packet length does "
                                 f"not end where the fields after it begin ({-exact:g} bits into "
                                 "them)")
            placed.on_length = None  # dynamic, no counter: expand
            if gap:
                self.note(size.element, size.system, f"{placed.qualified} ends {int(gap)} bits "
                          "before the fields after it: a spare fills them")
                spare = ParameterType(size.element, size.system, "integer", ptype="unsigned",
                                      bits=int(gap))
                packet.fields.insert(index + 1, PacketField(
                    ("", f"gap{index}", ()), "gap", size.element, size.system, spare,
                    f"spare_{index}", "", None, int(gap), spare=True))

    def regroup_arrays(self, fields: list[PacketField]) -> list[PacketField]:
        """Our export's fixed arrays (one parameter per element, isls.element_of) back
        into ``array: N``."""
        out: list[PacketField] = []
        for placed in fields:
            owner = placed.ancillary.get("isls.element_of")
            previous = out[-1] if out else None
            if owner and previous is not None \
                    and previous.ancillary.get("isls.element_of") == owner \
                    and _signature(previous.type) == _signature(placed.type) \
                    and previous.fixed_size \
                    and placed.alias == f"{owner}_{previous.count}" \
                    and previous.offset is not None and placed.offset is not None \
                    and placed.offset == previous.offset + previous.span:
                previous.count += 1
                continue
            if owner and placed.alias == f"{owner}_0":
                placed.alias, placed.grouped = owner, True
            out.append(placed)
        return out

    def name(self, packet: PacketLayout, fields: list[PacketField]) -> None:
        """TMDB names: the ``isls`` alias, else the cleaned XTCE name; unique in the packet
        (array elements ``<name>_<i>`` included)."""
        taken: set[str] = set()
        for placed in fields:
            if placed.spare and placed.qualified == "gap":
                wanted = f"spare_{placed.offset if placed.offset is not None else len(taken)}"
            else:
                wanted = placed.alias if NAME_PATTERN.match(placed.alias or "") else \
                    clean_name(placed.name_hint) or "parameter"
            name, suffix = wanted, 2
            while name in taken or any(f"{name}_{i}" in taken for i in range(placed.count)
                                       if placed.count > 1):
                name = f"{wanted}_{suffix}"
                suffix += 1
            if name != wanted and not placed.spare:
                self.note(placed.parameter, placed.system, f"{placed.qualified} named {name!r}: "
                          f"{wanted!r} is taken in packet {packet.name!r}")
            elif not placed.spare and not placed.alias \
                    and name != placed.name_hint.lower() and name != placed.name_hint:
                self.note(placed.parameter, placed.system, f"{placed.qualified} named {name!r}")
            placed.name = name
            taken.add(name)
            taken.update(f"{name}_{i}" for i in range(placed.count) if placed.count > 1)

    def overlays(self, packet: PacketLayout, fields: list[PacketField], header_bits: int) -> None:
        """A field sharing bits with the headers or an earlier field is an overlay (as is
        one our export marked so)."""
        # The spans taken so far never overlap each other: kept sorted by start, a new
        # span can only overlap its neighbours.
        starts: list[int] = [0]
        ends: list[int] = [header_bits]
        for placed in fields:
            start, end = placed.offset, placed.end
            if start is None or end is None:
                continue
            said = placed.ancillary.get("isls.overlay") == "true"
            index = bisect.bisect_right(starts, start)
            overlaps = (index > 0 and ends[index - 1] > start) \
                or (index < len(starts) and starts[index] < end)
            if overlaps and not said and not placed.spare:
                where = "the packet headers" if start < header_bits else "an earlier field"
                self.note(placed.parameter, placed.system, f"{placed.qualified} shares bits "
                          f"with {where}: an overlay in packet {packet.name!r}")
            placed.overlay = said or overlaps
            if not placed.overlay:
                starts.insert(index, start)
                ends.insert(index, end)

    def check_places(self, packet: PacketLayout, fields: list[PacketField]) -> None:
        """Every field at a place the decoder reads, or the packet skipped."""
        for placed in fields:
            ptype, offset = placed.type.ptype, placed.offset
            if offset is None:
                continue
            aligned = offset % 8 == 0
            # A float32 may sit off the octet grid (CTIM's at bit 629); text and float64
            # may not.
            if (ptype in ("string", "binary") or (ptype == "float" and placed.bits != 32)) \
                    and not aligned:
                raise SkipPacket(placed.parameter, placed.system, f"{placed.qualified}: a {ptype} "
                                 f"of {placed.bits} bits must start on an octet, it starts at bit "
                                 f"{offset}")
            if placed.type.byte_order != "big" and not aligned:
                raise SkipPacket(placed.parameter, placed.system, f"{placed.qualified}: a little "
                                 f"endian field must start on an octet, it starts at bit {offset}")
            if not aligned and ptype not in ("float", "string", "binary") \
                    and offset % 8 + placed.bits > 64:
                raise SkipPacket(placed.parameter, placed.system, f"{placed.qualified}: a field "
                                 "not starting on an octet must fit in 8 octets")
            end = placed.end
            if end is not None and end > MAX_PACKET_BITS:
                raise SkipPacket(packet.container, packet.system, "longer than a CCSDS packet")


def _signature(kind: ParameterType) -> tuple[Any, ...]:
    """What two element types of one exported array share (each has a type of its own)."""
    return (kind.kind, kind.ptype, kind.bits, kind.byte_order, repr(kind.calibration),
            repr(kind.states), kind.unit, repr(kind.limits), kind.persistence,
            [(a.mode[0].path, a.mode[1].get("name"), a.values, repr(a.limits))
             for a in kind.context_alarms])
