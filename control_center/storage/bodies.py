"""Cutting a batch into POST bodies: at line ends, none over the size InfluxDB takes,
each carrying its share of the batch's line and value counts (so the stats add up
however often a body is split again).

Pure: no I/O.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

# No POST body above this: InfluxDB 1.x refuses bodies over its ``max-body-size`` (25 MB
# by default, and an administrator may set less) with 413, and a big body also holds a
# big allocation in both processes. A single line longer than this is posted alone.
MAX_BODY_BYTES = 8 << 20


def split_body(body: bytes, max_bytes: int) -> list[bytes]:
    """Cut line protocol at line ends into pieces of at most ``max_bytes`` (a single
    longer line is a piece of its own)."""
    pieces: list[bytes] = []
    start = 0
    while len(body) - start > max_bytes:
        cut = body.rfind(b"\n", start, start + max_bytes) + 1
        if cut <= start:
            cut = body.find(b"\n", start + max_bytes) + 1 or len(body)
        pieces.append(body[start:cut])
        start = cut
    if start < len(body):
        pieces.append(body[start:])
    return pieces


def shares(total: int, weights: list[int]) -> list[int]:
    """``total`` split in proportion to ``weights``, summing exactly to ``total``."""
    whole = sum(weights) or 1
    out: list[int] = []
    done = seen = 0
    for weight in weights:
        seen += weight
        share = total * seen // whole - done
        out.append(share)
        done += share
    return out


@dataclass(slots=True)
class Piece:
    """Lines of one batch still to be stored, posted together."""

    body: bytes
    lines: int
    values: int

    def each_line(self) -> list[bytes]:
        """The body's lines, without their line ends."""
        lines = self.body.split(b"\n")
        if lines and not lines[-1]:
            lines.pop()
        return lines

    def split(self, groups: list[list[bytes]]) -> list[Piece]:
        values = shares(self.values, [len(group) for group in groups])
        return [Piece(b"".join(line + b"\n" for line in group), len(group), share)
                for group, share in zip(groups, values, strict=True) if group]


def as_pieces(body: bytes, lines: int, values: int, max_body: int) -> deque[Piece]:
    """A batch as POST bodies of at most ``max_body`` bytes, in order."""
    if len(body) <= max_body:
        return deque([Piece(body, lines, values)])
    parts = split_body(body, max_body)
    counts = [part.count(b"\n") for part in parts]
    return deque(Piece(part, count, share) for part, count, share
                 in zip(parts, counts, shares(values, counts), strict=True))
