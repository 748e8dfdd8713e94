"""streamserver as an OpenAI-compatible server, read by the real openai SDK (sync and async)."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest
from conftest import SCRIPTED, base_config, script, upstream_config

from streamserver.devtools.fake_upstream import Plan, PlannedCall


@pytest.fixture
async def base_url(serve) -> str:
    client = await serve(base_config(**SCRIPTED))
    return client.base_url + "/v1"


async def test_async_sdk_streams_the_exact_text(base_url):
    sdk = openai.AsyncOpenAI(base_url=base_url, api_key="unused")
    stream = await sdk.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "Hello,\r\nSDK 🙂 [DONE]"}], stream=True
    )
    chunks = [chunk async for chunk in stream]
    await sdk.close()

    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello,\r\nSDK 🙂 [DONE]"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert {c.id for c in chunks} == {chunks[0].id}
    assert all(c.object == "chat.completion.chunk" and c.model == "echo" for c in chunks)


async def test_async_sdk_gets_the_usage_chunk_when_asked(base_url):
    sdk = openai.AsyncOpenAI(base_url=base_url, api_key="unused")
    stream = await sdk.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "three tokens here"}], stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = [chunk async for chunk in stream]
    await sdk.close()

    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 3
    assert all(c.usage is None for c in chunks[:-1])


async def test_sync_sdk_non_streaming_gives_one_completion(base_url):
    # The sync client runs in a thread: the server shares this test's event loop.
    sdk = openai.OpenAI(base_url=base_url, api_key="unused")
    completion = await asyncio.to_thread(
        sdk.chat.completions.create,
        model="echo", messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "Echo me"}],
    )  # fmt: skip

    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Echo me"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens == 2


async def test_sync_sdk_streaming(base_url):
    def read() -> str:
        sdk = openai.OpenAI(base_url=base_url, api_key="unused")
        stream = sdk.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "sync works"}], stream=True
        )
        return "".join(c.choices[0].delta.content or "" for c in stream)

    assert await asyncio.to_thread(read) == "sync works"


async def test_max_tokens_gives_finish_reason_length(base_url):
    sdk = openai.AsyncOpenAI(base_url=base_url, api_key="unused")
    completion = await sdk.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "one two three four"}], max_tokens=2
    )
    await sdk.close()

    assert completion.choices[0].message.content == "one two"
    assert completion.choices[0].finish_reason == "length"


async def test_an_answer_that_ends_at_max_tokens_keeps_the_upstreams_finish_and_usage(
    serve, upstream
):
    # A text token, a call's start and its three fragments: five deltas, as asked. The upstream
    # stops there itself; the server's cap must not cut it first and report "length" with an
    # estimate in place of the upstream's own finish reason and usage.
    fake, url = upstream
    call = PlannedCall("call_1", "lookup", '{"q": "x"}')
    fake.queue(Plan(tokens=["Hi"], tool_calls=[call], arguments_cut=(3, 7), usage=(9, 5)))
    client = await serve(upstream_config(url))
    sdk = openai.AsyncOpenAI(base_url=client.base_url + "/v1", api_key="unused")
    stream = await sdk.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "x"}], stream=True,
        max_tokens=5, stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = [chunk async for chunk in stream]
    await sdk.close()

    fragments = [
        c.choices[0].delta.tool_calls[0].function.arguments
        for c in chunks
        if c.choices and c.choices[0].delta.tool_calls
    ]
    assert "".join(fragments) == '{"q": "x"}'
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (9, 5)
    assert fake.requests[-1].body["max_tokens"] == 5


async def test_a_delta_past_max_tokens_is_cut_with_length(serve):
    client = await serve(base_config(**SCRIPTED))
    sdk = openai.AsyncOpenAI(base_url=client.base_url + "/v1", api_key="unused")
    stream = await sdk.chat.completions.create(
        model="scripted", messages=[{"role": "user", "content": script(["a", "b", "c"])}],
        stream=True, max_tokens=2,
    )  # fmt: skip
    chunks = [chunk async for chunk in stream]
    await sdk.close()

    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "ab"
    assert chunks[-1].choices[0].finish_reason == "length"


async def test_an_unknown_model_raises_not_found(base_url):
    sdk = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        await sdk.chat.completions.create(
            model="gpt-nope", messages=[{"role": "user", "content": "x"}]
        )
    await sdk.close()

    assert caught.value.code == "model_not_found"


async def test_bad_messages_raise_bad_request(base_url):
    sdk = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError):
        await sdk.chat.completions.create(model="echo", messages=[])
    await sdk.close()


async def test_a_message_with_a_lone_surrogate_is_a_400(base_url):
    # The SDKs cannot even send one (they encode strictly); JSON can spell it: "\\ud83d".
    body = {"model": "echo", "messages": [{"role": "user", "content": "half an emoji \ud83d"}]}
    async with httpx.AsyncClient() as http:
        response = await http.post(
            base_url + "/chat/completions",
            content=json.dumps(body),
            headers={"Content-Type": "application/json"},
        )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_text"


async def test_a_request_without_messages_is_told_messages_are_required(base_url):
    async with httpx.AsyncClient() as http:
        response = await http.post(base_url + "/chat/completions", json={"model": "echo"})

    assert response.status_code == 400
    assert "'messages'" in response.json()["error"]["message"]
    assert "prompt" not in response.json()["error"]["message"]


async def test_an_unknown_parameter_raises_bad_request(base_url):
    sdk = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="frobnicate"):
        await sdk.chat.completions.create(
            model="echo",
            messages=[{"role": "user", "content": "x"}],
            extra_body={"frobnicate": True},
        )
    await sdk.close()


async def test_a_failure_mid_stream_raises_an_api_error_after_the_text_so_far(base_url):
    sdk = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0)
    stream = await sdk.chat.completions.create(
        model="scripted", messages=[{"role": "user", "content": script(["partial ", "text"], then="fail")}],
        stream=True,
    )  # fmt: skip
    text = []
    with pytest.raises(openai.APIError, match="scripted upstream failed"):
        async for chunk in stream:
            text.append(chunk.choices[0].delta.content or "")
    await sdk.close()

    assert "".join(text) == "partial text"


async def test_a_non_streaming_failure_is_an_error_response(base_url):
    sdk = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        await sdk.chat.completions.create(
            model="scripted", messages=[{"role": "user", "content": script(["x"], then="fail")}]
        )
    await sdk.close()

    assert caught.value.status_code == 502


async def test_a_non_streaming_upstream_rate_limit_is_a_429_with_its_retry_after(serve, upstream):
    fake, url = upstream
    fake.queue(Plan(fault="rate_limit", retry_after_s=7))
    client = await serve(upstream_config(url, max_retries=0))
    sdk = openai.AsyncOpenAI(base_url=client.base_url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.RateLimitError) as caught:
        await sdk.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "x"}]
        )
    await sdk.close()

    assert caught.value.status_code == 429
    assert caught.value.response.headers["Retry-After"] == "7"
    assert caught.value.code == "upstream_rate_limited"


async def test_cancelling_the_sdk_stream_closes_the_server_stream(serve):
    import streamserver
    from streamserver.web.keys import SERVICE

    app = streamserver.create_app(base_config(**SCRIPTED))
    client = await serve(app=app)
    provider = app[SERVICE].providers["scripted"]
    sdk = openai.AsyncOpenAI(base_url=client.base_url + "/v1", api_key="unused")
    stream = await sdk.chat.completions.create(
        model="scripted",
        messages=[{"role": "user", "content": script(["a"], then="hang")}],
        stream=True,
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    await stream.close()
    await sdk.close()

    for _ in range(100):
        if provider.closed:
            break
        await asyncio.sleep(0.01)
    assert provider.closed


async def test_a_refused_key_is_an_authentication_error_in_openai_shape(serve, monkeypatch):
    monkeypatch.setenv("STREAMSERVER_API_KEYS", "bob:sk-bob-9876543210")
    client = await serve(base_config(auth={"mode": "api_key"}, **SCRIPTED))
    sdk = openai.AsyncOpenAI(base_url=client.base_url + "/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        await sdk.chat.completions.create(model="echo", messages=[{"role": "user", "content": "x"}])
    models = await client.http.get("/v1/models")
    await sdk.close()

    assert caught.value.code == "unauthorized"
    assert caught.value.body["type"] == "invalid_request_error"  # OpenAI's shape, with a type
    assert models.status_code == 401
    assert set(models.json()["error"]) == {"message", "type", "param", "code"}
    assert "sk-wrong" not in str(caught.value)
