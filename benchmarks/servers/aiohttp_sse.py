"""Baseline 2: aiohttp with aiohttp-sse in a minimal handler."""

from __future__ import annotations

import time

from aiohttp import web
from aiohttp_sse import sse_response

from . import workload


def create_app(n: int, pace: float) -> web.Application:
    """An app with ``GET /v1/stream?prompt=``."""

    async def stream(request: web.Request) -> web.StreamResponse:
        stream_id = workload.new_stream_id()
        started = time.monotonic()
        async with sse_response(
            request,
            sep="\n",
            ping_interval=workload.PING_INTERVAL_S,
            headers={"X-Stream-ID": stream_id, **workload.HEADERS},
        ) as response:
            await response.send(
                workload.start_data(stream_id),
                id=f"{stream_id}:0",
                event="stream_start",
                retry=workload.RETRY_MS,
            )
            index = 0
            async for text in workload.tokens(n, pace):
                await response.send(
                    workload.token_data(text, index), id=f"{stream_id}:{index + 1}", event="token"
                )
                index += 1
            await response.send(
                workload.end_data(stream_id, index, time.monotonic() - started),
                id=f"{stream_id}:{index + 1}",
                event="stream_end",
            )
        return response

    app = web.Application()
    app.router.add_get("/v1/stream", stream)
    return app


def main() -> None:
    """``python -m benchmarks.servers.aiohttp_sse --port P --tokens N --pace R``."""
    args = workload.parse_args(__doc__ or "")
    workload.raise_file_limit()
    web.run_app(
        create_app(args.tokens, args.pace),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        handler_cancellation=True,
    )


if __name__ == "__main__":
    main()
