"""Parameter types: integer, float, enumerated, boolean, string, binary, absolute and
relative time, aggregate and array, each read once (by system and name) into what it
says about one value, with its unit and alarms; or why a packet holding it cannot be
imported."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from control_center.telemetry.xtce.alarms import AlarmReader
from control_center.telemetry.xtce.elements import IGNORED
from control_center.telemetry.xtce.encodings import MAX_NUMBER_BITS, EncodingReader, byte_order
from control_center.telemetry.xtce.model import MAX_PACKET_BITS, Member, ParameterType, Size
from control_center.telemetry.xtce.reading import Xml
from control_center.telemetry.xtce.systems import System, SystemTree, TreeReader


class TypeReader(TreeReader):
    """Reads parameter types, each once: a type used by many parameters is one object."""

    def __init__(self, tree: SystemTree) -> None:
        super().__init__(tree)
        self.encodings = EncodingReader(tree.findings, tree.ns)
        self.alarms = AlarmReader(tree)
        self._types: dict[tuple[str, str], ParameterType] = {}
        self._resolving: set[tuple[str, str]] = set()

    def type_of(self, system: System, parameter: Xml) -> ParameterType | None:
        """A parameter's type (its parameterTypeRef), or None with the problem reported."""
        ref = parameter.get("parameterTypeRef")
        if ref is None:
            self.problem(parameter, system, "needs a parameterTypeRef")
            return None
        found = self.tree.find(system, ref, "types")
        if found is None:
            self.problem(parameter, system, f"parameterTypeRef {ref!r} names no parameter type "
                         f"(looked up in {system.path} and its ancestors)")
            return None
        return self.parse_type(*found)

    def parse_type(self, system: System, element: Xml) -> ParameterType:
        """The parameter type ``element`` of ``system``, read the first time it is asked."""
        key = (system.path, element.get("name", ""))
        known = self._types.get(key)
        if known is not None:
            return known
        if key in self._resolving:
            self.problem(element, system, "the type contains itself")
            return ParameterType(element, system, "invalid", problem="the type contains itself")
        self._resolving.add(key)
        try:
            parsed = self._parse_type(system, element)
        finally:
            self._resolving.discard(key)
        if parsed.problem:
            self.unsupported(element, system, parsed.problem)
        self._types[key] = parsed
        return parsed

    def _parse_type(self, system: System, element: Xml) -> ParameterType:
        tag = self.tag(element)
        parsers = {
            "IntegerParameterType": self._integer_type,
            "FloatParameterType": self._float_type,
            "EnumeratedParameterType": self._enum_type,
            "BooleanParameterType": self._boolean_type,
            "StringParameterType": self._string_type,
            "BinaryParameterType": self._binary_type,
            "AbsoluteTimeParameterType": self._time_type,
            "RelativeTimeParameterType": self._time_type,
            "AggregateParameterType": self._aggregate_type,
            "ArrayParameterType": self._array_type,
        }
        parser = parsers.get(tag)
        if parser is None:
            return ParameterType(element, system, "invalid", problem=f"{tag} is not supported")
        parsed = parser(system, element)
        handled = {"IntegerDataEncoding", "FloatDataEncoding", "StringDataEncoding",
                   "BinaryDataEncoding", "EnumerationList", "DefaultAlarm", "ContextAlarmList",
                   "Encoding", "ReferenceTime", "MemberList", "DimensionList",
                   "DefaultCalibrator", "ContextCalibratorList", *IGNORED}
        for child in self.kids(element):
            if self.tag(child) not in handled:
                reason = ("valid ranges are not checked" if self.tag(child) == "ValidRange"
                          else "not supported: ignored")
                self.unsupported(child, system, reason)
        if not parsed.problem and parsed.kind not in ("aggregate", "array"):
            parsed = replace(parsed, unit=self._unit(system, element) or parsed.unit,
                             **self.alarms.of_type(system, element, parsed))
        return parsed

    def _unit(self, system: System, element: Xml) -> str:
        listing = self.kid(element, "UnitSet")
        units = [self.text(u) for u in self.kids(listing, "Unit")] if listing is not None else []
        units = [u for u in units if u]
        if len(units) > 1:
            self.note(element, system, f"units {units} joined as {' '.join(units)!r}")
        return " ".join(units)

    def _integer_type(self, system: System, element: Xml) -> ParameterType:
        encoding, problem = self.encodings.encoding_of(system, element, ("IntegerDataEncoding",))
        if encoding is None:
            return ParameterType(element, system, "integer", problem=problem)
        values, problem = self.encodings.integer_encoding(system, encoding)
        return ParameterType(element, system, "integer", problem=problem, **values)

    def _float_type(self, system: System, element: Xml) -> ParameterType:
        encoding, problem = self.encodings.encoding_of(system, element, ("FloatDataEncoding",
                                                                         "IntegerDataEncoding"))
        if encoding is None:
            return ParameterType(element, system, "float", problem=problem)
        if self.tag(encoding) == "IntegerDataEncoding":
            values, problem = self.encodings.integer_encoding(system, encoding)
            if not problem and values["calibration"] is None:
                self.note(element, system, "a float of an integer encoding without "
                          "calibrator: the integer as it is")
            if not problem:
                values["calibration"] = self._engineering(system, element,
                                                          values["calibration"])
            return ParameterType(element, system, "float", problem=problem, **values)
        bits = self.integer(encoding, system, encoding.get("sizeInBits"), "sizeInBits",
                            default=32)
        scheme = encoding.get("encoding", "IEEE754_1985")
        if scheme not in ("IEEE754_1985", "IEEE754"):
            return ParameterType(element, system, "float", problem=f"float encoding {scheme!r} "
                                 "is not supported (IEEE754_1985 is)")
        if bits not in (32, 64):
            return ParameterType(element, system, "float", problem=f"a {bits}-bit float is not "
                                 "supported (IEEE 754 32 or 64 bits are)")
        order = byte_order(encoding, bits) or "big"
        calibration = self._engineering(system, element,
                                        self.encodings.calibrator(system, encoding))
        return ParameterType(element, system, "float", ptype="float", bits=bits, byte_order=order,
                             calibration=calibration)

    def _engineering(self, system: System, element: Xml, calibration: dict[str, Any] | None
                     ) -> dict[str, Any] | None:
        """A calibration with its engineering float size, the FloatParameterType's
        sizeInBits. Absent, it is 32: schemas/SpaceSystem.xsd, FloatDataType's sizeInBits
        (FloatSizeInBitsType: 32, 64 or 128) has default="32", and Yamcs follows it."""
        if calibration is None:
            return None  # a raw value keeps its encoding's size, a float64 too
        bits = self.integer(element, system, element.get("sizeInBits"), "sizeInBits",
                            default=32)
        if bits == 32:
            return {**calibration, "engineering": "float32"}
        if bits != 64:
            self.note(element, system, f"a {bits}-bit engineering float is not supported: "
                      "the calibrated value is a float64")
        return calibration

    def _enum_type(self, system: System, element: Xml) -> ParameterType:
        encoding, problem = self.encodings.encoding_of(system, element, ("IntegerDataEncoding",))
        if encoding is None:
            return ParameterType(element, system, "enum", problem=problem)
        values, problem = self.encodings.integer_encoding(system, encoding)
        if problem:
            return ParameterType(element, system, "enum", problem=problem)
        if values["calibration"] is not None:
            self.note(encoding, system, "calibrator of an enumeration ignored: states are "
                      "looked up by raw value")
        bits, signed = values["bits"], values["ptype"] == "signed"
        states: dict[int | str, str] = {}
        taken: list[tuple[int, int, str]] = []
        listing = self.kid(element, "EnumerationList")
        for item in self.kids(listing, "Enumeration") if listing is not None else []:
            label = (item.get("label") or "").strip()
            low = self.integer(item, system, item.get("value"), "value")
            high = self.integer(item, system, item.get("maxValue"), "maxValue", default=low)
            if not label:
                self.note(item, system, "an enumeration without label: left out")
                continue
            for span in self._raw_spans(item, system, low, high, bits, signed):
                if any(a <= span[1] and span[0] <= b for a, b, _ in taken):
                    self.note(item, system, f"values {span[0]}..{span[1]} already have a "
                              "state: the first one kept")
                    continue
                taken.append((*span, label))
                states[span[0] if span[0] == span[1] else f"[{span[0]},{span[1]}]"] = label
        if not states:
            return ParameterType(element, system, "enum", problem="an enumeration without states")
        return ParameterType(element, system, "enum", ptype="enum", bits=bits,
                             byte_order=values["byte_order"], states=states)

    def _raw_spans(self, item: Xml, system: System, low: int, high: int, bits: int,
                   signed: bool) -> list[tuple[int, int]]:
        """Enumeration values as raw unsigned spans (our enums read the raw bits)."""
        bottom, top = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed \
            else (0, (1 << bits) - 1)
        if low > high or low < bottom or high > top:
            self.note(item, system, f"values {low}..{high} do not fit the {bits}-bit "
                      "encoding: left out")
            return []
        wrap = 1 << bits
        if high < 0:
            self.note(item, system, "negative values taken as their two's complement")
            return [(low + wrap, high + wrap)]
        if low < 0:
            self.note(item, system, "negative values taken as their two's complement")
            return [(low + wrap, wrap - 1), (0, high)]
        return [(low, high)]

    def _boolean_type(self, system: System, element: Xml) -> ParameterType:
        encoding, problem = self.encodings.encoding_of(system, element, ("IntegerDataEncoding",))
        if encoding is None:
            return ParameterType(element, system, "boolean", problem=problem)
        values, problem = self.encodings.integer_encoding(system, encoding)
        if problem:
            return ParameterType(element, system, "boolean", problem=problem)
        return ParameterType(element, system, "boolean", ptype="boolean", bits=values["bits"],
                             byte_order=values["byte_order"])

    def _sized(self, system: System, holder: Xml) -> tuple[int, Size | None, str]:
        """(fixed bits, dynamic size, problem) of a SizeInBits / Variable element."""
        for path in (("SizeInBits", "Fixed", "FixedValue"), ("SizeInBits", "FixedValue")):
            fixed = self.kid(holder, *path)
            if fixed is not None:
                return self.integer(fixed, system, fixed.text, "FixedValue"), None, ""
        for path in (("SizeInBits", "DynamicValue"), ("SizeInBits", "Fixed", "DynamicValue"),
                     ("Variable", "DynamicValue")):
            dynamic = self.kid(holder, *path)
            if dynamic is not None:
                size = self._dynamic(system, dynamic)
                return (0, size, "") if size is not None else (
                    0, None, "a DynamicValue without ParameterInstanceRef")
        return 0, None, "a size given by a DiscreteLookupList or not at all is not supported"

    def _dynamic(self, system: System, dynamic: Xml) -> Size | None:
        ref = self.kid(dynamic, "ParameterInstanceRef")
        if ref is None or not ref.get("parameterRef"):
            return None
        adjust = self.kid(dynamic, "LinearAdjustment")
        slope = self.number(adjust, system, adjust.get("slope", "1"), "slope") \
            if adjust is not None else 1.0
        intercept = self.number(adjust, system, adjust.get("intercept", "0"), "intercept") \
            if adjust is not None else 0.0
        if ref.get("instance", "0") != "0":
            self.unsupported(ref, system, "an instance other than 0 is taken as 0")
        return Size(dynamic, system, ref.get("parameterRef"), slope, intercept,
                    ref.get("useCalibratedValue", "true").lower() == "true")

    def _string_type(self, system: System, element: Xml) -> ParameterType:
        encoding, problem = self.encodings.encoding_of(system, element, ("StringDataEncoding",))
        if encoding is None:
            return ParameterType(element, system, "string", problem=problem)
        charset = encoding.get("encoding", "UTF-8")
        ptype = "string"
        if charset not in ("UTF-8", "US-ASCII", "ISO-8859-1", "Windows-1252"):
            self.note(encoding, system, f"{charset} text: stored as binary (hex), our strings "
                      "are octets shown as UTF-8")
            ptype = "binary"
        elif charset != "UTF-8" and charset != "US-ASCII":
            self.note(encoding, system, f"{charset} text: octets above 127 are shown as \\xNN")
        bits, size, problem = self._sized(system, encoding)
        sized = self.kid(encoding, "SizeInBits") if self.kid(encoding, "SizeInBits") \
            is not None else self.kid(encoding, "Variable")
        if sized is not None and self.kid(sized, "LeadingSize") is not None:
            return ParameterType(element, system, "string", problem="a string with a leading size "
                                 "is not supported")
        if sized is not None and self.kid(sized, "TerminationChar") is not None:
            if size is not None or bits == 0:
                return ParameterType(element, system, "string", problem="a string ended by a "
                                     "termination character is not supported")
            self.note(sized, system, "termination character in a fixed-size string: trailing "
                      "NULs are dropped, text after a NUL inside the field is kept")
        if problem:
            return ParameterType(element, system, "string", problem=problem)
        if size is None and (bits <= 0 or bits % 8):
            return ParameterType(element, system, "string", problem=f"a string of {bits} bits "
                                 "is not whole octets")
        return ParameterType(element, system, "string", ptype=ptype, bits=bits or 8, size=size)

    def _binary_type(self, system: System, element: Xml) -> ParameterType:
        encoding, problem = self.encodings.encoding_of(system, element, ("BinaryDataEncoding",))
        if encoding is None:
            return ParameterType(element, system, "binary", problem=problem)
        if self.kid(encoding, "FromBinaryTransformAlgorithm") is not None:
            return ParameterType(element, system, "binary", problem="a binary decoded by an "
                                 "algorithm is not supported")
        bits, size, problem = self._sized(system, encoding)
        if problem:
            return ParameterType(element, system, "binary", problem=problem)
        if size is None and bits % 8:
            if bits <= MAX_NUMBER_BITS:
                self.note(element, system, f"a {bits}-bit binary (not whole octets): imported "
                          "as an unsigned integer")
                return ParameterType(element, system, "binary", ptype="unsigned", bits=bits)
            return ParameterType(element, system, "binary", problem=f"a binary of {bits} bits "
                                 "is not whole octets")
        return ParameterType(element, system, "binary", ptype="binary", bits=bits or 8, size=size)

    def _time_type(self, system: System, element: Xml) -> ParameterType:
        absolute = self.tag(element) == "AbsoluteTimeParameterType"
        holder = self.kid(element, "Encoding")
        if holder is None:
            return ParameterType(element, system, "time", problem="a time without Encoding")
        encoding, problem = self.encodings.encoding_of(system, holder, ("IntegerDataEncoding",
                                                                        "FloatDataEncoding"))
        if encoding is None:
            return ParameterType(element, system, "time", problem=problem)
        if self.tag(encoding) == "IntegerDataEncoding":
            values, problem = self.encodings.integer_encoding(system, encoding)
        else:
            bits = self.integer(encoding, system, encoding.get("sizeInBits"), "sizeInBits",
                                default=32)
            values = {"bits": bits, "ptype": "float", "byte_order": byte_order(
                encoding, bits) or "big", "calibration": None}
            problem = "" if bits in (32, 64) else f"a {bits}-bit float is not supported"
        if problem:
            return ParameterType(element, system, "time", problem=problem)
        if values["calibration"] is not None:
            return ParameterType(element, system, "time", problem="a calibrator inside a time "
                                 "encoding is not supported (scale and offset are)")
        scale = self.number(holder, system, holder.get("scale", "1"), "scale")
        offset = self.number(holder, system, holder.get("offset", "0"), "offset")
        units = (holder.get("units") or "seconds").strip()
        unit = "s" if units.lower() in ("seconds", "second", "s", "sec") else units
        reference = self.kid(element, "ReferenceTime")
        epoch = self.text(self.kid(reference, "Epoch"))
        after = self.kid(reference, "OffsetFrom")
        if absolute and epoch:
            meaning = f"time in {unit} since the epoch {epoch}"
        elif absolute and after is not None:
            meaning = f"time in {unit} after parameter {after.get('parameterRef')}"
        else:
            meaning = f"relative time in {unit}" if not absolute \
                else f"time in {unit}, epoch not given"
        values["calibration"] = {"polynomial": [offset, scale]}
        return ParameterType(element, system, "time", absolute=absolute, epoch=epoch, scale=scale,
                             offset=offset, unit=unit, description=meaning, **values)

    def _aggregate_type(self, system: System, element: Xml) -> ParameterType:
        listing = self.kid(element, "MemberList")
        members: list[Member] = []
        for member in self.kids(listing, "Member") if listing is not None else []:
            ref = member.get("typeRef", "")
            found = self.tree.find(system, ref, "types")
            if found is None:
                self.problem(member, system, f"typeRef {ref!r} names no parameter type")
                return ParameterType(element, system, "aggregate",
                                     problem="a member's type is missing")
            member_type = self.parse_type(*found)
            if member_type.problem:
                return ParameterType(element, system, "aggregate", problem=f"member "
                                     f"{member.get('name')!r}: {member_type.problem}")
            members.append(Member(member.get("name", ""), member_type,
                                  self.description(member)))
        if not members:
            return ParameterType(element, system, "aggregate",
                                 problem="an aggregate without members")
        return ParameterType(element, system, "aggregate", members=tuple(members))

    def _array_type(self, system: System, element: Xml) -> ParameterType:
        ref = element.get("arrayTypeRef", "")
        found = self.tree.find(system, ref, "types")
        if found is None:
            self.problem(element, system, f"arrayTypeRef {ref!r} names no parameter type")
            return ParameterType(element, system, "array", problem="its element type is missing")
        element_type = self.parse_type(*found)
        if element_type.problem:
            return ParameterType(element, system, "array", problem=f"its element type: "
                                 f"{element_type.problem}")
        if element_type.kind in ("aggregate", "array", "string", "binary") \
                or element_type.ptype in ("string", "binary"):
            return ParameterType(element, system, "array", problem=f"an array of "
                                 f"{element_type.kind} is not supported (arrays of numbers, enums "
                                 "and booleans are)")
        listing = self.kid(element, "DimensionList")
        dimensions = self.kids(listing, "Dimension") if listing is not None else []
        if not dimensions:
            return ParameterType(element, system, "array", problem="an array without DimensionList "
                                 "(XTCE 1.1 sizes arrays in the container) is not supported")
        count = 1
        for dimension in dimensions:
            start = self.kid(dimension, "StartingIndex", "FixedValue")
            end = self.kid(dimension, "EndingIndex")
            if start is None or end is None:
                return ParameterType(element, system, "array", problem="a dimension needs a fixed "
                                     "StartingIndex and an EndingIndex")
            first = self.integer(start, system, start.text, "StartingIndex")
            fixed = self.kid(end, "FixedValue")
            if fixed is None:
                dynamic = self.kid(end, "DynamicValue")
                size = self._dynamic(system, dynamic) if dynamic is not None else None
                if size is None or len(dimensions) > 1:
                    return ParameterType(element, system, "array", problem="an array whose size "
                                         "comes from a lookup or has several dimensions of which "
                                         "one is dynamic is not supported")
                return ParameterType(element, system, "array", element_type=element_type,
                                     count_size=size, start_index=first)
            count *= self.integer(fixed, system, fixed.text, "EndingIndex") - first + 1
        if len(dimensions) > 1:
            self.note(element, system, f"{len(dimensions)}-dimensional array flattened in "
                      "order, last index fastest")
        if count < 1 or count * max(element_type.bits, 1) > MAX_PACKET_BITS:
            return ParameterType(element, system, "array", problem=f"an array of {count} elements "
                                 "does not fit in a CCSDS packet")
        return ParameterType(element, system, "array", element_type=element_type, count=count)
