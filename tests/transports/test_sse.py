"""``send_stream``: a client that is gone before its response's headers go out leaves its stream
as any reader does (parked for ``resume.grace_s``, or cancelled), and nothing is logged as an
error: a connection reset is an ordinary event for a streaming server."""

from __future__ import annotations

import logging
from urllib.parse import quote

from conftest import SCRIPTED, base_config, script, wait_until
from fakes.reset_client import send_then_reset

import streamserver
from streamserver.web.keys import SERVICE


async def test_a_client_gone_before_the_headers_went_out_has_its_stream_cancelled(serve, caplog):
    app = streamserver.create_app(base_config(resume={"grace_s": 0}, **SCRIPTED))
    client = await serve(app=app)
    streams = app[SERVICE].streams
    prompt = quote(script(["a "], then="hang"))

    request = f"GET /v1/stream?model=scripted&prompt={prompt} HTTP/1.1\r\nHost: x\r\n\r\n"
    await send_then_reset(client.base_url, request.encode())

    await wait_until(lambda: streams.total == 1)
    # Cancelled, not left generating (a real upstream, billed) for a reader that never comes.
    await wait_until(lambda: streams.active == 0)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
