"""A running ``isls`` command whose output a test reads as it comes."""

from __future__ import annotations

import signal
import subprocess
import threading
import time

from tests.conftest import ISLS, wait_for


class Running:
    """``isls ARGS`` with its output and log collected line by line as they come."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.args = args
        self.process = subprocess.Popen([*ISLS, *args], env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_log(self, text: str, timeout: float = 20.0) -> None:
        wait_for(lambda: text in self.log or self.process.poll() is not None, timeout,
                 message=f"{text!r} in the log of isls {' '.join(self.args)}")
        assert text in self.log, f"isls {' '.join(self.args)} ended:\n{self.log}"

    def stop(self, signum: int) -> tuple[int, float]:
        """Send ``signum``; the exit code and how long the process took to end."""
        sent = time.monotonic()
        self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"isls {' '.join(self.args)} still ran 15 s after "
                                 f"{signal.Signals(signum).name}:\n{self.log}") from None
        self._reader.join(5)
        return code, time.monotonic() - sent
