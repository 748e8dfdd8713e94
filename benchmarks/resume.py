"""Resume trials: how long a resume takes to bring its first replayed event, on another instance
(through Redis) and on the instance that runs the stream. Results as JSON on stdout.

Two streamserver instances, A and B, share one Redis (``[resume] store = "redis"``, ``grace_s``
above 0 so a stream whose reader left goes on). Each trial starts a paced stream on A, reads it
until ``--cut-after`` token events arrived and closes the connection (the cut), waits
``--pause-ms`` (so that events are waiting to be replayed), then sends the same request again
with ``Last-Event-ID`` (the last event id it got, as ``EventSource`` does when it reconnects) to B
(``other``) or to A (``same``), and times it from the moment the request is written to the arrival
of the first event (the first replayed one): the time a client behind a load balancer waits when
its reconnect lands on another instance, beside the time when it lands on the same one. It then
reads the resumed stream to its end and checks it: the ids follow on from the cut with no gap
and no repeat, every token arrived once, and ``stream_end`` and the final chunk came. Trials
alternate between the two places (B first, then A, then A first...), after one untimed warm-up
trial of each.

One trial at a time, on blocking sockets (the reads wake for every arrival): both servers are
otherwise idle, so the figure is the resume path's own latency, not a queue's.
"""

from __future__ import annotations

import argparse
import json
import math
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

PLACES = ("other", "same")


class TrialError(Exception):
    """A trial went wrong (its message says how); the run reports it."""


@dataclass
class Response:
    """One SSE response read from a socket: its events, in order, as (id, event type)."""

    sock: socket.socket
    events: list[tuple[str, str]] = field(default_factory=list)
    status: int = 0
    ended: bool = False
    """The final (zero-size) chunk arrived."""
    first_at: float | None = None
    """When the first event arrived (``time.perf_counter``)."""
    _raw: bytes = b""
    _body: bytes = b""
    _head_done: bool = False

    def read_until(self, enough: Any, deadline: float) -> None:
        """Read until ``enough(self)`` is true, the response ended, or ``deadline`` passed."""
        while not enough(self) and not self.ended:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TrialError(f"timed out after {len(self.events)} events")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise TrialError(f"timed out after {len(self.events)} events") from None
            if not data:
                raise TrialError(f"connection closed after {len(self.events)} events")
            now = time.perf_counter()
            self._feed(data, now)

    def _feed(self, data: bytes, now: float) -> None:
        self._raw += data
        if not self._head_done:
            end = self._raw.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self._raw = self._raw[:end], self._raw[end + 4 :]
            self.status = int(head.split(b" ", 2)[1])
            self._head_done = True
            if self.status != 200:
                raise TrialError(f"status {self.status}: {self._raw[:300]!r}")
        # Undo the chunked framing, then split the SSE events.
        while True:
            line_end = self._raw.find(b"\r\n")
            if line_end < 0:
                break
            size = int(self._raw[:line_end].split(b";")[0], 16)
            if len(self._raw) < line_end + 2 + size + 2:
                break
            start = line_end + 2
            self._body += self._raw[start : start + size]
            self._raw = self._raw[start + size + 2 :]
            if size == 0:
                self.ended = True
                break
        *complete, self._body = self._body.split(b"\n\n")
        for block in complete:
            fields = dict(
                line.split(": ", 1) for line in block.decode().split("\n") if ": " in line
            )
            if "id" in fields:
                if self.first_at is None:
                    self.first_at = now
                self.events.append((fields["id"], fields.get("event", "message")))

    def tokens(self) -> int:
        return sum(1 for _id, kind in self.events if kind == "token")


def connect(port: int, path: str, last_event_id: str | None) -> tuple[Response, float]:
    """Connect and send the request; the response, and when the request was written."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    resume = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id else ""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
        f"Cache-Control: no-cache\r\n{resume}\r\n"
    ).encode()
    sock.sendall(request)
    return Response(sock), time.perf_counter()


def trial(args: argparse.Namespace, target: int) -> dict[str, float]:
    """One stream on A, cut, resumed on ``target``; its times (ms)."""
    deadline = time.monotonic() + args.stream_timeout
    began = time.perf_counter()
    first, sent = connect(args.a_port, args.path, None)
    try:
        first.read_until(lambda r: r.tokens() >= args.cut_after, deadline)
    finally:
        first.sock.close()  # the cut
    if first.first_at is None or not first.events:
        raise TrialError("the first connection got no event")
    start_ms = (first.first_at - sent) * 1000
    last_id = first.events[-1][0]
    stream_id, _, seq = last_id.rpartition(":")
    time.sleep(args.pause_ms / 1000)
    connected = time.perf_counter()
    resumed, sent = connect(target, args.path, last_id)
    try:
        resumed.read_until(lambda r: r.first_at is not None, deadline)
        assert resumed.first_at is not None
        first_event_ms = (resumed.first_at - sent) * 1000
        resumed.read_until(lambda r: False, deadline)  # to its end
    finally:
        resumed.sock.close()
    expected = [f"{stream_id}:{n}" for n in range(int(seq) + 1, int(seq) + 1 + len(resumed.events))]
    if [event_id for event_id, _kind in resumed.events] != expected:
        raise TrialError(f"ids after {last_id}: {[i for i, _k in resumed.events][:8]} ...")
    if first.tokens() + resumed.tokens() != args.tokens:
        raise TrialError(f"{first.tokens()} + {resumed.tokens()} tokens, not {args.tokens}")
    if not resumed.events or resumed.events[-1][1] != "stream_end":
        raise TrialError("the resumed stream did not end with stream_end")
    return {
        "first_event_ms": first_event_ms,
        "connect_ms": (sent - connected) * 1000,
        "start_ms": start_ms,
        "trial_ms": (time.perf_counter() - began) * 1000,
    }


def percentiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)

    def rank(q: float) -> float:
        return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)], 3)

    return {"p50": rank(0.5), "p90": rank(0.9), "p99": rank(0.99), "max": rank(1.0)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    ports = {"other": args.b_port, "same": args.a_port}
    times: dict[str, list[dict[str, float]]] = {place: [] for place in PLACES}
    problems: dict[str, int] = {}
    for place in PLACES:  # warm-up: B's first replica, each connection pool's first call
        try:
            trial(args, ports[place])
        except (TrialError, OSError) as exc:  # counted below if it happens again
            print(f"warm-up trial ({place}) failed: {exc}", file=sys.stderr)
    began = time.monotonic()
    for i in range(args.trials):
        order = PLACES if i % 2 == 0 else PLACES[::-1]
        for place in order:
            try:
                times[place].append(trial(args, ports[place]))
            except (TrialError, OSError) as exc:
                text = f"{place}: {exc}"
                problems[text] = problems.get(text, 0) + 1
    complete = sum(len(t) for t in times.values())
    return {
        "streams": 2 * args.trials,
        "complete": complete,
        "incomplete": 2 * args.trials - complete,
        "problems": problems,
        "wall_s": round(time.monotonic() - began, 3),
        "resume_ms": {p: percentiles([t["first_event_ms"] for t in times[p]]) for p in PLACES},
        "resume_connect_ms": {p: percentiles([t["connect_ms"] for t in times[p]]) for p in PLACES},
        "start_ms": percentiles([t["start_ms"] for p in PLACES for t in times[p]]),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--a-port", type=int, required=True, help="the instance streams start on")
    parser.add_argument("--b-port", type=int, required=True, help="the other instance")
    parser.add_argument("--path", default="/v1/stream?prompt=Tell+me+a+story")
    parser.add_argument("--tokens", type=int, required=True, help="token events each stream has")
    parser.add_argument("--cut-after", type=int, default=4, help="token events before the cut")
    parser.add_argument("--pause-ms", type=float, default=60.0, help="between the cut and resume")
    parser.add_argument("--trials", type=int, default=30, help="timed trials per place")
    parser.add_argument("--stream-timeout", type=float, default=30.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    summary = run(parse_args(argv))
    json.dump(summary, sys.stdout)
    sys.stdout.write("\n")
    return 0 if "error" not in summary else 1


if __name__ == "__main__":
    sys.exit(main())
