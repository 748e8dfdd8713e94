"""The LiteLLM proxy as a relay baseline: its config and the environment it runs in.

One model, ``fake-model``, routed as ``openai/fake-model`` to the fake upstream; a dummy key
upstream, master key ``sk-bench`` (the proxy refuses to start without one; the load generator
sends it); no
database, no callbacks, no telemetry, no cost-map download (nothing leaves 127.0.0.1), logging at
warnings only. ``command()`` is what ``benchmarks/run.py`` starts (pinned to the server's CPU).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

CONFIG = """# Written by benchmarks/servers/litellm_proxy.py
model_list:
  - model_name: fake-model
    litellm_params:
      model: openai/fake-model
      api_base: {upstream}
      api_key: sk-fake
      max_retries: 0
litellm_settings:
  telemetry: false
  success_callback: []
  failure_callback: []
  callbacks: []
  set_verbose: false
  json_logs: false
  drop_params: true
  request_timeout: 120
general_settings:
  master_key: sk-bench
  disable_spend_logs: true
  disable_error_logs: true
  disable_reset_budget: true
  disable_adding_master_key_hash_to_db: true
"""

ENVIRONMENT = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_TELEMETRY": "False",
    "LITELLM_LOG": "ERROR",
    "LITELLM_MODE": "PRODUCTION",
    "DISABLE_ADMIN_UI": "True",
    "NO_DOCS": "True",
    "NO_REDOC": "True",
    "ANONYMIZED_TELEMETRY": "False",
}


def available() -> bool:
    """Whether the proxy can be started (``litellm[proxy]`` from the bench extra), without
    importing litellm here (its import fetches a cost map unless told not to; it is slow)."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return False
    cli = [Path(p) / "proxy" / "proxy_cli.py" for p in spec.submodule_search_locations]
    return any(path.exists() for path in cli) and importlib.util.find_spec("uvicorn") is not None


def write_config(directory: Path, upstream: str) -> Path:
    path = directory / "litellm.yaml"
    path.write_text(CONFIG.format(upstream=upstream), encoding="utf-8")
    return path


def command(config: Path, port: int) -> list[str]:
    """The proxy's command line (one uvicorn worker), with this interpreter."""
    return [
        sys.executable, "-m", "litellm.proxy.proxy_cli", "--config", str(config),
        "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1",
    ]  # fmt: skip


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(ENVIRONMENT)
    return env
