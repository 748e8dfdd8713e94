"""The link between the supervisor and one worker (``serve --workers``): a socket pair, one line
a message.

From the worker: ``listening`` (its port is open), ``retiring`` (it no longer listens). From the
supervisor: ``stop`` (drain, still listening: what SIGTERM does), ``retire`` (stop listening, then
drain: a reload), ``exit`` (at once, status 1: a second SIGTERM or Ctrl-C to the supervisor). A
worker that reads the end of its link (the supervisor is gone) retires: nobody would stop it
otherwise.

The supervisor stops its workers through the link rather than with a signal so that a signal
sent to the whole group (systemd's default ``KillMode=control-group``) and the supervisor's own
stop count as one: only a second *signal* makes a worker exit without draining. A worker that has
not listened yet holds no stream, and is stopped with SIGTERM (it may not read its link yet).

``Worker`` is the supervisor's end, with the process; ``SupervisorLink`` the worker's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time

log = logging.getLogger("streamserver")


class Worker:
    """One worker process and the supervisor's end of its link."""

    def __init__(
        self,
        slot: int,
        process: asyncio.subprocess.Process,
        link: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.slot = slot
        self.process = process
        self.reader, self.writer = link
        self.started = time.monotonic()
        self.listened = False
        self.retiring = False
        """Asked to stop listening and drain (a reload)."""
        self.stopping = False
        """Asked to drain (the supervisor stops)."""

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def __str__(self) -> str:
        return f"worker {self.slot + 1} (pid {self.pid})"

    async def listening(self) -> bool:
        """Whether it said it listens (False: it ended first)."""
        self.listened = await self._message(b"listening\n")
        return self.listened

    def stop(self) -> None:
        """Ask it to drain, as SIGTERM does."""
        self.stopping = True
        self._ask(b"stop\n")

    def retire(self) -> None:
        """Ask it to stop listening and drain."""
        self.retiring = True
        self._ask(b"retire\n")

    async def retired(self) -> None:
        """Return once it no longer listens (or has ended)."""
        await self._message(b"retiring\n")

    def exit(self) -> None:
        """Ask it to exit at once (its loop handles this as it would a second signal)."""
        self._ask(b"exit\n")

    def _ask(self, message: bytes) -> None:
        if not self.listened:
            self.signal(signal.SIGTERM)
        elif not self.writer.is_closing():
            self.writer.write(message)

    def signal(self, number: int) -> None:
        """Send it a signal, unless it has ended."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # it ended a moment ago
                self.process.send_signal(number)

    async def _message(self, expected: bytes) -> bool:
        try:
            while line := await self.reader.readline():
                if line == expected:
                    return True
        except ConnectionError:
            pass
        return False

    def close(self) -> None:
        """Close the link (the process has ended)."""
        self.writer.close()


class SupervisorLink:
    """A worker's end of its link to the supervisor (``serve --supervisor-fd``)."""

    def __init__(self, fd: int) -> None:
        self._socket = socket.socket(fileno=fd)
        self._writer: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task[None] | None = None
        self.stop = asyncio.Event()
        """Set when the supervisor asks this worker to drain."""
        self.retire = asyncio.Event()
        """Set when the supervisor asks this worker to stop listening and drain, or is gone."""

    async def listening(self) -> None:
        """Tell the supervisor this worker listens; from now on, follow what it asks."""
        reader, self._writer = await asyncio.open_connection(sock=self._socket)
        await self._send(b"listening\n")
        self._reading = asyncio.create_task(self._read(reader))

    async def retiring(self) -> None:
        """Tell the supervisor this worker no longer listens."""
        await self._send(b"retiring\n")

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                if line == b"stop\n":
                    self.stop.set()
                elif line == b"retire\n":
                    self.retire.set()
                elif line == b"exit\n":
                    log.warning("the supervisor asks to exit now: status 1")
                    logging.shutdown()
                    os._exit(1)
        except ConnectionError:
            pass
        self.retire.set()

    async def _send(self, message: bytes) -> None:
        assert self._writer is not None
        try:
            self._writer.write(message)
            await self._writer.drain()
        except ConnectionError:  # the supervisor is gone: it has nobody to tell
            pass

    def close(self) -> None:
        """Close this end."""
        if self._reading is not None:
            self._reading.cancel()
        if self._writer is not None:
            self._writer.close()
        else:
            self._socket.close()
