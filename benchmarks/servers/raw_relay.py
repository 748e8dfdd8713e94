"""The raw relay floor: the least a relay of an OpenAI-compatible upstream must do, in aiohttp.

``POST /v1/chat/completions`` sends the request body on to the upstream's
``/v1/chat/completions`` through one shared ``aiohttp.ClientSession``, reads the streamed answer's
SSE ``data:`` lines and writes each one to the client re-framed as its own event (the JSON passed
through, not parsed), ending with ``data: [DONE]``. No SDK, no pipeline, no buffering beyond what
arrived. What a real relay cannot skip, it does: the upstream's status is checked and passed on, a
client that leaves closes the upstream request (the response is released, not read to its end).
"""

from __future__ import annotations

import argparse
import contextlib

import aiohttp
from aiohttp import web

SESSION = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM = web.AppKey("upstream", str)
DONE = b"data: [DONE]"


async def chat(request: web.Request) -> web.StreamResponse:
    session = request.app[SESSION]
    body = await request.read()
    headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-upstream"}
    async with session.post(request.app[UPSTREAM], data=body, headers=headers) as upstream:
        if upstream.status != 200:
            return web.Response(
                status=upstream.status,
                body=await upstream.read(),
                content_type="application/json",
            )
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        out: list[bytes] = []
        buffered = b""
        # Each read takes what has arrived (readany), splits it into lines, re-frames every
        # ``data:`` line as one event and writes them together: one write per read, not per line.
        while chunk := await upstream.content.readany():
            lines = (buffered + chunk).split(b"\n")
            buffered = lines.pop()
            for line in lines:
                if line.startswith(b"data: "):
                    out.append(line.rstrip(b"\r") + b"\n\n")
            if out:
                data = b"".join(out)
                out.clear()
                try:
                    await response.write(data)
                except ConnectionResetError:  # the client left: leaving the block closes upstream
                    return response
                if data.endswith(DONE + b"\n\n"):
                    break
        await response.write_eof()
        return response


async def _session(app: web.Application) -> object:
    app[SESSION] = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=None)
    )
    yield
    await app[SESSION].close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the upstream's base URL, …/v1")
    args = parser.parse_args()
    app = web.Application()
    app[UPSTREAM] = args.upstream.rstrip("/") + "/chat/completions"
    app.cleanup_ctx.append(_session)
    app.router.add_post("/v1/chat/completions", chat)
    with contextlib.suppress(KeyboardInterrupt):
        web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
