"""The fake upstream speaks the real wire formats: the real ``openai`` and ``anthropic`` SDKs, and
their own stream accumulators, rebuild exactly the reasoning, text and tool calls a plan holds."""

from __future__ import annotations

import asyncio
import json

import anthropic
import httpx
import openai
import pytest

from streamserver.devtools.fake_upstream import Plan, PlannedCall

WEATHER = PlannedCall("call_weather", "get_weather", '{"city": "Paris", "unit": "C"}')
TIME = PlannedCall("call_time", "get_time", '{"zone": "Europe/Paris"}')
TOOLS = [
    {"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
    for n in ("get_weather", "get_time")
]
HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture
async def openai_client(upstream):
    _fake, url = upstream
    client = openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0)
    yield client
    await client.close()


@pytest.fixture
async def anthropic_client(upstream):
    _fake, url = upstream
    client = anthropic.AsyncAnthropic(
        base_url=url.removesuffix("/v1"), api_key="unused", max_retries=0
    )
    yield client
    await client.close()


async def openai_parts(client, **request):
    """Reasoning, text, refusal, calls by index, finish reason and usage, as the SDK's chunks say."""
    reasoning, text, refusal, calls = "", "", "", {}
    finish = usage = None
    stream = await client.chat.completions.create(
        model="fake-model", messages=HELLO, stream=True,
        stream_options={"include_usage": True}, **request,
    )  # fmt: skip
    async for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            delta = choice.delta
            extra = delta.model_extra or {}
            reasoning += extra.get("reasoning_content") or extra.get("reasoning") or ""
            text += delta.content or ""
            refusal += delta.refusal or ""
            for call in delta.tool_calls or ():
                entry = calls.setdefault(call.index, {"id": None, "name": "", "arguments": ""})
                entry["id"] = entry["id"] or call.id
                entry["name"] += call.function.name or ""
                entry["arguments"] += call.function.arguments or ""
            finish = choice.finish_reason or finish
    rebuilt = [PlannedCall(c["id"], c["name"], c["arguments"]) for _, c in sorted(calls.items())]
    return reasoning, text, refusal, rebuilt, finish, usage


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
async def test_openai_sdk_reads_reasoning_text_and_parallel_calls(upstream, openai_client, field):
    fake, _url = upstream
    fake.queue(Plan(reasoning=["Let me ", "think."], reasoning_field=field,
                    tokens=["Checking", " both."], tool_calls=[WEATHER, TIME], arguments_cut=5))  # fmt: skip
    reasoning, text, refusal, calls, finish, usage = await openai_parts(openai_client, tools=TOOLS)

    assert reasoning == "Let me think."
    assert text == "Checking both."
    assert refusal == ""
    assert calls == [WEATHER, TIME]
    assert finish == "tool_calls"
    assert usage.prompt_tokens == 5
    assert usage.completion_tokens_details.reasoning_tokens == 2


async def test_openai_first_call_chunk_carries_id_type_name_and_empty_arguments(upstream):
    fake, url = upstream
    fake.queue(Plan(tokens=[], tool_calls=[WEATHER, TIME], arguments_cut=100))
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{url}/chat/completions", json={"model": "m", "stream": True})
    deltas = [
        json.loads(line[6:])["choices"][0]["delta"]
        for line in response.text.splitlines()
        if line.startswith("data: {")
    ]
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]

    assert calls == [
        {"index": 0, "id": "call_weather", "type": "function",
         "function": {"name": "get_weather", "arguments": ""}},
        {"index": 0, "function": {"arguments": WEATHER.arguments}},
        {"index": 1, "id": "call_time", "type": "function",
         "function": {"name": "get_time", "arguments": ""}},
        {"index": 1, "function": {"arguments": TIME.arguments}},
    ]  # fmt: skip


async def test_openai_stream_helper_accumulates_the_planned_message(upstream, openai_client):
    fake, _url = upstream
    fake.queue(Plan(reasoning=["hmm"], tokens=["Sure", "."], tool_calls=[WEATHER], calls_after=1,
                    arguments_cut=(1, 7, 20)))  # fmt: skip
    async with openai_client.chat.completions.stream(
        model="fake-model", messages=HELLO, tools=TOOLS
    ) as stream:
        final = await stream.get_final_completion()
    message = final.choices[0].message

    assert message.content == "Sure."
    assert message.model_extra["reasoning_content"] == "hmm"
    assert [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls] == [
        (WEATHER.id, WEATHER.name, WEATHER.arguments)
    ]
    assert final.choices[0].finish_reason == "tool_calls"


async def test_openai_stream_helper_reads_a_refusal(upstream, openai_client):
    fake, _url = upstream
    fake.queue(Plan(refusal=["I can't ", "help with that."]))
    async with openai_client.chat.completions.stream(model="fake-model", messages=HELLO) as stream:
        final = await stream.get_final_completion()

    assert final.choices[0].message.refusal == "I can't help with that."
    assert not final.choices[0].message.content


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
async def test_openai_non_streamed_answer_holds_the_whole_message(upstream, openai_client, field):
    fake, _url = upstream
    fake.queue(Plan(reasoning=["a", "b"], reasoning_field=field, tokens=[],
                    tool_calls=[WEATHER, TIME]))  # fmt: skip
    completion = await openai_client.chat.completions.create(model="fake-model", messages=HELLO)
    message = completion.choices[0].message

    assert message.content is None
    assert message.model_extra[field] == "ab"
    assert [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls] == [
        (c.id, c.name, c.arguments) for c in (WEATHER, TIME)
    ]
    assert completion.choices[0].finish_reason == "tool_calls"


async def test_arguments_cut_at_every_character_reach_the_sdk_whole(upstream, openai_client):
    fake, _url = upstream
    arguments = '{"q": "é\\"x"}'
    call = PlannedCall("call_1", "search", arguments)
    for position in range(1, len(arguments)):
        fake.queue(Plan(tool_calls=[call], arguments_cut=(position,), packed=position % 2 == 0))
        *_, calls, _finish, _usage = await openai_parts(openai_client)
        assert calls == [call], position


async def test_a_whole_json_answer_to_a_streaming_request(upstream):
    fake, url = upstream
    fake.queue(Plan(tokens=[], tool_calls=[WEATHER], whole_json=True))
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{url}/chat/completions", json={"model": "m", "stream": True})

    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["choices"][0]["message"]["tool_calls"][0]["function"] == {
        "name": WEATHER.name,
        "arguments": WEATHER.arguments,
    }


async def test_anthropic_sdk_stream_accumulates_thinking_text_and_tool_use(
    upstream, anthropic_client
):
    fake, _url = upstream
    fake.queue(Plan(reasoning=["Let me ", "think."], tokens=["Checking", " both."],
                    tool_calls=[WEATHER, TIME], arguments_cut=3, usage=(7, 42)))  # fmt: skip
    async with anthropic_client.messages.stream(
        model="claude-test", max_tokens=100, messages=HELLO
    ) as stream:
        texts = [text async for text in stream.text_stream]
        message = await stream.get_final_message()

    thinking, text, *uses = message.content
    assert (thinking.type, thinking.thinking, bool(thinking.signature)) == (
        "thinking",
        "Let me think.",
        True,
    )
    assert (text.type, text.text, "".join(texts)) == ("text", "Checking both.", "Checking both.")
    assert [(u.type, u.id, u.name, u.input) for u in uses] == [
        ("tool_use", c.id, c.name, json.loads(c.arguments)) for c in (WEATHER, TIME)
    ]
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (7, 42)


async def test_anthropic_text_after_a_tool_call_is_its_own_block(upstream, anthropic_client):
    fake, _url = upstream
    fake.queue(Plan(tokens=["before", " after"], tool_calls=[WEATHER], calls_after=1,
                    packed=True))  # fmt: skip
    async with anthropic_client.messages.stream(
        model="claude-test", max_tokens=100, messages=HELLO
    ) as stream:
        message = await stream.get_final_message()

    assert [(b.type, getattr(b, "text", None)) for b in message.content] == [
        ("text", "before"),
        ("tool_use", None),
        ("text", " after"),
    ]


async def test_anthropic_non_streamed_message_holds_the_blocks(upstream, anthropic_client):
    fake, _url = upstream
    fake.queue(Plan(reasoning=["hmm"], tokens=["Hi"], tool_calls=[WEATHER]))
    message = await anthropic_client.messages.create(
        model="claude-test", max_tokens=100, messages=HELLO
    )

    assert [b.type for b in message.content] == ["thinking", "text", "tool_use"]
    assert message.content[0].thinking == "hmm"
    assert message.content[2].input == json.loads(WEATHER.arguments)
    assert message.stop_reason == "tool_use"


async def test_anthropic_refusal_stops_with_refusal(upstream, anthropic_client):
    fake, _url = upstream
    fake.queue(Plan(refusal=["No."]))
    async with anthropic_client.messages.stream(
        model="claude-test", max_tokens=100, messages=HELLO
    ) as stream:
        message = await stream.get_final_message()

    assert message.stop_reason == "refusal"
    assert message.content[0].text == "No."


async def http_chunks(url: str, path: str, body: dict) -> list[bytes]:
    """The response's HTTP chunks (one per network write of the server), read off the socket."""
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    payload = json.dumps(body).encode()
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
        + payload
    )
    raw = await reader.read()
    writer.close()
    body_bytes = raw.split(b"\r\n\r\n", 1)[1]
    chunks = []
    while True:
        size_line, body_bytes = body_bytes.split(b"\r\n", 1)
        size = int(size_line, 16)
        if size == 0:
            return chunks
        chunks.append(body_bytes[:size])
        body_bytes = body_bytes[size + 2 :]


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/chat/completions", {"model": "m", "stream": True}),
    ("/v1/messages", {"model": "m", "stream": True, "max_tokens": 50}),
])  # fmt: skip
async def test_packed_sends_the_whole_answer_in_one_write(upstream, path, body):
    fake, url = upstream
    plan = Plan(reasoning=["r"], tokens=["a", "b", "c"], tool_calls=[WEATHER], arguments_cut=4)
    fake.queue(plan, Plan(**{**plan.__dict__, "packed": True}))
    one_by_one = await http_chunks(url, path, body)
    packed = await http_chunks(url, path, body)

    assert len(one_by_one) > 10
    assert len(packed) == 1
    assert packed[0].count(b"\n\n") == b"".join(one_by_one).count(b"\n\n")  # the same events


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/chat/completions", {"model": "m", "stream": True}),
    ("/v1/messages", {"model": "m", "stream": True, "max_tokens": 50}),
])  # fmt: skip
async def test_a_drop_counts_every_kind_of_delta_sent_before_it(upstream, path, body):
    fake, url = upstream
    fake.queue(Plan(reasoning=["r1", "r2"], tokens=["t"], tool_calls=[WEATHER], arguments_cut=4,
                    fault="drop", after_tokens=4, packed=True))  # fmt: skip
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.HTTPError):
            async with http.stream("POST", f"{url.removesuffix('/v1')}{path}", json=body) as r:
                async for _ in r.aiter_bytes():
                    pass

    assert fake.streams[0].tokens_sent == 4  # two reasoning, one text, the call's start
