"""Free loopback ports for the servers, links and tests this process starts.

A port chosen now is bound later, by a child server a few hundred milliseconds on. Two
things can take it in between (one of them did, failing a CI run with influxd's "bind:
address already in use"; its log cannot say which):

- **the kernel**, when the port lies in its ephemeral range (``ip_local_port_range``,
  32768-60999 by default): every outgoing connection on the machine takes a source
  port from that range, and a port left in TIME_WAIT by one blocks a listener for a
  minute. Asking the kernel for a free port (``bind(("127.0.0.1", 0))``) hands out
  exactly such a port;
- **another of our processes** (a second pytest worker, a second ``isls up``) choosing
  the same port before either has bound it.

So ports come from below the ephemeral range, where the kernel never hands out a port
by itself, and each is reserved among our processes by a POSIX record lock on the
port's byte of one shared lock file: one descriptor for any number of ports, released
by the kernel when the process ends, however it ends. A port another process has
reserved, or that anything on the machine has bound, is passed over.
"""

from __future__ import annotations

import errno
import fcntl
import os
import random
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

# The pool's floor: below it lie the well-known and registered services that a
# machine commonly runs (databases, brokers, development servers).
POOL_FLOOR = 20000
# A pool smaller than this (an unusual ephemeral range) is not worth searching: the
# kernel's own choices are taken instead, reserved the same way.
MINIMUM_POOL = 1000
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")

_lock = threading.Lock()
_reserved: set[int] = set()  # POSIX locks do not exclude their own process
_lock_file: int | None = None


def ephemeral_range(path: Path = EPHEMERAL_RANGE) -> tuple[int, int]:
    """The kernel's ephemeral port range; Linux's default where it cannot be read."""
    try:
        low, high = (int(field) for field in path.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def port_pool(ephemeral: tuple[int, int]) -> range:
    """The ports to choose from: outside the ephemeral range, above ``POOL_FLOOR``."""
    low, high = ephemeral
    below = range(POOL_FLOOR, min(low, 65536))
    above = range(max(high + 1, POOL_FLOOR), 65536)
    return max(below, above, key=len)


def _lock_descriptor() -> int:
    global _lock_file
    if _lock_file is None:
        path = Path(tempfile.gettempdir()) / f"isls-ports-{os.getuid()}.lock"
        _lock_file = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    return _lock_file


def _reserve(port: int) -> bool:
    """Lock byte ``port`` of the shared lock file for this process's lifetime."""
    try:
        fcntl.lockf(_lock_descriptor(), fcntl.LOCK_EX | fcntl.LOCK_NB, 1, port)
    except OSError as error:
        if error.errno in (errno.EACCES, errno.EAGAIN):
            return False  # another of our processes holds it
        raise
    return True


def _release(port: int) -> None:
    fcntl.lockf(_lock_descriptor(), fcntl.LOCK_UN, 1, port)


def _bindable(port: int) -> bool:
    """Nothing on the machine holds ``port`` on 127.0.0.1 now (listening, connected or
    in TIME_WAIT): a listener without SO_REUSEADDR binds it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _kernel_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _candidates() -> Iterator[int]:
    """Ports to try: the pool from a random start, or, where the ephemeral range leaves
    no pool worth the name, the kernel's choices (reserved all the same)."""
    pool = port_pool(ephemeral_range())
    if len(pool) >= MINIMUM_POOL:
        start = random.randrange(len(pool))
        for offset in range(len(pool)):
            yield pool[(start + offset) % len(pool)]
    for _ in range(1000):
        yield _kernel_port()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing holds now and that neither the kernel nor
    another of our processes will hand out while this process lives."""
    with _lock:
        for port in _candidates():
            if port in _reserved or not _reserve(port):
                continue
            if not _bindable(port):
                _release(port)
                continue
            _reserved.add(port)
            return port
    raise OSError("no free TCP port on 127.0.0.1")
