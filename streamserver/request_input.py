"""What a client sends, read strictly: a POST body, a JSON object, a number.

Every route reads through these three, so a body split across TCP writes, a JSON document nested
past Python's recursion limit or a digit that is not ASCII is refused the same way everywhere: a
``StreamRejected`` (400 or 413) the HTTP layer answers in the JSON error contract, and the
WebSocket answers with an error message on a socket that stays open.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .errors import StreamRejected

MAX_DIGITS = 18
"""A request number has at most this many digits: it fits in 64 bits, and ``int()`` is never
asked for one of the thousands of digits it refuses (``sys.get_int_max_str_digits``)."""


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body of ``request``, or 413 once it passes ``limit`` bytes.

    Read until the end of the body, not once: one read returns only what has arrived so far, and
    a body sent in several TCP segments (any real network, chunked uploads) arrives in parts.
    """
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    parts: list[bytes] = []
    size = 0
    while chunk := await request.content.readany():
        size += len(chunk)
        if size > limit:  # a chunked body has no Content-Length to refuse it by up front
            raise _too_large(limit)
        parts.append(chunk)
    return b"".join(parts)


def parse_json_object(text: str | bytes, what: str) -> dict[str, Any]:
    """``text`` as a JSON object, or 400 ``invalid_json`` saying why (``what``: "the body")."""
    try:
        data = json.loads(text)
    except RecursionError:
        # The C decoder recurses per level: a few KB of brackets exhaust the stack.
        raise StreamRejected(400, "invalid_json", f"{what} is nested too deeply") from None
    except ValueError as exc:  # UnicodeDecodeError included
        raise StreamRejected(400, "invalid_json", f"{what} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise StreamRejected(400, "invalid_json", f"{what} must be a JSON object")
    return data


async def read_json_body(request: web.Request, limit: int) -> dict[str, Any]:
    """The whole body of ``request`` as a JSON object (413 past ``limit``, 400 if not one)."""
    return parse_json_object(await read_body(request, limit), "the body")


def parse_count(value: object) -> int | None:
    """``value`` as a whole number of 0 or more, or ``None`` if it is not one (the caller refuses
    it, naming the field).

    A JSON integer (``3.0`` is one, as JSON Schema counts), or a string of at most
    ``MAX_DIGITS`` ASCII digits (a query parameter, a header): ``str.isdigit`` alone also takes
    ``²`` (which ``int`` refuses) and Arabic-Indic digits (which ``int`` reads).
    """
    if isinstance(value, str):
        if value.isascii() and value.isdigit() and len(value) <= MAX_DIGITS:
            return int(value)
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _too_large(limit: int) -> StreamRejected:
    return StreamRejected(413, "body_too_large", f"the body is larger than {limit} bytes")
