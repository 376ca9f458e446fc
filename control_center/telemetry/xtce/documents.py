"""A packet's document, the mapping a TMDB YAML file holds for it (docs/contracts.md,
"Telemetry database"): name, apid, select, time, error control, length, and each
parameter with its type, place, calibration, states, unit and limits."""

from __future__ import annotations

from typing import Any

from control_center.telemetry.ccsdspy_csv import clean_name
from control_center.telemetry.xtce.elements import Findings, Reader
from control_center.telemetry.xtce.fields import NAME_PATTERN, PacketFields
from control_center.telemetry.xtce.model import (
    PRIMARY_HEADER_BITS,
    PacketField,
    PacketLayout,
    SkipPacket,
)

CUC_END = 96  # our secondary header: 6 octets of CUC time after the primary header
CUC_FINE_SCALE = 2.0 ** -16
_TAI_EPOCHS = ("TAI", "1958-01-01")


class PacketDocuments(Reader):
    """Writes the TMDB document of each laid-out packet."""

    def __init__(self, findings: Findings, namespace: str) -> None:
        super().__init__(findings, namespace)
        self.fields = PacketFields(findings, namespace)

    def packet_document(self, packet: PacketLayout) -> dict[str, Any]:
        """The packet's TMDB mapping (its fields completed in place on the way)."""
        container, system = packet.container, packet.system
        data = self.ancillary(container)
        self.fields.sizes_on_length(packet)
        fields = [f for f in packet.fields if not f.role]
        time = self._time(packet, data, fields)
        if time == "cuc":
            fields = [f for f in fields if f.role != "time"]
        header_bits = CUC_END if time == "cuc" else PRIMARY_HEADER_BITS
        error_control = data.get("isls.error_control") == "crc16"
        crc = [f for f in fields if f.ancillary.get("isls.role") == "crc"]
        if crc:
            fields = [f for f in fields if f not in crc]
            if not error_control:
                self.note(container, system, "a CRC field marked isls.role=crc without "
                          "isls.error_control=crc16: kept out")
        fields = self.fields.regroup_arrays(fields)
        if not fields:
            raise SkipPacket(container, system, "no parameter besides the headers", listed=False)
        self.fields.name(packet, fields)
        self.fields.overlays(packet, fields, header_bits)
        self.fields.check_places(packet, fields)
        variable = any(f.end is None for f in fields)
        document: dict[str, Any] = {"name": self._packet_name(packet), "apid": packet.apid}
        if packet.select:
            document["select"] = {f.name: _runs(sorted(v)) for f, v in packet.select.values()}
        description = self.description(container)
        if description:
            document["description"] = description
        period = self._period(packet, data)
        if period is not None:
            document["period"] = period
        document["time"] = time
        document["error_control"] = "crc16" if error_control else "none"
        if not variable:
            document["length"] = self._length(packet)
            if "isls.time" not in data or data.get("isls.tail") == "skip":
                # XTCE describes a packet's fields, not its length: real packets run on
                # past them (CTIM's APID 1 by 7 bits of padding, one APID 20 packet by 16
                # octets). Their fields are decoded and the rest, which no definition
                # describes, skipped, as space-packet-parser does; the raw packet stays
                # whole in the archive. Our own exports say whether (isls.tail).
                document["tail"] = "skip"
        document["parameters"] = self._parameter_documents(fields, header_bits)
        return document

    def _time(self, packet: PacketLayout, data: dict[str, str], fields: list[PacketField]) -> str:
        """``cuc`` when the packet carries our CUC secondary header at octets 6..11."""
        said = data.get("isls.time")
        in_header = [f for f in fields if f.offset is not None
                     and PRIMARY_HEADER_BITS <= f.offset < CUC_END and f.type.kind == "time"]
        if said in ("cuc", "receive"):
            if said == "cuc":
                for f in in_header:
                    f.role = "time"
            return said
        if packet.secondary_header is not None and 1 not in packet.secondary_header:
            return "receive"
        starts = {f.offset: f for f in in_header}
        first = starts.get(PRIMARY_HEADER_BITS)
        if first is None or not first.type.absolute or first.count != 1 \
                or not first.type.epoch.upper().startswith(_TAI_EPOCHS) \
                or first.type.ptype != "unsigned" or first.type.offset != 0 \
                or first.type.byte_order != "big":
            return "receive"
        if first.bits == 48 and first.type.scale == CUC_FINE_SCALE:
            chosen = [first]
        elif first.bits == 32 and first.type.scale == 1 and 80 in starts \
                and starts[80].bits == 16 and starts[80].type.ptype == "unsigned" \
                and starts[80].type.scale in (CUC_FINE_SCALE, 1):
            chosen = [first, starts[80]]
        else:
            return "receive"
        for f in chosen:
            f.role = "time"
        names = ", ".join(f.qualified for f in chosen)
        self.note(packet.container, packet.system, f"time: cuc: {names} is a CUC time (TAI "
                  "since 1958) at octets 6..11: the packet's onboard time")
        return "cuc"

    def _packet_name(self, packet: PacketLayout) -> str:
        alias = self.alias(packet.container)
        return alias if NAME_PATTERN.match(alias) else clean_name(packet.name) or "packet"

    def _period(self, packet: PacketLayout, data: dict[str, str]) -> float | None:
        if "isls.period" in data:
            return self.number(packet.container, packet.system, data["isls.period"],
                               "isls.period")
        rate = self.kid(packet.container, "DefaultRateInStream")
        if rate is None or rate.get("basis", "perSecond") != "perSecond":
            return None
        values = [self.number(rate, packet.system, rate.get(a), a)
                  for a in ("maximumValue", "minimumValue") if rate.get(a) is not None]
        values = [v for v in values if v > 0]
        if not values:
            return None
        if len(set(values)) > 1:
            self.note(rate, packet.system, "rate range: the period of the highest rate taken")
        return 1.0 / values[0]

    def _length(self, packet: PacketLayout) -> int:
        end = max((f.end or 0 for f in packet.fields), default=PRIMARY_HEADER_BITS)
        declared = self.kid(packet.container, "BinaryEncoding", "SizeInBits", "FixedValue")
        if declared is not None:
            size = self.integer(declared, packet.system, declared.text, "SizeInBits")
            if size > end:
                end = size
        octets = -(-end // 8)
        if end % 8:
            self.note(packet.container, packet.system, f"the fields end at bit {end}, not on "
                      f"an octet: length {octets} octets")
        return octets

    def _parameter_documents(self, fields: list[PacketField], header_bits: int
                             ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        next_offset: int | None = header_bits
        for placed in fields:
            if placed.spare and placed.offset is not None:
                continue  # a gap: the next field's bit_offset says it
            item: dict[str, Any] = {"name": placed.name}
            if placed.offset is not None and placed.offset != next_offset:
                item["bit_offset"] = placed.offset
            kind = placed.type
            ptype = "spare" if placed.spare else kind.ptype
            how_many = placed.counter.name if placed.counter is not None else "expand"
            if placed.dynamic == "octets":
                item["type"] = ptype
                item["size"] = how_many
            else:
                item["bit_length"] = placed.bits
                item["type"] = ptype
            if kind.byte_order != "big":
                item["byte_order"] = kind.byte_order
            if kind.calibration is not None and not placed.spare:
                item["calibration"] = kind.calibration
            if kind.states:
                item["states"] = dict(kind.states)
            if kind.unit:
                item["unit"] = kind.unit
            if kind.limits and not placed.spare:
                item["limits"] = {level: list(pair) for level, pair in kind.limits.items()}
            self.extras(placed, item)
            if placed.overlay:
                item["overlay"] = True
            if placed.count > 1 or placed.grouped:
                item["array"] = placed.count
            elif placed.dynamic == "array":
                item["array"] = how_many
            description = f"{placed.description} ({kind.description})" \
                if placed.description and kind.description \
                else placed.description or kind.description
            if description and not placed.spare:
                item["description"] = description
            out.append(item)
            if next_offset is not None and placed.end is not None:
                next_offset = max(next_offset, placed.end)
            elif placed.end is None:
                next_offset = None
        return out

    def extras(self, placed: PacketField, item: dict[str, Any]) -> None:
        """Persistence, and what our export marks: deadband, event, report."""
        data, kind = placed.ancillary, placed.type
        if kind.persistence > 1:
            item["persistence"] = kind.persistence
        if "isls.deadband" in data:
            item["deadband"] = self.number(placed.parameter, placed.system,
                                           data["isls.deadband"], "isls.deadband")
        for key in ("event", "report"):
            if data.get(f"isls.{key}") == "true":
                item[key] = True


def _runs(values: list[int]) -> int | list[int | str]:
    """Select values as YAML shows them best: one value, or values with runs of three
    or more written as ranges ("2..255" for IDEX's "type > 1")."""
    if len(values) == 1:
        return values[0]
    out: list[int | str] = []
    start = previous = values[0]
    for value in [*values[1:], None]:
        if value is not None and value == previous + 1:
            previous = value
            continue
        out.extend([f"{start}..{previous}"] if previous - start >= 2
                   else list(range(start, previous + 1)))
        if value is not None:
            start = previous = value
    return out
