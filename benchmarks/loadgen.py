"""The load generator: many SSE streams over raw sockets, results as JSON on stdout.

Cheap per event by construction, so that it is never what limits a run: asyncio connects and
sends each request, then every connection is read by one tight epoll loop (``Reader``) that
parses a few lines of HTTP/1.1 (status line, headers) and counts events with ``bytes.count`` on
whatever arrived, never one by one. A token event is recognised by its ``event: token`` line, the
end of a stream by ``event: stream_end`` and the final zero-size chunk. The chunked framing is not
undone: a token event split across two chunks would be missed, so a server that did that would
show incomplete streams, never the reverse (every server here writes an event in one chunk).

Each read is dated by the kernel's receive time (``SO_TIMESTAMPNS``), not by when this process
got round to it, so its own delays (the tick, a busy loop) do not end up in the figures.

Per stream it records the time to first token (from the moment the request is sent; the time to
connect and send is reported apart as ``connect_ms``), the
gaps between token arrivals (events that arrive in one read have a gap of 0), the events received
and whether the stream ended properly. A stream is *complete* when the status was 200, exactly
``--tokens`` token events arrived, the ``stream_end`` event arrived (with ``--openai``, ``[DONE]``;
with ``--tools`` too, the ``tool_calls`` finish of a call that arrived whole) and the response ended
with its final chunk. The summary reports its own CPU use (``loadgen_cpu``: CPU seconds per wall second of
the measured phase) and how long its loop passes took (``loop_busy_ms``), and, given
``--server-pid``, the server's CPU time and memory read from ``/proc`` at the start and end of that
phase and every ``--sample-s`` in between.

``--connections C --streams-per-connection K``: C clients, opened at ``--ramp`` per second (0 = all
at once), each running K streams one after another (a new connection each, as EventSource does).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import resource
import select
import selectors
import socket
import struct
import sys
import time
from collections import Counter
from typing import Any

TOKEN_MARK = b"\nevent: token\n"
END_MARK = b"\nevent: stream_end\n"
LAST_CHUNK = b"\r\n0\r\n\r\n"
"""The end of a chunked body: the previous chunk's CRLF, then the zero-size chunk."""
_CARRY = len(END_MARK) - 1
CHUNK_MARKS = (b'"content": "', b'"content":"', b'"arguments": "', b'"arguments":"')
"""``--openai``: a chunk carries a token when one of these opens a string ..."""
EMPTY_MARKS = (b'"content": ""', b'"content":""', b'"arguments": ""', b'"arguments":""')
"""... that is not empty (the role chunk's ``content: ""``, a call's opening ``arguments: ""``)."""
DONE_MARK = b"data: [DONE]"
CALLS_FINISHED = (b'"finish_reason": "tool_calls"', b'"finish_reason":"tool_calls"')
"""``--openai --tools``: the end of a stream whose call arrived whole (a relay that cut it, at
``max_tokens`` say, finishes with ``length``)."""
_OPENAI_CARRY = len(EMPTY_MARKS[0]) - 1
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; the module lacks the name
_TIMESPEC = struct.Struct("qq")
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size)
READ_SIZE = 262144
"""Bytes read per ``recvmsg`` at most, into one buffer allocated once: a fresh 256 KiB bytes
object per read is a glibc ``mmap``, a ``mremap`` to shrink it and a ``munmap`` (with their page
faults), which profiled at about half of this process's CPU time in the paced workload."""


class Record:
    """What happened to one stream."""

    __slots__ = (
        "ended",
        "error",
        "finished",
        "first",
        "gaps",
        "headers",
        "last",
        "nbytes",
        "sent",
        "start",
        "status",
        "terminated",
        "tokens",
        "zero_gaps",
    )

    def __init__(self) -> None:
        self.start = 0.0
        """When the connection was opened."""
        self.sent = 0.0
        """When the request was written (connected, and this process got round to it)."""
        self.headers: float | None = None
        """When the response head was complete."""
        self.first: float | None = None
        self.last = 0.0
        self.finished = 0.0
        self.tokens = 0
        self.gaps: list[float] = []
        self.zero_gaps = 0
        self.nbytes = 0
        self.status = 0
        self.ended = False
        """The ``stream_end`` event arrived."""
        self.terminated = False
        """The response's final chunk arrived."""
        self.error: str | None = None


class Tally:
    """Streams between their first token and their end (memory is read while all of them are),
    and streams opened that have no response head yet (``--max-pending`` bounds those)."""

    __slots__ = ("active", "bins", "pending", "room", "t0")

    def __init__(self) -> None:
        self.active = 0
        self.pending = 0
        self.room: asyncio.Event | None = None
        """Set when a pending stream got its head (the launcher may be waiting for room)."""
        self.t0 = 0.0
        """Start of the measured phase (0 until then: the warm-up is not counted)."""
        self.bins: list[int] = []
        """Tokens received per 10 ms since ``t0``, all streams together."""

    def add(self, now: float, count: int) -> None:
        """``count`` tokens arrived at ``now``."""
        if self.t0:
            index = int((now - self.t0) * 100)
            bins = self.bins
            if index >= len(bins):
                bins.extend([0] * (index + 1000 - len(bins)))
            if index >= 0:
                bins[index] += count

    def answered(self) -> None:
        """One stream is no longer pending."""
        self.pending -= 1
        if self.room is not None:
            self.room.set()


class Reader:
    """Reads every connection from one epoll set of its own, in a tight loop, and dates each read
    with the kernel's receive time (``SO_TIMESTAMPNS``) instead of the time it is processed.

    asyncio only connects and sends the request: per-read asyncio callbacks would cost about
    9 µs more per read here, and the kernel's time makes the figures independent of this
    process's own delays (the tick, a busy loop). A read that holds several events gets the time
    of the last of them, the latest it could be.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.epoll = select.epoll()
        self.clients: dict[int, SSEClient] = {}
        self.view = memoryview(bytearray(READ_SIZE))
        self.buffers = [self.view]
        self.lags: list[float] = []
        """Per read: how long the data waited in the socket before this process read it."""
        # The kernel's timestamps are CLOCK_REALTIME; every other time here is monotonic.
        self.offset = time.monotonic() - time.time()
        loop.add_reader(self.epoll.fileno(), self.drain)

    def adopt(self, client: SSEClient, sock: socket.socket) -> None:
        self.clients[sock.fileno()] = client
        self.epoll.register(sock.fileno(), select.EPOLLIN)

    def release(self, sock: socket.socket) -> None:
        if self.clients.pop(sock.fileno(), None) is not None:
            self.epoll.unregister(sock.fileno())

    def drain(self) -> None:
        """Hot path: one ``recvmsg_into`` per ready connection, then that connection's count."""
        clients = self.clients
        offset = self.offset
        lags = self.lags
        monotonic = time.monotonic
        buffers = self.buffers
        view = self.view
        for fd, _events in self.epoll.poll(0):
            client = clients.get(fd)
            if client is None:
                continue
            try:
                size, ancillary, _flags, _address = client.sock.recvmsg_into(buffers, _ANCILLARY)
            except BlockingIOError:
                continue
            except OSError as exc:
                client.connection_lost(exc)
                continue
            if not size:
                client.connection_lost(None)
                continue
            data = view[:size].tobytes()
            if ancillary:
                seconds, nanoseconds = _TIMESPEC.unpack_from(ancillary[0][2])
                arrived = seconds + nanoseconds * 1e-9 + offset
                lags.append(monotonic() - arrived)
                client.received(data, arrived)
            else:
                client.received(data, monotonic())

    def close(self) -> None:
        self.loop.remove_reader(self.epoll.fileno())
        self.epoll.close()


class SSEClient(asyncio.Protocol):
    """One connection, one request, one SSE response. asyncio connects and sends the request;
    the ``Reader`` reads the response and hands it to ``received``."""

    __slots__ = (
        "carry",
        "carry_len",
        "chunked",
        "done",
        "end_marks",
        "head",
        "in_body",
        "openai",
        "reader",
        "record",
        "request",
        "sock",
        "tally",
        "transport",
        "until_first",
    )

    def __init__(
        self,
        request: bytes,
        record: Record,
        done: asyncio.Future[None],
        tally: Tally,
        reader: Reader,
        sock: socket.socket,
        until_first: bool = False,
        openai: bool = False,
        tools: bool = False,
    ) -> None:
        self.openai = openai
        # What must arrive for the stream to have ended: one of each group's marks.
        self.end_marks = (
            [(END_MARK,)] if not openai else [(DONE_MARK,), *([CALLS_FINISHED] if tools else [])]
        )
        self.carry_len = max(
            _OPENAI_CARRY if openai else _CARRY,
            *(len(mark) - 1 for group in self.end_marks for mark in group),
        )
        self.request = request
        self.record = record
        self.done = done
        self.tally = tally
        self.reader = reader
        self.sock = sock
        self.until_first = until_first
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.in_body = False
        self.chunked = False
        self.carry = b"\r\n"  # so that an empty chunked body still ends with LAST_CHUNK

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.pause_reading()
        self.reader.adopt(self, self.sock)
        transport.write(self.request)
        self.record.sent = time.monotonic()

    def data_received(self, data: bytes) -> None:
        self.received(data, time.monotonic())  # only if asyncio reads after all (it should not)

    def received(self, data: bytes, now: float) -> None:
        """``data`` arrived at ``now``."""
        if self.in_body:
            self.body(data, now)
            return
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > 65536:
                self._finish(now, "response head too large")
            return
        head, rest = self.head[:end], self.head[end + 4 :]
        self.head = b""
        self.in_body = True
        self.record.headers = now
        self.tally.answered()
        status_line, _, headers = head.partition(b"\r\n")
        try:
            self.record.status = int(status_line.split(b" ", 2)[1])
        except (IndexError, ValueError):
            self._finish(now, "malformed status line")
            return
        if self.record.status != 200:
            self._finish(now, f"status {self.record.status}")
            return
        self.chunked = b"transfer-encoding: chunked" in headers.lower()
        if rest:
            self.body(rest, now)

    def body(self, data: bytes, now: float) -> None:
        """Count what arrived. Hot path: one concatenation, one ``count``, one ``in``."""
        record = self.record
        record.nbytes += len(data)
        carry = self.carry
        scan = carry + data
        # Marks that lie wholly inside the carried tail were counted with the previous read.
        if self.openai:
            count = _openai_count(scan) - _openai_count(carry)
        else:
            count = scan.count(TOKEN_MARK) - carry.count(TOKEN_MARK)
        if count:
            if record.first is None:
                record.first = now
                self.tally.active += 1
                if self.until_first:
                    record.tokens = count
                    self._finish(now, None)
                    return
            else:
                record.gaps.append(now - record.last)
            record.zero_gaps += count - 1
            record.last = now
            record.tokens += count
            self.tally.add(now, count)
        if not record.ended:
            marks = self.end_marks
            marks[:] = [group for group in marks if not any(mark in scan for mark in group)]
            record.ended = not marks
        if self.chunked and scan.endswith(LAST_CHUNK):
            record.terminated = True
            self._finish(now, None)
            return
        self.carry = scan[-self.carry_len :]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done.done():
            return
        now = time.monotonic()
        if self.in_body and not self.chunked:
            self.record.terminated = True  # a body delimited by the connection's end
            self._finish(now, None)
        else:
            self._finish(now, f"connection lost ({exc.__class__.__name__ if exc else 'EOF'})")

    def _finish(self, now: float, error: str | None) -> None:
        if self.done.done():
            return
        record = self.record
        record.finished = now
        if error is not None and record.error is None:
            record.error = error
        if record.first is not None:
            self.tally.active -= 1
        if not self.in_body:
            self.tally.answered()
            self.in_body = True  # counted once
        self.reader.release(self.sock)
        if self.transport is not None:
            self.transport.close()
        self.done.set_result(None)


def _openai_count(data: bytes) -> int:
    """Chunks in ``data`` that carry a content or tool-call arguments delta (``--openai``)."""
    count = data.count
    return (
        count(CHUNK_MARKS[0]) + count(CHUNK_MARKS[1]) + count(CHUNK_MARKS[2])
        + count(CHUNK_MARKS[3]) - count(EMPTY_MARKS[0]) - count(EMPTY_MARKS[1])
        - count(EMPTY_MARKS[2]) - count(EMPTY_MARKS[3])
    )  # fmt: skip


class TickSelector(selectors.EpollSelector):
    """Looks at the sockets once per tick instead of waking up for every arrival (``tick`` 0:
    wakes up for every arrival, as usual), and records how long the loop was busy between looks.

    Events gather for up to one tick and are read together, so the load generator stays cheap,
    and the server, on the other CPU, is not charged a cross-CPU wakeup for each event it sends
    (a server whose clients are on a network would not be). The kernel's receive timestamps keep
    the tick out of the measured times; ``loop_busy_ms`` shows how far behind the loop ran.
    """

    def __init__(self, tick: float) -> None:
        super().__init__()
        self.tick = tick
        self.busy: list[float] = []
        self.returned = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if self.returned:
            self.busy.append(time.monotonic() - self.returned)
        if self.tick and (timeout is None or timeout > 0):
            pause = self.tick if timeout is None else min(self.tick, timeout)
            time.sleep(pause)
            timeout = None if timeout is None else timeout - pause
        ready = super().select(timeout)
        self.returned = time.monotonic()
        return ready


class LoadGenerator:
    """Runs the streams and keeps their records."""

    def __init__(self, args: argparse.Namespace, selector: TickSelector) -> None:
        self.args = args
        self.selector = selector
        self.host: str = args.host
        self.port: int = args.port
        self.request = (
            openai_request(args)
            if args.openai
            else (
                f"GET {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
                "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
            ).encode()
        )
        self.records: list[Record] = []
        self.clients: list[list[Record]] = []
        """Each client's records, in the order it ran them."""
        self.tally = Tally()

    async def stream(self, record: Record, until_first: bool = False) -> None:
        """One stream on a new connection; every outcome ends up in ``record``."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        protocol = SSEClient(
            self.request,
            record,
            done,
            self.tally,
            self.reader,
            sock,
            until_first,
            self.args.openai,
            self.args.openai and self.args.tools,
        )
        record.start = time.monotonic()
        self.tally.pending += 1
        try:
            async with asyncio.timeout(self.args.connect_timeout):
                await loop.sock_connect(sock, (self.host, self.port))
                await loop.create_connection(lambda: protocol, sock=sock)
        except (OSError, TimeoutError) as exc:
            protocol._finish(time.monotonic(), f"connect: {exc.__class__.__name__}")
            sock.close()
            return
        try:
            async with asyncio.timeout(self.args.stream_timeout):
                await done
        except TimeoutError:
            transport = protocol.transport
            protocol._finish(time.monotonic(), "timeout")
            if transport is not None:
                transport.abort()

    async def client(self) -> None:
        mine: list[Record] = []
        self.clients.append(mine)
        for i in range(self.args.streams_per_connection):
            if i and self.args.pause_ms:
                await asyncio.sleep(self.args.pause_ms / 1000)
            record = Record()
            self.records.append(record)
            mine.append(record)
            await self.stream(record)

    async def run(self) -> dict[str, Any]:
        self.reader = Reader(asyncio.get_running_loop())
        try:
            return await self.measure()
        finally:
            self.reader.close()

    async def measure(self) -> dict[str, Any]:
        args = self.args
        for _ in range(args.warmup):
            warm = Record()
            await self.stream(warm, until_first=True)
            if warm.error is not None:
                return {"error": f"warm-up stream failed: {warm.error}"}
        await asyncio.sleep(0.2)  # let the server settle after the warm-up before the idle reading
        server = ServerProbe(args.server_pid) if args.server_pid else None
        samples: list[tuple[float, int, int]] = []
        gc.collect()
        gc.disable()  # no collector pauses inside the measured phase
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        self.selector.busy.clear()
        self.reader.lags.clear()
        cores0 = core_times()
        ours = {os.getpid(), args.server_pid, *args.exclude_pid}
        others0 = other_cpu(ours)
        overflows0 = listen_overflows()
        server_before = server.read() if server else None
        started = time.monotonic()
        self.tally.t0 = started
        sampler = asyncio.create_task(self.sample(server, samples, started)) if server else None
        clients = []
        for i in range(args.connections):
            if args.ramp > 0:
                delay = started + i / args.ramp - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            while args.max_pending and self.tally.pending >= args.max_pending:
                self.tally.room = self.tally.room or asyncio.Event()
                self.tally.room.clear()
                await self.tally.room.wait()
            clients.append(asyncio.create_task(self.client()))
            if args.max_pending:
                await asyncio.sleep(0)  # let it open its connection (and count as pending)
        ramped = time.monotonic() - started
        await asyncio.gather(*clients)
        wall = time.monotonic() - started
        server_after = server.read() if server else None
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
        cores1 = core_times()
        others1 = other_cpu(ours)
        overflows1 = listen_overflows()
        if sampler is not None:
            sampler.cancel()
        gc.enable()
        cpu = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
        summary = self.summary(wall)
        summary["ramp_s"] = round(ramped, 3)
        # Each client is live from its first stream's first token to its last stream's end.
        # A client whose last stream got no token or no end is left out (that run fails anyway):
        # its zero would empty the window.
        live = [c for c in self.clients if c[0].first is not None and c[-1].last and c[-1].finished]
        if live:
            # How long every client was live at once: from the last first token to the first end.
            last_first = max(c[0].first or 0.0 for c in live)
            ended = min(c[-1].finished for c in live)
            summary["all_live_s"] = round(max(0.0, ended - last_first), 3)
            summary["delivered_per_s"] = self.delivered(last_first, min(c[-1].last for c in live))
        summary["loadgen_cpu"] = round(cpu / wall, 4) if wall > 0 else None
        summary["loadgen_cpu_s"] = round(cpu, 3)
        summary["loadgen_user_s"] = round(usage1.ru_utime - usage0.ru_utime, 3)
        lags = sorted(self.reader.lags)
        summary["read_lag_ms"] = (
            {q: ms(percentile(lags, p)) for q, p in _QUANTILES} if lags else None
        )
        summary["reads"] = len(lags)
        system = (usage1.ru_stime - usage0.ru_stime) * 1e6
        summary["loadgen_sys_us_per_read"] = round(system / len(lags), 2) if lags else None
        busy = sorted(self.selector.busy)
        summary["loop_busy_ms"] = (
            {q: ms(percentile(busy, p)) for q, p in _QUANTILES} if busy else None
        )
        summary["other_cpu"] = round(
            sum(t - others0.get(pid, 0.0) for pid, t in others1.items()) / wall, 4
        )
        summary["listen_overflows"] = overflows1 - overflows0
        summary["core_busy"] = {
            name: round(busy_fraction(cores0[name], cores1[name]), 4)
            for name in cores1
            if name in cores0
        }
        if server_before and server_after:
            summary["server"] = server_summary(
                server_before, server_after, samples, wall, args.connections, summary["tokens"]
            )
        return summary

    def delivered(self, start: float, end: float) -> float | None:
        """Tokens per second received while every client was live (from the last client's first
        token to the first client's last), in whole 10 ms bins; None if that was under 0.5 s."""
        t0 = self.tally.t0
        low, high = math.ceil((start - t0) * 100), math.floor((end - t0) * 100)
        if high - low < 50:
            return None
        return round(sum(self.tally.bins[low:high]) / ((high - low) / 100), 1)

    async def sample(
        self, server: ServerProbe, samples: list[tuple[float, int, int]], started: float
    ) -> None:
        while True:
            await asyncio.sleep(self.args.sample_s)
            rss = server.rss_kib()
            if rss is not None:
                samples.append((time.monotonic() - started, rss, self.tally.active))

    def summary(self, wall: float) -> dict[str, Any]:
        expected = self.args.tokens
        records = self.records
        # A tool call's argument fragments may be relayed several to a chunk (a relay that writes
        # what is ready at once, as streamserver does): with --tools a stream is whole with at
        # most one chunk per fragment, and counts the upstream's fragments as its tokens. That
        # the arguments arrive exactly is the test suite's to prove, not the load generator's.
        merges = self.args.openai and self.args.tools
        if merges:
            for r in records:
                if r.ended and 0 < r.tokens <= expected:
                    r.tokens = expected
        complete = [
            r
            for r in records
            if r.error is None
            and r.status == 200
            and r.tokens == expected
            and r.ended
            and r.terminated
        ]
        problems: Counter[str] = Counter()
        for r in records:
            if r.error is not None:
                problems[r.error] += 1
            elif r.tokens != expected:
                problems[f"{r.tokens} tokens instead of {expected}"] += 1
            elif not r.ended:
                problems[
                    "no [DONE] and tool_calls finish" if merges else "no stream_end event"
                ] += 1
            elif not r.terminated:
                problems["no final chunk"] += 1
        tokens = sum(r.tokens for r in records)
        # TTFT runs from the request being sent: connecting, and this process's own delay before
        # it wrote the request, are reported apart (connect_ms), so they do not count as the
        # server's. A connection the server's listen queue dropped shows there (1 s, 3 s, ...).
        ttfts = sorted(r.first - r.sent for r in records if r.first is not None)
        heads = sorted(r.headers - r.sent for r in records if r.headers is not None)
        connects = sorted(r.sent - r.start for r in records if r.sent)
        gaps = sorted(g for r in records for g in r.gaps)
        zeros = sum(r.zero_gaps for r in records)
        rates = sorted(
            (r.tokens - 1) / (r.last - r.first)
            for r in records
            if r.first is not None and r.tokens > 1 and r.last > r.first
        )
        nbytes = sum(r.nbytes for r in records)
        events = tokens + 2 * len(complete)
        return {
            "streams": len(records),
            "complete": len(complete),
            "incomplete": len(records) - len(complete),
            "problems": dict(problems.most_common(5)),
            "tokens": tokens,
            "expected_tokens": expected * len(records),
            "wall_s": round(wall, 4),
            "tokens_per_s": round(tokens / wall, 1) if wall > 0 else None,
            "delivered_per_s": None,
            "stream_rate_p50": round(percentile(rates, 0.5), 3) if rates else None,
            "ttft_ms": {q: ms(percentile(ttfts, p)) for q, p in _QUANTILES} if ttfts else None,
            "headers_ms": {q: ms(percentile(heads, p)) for q, p in _QUANTILES} if heads else None,
            "connect_ms": (
                {q: ms(percentile(connects, p)) for q, p in _QUANTILES} if connects else None
            ),
            "gap_ms": (
                {q: ms(zero_percentile(gaps, zeros, p)) for q, p in _QUANTILES}
                if gaps or zeros
                else None
            ),
            "bytes_per_event": round(nbytes / events, 1) if events else None,
        }


_QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted ``values``."""
    return values[max(0, math.ceil(q * len(values)) - 1)]


def zero_percentile(nonzero: list[float], zeros: int, q: float) -> float:
    """Percentile of ``zeros`` zero values plus the sorted ``nonzero`` ones."""
    rank = max(1, math.ceil(q * (zeros + len(nonzero))))
    return 0.0 if rank <= zeros else nonzero[rank - zeros - 1]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def core_times() -> dict[str, tuple[int, int]]:
    """Per CPU: (busy, total) jiffies from ``/proc/stat``. Busy includes softirq time, where the
    kernel charges much of loopback TCP, which no process's own CPU time shows."""
    times = {}
    try:
        with open("/proc/stat", encoding="ascii") as f:
            for line in f:
                if line.startswith("cpu") and line[3].isdigit():
                    name, *values = line.split()
                    numbers = [int(v) for v in values[:8]]
                    idle = numbers[3] + numbers[4]  # idle + iowait
                    times[name] = (sum(numbers) - idle, sum(numbers))
    except OSError:
        pass
    return times


def other_cpu(ours: set[int]) -> dict[int, float]:
    """CPU seconds of every user-space process that is not part of the run (``ours``): the
    machine's other work, which competes with the run for the two CPUs."""
    times = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) in ours:
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[1] == "2" or entry.name == "2":  # kernel threads (their parent is kthreadd)
            continue
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    return times


def listen_overflows() -> int:
    """The kernel's count of connections dropped because a listen queue was full (all sockets)."""
    try:
        with open("/proc/net/netstat", encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:
        return 0
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return int(table.get("ListenOverflows", 0))
    return 0


def busy_fraction(before: tuple[int, int], after: tuple[int, int]) -> float:
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else 0.0


class ServerProbe:
    """The server process's CPU time and memory, from ``/proc``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def read(self) -> dict[str, float] | None:
        try:
            with open(f"/proc/{self.pid}/stat", encoding="ascii") as f:
                fields = f.read().rpartition(")")[2].split()
            status = self._status()
        except OSError:
            return None
        return {
            "t": time.monotonic(),
            "cpu_s": (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS,
            "rss_kib": status.get("VmRSS", 0),
            "hwm_kib": status.get("VmHWM", 0),
        }

    def rss_kib(self) -> int | None:
        try:
            return self._status().get("VmRSS")
        except OSError:
            return None

    def _status(self) -> dict[str, int]:
        with open(f"/proc/{self.pid}/status", encoding="ascii") as f:
            return {
                key: int(value.split()[0])
                for key, _, value in (line.partition(":") for line in f)
                if key in ("VmRSS", "VmHWM")
            }


def server_summary(
    before: dict[str, float],
    after: dict[str, float],
    samples: list[tuple[float, int, int]],
    wall: float,
    connections: int,
    tokens: int,
) -> dict[str, Any]:
    """CPU use over the measured phase, idle and peak memory, and memory while every stream was
    live (the plateau: the largest reading taken while all ``connections`` streams were)."""
    cpu = after["cpu_s"] - before["cpu_s"]
    plateau = [rss for _t, rss, active in samples if active >= connections]
    return {
        "cpu_s": round(cpu, 3),
        "cpu_util": round(cpu / wall, 4) if wall > 0 else None,
        "cpu_us_per_token": round(cpu / tokens * 1e6, 3) if tokens else None,
        "idle_rss_kib": int(before["rss_kib"]),
        "end_rss_kib": int(after["rss_kib"]),
        "peak_rss_kib": int(after["hwm_kib"]),
        "plateau_rss_kib": max(plateau) if plateau else None,
        "plateau_samples": len(plateau),
    }


def openai_request(args: argparse.Namespace) -> bytes:
    """``--openai``: ``POST`` a streaming chat completion to ``--path`` asking for ``--tokens``
    tokens (the fake upstream echoes the prompt; with ``--tools`` it answers with one tool call)."""
    body: dict[str, Any] = {
        "model": args.model,
        "stream": True,
        "max_tokens": args.tokens,
        # Distinct words: LiteLLM ends a stream that repeats one chunk 100 times as an error.
        "messages": [{"role": "user", "content": " ".join(f"w{i}" for i in range(args.tokens))}],
    }
    if args.tools:
        body["tools"] = [{"type": "function", "function": {
            "name": "echo", "parameters": {"type": "object", "properties": {}}}}]  # fmt: skip
    payload = json.dumps(body).encode()
    head = (
        f"POST {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
        "Accept: text/event-stream\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer sk-bench\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/v1/stream?prompt=hi")
    parser.add_argument("--tokens", type=int, required=True, help="token events each stream has")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--streams-per-connection", type=int, default=1)
    parser.add_argument(
        "--pause-ms", type=float, default=0.0, help="pause between one client's streams"
    )
    parser.add_argument("--ramp", type=float, default=0.0, help="connections opened per second")
    parser.add_argument(
        "--max-pending",
        type=int,
        default=0,
        help="open no new connection while this many have no response head (0 = no bound)",
    )
    parser.add_argument("--warmup", type=int, default=1, help="streams read to the first token")
    parser.add_argument("--connect-timeout", type=float, default=10.0)
    parser.add_argument("--stream-timeout", type=float, default=60.0)
    parser.add_argument(
        "--tick-ms",
        type=float,
        default=0.0,
        help="look at the sockets at most this often (0 = wake up for every arrival)",
    )
    parser.add_argument("--server-pid", type=int, default=0)
    parser.add_argument(
        "--exclude-pid", type=int, action="append", default=[], help="another process of the run"
    )
    parser.add_argument("--sample-s", type=float, default=0.25)
    parser.add_argument(
        "--openai",
        action="store_true",
        help="POST a streaming chat completion; count OpenAI chunks with content or arguments",
    )
    parser.add_argument("--model", default="fake-model", help="the model --openai asks for")
    parser.add_argument("--tools", action="store_true", help="--openai: offer a tool")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    selector = TickSelector(args.tick_ms / 1000)
    with asyncio.Runner(loop_factory=lambda: asyncio.SelectorEventLoop(selector)) as runner:
        summary = runner.run(LoadGenerator(args, selector).run())
    json.dump(summary, sys.stdout)
    sys.stdout.write("\n")
    return 0 if "error" not in summary else 1


if __name__ == "__main__":
    sys.exit(main())
