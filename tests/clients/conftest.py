"""Fixtures for the real-client tests: a server whose ``scripted`` provider yields exactly the parts
a test scripts, the parts every client must give back, and the Vercel AI SDK installed from npm once
per test session (into a temporary folder: nothing from npm is kept in the repository)."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import SCRIPTED, ServeFactory, base_config
from openai import AsyncOpenAI

import streamserver
from streamserver.web.keys import SERVICE

HERE = Path(__file__).resolve().parent

AI_SDK = "ai@6"
"""The AI SDK's major version under test. ``ai`` 7 needs Node.js 22; the machines have Node.js 20."""
PAGE_PACKAGES = ("@ai-sdk/react@3", "react@19", "react-dom@19", "esbuild@0", "openai@6",
                 "@anthropic-ai/sdk@1")  # fmt: skip
"""For the pages the browser tests build: the ``useChat`` page (``@ai-sdk/react`` 3 is the one built
on ``ai`` 6), and the OpenAI and Anthropic SDKs' own page (``test_browser_sdks.py``)."""
TYPESCRIPT = "typescript@5"
"""For the one check the SDK's runtime schema cannot make: its chunk objects are loose (they let an
unknown key through), its ``UIMessageChunk`` type is exact."""

# --- what the provider produces, and what every client must give back ------------------------------

WEATHER_FRAGMENTS = ['{"city": "Pa', "ris \\", '"15e\\"", "units": "\\u0', '0b0C"}']
"""The arguments cut mid-JSON: inside a string, between a backslash and the quote it escapes, and
inside a ``\\u`` escape."""
LOOKUP_FRAGMENTS = ['{"q": [1, ', "2, 3]}"]
WEATHER_ARGUMENTS = "".join(WEATHER_FRAGMENTS)
LOOKUP_ARGUMENTS = "".join(LOOKUP_FRAGMENTS)
assert json.loads(WEATHER_ARGUMENTS) == {"city": 'Paris "15e"', "units": "°C"}

CALLS = [("call_w", "get_weather", WEATHER_ARGUMENTS), ("call_l", "lookup", LOOKUP_ARGUMENTS)]
"""(id, name, arguments JSON text) of the two parallel calls, indexes 0 and 1."""
REASONING = ["The user asks ", "for two things: "]
TEXT = "Checking both. "


def _call(index: int, fragments: list[str]) -> list[dict[str, Any]]:
    call_id, name, _ = CALLS[index]
    first = {"tool": index, "id": call_id, "name": name, "arguments": fragments[0]}
    return [first, *({"tool": index, "arguments": fragment} for fragment in fragments[1:])]


_WEATHER, _LOOKUP = _call(0, WEATHER_FRAGMENTS), _call(1, LOOKUP_FRAGMENTS)
PARALLEL = [
    *({"reasoning": piece} for piece in REASONING),
    TEXT,
    _WEATHER[0],
    _LOOKUP[0],
    _WEATHER[1],
    _LOOKUP[1],
    *_WEATHER[2:],
]
"""Reasoning, text, then the two calls' fragments interleaved (each call starts before the other
ends), as a provider may send them."""
SEQUENTIAL = [*({"reasoning": piece} for piece in REASONING), TEXT, *_WEATHER, *_LOOKUP]
"""The same parts with each call's fragments together, as OpenAI's API streams parallel calls."""

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "units": {"type": "string"}},
            "required": ["city", "units"],
        },
    },
}
LOOKUP_TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look numbers up.",
        "parameters": {
            "type": "object",
            "properties": {"q": {"type": "array", "items": {"type": "integer"}}},
            "required": ["q"],
        },
    },
}
TOOLS = [WEATHER_TOOL, LOOKUP_TOOL]


# --- the server ----------------------------------------------------------------------------------


@dataclass
class ScriptedServer:
    """A running server with the scripted provider, and that provider (its requests, its closes)."""

    base_url: str
    provider: Any


@pytest.fixture
async def server(serve: ServeFactory) -> ScriptedServer:
    """streamserver on 127.0.0.1 with the scripted provider (``resume.grace_s`` 0: a stream whose
    reader leaves is cancelled upstream at once)."""
    app = streamserver.create_app(base_config(resume={"grace_s": 0}, **SCRIPTED))
    client = await serve(app=app)
    return ScriptedServer(client.base_url, app[SERVICE].providers["scripted"])


@pytest.fixture
async def openai_client(server: ScriptedServer) -> AsyncIterator[AsyncOpenAI]:
    """The openai SDK's async client pointed at the server's OpenAI-compatible routes."""
    async with AsyncOpenAI(
        base_url=server.base_url + "/v1", api_key="test-key", max_retries=0, timeout=10
    ) as client:
        yield client


# --- the AI SDK, from npm ------------------------------------------------------------------------

CHUNKS_TS = """import type {{ UIMessageChunk }} from 'ai';
export const chunks: UIMessageChunk[] = [
{}
];
"""
TSC_OPTIONS = "--noEmit --strict --skipLibCheck --module nodenext --moduleResolution nodenext"
TSC_OPTIONS += " --target es2022"
"""Strict type-checking of one file; ``CHUNKS_TS`` is that file (the chunks as an array literal)."""


@dataclass
class NodeAISDK:
    """The AI SDK installed in ``folder``, with our reader script (``ai_sdk_chat.mjs``) beside it."""

    folder: Path
    node: str
    version: str

    async def transport(self, api: str, *steps: dict[str, Any]) -> list[dict[str, Any]]:
        """Run the steps through ``ai_sdk_transport.mjs`` (see its header) against the ``ai-sdk``
        route at ``api``; one result per step."""
        stdout = await self._run(
            [self.node, "ai_sdk_transport.mjs"], json.dumps({"api": api, "steps": steps})
        )
        results: list[dict[str, Any]] = json.loads(stdout)
        return results

    async def chat(self, *cases: dict[str, Any]) -> list[dict[str, Any]]:
        """Run the cases through ``ai_sdk_chat.mjs`` (see its header); one result per case."""
        stdout = await self._run([self.node, "ai_sdk_chat.mjs"], json.dumps(cases))
        results: list[dict[str, Any]] = json.loads(stdout)
        return results

    async def typecheck(self, chunks: list[dict[str, Any]]) -> str:
        """Type-check ``chunks`` as the SDK's ``UIMessageChunk[]`` (exact object types: an unknown
        key is an error); returns the compiler's complaints, empty when every chunk fits."""
        source = CHUNKS_TS.format("\n".join(json.dumps(chunk) + "," for chunk in chunks))
        checked = self.folder / "chunks.ts"
        checked.write_text(source)
        tsc = str(self.folder / "node_modules" / "typescript" / "bin" / "tsc")
        command = [self.node, tsc, *TSC_OPTIONS.split(), checked.name]
        process = await asyncio.create_subprocess_exec(
            *command, cwd=self.folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        out, _ = await asyncio.wait_for(process.communicate(), 120)
        if process.returncode == 0:
            return ""
        return f"{out.decode()}\nchecked file ({checked}):\n{source}"

    def bundle(self, name: str, *options: str) -> bytes:
        """``tests/clients/<name>`` bundled for a page by esbuild (from npm) with the installed
        packages and esbuild's ``options``; fails with esbuild's own output."""
        source = self.folder / name
        source.write_text((HERE / name).read_text())
        bundle = source.with_suffix(".bundle.js")
        esbuild = str(self.folder / "node_modules" / ".bin" / "esbuild")
        command = [esbuild, source.name, "--bundle", "--log-level=warning", *options,
                   f"--outfile={bundle.name}"]  # fmt: skip
        done = subprocess.run(command, cwd=self.folder, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"esbuild failed:\n{done.stdout}\n{done.stderr}"
        return bundle.read_bytes()

    async def _run(self, command: list[str], stdin: str) -> str:
        process = await asyncio.create_subprocess_exec(
            *command,
            cwd=self.folder,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(stdin.encode()), 60)
        if process.returncode != 0:
            raise AssertionError(
                f"{' '.join(command)} exited {process.returncode}:\n{err.decode()}"
            )
        return out.decode()


@pytest.fixture(scope="session")
def ai_sdk(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> NodeAISDK:
    """``npm install ai@6 typescript@5`` and the page's packages (``PAGE_PACKAGES``) into a
    temporary folder, once per run however many xdist workers ask (it says so on the terminal);
    fails with npm's own output when npm or Node.js is missing or the install fails."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail(
            "the AI SDK tests need Node.js (20 or later) and npm on PATH: "
            f"node is {node or 'missing'}, npm is {npm or 'missing'}",
            pytrace=False,
        )
    # Under pytest-xdist every worker asks for this fixture: the first installs into a folder
    # beside the workers' own temporary folders, the others wait on the lock and reuse it.
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder = root / "ai-sdk"
    with open(root / "ai-sdk.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / ".installed").exists():
            folder.mkdir(exist_ok=True)
            _npm_install(npm, folder, pytestconfig)
            for name in ("ai_sdk_chat.mjs", "ai_sdk_transport.mjs"):
                shutil.copy(HERE / name, folder)
            (folder / ".installed").touch()
    version = json.loads((folder / "node_modules" / "ai" / "package.json").read_text())["version"]
    return NodeAISDK(folder, node, version)


def _npm_install(npm: str, folder: Path, pytestconfig: pytest.Config) -> None:
    """``npm install`` the AI SDK and the page's packages into ``folder``, or fail with npm's
    own output."""
    command = [npm, "install", "--no-audit", "--no-fund", "--no-save", AI_SDK, TYPESCRIPT,
               *PAGE_PACKAGES]  # fmt: skip
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(
            f"\ntests/clients: npm {' '.join(command[1:])} in {folder} (once per run)",
            flush=True,
        )
    try:
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"npm install did not finish in {exc.timeout} s: {exc.stderr}", pytrace=False)
    if done.returncode != 0:
        pytest.fail(
            f"npm install failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}",
            pytrace=False,
        )
    version = json.loads((folder / "node_modules" / "ai" / "package.json").read_text())["version"]
    with capture.global_and_fixture_disabled():
        print(f"tests/clients: installed ai {version}", flush=True)
