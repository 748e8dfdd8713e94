"""Read an HTTP request's body and fields: the whole body up to the limit, as a JSON object; the
query string of a GET. What the fields mean is checked by ``request_input``."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ..errors import StreamRejected
from ..request_input import parse_json_object, query_fields

_TRANSPORT_FIELDS = frozenset({"last_event_id", "ticket"})
"""Query parameters read by the transport and the auth guard, not by the stream request."""


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


async def read_json_body(request: web.Request, limit: int) -> dict[str, Any]:
    """The whole body of ``request`` as a JSON object (413 past ``limit``, 400 if not one)."""
    return parse_json_object(await read_body(request, limit), "the body")


async def read_fields(request: web.Request, max_body_bytes: int) -> Mapping[str, Any]:
    """The request's fields: the query string (its request parameters read from their text:
    ``request_input.query_fields``), and for a POST the JSON object of its body too. A POST's
    query string counts (``POST /v1/stream?format=ai-sdk`` with the messages in the body, as
    clients with a fixed body write it); a field in both is refused, never one silently
    chosen."""
    query = query_fields((k, v) for k, v in request.query.items() if k not in _TRANSPORT_FIELDS)
    if request.method != "POST":
        return query
    body = await read_json_body(request, max_body_bytes)
    both = sorted(set(query) & set(body))
    if both:
        raise StreamRejected(
            400,
            "duplicate_field",
            f"{both[0]!r} is given in both the query string and the body: give it once",
        )
    return {**query, **body}


_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")


def idempotency(request: web.Request, fields: Mapping[str, Any]) -> tuple[str, str] | None:
    """A POST's ``Idempotency-Key`` and the fingerprint of its fields (the same key with other
    fields is another request), or ``None`` without one; 400 for a key that is not 1 to 255
    visible ASCII characters."""
    key = request.headers.get("Idempotency-Key")
    if key is None or request.method != "POST":
        return None
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise StreamRejected(
            400, "invalid_idempotency_key", "Idempotency-Key is 1 to 255 visible ASCII characters"
        )
    canonical = json.dumps(fields, sort_keys=True, ensure_ascii=True, default=str)
    return key, hashlib.sha256(canonical.encode()).hexdigest()


def _too_large(limit: int) -> StreamRejected:
    return StreamRejected(413, "body_too_large", f"the body is larger than {limit} bytes")
