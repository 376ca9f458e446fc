"""Data encodings of parameter types: integers (size, sign, byte order), which encoding
a type has, and the calibrators (polynomial, first-order spline) that turn raw values
into engineering ones."""

from __future__ import annotations

import itertools
from typing import Any

from control_center.telemetry.xtce.elements import Reader
from control_center.telemetry.xtce.reading import Xml
from control_center.telemetry.xtce.systems import System

MAX_NUMBER_BITS = 64


def byte_order(encoding: Xml, bits: int) -> str | None:
    """``big`` or ``little``; None for a little-endian value that is not whole octets."""
    order = encoding.get("byteOrder", "mostSignificantByteFirst")
    if order == "mostSignificantByteFirst" or bits <= 8:
        return "big"
    if order == "leastSignificantByteFirst" and bits % 8 == 0:
        return "little"
    return None


class EncodingReader(Reader):
    """Reads the data encodings and calibrators of parameter types."""

    def integer_encoding(self, system: System, encoding: Xml) -> tuple[dict[str, Any], str]:
        """(fields of ParameterType, problem) of an IntegerDataEncoding."""
        bits = self.integer(encoding, system, encoding.get("sizeInBits"), "sizeInBits",
                            default=8)
        scheme = encoding.get("encoding", "unsigned")
        if scheme not in ("unsigned", "twosComplement", "twosCompliment", "signed"):
            return {}, f"integer encoding {scheme!r} is not supported (unsigned and " \
                       "twosComplement are)"
        if not 1 <= bits <= MAX_NUMBER_BITS:
            return {}, f"an integer of {bits} bits is not supported (1..64)"
        order = byte_order(encoding, bits)
        if order is None:
            return {}, f"byte order {encoding.get('byteOrder')!r} of a {bits}-bit integer is " \
                       "not supported (little endian needs whole octets)"
        calibration = self.calibrator(system, encoding)
        return {"bits": bits, "ptype": "unsigned" if scheme == "unsigned" else "signed",
                "byte_order": order, "calibration": calibration}, ""

    def calibrator(self, system: System, encoding: Xml) -> dict[str, Any] | None:
        """The encoding's default calibrator as a TMDB calibration, or None (raw values)."""
        context = self.kid(encoding, "ContextCalibratorList")
        if context is not None:
            self.unsupported(context, system, "context calibrators are not supported: the "
                             "default calibrator is applied in every context")
        default = self.kid(encoding, "DefaultCalibrator")
        if default is None:
            return None
        calibrators = self.kids(default)
        if not calibrators:
            return None
        calibrator = calibrators[0]
        tag = self.tag(calibrator)
        if tag == "PolynomialCalibrator":
            terms: dict[int, float] = {}
            for term in self.kids(calibrator, "Term"):
                exponent = self.integer(term, system, term.get("exponent"), "exponent")
                if exponent < 0:
                    self.problem(term, system, "a polynomial exponent must be >= 0")
                    continue
                terms[exponent] = terms.get(exponent, 0.0) + self.number(
                    term, system, term.get("coefficient"), "coefficient")
            if not terms:
                return None
            return {"polynomial": [terms.get(power, 0.0) for power in range(max(terms) + 1)]}
        if tag == "SplineCalibrator":
            order = self.integer(calibrator, system, calibrator.get("order"), "order",
                                 default=1)  # XTCE's default order is 1 (linear)
            points = [(self.number(p, system, p.get("raw"), "raw"),
                       self.number(p, system, p.get("calibrated"), "calibrated"))
                      for p in self.kids(calibrator, "SplinePoint")]
            points.sort()
            if order != 1:
                self.unsupported(calibrator, system, f"a spline of order {order} is not "
                                 "supported (order 1, linear, is): the raw value is imported")
                return None
            if len(points) < 2 or any(b[0] <= a[0] for a, b in itertools.pairwise(points)):
                self.unsupported(calibrator, system, "a spline needs two or more points of "
                                 "distinct raw values: the raw value is imported")
                return None
            if calibrator.get("extrapolate", "false").lower() == "true":
                self.note(calibrator, system, "extrapolate=true: outside its points the "
                          "table holds the end values")
            return {"table": [[raw, eng] for raw, eng in points]}
        self.unsupported(calibrator, system, f"{tag} is not supported: the raw value is "
                         "imported")
        return None

    def encoding_of(self, system: System, element: Xml, allowed: tuple[str, ...]
                    ) -> tuple[Xml | None, str]:
        """The type's data encoding if it is one of ``allowed``, or why not."""
        for tag in ("IntegerDataEncoding", "FloatDataEncoding", "StringDataEncoding",
                    "BinaryDataEncoding"):
            found = self.kid(element, tag)
            if found is not None:
                if tag not in allowed:
                    return None, f"a {self.tag(element)} with a {tag} is not supported"
                return found, ""
        return None, "no data encoding: its size in the packet is unknown"
