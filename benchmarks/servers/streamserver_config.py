"""The ``config.toml`` streamserver is benchmarked with, written into a temporary directory.

It is the shipped configuration's shape with the workload's numbers: the ``simulated`` provider
sending exactly N tokens at the pace asked (``ttft_ms = 0``, ``jitter = 0``, ``answer_tokens`` and
the route's ``max_tokens`` both N), ``/v1/stream`` with the ``production`` formatter and the ``raw``
buffer, the ``memory`` and ``prometheus`` sinks on. What differs from the shipped file, and why:

- ``[limits]``: the concurrency limits are raised to fit 10,000 streams and the per-client rate limit
  is off, because the whole load comes from one address (the load generator).
- ``[resume]``: ``grace_s = 0`` (a stream whose reader left is cancelled at once, so nothing keeps
  generating unseen) and ``retain_s = 2`` (resume stays on, as users run it, but finished streams'
  logs do not pile up across a run). Every live stream still keeps its log for resume.
- ``server.plugins_dir`` is an empty directory: the example plugins are not part of the pipeline.
- ``log_level = "warning"``: no line per stream on stderr.

With ``redis_url`` the streams are shared through that Redis (``[redis] url``, ``[resume] store =
"redis"``): the same workload, for the Redis store's cost against the memory store's. ``grace_s``
(0 unless given) keeps a stream whose reader left generating that long, for the resume trials.

With ``json_answer`` the route pins ``OBJECT_FORMAT`` (a cart of ``OBJECT_ITEMS`` items, each a
name, a price and two tags, as the simulated model fills it in) and ``OBJECT_SEED``: every stream
is the same JSON text, exactly ``object_tokens()`` tokens long, so the load generator can check
each one arrived whole; with ``object_stream`` too it is an object stream (``formatter =
"object"``), else that text as plain ``production`` tokens: the two differ by the object
formatter's work alone (the simulated model's JSON costs the same in both).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

OBJECT_ITEMS = 10
"""A cart of ten items is about 260 tokens of JSON: the issue's 256-token objects."""
_ITEM = {
    "type": "object",
    "required": ["name", "price", "tags"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string"},
        "price": {"type": "number", "minimum": 0, "maximum": 100},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2},
    },
}
OBJECT_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "cart",
        "schema": {
            "type": "object",
            "required": ["items"],
            "additionalProperties": False,
            "properties": {
                "items": {
                    "type": "array",
                    "items": _ITEM,
                    "minItems": OBJECT_ITEMS,
                    "maxItems": OBJECT_ITEMS,
                }
            },
        },
    },
}
OBJECT_SEED = 1
OBJECT_PROMPT = "Tell me a story"


def object_tokens() -> int:
    """The tokens of the object every object stream sends (the simulated model, in process)."""
    import streamserver

    async def count() -> int:
        config = {"providers": {"simulated": {"ttft_ms": 0, "tokens_per_second": 0}}}
        stream = streamserver.generate(
            OBJECT_PROMPT, config=config, response_format=OBJECT_FORMAT, seed=OBJECT_SEED
        )
        return sum([1 async for _ in stream])

    return asyncio.run(count())


def _toml(value: Any) -> str:
    """``value`` (JSON data) as a TOML value: inline tables and arrays."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)  # a string, a number, true or false: the same in TOML


def write_config(
    directory: Path,
    *,
    tokens: int,
    pace: float,
    upstream_url: str | None = None,
    redis_url: str | None = None,
    grace_s: float = 0.0,
    json_answer: bool = False,
    object_stream: bool = False,
) -> Path:
    """Write the config for ``tokens`` per stream at ``pace`` (0 = unpaced); return its path.

    With ``upstream_url`` the route relays from an ``openai`` provider at that URL instead; with
    ``redis_url`` the streams are shared through that Redis; with ``json_answer`` the route
    streams ``OBJECT_FORMAT`` JSON, and with ``object_stream`` as an object stream.
    """
    plugins = directory / "no-plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    if upstream_url is None:
        provider = f"""
[providers.simulated]
ttft_ms = 0
tokens_per_second = {pace:g}
jitter = 0
answer_tokens = {tokens}
"""
        route_provider = "simulated"
    else:
        provider = f"""
[providers.upstream]
type = "openai"
base_url = "{upstream_url}"
api_key_env = ""
model = "fake-model"
max_retries = 0
timeout_s = 120
"""
        route_provider = "upstream"
    redis = f'[redis]\nurl = "{redis_url}"\n\n' if redis_url else ""
    store = '\nstore = "redis"' if redis_url else ""
    text = f"""# Written by benchmarks/servers/streamserver_config.py
[server]
host = "127.0.0.1"
plugins_dir = "{plugins}"
log_level = "warning"
shutdown_grace_s = 1
{provider}
[limits]
max_tokens = {max(tokens, 8192)}
max_concurrent_streams = 20000
max_concurrent_streams_per_key = 20000
requests_per_minute = 0

{redis}[resume]{store}
grace_s = {grace_s:g}
retain_s = 2
max_streams = 20000

[metrics]
sinks = ["memory", "prometheus"]

[conversations.sqlite]
path = "{directory / "conversations.sqlite3"}"

[routes."/v1/stream"]
formatter = "{"object" if object_stream else "production"}"
buffer = "raw"
provider = "{route_provider}"
max_tokens = {tokens + 1 if json_answer else tokens}
"""
    if upstream_url is not None:  # the relay workloads' route (benchmarks/relay.py)
        text += f'\n[routes."/v1/chat/completions"]\ntransport = "openai"\nprovider = "{route_provider}"\n'
    if json_answer:  # the object decides its length: it finishes with "stop", not "length"
        text += (
            f'\n[routes."/v1/stream".pin]\nseed = {OBJECT_SEED}\n'
            f"response_format = {_toml(OBJECT_FORMAT)}\n"
        )
    path = directory / "streamserver.toml"
    path.write_text(text, encoding="utf-8")
    return path
