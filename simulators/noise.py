"""Line noise for the simulators' serial output: what a real bench cable does.

At most one event per frame, drawn with probability ``1 - (1 - rate) ** octets``:

- bit errors: 1 to 3 bits flipped inside the frame (ASM included);
- dropped octets: 1 to 3 consecutive octets lost inside the frame;
- inserted octets: 1 to 50 random octets inside the frame;
- a garbage burst: 1 to 300 random octets *before* the frame, which stays intact.

The first three destroy the frame; the caller learns which, so a test can count
exactly what must arrive. At most three flipped bits keeps every damaged frame
detectable: CRC-16-CCITT has Hamming distance 4 for frames up to 32,751 bits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ASM = bytes.fromhex("1ACFFC1D")
KINDS = ("bit_errors", "dropped", "inserted", "garbage")


@dataclass(slots=True)
class NoiseStats:
    frames: int = 0
    bit_errors: int = 0
    dropped: int = 0
    inserted: int = 0
    garbage: int = 0

    @property
    def destroyed(self) -> int:
        return self.bit_errors + self.dropped + self.inserted


class LinkNoise:
    def __init__(self, rate: float, seed: int = 0) -> None:
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"noise rate {rate} must be in [0, 1) events per octet")
        self.rate = rate
        self.rng = np.random.default_rng(seed)
        self.stats = NoiseStats()

    def _random_octets(self, count: int) -> bytes:
        data = self.rng.integers(0, 256, count, dtype=np.uint8).tobytes()
        # No sync marker in the noise: a false ASM costs only a failed CRC check, but
        # keeping it out makes the set of surviving frames exactly predictable.
        while ASM in data:
            data = data.replace(ASM, b"\x00\x00\x00\x00")
        return data

    def apply(self, frame: bytes) -> tuple[bytes, bool]:
        """The octets to send for ``frame`` (ASM included) and whether it is destroyed."""
        self.stats.frames += 1
        if self.rate == 0.0 or self.rng.random() >= 1.0 - (1.0 - self.rate) ** len(frame):
            return frame, False
        kind = KINDS[int(self.rng.integers(0, len(KINDS)))]
        if kind == "bit_errors":
            self.stats.bit_errors += 1
            data = bytearray(frame)
            for bit in self.rng.choice(len(frame) * 8, int(self.rng.integers(1, 4)),
                                       replace=False):
                data[int(bit) // 8] ^= 0x80 >> (int(bit) % 8)
            return bytes(data), True
        if kind == "dropped":
            self.stats.dropped += 1
            count = int(self.rng.integers(1, 4))
            at = int(self.rng.integers(0, len(frame) - count))
            return frame[:at] + frame[at + count:], True
        if kind == "inserted":
            self.stats.inserted += 1
            at = int(self.rng.integers(1, len(frame)))
            return frame[:at] + self._random_octets(int(self.rng.integers(1, 51))) \
                + frame[at:], True
        self.stats.garbage += 1
        return self._random_octets(int(self.rng.integers(1, 301))) + frame, False
