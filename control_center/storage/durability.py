"""What has been made durable and may be acknowledged: every chunk of line protocol
written gets an id in write order; a chunk is durable once it is in InfluxDB, in the
spool or a dead letter. Batches finish out of order (several posts run at once), so a
mark is released only once every chunk written before it is durable."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable


class Acknowledgements:
    """Tracks durable chunks and calls ``on_stored(token)`` for each :meth:`mark` once
    everything written before it is durable."""

    def __init__(self, on_stored: Callable[[int], None] | None = None) -> None:
        self._on_stored = on_stored
        self._next_chunk = 0
        # Every id up to _stored_upto is durable.
        self._stored_upto = -1
        self._done: dict[int, int] = {}  # first id -> last id of finished posts past it
        self._marks: deque[tuple[int, int]] = deque()  # (last chunk id, token)
        self._progress = asyncio.Event()  # set whenever _stored_upto moves

    def written(self) -> int:
        """The id of a chunk just queued (ids must be taken in queue order)."""
        chunk = self._next_chunk
        self._next_chunk += 1
        return chunk

    @property
    def settled(self) -> bool:
        """Every chunk written so far is durable."""
        return self._stored_upto >= self._next_chunk - 1

    def mark(self, token: int) -> None:
        """Call ``on_stored(token)`` once everything written so far is durable (at once if
        it already is). Tokens must not decrease."""
        self._marks.append((self._next_chunk - 1, token))
        self._release_marks()

    def complete(self, first: int, last: int) -> None:
        """Chunks ``first`` to ``last`` (one batch) are durable."""
        self._done[first] = last
        while self._stored_upto + 1 in self._done:
            self._stored_upto = self._done.pop(self._stored_upto + 1)
        self._progress.set()
        self._release_marks()

    async def drained(self, timeout: float, hurry: Callable[[], None]) -> bool:
        """Wait until everything written so far is durable; False on timeout. ``hurry`` is
        called before each wait (post what waits for a batch now)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.settled:
            self._progress.clear()
            hurry()
            try:
                await asyncio.wait_for(self._progress.wait(), deadline - loop.time())
            except TimeoutError:
                return False
        return True

    def _release_marks(self) -> None:
        while self._marks and self._marks[0][0] <= self._stored_upto:
            token = self._marks.popleft()[1]
            if self._on_stored is not None:
                self._on_stored(token)
