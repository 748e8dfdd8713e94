"""The relay workloads of issue 20 (points 1 and 6): one client request, three relays.

Every relay gets the same request, ``POST /v1/chat/completions`` with ``stream: true`` (the load
generator's ``--openai`` mode), and relays the same fake upstream (``streamserver fake-upstream``,
its own process on the load generator's CPU; ``tools`` in the request makes it answer with one tool
call whose arguments come one fragment per token):

- ``upstream``: no relay, the load generator straight at the fake upstream: its own TTFT, which
  the others' is measured against;
- ``raw-relay``: the floor, ``benchmarks/servers/raw_relay.py``;
- ``litellm``: the LiteLLM proxy (``benchmarks/servers/litellm_proxy.py``), one stream per client
  instead of several (it relays about 500 tokens a second: CPU per token is a ratio anyway);
- ``streamserver``: its ``/v1/chat/completions`` route on an ``openai`` provider.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from .servers import litellm_proxy

UPSTREAM = "upstream"
RAW_RELAY = "raw-relay"
LITELLM = "litellm"
RELAYS = (UPSTREAM, RAW_RELAY, LITELLM, "streamserver")
RELAY_ONLY = (UPSTREAM, RAW_RELAY, LITELLM)
"""The servers only the relay workloads run."""
LITELLM_START_S = 90.0
"""The proxy takes 10-20 s to listen on an idle machine."""


def missing(server: str) -> str | None:
    """Why a relay-only server cannot run here, or None."""
    if server == LITELLM and not litellm_proxy.available():
        return "litellm is not installed (pip install -e '.[bench]')"
    return None


def command(
    server: str, python: str, prefix: list[str], port: int, upstream: str, workdir: Path
) -> tuple[list[str], Path, dict[str, str] | None]:
    """The command line, working directory and environment (None: the usual) of a relay."""
    repo = Path(__file__).resolve().parent.parent
    if server == RAW_RELAY:
        module = ["-m", "benchmarks.servers.raw_relay"]
        return [*prefix, python, *module, "--port", str(port), "--upstream", upstream], repo, None
    directory = Path(tempfile.mkdtemp(prefix="litellm-", dir=workdir))
    config = litellm_proxy.write_config(directory, upstream)
    return [*prefix, *litellm_proxy.command(config, port)], directory, litellm_proxy.environment()


def streams_per_connection(server: str, default: int) -> int:
    return 1 if server == LITELLM else default


def loadgen_args(tools: bool) -> list[str]:
    return ["--openai", "--path", "/v1/chat/completions", *(["--tools"] if tools else [])]
