"""The bytes on the wire under the SSE events: events are written straight to the socket (framed by
streamserver itself), so check the framing with a raw socket for both HTTP versions a proxy may use
(nginx speaks HTTP/1.0 to upstreams unless told otherwise)."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote, urlsplit

from httpx_sse._decoders import SSEDecoder

PROMPT = "one two\r\nthree 👋"


async def raw_get(client, path: str, version: str) -> tuple[bytes, bytes]:
    url = urlsplit(client.base_url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(f"GET {path} HTTP/{version}\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    async with asyncio.timeout(10):
        data = await reader.read(-1)  # until the server closes
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def dechunk(body: bytes) -> bytes:
    out, rest = [], body
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            assert rest == b"\r\n", rest
            return b"".join(out)
        out.append(rest[:size])
        assert rest[size : size + 2] == b"\r\n"
        rest = rest[size + 2 :]


def texts(body: bytes) -> list[str]:
    decoder = SSEDecoder()
    events = [decoder.decode(line) for line in body.decode().split("\n")]
    return [e.data for e in events if e is not None and e.event == "token"]


async def test_http_1_1_gets_well_formed_chunks_ending_in_the_last_chunk(serve):
    client = await serve()
    head, body = await raw_get(client, "/v1/stream?model=echo&prompt=" + quote(PROMPT), "1.1")

    assert b"Transfer-Encoding: chunked" in head
    tokens = texts(dechunk(body))
    assert "".join(json.loads(t)["content"] for t in tokens) == PROMPT


async def test_http_1_0_gets_a_plain_body_that_ends_with_the_connection(serve):
    client = await serve()
    head, body = await raw_get(client, "/v1/stream?model=echo&prompt=" + quote(PROMPT), "1.0")

    assert head.startswith(b"HTTP/1.0 200")
    assert b"chunked" not in head
    tokens = texts(body)
    assert "".join(json.loads(t)["content"] for t in tokens) == PROMPT
