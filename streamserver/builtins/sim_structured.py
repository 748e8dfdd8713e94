"""What the simulated provider's structured models say beyond text.

- ``sim-tools``: which of the offered tools it calls (``calls_for``), with arguments made from each
  tool's JSON schema (``sim_schema``), and the text it answers once the results are back
  (``results_answer``);
- ``sim-reasoner``: the thinking it streams before its answer (``reasoning_for``);
- every model: the JSON it answers a ``response_format`` with (``json_answer``).

Every choice is drawn from the stream's generator, so a seed repeats it.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ..errors import ProviderError
from ..tokens import tokenize
from ..types import GenerationRequest, Message, ToolCall, ToolCallDelta
from .sim_schema import SchemaError, SchemaValues

TOOLS_MODEL = "sim-tools"
REASONER_MODEL = "sim-reasoner"

_ALL_TOOLS = re.compile(
    r"\b(?:all|every|each)\b(?:\s+(?:of|the|your|my|these|available))*\s+tools?\b", re.IGNORECASE
)
"""A prompt that asks for several calls: "use all tools", "call every tool", "each of the tools"."""
_ID_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def last_user_text(messages: Sequence[Message]) -> str:
    """The text of the conversation's last user message (``""`` without one)."""
    for message in reversed(messages):
        if message.role == "user":
            return message.text
    return ""


def _functions(tools: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The offered function tools' ``function`` objects (other tool types are not for it)."""
    found = []
    for tool in tools:
        function = tool.get("function") if tool.get("type", "function") == "function" else None
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            found.append(function)
    return found


def _chosen(
    request: GenerationRequest, functions: list[Mapping[str, Any]], prompt: str
) -> list[Mapping[str, Any]]:
    """The functions one response calls (see ``calls_for``)."""
    choice = request.tool_choice
    if isinstance(choice, Mapping):
        named = (
            choice.get("function", {}).get("name")
            if isinstance(choice.get("function"), Mapping)
            else None
        )
        picked = [f for f in functions if f["name"] == named]
        if not picked:
            offered = ", ".join(f["name"] for f in functions) or "none"
            raise ProviderError(
                "invalid_tool_choice",
                f"tool_choice names the function {named!r}, which is not offered (offered: {offered})",
            )
        return picked
    if request.parallel_tool_calls is not False and len(functions) > 1:
        if _ALL_TOOLS.search(prompt):
            return functions
        mentioned = [
            f for f in functions if re.search(rf"\b{re.escape(f['name'])}\b", prompt, re.IGNORECASE)
        ]
        if len(mentioned) > 1:
            return mentioned
    return functions[:1]


def calls_for(request: GenerationRequest, rng: random.Random) -> tuple[ToolCall, ...]:
    """The calls ``sim-tools`` makes in answer to ``request`` (none: it answers in text).

    It calls when tools are offered, ``tool_choice`` is not ``"none"`` and the last message is
    not a tool result (``"required"`` and a named function call even then): the function
    ``tool_choice`` names, else the first offered. With
    ``parallel_tool_calls`` not false it calls several, in the order offered, when the last user
    message asks for all of them ("use all tools", "every tool", "each of the tools") or names
    two or more of them.
    """
    functions = _functions(request.tools)
    choice = request.tool_choice
    if request.forces_call and not functions:
        raise ProviderError(
            "invalid_tool_choice", "tool_choice asks for a call, but no function tool is offered"
        )
    answered = bool(request.messages) and request.messages[-1].role == "tool"
    if not functions or choice == "none" or (answered and not request.forces_call):
        return ()
    prompt = last_user_text(request.messages)
    calls = []
    for index, function in enumerate(_chosen(request, functions, prompt)):
        call_id = "call_" + "".join(rng.choices(_ID_LETTERS, k=24))
        schema = function.get("parameters")
        if not isinstance(schema, Mapping) or not schema:
            schema = {"type": "object", "properties": {}}  # none, or {}: no parameters
        elif "type" not in schema:
            schema = {**schema, "type": "object"}  # the arguments are an object whatever else
        elif schema["type"] != "object":
            raise ProviderError(
                "invalid_tool_schema",
                f"the parameters of tool {function['name']!r} must describe an object "
                '({"type": "object", ...}): a call\'s arguments are one',
            )
        try:
            arguments = SchemaValues(schema, rng, prompt).value()
        # A schema is the client's: keywords of the wrong type, sizes past the simulated
        # model's limit, cycles are a schema it cannot meet (a 400 through Provider.check).
        except (SchemaError, TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise ProviderError(
                "invalid_tool_schema",
                f"the parameters schema of tool {function['name']!r} cannot be met: {exc}",
            ) from None
        text = json.dumps(arguments, ensure_ascii=False)
        calls.append(ToolCall(call_id, function["name"], text, index))
    return tuple(calls)


def call_deltas(calls: Sequence[ToolCall]) -> Iterator[ToolCallDelta]:
    """Each call as an upstream streams it: id and name, then its arguments in token pieces."""
    for call in calls:
        yield ToolCallDelta(call.index, call.id, call.name)
        for piece in tokenize(call.arguments):
            yield ToolCallDelta(call.index, arguments=piece)


def results_answer(messages: Sequence[Message]) -> str | None:
    """The opening of the answer to the tool results that end the conversation: each quoted,
    named after the call it answers; ``None`` when the last message is not a tool result."""
    results: list[Message] = []
    for message in reversed(messages):
        if message.role != "tool":
            break
        results.insert(0, message)
    if not results:
        return None
    names: dict[str, str] = {}
    for message in messages:
        for call in message.tool_calls:
            names[call.id] = call.name
    quoted = []
    for result in results:
        name = names.get(result.tool_call_id or "", "the tool")
        quoted.append(f"{name} returned {result.text.strip() or 'nothing'}.")
    return " ".join(quoted)


_OPENERS = ('The user asks "{topic}".', 'So the question is "{topic}".',
            'I am asked "{topic}".')  # fmt: skip
_THOUGHTS = (
    'First I should work out what they mean by "{word}".',
    "They probably want a short, concrete answer rather than a lecture.",
    "Let me recall what I know about {word}.",
    "One angle is how {word} behaves when things go wrong.",
    'I should check whether "{word}" could mean something else here.',
    "An example would make this clearer.",
    "Let me make sure the steps come in the right order.",
    "I could compare {word} with the usual alternative.",
    "The edge cases matter: slow readers, dropped connections, retries.",
    "Wait, I should double-check that assumption before going on.",
    "That covers the main point; the details can follow.",
)
_CLOSERS = ("Now I can write the answer.", "I have enough to answer.", "Time to answer.")
EFFORT_SENTENCES = {"none": 0, "minimal": 1, "low": 2, "medium": 4, "high": 9}
"""How many sentences ``sim-reasoner`` thinks for each ``reasoning_effort`` (default medium)."""
_QUIET = frozenset({"the", "and", "for", "with", "that", "this", "what", "why", "how", "when",
                    "where", "which", "about", "does", "from", "your", "into", "have", "tell",
                    "explain", "please"})  # fmt: skip


def reasoning_for(request: GenerationRequest, rng: random.Random) -> str:
    """``sim-reasoner``'s thinking about the prompt: an opener, thoughts, a closer; how many
    sentences is set by ``reasoning_effort`` (``EFFORT_SENTENCES``)."""
    effort = request.sampling.get("reasoning_effort") or "medium"
    sentences = EFFORT_SENTENCES.get(effort) if isinstance(effort, str) else None
    if sentences is None:
        raise ProviderError(
            "invalid_reasoning_effort",
            f"reasoning_effort must be one of {', '.join(EFFORT_SENTENCES)}, not {effort!r}",
        )
    if not sentences:
        return ""
    words = last_user_text(request.messages).split()
    topic = " ".join(words[:8]) + (" ..." if len(words) > 8 else "") or "nothing at all"
    plain = [w.strip(".,;:!?\"'()") for w in words]
    keywords = [w for w in plain if len(w) > 3 and w.lower() not in _QUIET] or plain or ["this"]
    chosen = [rng.choice(_OPENERS)]
    if sentences > 1:
        chosen += rng.sample(_THOUGHTS, min(sentences - 2, len(_THOUGHTS)))
        chosen.append(rng.choice(_CLOSERS))
    return " ".join(s.format(topic=topic, word=rng.choice(keywords)) for s in chosen)


_ANY_OBJECT = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "summary": {"type": "string", "minLength": 60},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 4},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "done": {"type": "boolean"},
    },
    "required": ["title", "summary", "tags", "score"],
}
"""What a ``json_object`` answer looks like (any object would do)."""


def json_answer(request: GenerationRequest, rng: random.Random) -> str | None:
    """The JSON text that answers ``request.response_format`` (``None``: it asks for none): a
    value valid against a ``json_schema``'s schema, or a plausible object for ``json_object``,
    as ``json.dumps`` writes it (``", "`` and ``": "``, non-ASCII kept)."""
    response_format = request.response_format
    if not response_format or response_format.get("type") not in ("json_schema", "json_object"):
        return None
    schema: Any = _ANY_OBJECT
    if response_format["type"] == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema", True)
    try:
        value = SchemaValues(schema, rng, last_user_text(request.messages)).value()
    # As for a tool's parameters: a schema the simulated model cannot meet is a 400 (check).
    except (SchemaError, TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise ProviderError(
            "invalid_response_format", f"the response_format's schema cannot be met: {exc}"
        ) from None
    return json.dumps(value, ensure_ascii=False)
