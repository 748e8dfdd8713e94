"""Baseline 1: FastAPI + sse-starlette on uvicorn, the way its documentation shows it.

uvicorn runs on the standard asyncio loop (like every other server in the suite) with the httptools
parser, no access log.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import uvicorn
from fastapi import FastAPI
from sse_starlette import EventSourceResponse, ServerSentEvent

from . import workload


def create_app(n: int, pace: float) -> FastAPI:
    """An app with ``GET /v1/stream?prompt=``."""
    app = FastAPI()

    @app.get("/v1/stream")
    async def stream(prompt: str) -> EventSourceResponse:
        stream_id = workload.new_stream_id()

        async def events() -> AsyncIterator[ServerSentEvent]:
            started = time.monotonic()
            yield ServerSentEvent(
                data=workload.start_data(stream_id),
                event="stream_start",
                id=f"{stream_id}:0",
                retry=workload.RETRY_MS,
                sep="\n",
            )
            index = 0
            async for text in workload.tokens(n, pace):
                yield ServerSentEvent(
                    data=workload.token_data(text, index),
                    event="token",
                    id=f"{stream_id}:{index + 1}",
                    sep="\n",
                )
                index += 1
            yield ServerSentEvent(
                data=workload.end_data(stream_id, index, time.monotonic() - started),
                event="stream_end",
                id=f"{stream_id}:{index + 1}",
                sep="\n",
            )

        return EventSourceResponse(
            events(),
            sep="\n",
            ping=workload.PING_INTERVAL_S,
            headers={"X-Stream-ID": stream_id, **workload.HEADERS},
        )

    return app


def main() -> None:
    """``python -m benchmarks.servers.fastapi_sse --port P --tokens N --pace R``."""
    args = workload.parse_args(__doc__ or "")
    workload.raise_file_limit()
    uvicorn.run(
        create_app(args.tokens, args.pace),
        host=args.host,
        port=args.port,
        loop="asyncio",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
