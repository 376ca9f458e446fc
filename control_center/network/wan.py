"""A WAN link between two sites on loopback that can be cut and restored: a TCP
proxy in the caller's event loop (bench/network.py, outage drills). Cut, it drops every
open connection and refuses new ones, as a failed link does to a Mosquitto bridge."""

from __future__ import annotations

import asyncio
import contextlib

from control_center.operations.servers import free_port


class WanLink:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.up = True
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def close(self) -> None:
        """Cut, and wait for every connection's handler to end: one still running when
        the event loop closes is cancelled, and asyncio's stream callback then prints
        a CancelledError traceback for it."""
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._pipes:
            await asyncio.wait(self._pipes, timeout=5)

    def cut(self) -> None:
        self.up = False
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self.up = True

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.transport.abort()
            return
        handler = asyncio.current_task()
        if handler is not None:
            self._pipes.add(handler)
            handler.add_done_callback(self._pipes.discard)
        try:
            far_reader, far_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, far_writer}
        await asyncio.gather(self._pipe(reader, far_writer), self._pipe(far_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while self.up:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
        self._writers.discard(writer)
