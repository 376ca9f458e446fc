"""The ingest's own health: figures of the process itself, written with its health point."""

from __future__ import annotations

import contextlib


def peak_memory_mb(pid: int | str = "self") -> float:
    """Peak resident memory (VmHWM) of a process, in MiB; 0 if it is gone or there is
    no /proc."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0
