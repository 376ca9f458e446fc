"""Live text for the terminal: redrawn in place on a tty, printed anew elsewhere (logs,
CI, pipes), so status commands read well in both."""

from __future__ import annotations

from typing import TextIO


class LiveText:
    def __init__(self, out: TextIO, *, redraw: bool = True) -> None:
        self.out = out
        self.redraw = redraw and out.isatty()
        self._lines = 0

    def show(self, text: str, *, fresh: bool = False) -> None:
        """``fresh``: print below whatever is on screen instead of over the last text."""
        if self.redraw and self._lines and not fresh:
            # Cursor up to the first line drawn last time, then clear to the end.
            self.out.write(f"\x1b[{self._lines}F\x1b[J")
        self.out.write(text + "\n")
        self.out.flush()
        self._lines = text.count("\n") + 1
