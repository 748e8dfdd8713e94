"""The workload every baseline serves, shaped like streamserver's simulated provider.

N tokens of English text, one SSE event per token, at ``pace`` tokens per second (0 = as fast as
possible), paced against a schedule so late wakeups do not lower the average rate, exactly as
``streamserver.builtins.simulated`` does. The wire shape is the ``production`` route's:
``stream_start``, ``token`` ``{"content", "index"}`` per token, ``stream_end``, each with
``id: <stream_id>:<seq>``, so bytes per event are comparable across servers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import secrets
from collections.abc import AsyncIterator, Coroutine
from typing import Any

TEXT = (
    "Streaming changes how people experience a model. The first words arrive while the rest is "
    "still being written, so the answer feels alive instead of slow. A good server keeps that "
    "rhythm steady under load and never drops a single character on the way. Every token travels "
    "from the provider through a buffer and a formatter before it reaches the client. "
)
_PIECES = re.compile(r" ?[^\W\d_]+| ?\d{1,3}| ?[^\s\w]+|\s+")


def _tokenize(text: str) -> list[str]:
    pieces = []
    for piece in _PIECES.findall(text):
        while len(piece) > 7:  # long words become sub-word tokens, as in the simulated provider
            cut = 5 if piece[0] == " " else 4
            pieces.append(piece[:cut])
            piece = piece[cut:]
        pieces.append(piece)
    return pieces


TOKENS = _tokenize(TEXT)
MODEL = "simulated"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
RETRY_MS = 2000
PING_INTERVAL_S = 15.0


def token_text(i: int) -> str:
    """The ``i``-th token of every stream."""
    return TOKENS[i % len(TOKENS)]


def new_stream_id() -> str:
    """An id like streamserver's (same length on the wire: ``st_`` and 24 characters)."""
    return "st_" + secrets.token_urlsafe(18)


def start_data(stream_id: str) -> str:
    """``stream_start`` data."""
    return json.dumps({"stream_id": stream_id, "model": MODEL})


def token_data(text: str, index: int) -> str:
    """``token`` data, formatted as streamserver formats it."""
    return json.dumps({"content": text, "index": index})


def end_data(stream_id: str, tokens: int, duration_s: float) -> str:
    """``stream_end`` data."""
    return json.dumps(
        {
            "stream_id": stream_id,
            "tokens_generated": tokens,
            "duration_ms": round(duration_s * 1000, 3),
            "tokens_per_second": round(tokens / duration_s, 3) if duration_s > 0 else 0.0,
            "finish_reason": "length",
        }
    )


async def tokens(n: int, pace: float) -> AsyncIterator[str]:
    """``n`` tokens at ``pace`` per second, scheduled like the simulated provider."""
    loop = asyncio.get_running_loop()
    clock = loop.time
    gap = 1.0 / pace if pace > 0 else 0.0
    due = clock()
    for i in range(n):
        if gap:
            delay = due - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            due += gap
        elif not i & 63:
            await asyncio.sleep(0)  # flat out, but let the rest of the server breathe
        yield token_text(i)


def parse_args(description: str) -> argparse.Namespace:
    """The command line every baseline takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens", type=int, required=True, help="token events per stream")
    parser.add_argument("--pace", type=float, default=0.0, help="tokens per second; 0 = unpaced")
    parser.add_argument(
        "--yield-every", type=int, default=64, help="unpaced: yield to the loop every N tokens"
    )
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    return parser.parse_args()


def run(main: Coroutine[Any, Any, None], loop: str) -> None:
    """Run ``main`` on the standard event loop or on uvloop (``--loop``)."""
    if loop == "uvloop":
        import uvloop

        uvloop.run(main)
    else:
        asyncio.run(main)


def raise_file_limit() -> None:
    """Allow as many sockets as the hard limit does (10,000 streams need more than 1024)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
