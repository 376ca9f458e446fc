"""A linked pair of pseudo-terminals, for hardware-in-the-loop runs without hardware.

``socat pty,raw,echo=0,link=A pty,raw,echo=0,link=B`` joins two pseudo-terminals: what
is written to A is read from B. Both ends are real tty devices, so pyserial opens them
as it opens /dev/ttyUSB0; a pty does not enforce a baud rate, so writers pace
themselves. Stopping socat removes both devices, which is how tests pull the cable.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from control_center.errors import ServerError


class PtyPair:
    def __init__(self, a: Path, b: Path) -> None:
        self.a = a
        self.b = b
        self.process: subprocess.Popen[bytes] | None = None

    def open(self, timeout: float = 10.0) -> None:
        socat = shutil.which("socat")
        if socat is None:
            raise ServerError("socat is not installed; run `make setup` (Debian package socat)")
        self.a.parent.mkdir(parents=True, exist_ok=True)
        self.b.parent.mkdir(parents=True, exist_ok=True)
        for path in (self.a, self.b):
            path.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [socat, f"pty,raw,echo=0,link={self.a}", f"pty,raw,echo=0,link={self.b}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.a.exists() and self.b.exists():
                return
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode() if self.process.stderr else ""
                raise ServerError(f"socat could not create the pty pair: {error.strip()}")
            time.sleep(0.02)
        self.close()
        raise ServerError(f"socat did not create {self.a} and {self.b} within {timeout:.0f} s")

    def close(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if process is not None and process.stderr is not None:
            process.stderr.close()

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
