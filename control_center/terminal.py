"""The terminal: live text and progress bars, redrawn in place on a tty and printed
anew elsewhere (logs, CI, pipes), so commands read well in both; and Ctrl-C (or
SIGTERM) as the way a long-running command is asked to stop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
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


    async def refresh(self, render: Callable[[], str], stop: asyncio.Event) -> None:
        """Show ``render()`` every second (every 5 s where the text cannot be redrawn in
        place) until ``stop``; the last one below the shutdown log lines, not over them."""
        period = 1.0 if self.redraw else 5.0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), period)
            self.show(render(), fresh=stop.is_set())


class Progress:
    """A progress bar on a terminal; a line every 10 % elsewhere."""

    def __init__(self, total: int, label: str, out: TextIO = sys.stderr) -> None:
        self.total = max(total, 1)
        self.label = label
        self.out = out
        self.tty = out.isatty()
        self._shown = -1
        self.started = time.monotonic()

    def update(self, done: int, detail: str = "") -> None:
        fraction = min(done / self.total, 1.0)
        percent = int(fraction * 100)
        if self.tty:
            if percent == self._shown and done < self.total:
                return
            bar = "#" * int(fraction * 30)
            self.out.write(f"\r{self.label} [{bar:<30}] {percent:3d}% {detail}   ")
            self.out.flush()
        elif percent // 10 != self._shown // 10 or done >= self.total:
            self.out.write(f"{self.label}: {percent}% {detail}\n")
        self._shown = percent

    def finish(self) -> None:
        if self.tty:
            self.out.write("\n")


def utc_text(ns: object, *, milliseconds: bool = False, date: bool = True,
             missing: str = "") -> str:
    """A UTC time in ns since 1970 as operators read it: ``2026-11-30 05:21:43``, with
    ``.123 UTC`` for ``milliseconds``, ``05:21:43`` without the ``date``; ``missing``
    for anything that is not a time."""
    if not isinstance(ns, int) or isinstance(ns, bool):
        return missing
    seconds, rest = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime(
        "%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S")
    return f"{stamp}.{rest // 1_000_000:03d} UTC" if milliseconds else stamp


def stop_on_signals(stop: asyncio.Event, duration: float | None = None) -> None:
    """Set ``stop`` on SIGINT or SIGTERM, or after ``duration`` seconds: a command's
    tasks then finish their work in order instead of being killed mid-write. Call it
    from the running event loop."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if duration is not None:
        loop.call_later(duration, stop.set)
