"""A TCP proxy on 127.0.0.1 that can cut the connections passing through it, mid-stream.

``cut()`` cuts every open connection at once (a test decides when). A proxy can also be given a
plan, one ``Cut`` per connection in the order they are accepted: each connection is then cut by
itself, after so many bytes from the server or so long after it opened, so a randomised trial can
land cuts inside headers, events, HTTP chunks, WebSocket frames and UTF-8 sequences.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Cut:
    """When to cut one connection: once ``after_bytes`` bytes have gone from the server towards
    the client, or ``after_s`` seconds after it was accepted, whichever comes first (neither: it
    is not cut). ``reset`` sends an RST both ways, as when a mobile network drops; otherwise the
    connection is closed cleanly (FIN) in the middle of whatever it was carrying."""

    after_bytes: int | None = None
    after_s: float | None = None
    reset: bool = True


NEVER = Cut()
"""The plan of a connection that is not cut."""


class TCPProxy:
    """Forwards ``127.0.0.1:<port>`` to a target; ``cut()`` aborts every open connection (an RST
    towards both sides), and ``plan`` cuts each connection by itself (see ``Cut``)."""

    def __init__(self, target_host: str, target_port: int, plan: Iterable[Cut] = ()) -> None:
        self.target = (target_host, target_port)
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.connections = 0
        self.cuts = 0
        """Connections the plan has cut so far (``cut()`` is not counted)."""
        self._plan = iter(plan)

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    def cut(self) -> None:
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()

    async def close(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _accept(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        plan = next(self._plan, NEVER)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        pair = (client_writer, upstream_writer)
        self.writers.update(pair)
        timer = None
        if plan.after_s is not None:
            timer = asyncio.get_running_loop().call_later(plan.after_s, self._cut, pair, plan)
        try:
            await asyncio.gather(
                self._pipe(client_reader, upstream_writer),
                self._pipe(upstream_reader, client_writer, plan, pair),
            )
        finally:
            if timer is not None:
                timer.cancel()

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        plan: Cut = NEVER,
        pair: tuple[asyncio.StreamWriter, ...] = (),
    ) -> None:
        budget = plan.after_bytes
        with contextlib.suppress(ConnectionError, OSError):
            while budget != 0 and (data := await reader.read(min(65536, budget or 65536))):
                writer.write(data)
                await writer.drain()
                if budget is not None:
                    budget -= len(data)
            if budget == 0:
                await self._sent(writer)
                self._cut(pair, plan)
                return
        writer.transport.abort()
        self.writers.discard(writer)

    @staticmethod
    async def _sent(writer: asyncio.StreamWriter) -> None:
        """Wait (briefly) until the bytes before a cut have left, so the cut falls where planned."""
        for _ in range(100):
            if writer.transport.is_closing() or not writer.transport.get_write_buffer_size():
                return
            await asyncio.sleep(0.001)

    def _cut(self, pair: tuple[asyncio.StreamWriter, ...], plan: Cut) -> None:
        if not any(writer in self.writers for writer in pair):
            return  # already over (closed by one side, or cut the other way)
        self.cuts += 1
        for writer in pair:
            if plan.reset:
                writer.transport.abort()
            else:
                writer.transport.close()
            self.writers.discard(writer)
