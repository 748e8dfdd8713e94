"""Who may call, and how much: API keys, tickets, rate limits and concurrent streams.

- API keys come from an environment variable (``id:key`` pairs) and arrive as ``Authorization:
  Bearer``; every key is compared in constant time. Logs and limits use the key's id, never the key.
- Browsers' EventSource and WebSocket cannot send headers: ``POST /v1/tickets`` (with a key) returns
  a short-lived ticket, HMAC-signed and bound to one path, accepted as ``?ticket=``. A ticket opens
  one WebSocket; for EventSource it serves every request within its TTL, since EventSource
  reconnects by itself on the URL it was given, ticket included. A key in a URL is refused (URLs
  end up in logs): a parameter named like one (``api_key``, ``apikey``, ``key``, ``token``,
  ``access_token``, ``authorization``, in any case, with ``-``, ``_`` or neither), a value shaped
  like one (``sk-`` and at least 16 more key characters), or a configured key.
- Limits per identity (the key id, or the client address when auth is off): a token bucket of
  requests per minute, and concurrent streams; both answer 429 with ``Retry-After``. The counting
  is the limit store's (``[limits] store``: this process, or every instance's on Redis); a store
  that cannot be reached is a 503 ``store_unavailable``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import os
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from .errors import ConfigError, StreamRejected
from .settings import AuthSettings, LimitsSettings
from .stores import LimitStore, StoreUnavailable, store_unavailable

KEY_ID = web.RequestKey("streamserver.key_id", str)
"""The identity of the caller of this request (an API key id, or ``addr:<client address>``)."""

_KEY_NAMES = frozenset({"apikey", "key", "token", "accesstoken", "authorization"})
"""Query parameter names that carry a key, compacted (lower case, no ``-`` or ``_``)."""
_KEY_SHAPE = re.compile(r"sk-[A-Za-z0-9_-]{16,}")
"""What OpenAI's, Anthropic's and most keys (ours in the README's example too) look like."""


@dataclass(frozen=True, slots=True)
class Ticket:
    """A signed permission for one path until ``expires_at``."""

    token: str
    path: str
    expires_at: float


class Access:
    """Authentication and per-identity limits of one app."""

    def __init__(self, auth: AuthSettings, limits: LimitsSettings, store: LimitStore) -> None:
        self.enabled = auth.mode == "api_key"
        self.auth = auth
        self.limits = limits
        self.store = store
        """Where the limits count (opened and closed by the service)."""
        self.keys = _load_keys(auth) if self.enabled else []
        secret = os.environ.get(auth.ticket_secret_env, "") if auth.ticket_secret_env else ""
        self._secret = secret.encode() or secrets.token_bytes(32)
        self._spent: dict[str, float] = {}
        """Signatures of the tickets that opened a WebSocket, with when they expire."""
        self._spent_cap = _SPENT_PRUNE_AT

    def _key_in(self, query: Mapping[str, str]) -> bool:
        """Whether a query string carries an API key, by the parameter's name or the value."""
        for name, value in query.items():
            if name.lower().replace("_", "").replace("-", "") in _KEY_NAMES:
                return True
            if _KEY_SHAPE.fullmatch(value) or (self.keys and self._match(value) is not None):
                return True
        return False

    def identify(self, request: web.Request, key_header: str | None = None) -> str:
        """The caller's identity, or a 400/401 ``StreamRejected``. Public paths need no key.
        ``key_header`` names a header that may carry the key instead of ``Authorization`` (the
        Messages API's ``x-api-key``, which the ``anthropic`` SDK sends)."""
        if self._key_in(request.query):
            raise StreamRejected(
                400, "key_in_url", "never put an API key in a URL: send 'Authorization: Bearer <key>', "
                "or get a ticket from POST /v1/tickets for EventSource",
            )  # fmt: skip
        if not self.enabled:
            return f"addr:{request.remote}"
        header = request.headers.get("Authorization", "")
        key = request.headers.get(key_header, "").strip() if key_header else ""
        if header:
            scheme, _, key = header.partition(" ")
            if scheme.lower() != "bearer" or not key:
                raise _unauthorized("the Authorization header must be 'Bearer <key>'")
        if key:
            key_id = self._match(key.strip())
            if key_id is None:
                raise _unauthorized("the API key is not valid")
            return key_id
        ticket = request.query.get("ticket")
        if ticket:
            return self._check_ticket(ticket, request.path, once=_is_websocket_upgrade(request))
        if request.path in self.auth.public_paths:
            return f"addr:{request.remote}"
        raise _unauthorized("an API key is required: send 'Authorization: Bearer <key>'")

    def _match(self, key: str) -> str | None:
        # Compare against every key, always: the time taken says nothing about which one is close.
        found = None
        candidate = key.encode()
        for key_id, secret in self.keys:
            if hmac.compare_digest(candidate, secret):
                found = key_id
        return found

    def issue_ticket(self, key_id: str, path: str) -> Ticket:
        """A ticket for ``path``, valid for ``auth.ticket_ttl_s``."""
        expires = time.time() + self.auth.ticket_ttl_s
        payload = _b64(json.dumps({"k": key_id, "p": path, "e": round(expires, 3)}).encode())
        return Ticket(f"{payload}.{self._sign(payload)}", path, expires)

    def _check_ticket(self, ticket: str, path: str, *, once: bool) -> str:
        payload, _, signature = ticket.partition(".")
        if not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            raise _unauthorized("the ticket is not valid")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        if claims["e"] < time.time():
            raise _unauthorized("the ticket has expired; get a new one from POST /v1/tickets")
        if claims["p"] != path:
            raise StreamRejected(
                403, "ticket_wrong_path", f"this ticket is for {claims['p']}, not {path}"
            )
        if once:
            self._spend(signature, claims["e"])
        return str(claims["k"])

    def _spend(self, signature: str, expires_at: float) -> None:
        """Take a ticket for good. A WebSocket lives on by itself once open, and reconnects
        with a fresh ticket, so a ticket read from a log or a proxy must not open another."""
        if signature in self._spent:
            raise _unauthorized(
                "this ticket has opened a WebSocket already; get a new one from POST /v1/tickets"
            )
        self._spent[signature] = expires_at
        if len(self._spent) > self._spent_cap:
            # An expired ticket is refused anyway: forget those, at a cost amortised over the adds.
            now = time.time()
            self._spent = {s: e for s, e in self._spent.items() if e >= now}
            self._spent_cap = max(_SPENT_PRUNE_AT, 2 * len(self._spent))

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())

    async def check_rate(self, identity: str) -> None:
        """Take one request from ``identity``'s bucket, or refuse with 429 and ``Retry-After``."""
        rate = self.limits.requests_per_minute
        if rate <= 0:
            return
        try:
            wait = await self.store.charge(identity)
        except StoreUnavailable as exc:
            raise store_unavailable(exc, "limit") from None
        if wait > 0:
            raise StreamRejected(
                429,
                "rate_limited",
                f"too many requests: at most {rate:g} a minute",
                headers={"Retry-After": str(math.ceil(wait))},
            )

    async def acquire_stream(self, stream_id: str, identity: str) -> None:
        """Count a new stream against the concurrent-stream limits (all callers, and this
        caller's), or refuse it with 429. ``release_stream`` once its generation ends."""
        try:
            passed = await self.store.acquire(stream_id, identity)
        except StoreUnavailable as exc:
            raise store_unavailable(exc, "limit") from None
        if passed == "total":
            raise StreamRejected(429, "too_many_streams", "the server is at its stream limit; retry shortly",
                                 headers={"Retry-After": "1"})  # fmt: skip
        if passed is not None:
            raise StreamRejected(
                429, "too_many_streams_for_key",
                f"at most {self.limits.max_concurrent_streams_per_key} streams at once per key",
                headers={"Retry-After": "1"},
            )  # fmt: skip

    def release_stream(self, stream_id: str, identity: str) -> None:
        """A stream counted by ``acquire_stream`` has ended its generation."""
        self.store.release(stream_id, identity)


_SPENT_PRUNE_AT = 1024
"""Spent tickets held before the expired ones are first dropped."""


def _is_websocket_upgrade(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def _load_keys(auth: AuthSettings) -> list[tuple[str, bytes]]:
    raw = os.environ.get(auth.api_keys_env, "")
    keys = []
    for i, entry in enumerate(e.strip() for e in raw.split(",")):
        if not entry:
            continue
        key_id, sep, key = entry.partition(":")
        if not sep:
            key_id, key = f"key-{i + 1}", entry
        keys.append((key_id.strip(), key.strip().encode()))
    if not keys:
        raise ConfigError(
            "auth.api_keys_env",
            f"the environment variable {auth.api_keys_env} to hold keys as 'id:key,id2:key2'",
        )
    return keys


def _unauthorized(message: str) -> StreamRejected:
    return StreamRejected(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
