"""The ``openai`` SDK's ``responses.retrieve`` (the Response object, and ``stream=True`` with
``starting_after``) and ``responses.cancel`` against streamserver's ``/v1/responses/{id}``: a
response in progress, the same one completed, its events replayed after a sequence number with
nothing repeated and nothing lost, a cancel that stops the generation upstream, and 404s in
OpenAI's shape; and the same retrieve on a second instance sharing the stream through Redis."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from conftest import SCRIPTED, ServeFactory, base_config, script
from openai import AsyncOpenAI

import streamserver

from .conftest import ScriptedServer

WORDS = [f"w{i} " for i in range(30)]


async def _started(client: AsyncOpenAI, words: list[str], **kind: Any) -> tuple[Any, list[Any]]:
    """A streamed response and its first events, up to the first text delta."""
    stream = await client.responses.create(model="scripted", input=script(words, **kind),
                                           stream=True)  # fmt: skip
    events: list[Any] = []
    async for event in stream:
        events.append(event)
        if event.type == "response.output_text.delta":
            break
    return stream, events


async def test_retrieve_gives_the_response_in_progress_then_completed(serve: ServeFactory) -> None:
    app = streamserver.create_app(base_config(resume={"grace_s": 30}, **SCRIPTED))
    web = await serve(app=app)
    async with AsyncOpenAI(base_url=web.base_url + "/v1", api_key="k", max_retries=0) as client:
        stream, events = await _started(client, WORDS, gap_ms=20)
        response_id = events[0].response.id

        running = await client.responses.retrieve(response_id)
        assert (running.id, running.status) == (response_id, "in_progress")

        rest = [event async for event in stream]
        done = await client.responses.retrieve(response_id)
    assert rest[-1].type == "response.completed"
    assert done.status == "completed"
    assert done.output_text == "".join(WORDS)
    assert done.model_dump() == rest[-1].response.model_dump()


async def test_retrieve_stream_starting_after_replays_the_rest_exactly_once(
    serve: ServeFactory,
) -> None:
    app = streamserver.create_app(base_config(resume={"grace_s": 30}, **SCRIPTED))
    web = await serve(app=app)
    async with AsyncOpenAI(base_url=web.base_url + "/v1", api_key="k", max_retries=0) as client:
        stream, events = await _started(client, WORDS, gap_ms=5)
        await stream.close()  # cut mid-answer: the generation goes on for the grace period
        after = events[-1].sequence_number
        replay = await client.responses.retrieve(events[0].response.id, stream=True,
                                                 starting_after=after)  # fmt: skip
        rest = [event async for event in replay]
        whole = await client.responses.retrieve(events[0].response.id, stream=True)
        every = [event async for event in whole]

    seen = events + rest
    assert [event.sequence_number for event in seen] == list(range(len(seen)))
    text = [e.delta for e in seen if e.type == "response.output_text.delta"]
    assert "".join(text) == "".join(WORDS)
    assert seen[-1].type == "response.completed"
    assert [e.model_dump() for e in every] == [e.model_dump() for e in seen]


async def test_cancel_stops_the_generation_and_answers_the_cancelled_response(
    server: ScriptedServer, openai_client: AsyncOpenAI
) -> None:
    stream, events = await _started(openai_client, ["Before ", "the wait"], then="hang")
    cancelled = await openai_client.responses.cancel(events[0].response.id)
    rest = [event async for event in stream]

    assert cancelled.status == "cancelled"
    assert cancelled.id == events[0].response.id
    assert rest[-1].type == "response.incomplete"
    assert server.provider.closed
    with pytest.raises(openai.ConflictError):  # it has ended: nothing left to cancel
        await openai_client.responses.cancel(events[0].response.id)


@pytest.mark.parametrize("response_id", ["resp_st_unknown", "st_unknown", "msg_1"])
async def test_an_unknown_response_is_a_404_in_openais_shape(
    openai_client: AsyncOpenAI, response_id: str
) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        await openai_client.responses.retrieve(response_id)
    assert raised.value.code == "response_not_found"
    with pytest.raises(openai.NotFoundError):
        await openai_client.responses.cancel(response_id)


async def test_a_stream_of_another_route_is_not_a_response(
    server: ScriptedServer, openai_client: AsyncOpenAI
) -> None:
    chat = await openai_client.chat.completions.create(
        model="scripted", messages=[{"role": "user", "content": script(["hi"])}], stream=True
    )
    chunks = [chunk async for chunk in chat]
    stream_id = chunks[0].id.removeprefix("chatcmpl-")
    with pytest.raises(openai.NotFoundError):
        await openai_client.responses.retrieve("resp_" + stream_id)


async def test_retrieve_and_cancel_on_another_instance_through_redis(
    serve: ServeFactory, redis_url: str
) -> None:
    config = base_config(redis={"url": redis_url, "lease_s": 1},
                         resume={"store": "redis", "grace_s": 30, "retain_s": 30}, **SCRIPTED)  # fmt: skip
    owner = await serve(app=streamserver.create_app(config))
    other = await serve(app=streamserver.create_app(config))
    a = AsyncOpenAI(base_url=owner.base_url + "/v1", api_key="k", max_retries=0, timeout=10)
    b = AsyncOpenAI(base_url=other.base_url + "/v1", api_key="k", max_retries=0, timeout=10)
    async with a, b:
        stream, events = await _started(a, WORDS, gap_ms=5)
        await stream.close()
        replay = await b.responses.retrieve(events[0].response.id, stream=True,
                                            starting_after=events[-1].sequence_number)  # fmt: skip
        rest = [event async for event in replay]
        done = await b.responses.retrieve(events[0].response.id)

        _, hanging = await _started(a, ["Before ", "the wait"], then="hang")
        cancelled = await b.responses.cancel(hanging[0].response.id)

    seen = events + rest
    assert [event.sequence_number for event in seen] == list(range(len(seen)))
    assert "".join(e.delta for e in seen if e.type == "response.output_text.delta") == "".join(
        WORDS
    )
    assert done.status == "completed"
    assert done.output_text == "".join(WORDS)
    assert cancelled.status == "cancelled"


async def test_a_response_that_was_not_streamed_is_retrieved_whole_and_not_replayed(
    openai_client: AsyncOpenAI,
) -> None:
    made = await openai_client.responses.create(model="scripted", input=script(["One ", "two"]))
    got = await openai_client.responses.retrieve(made.id)

    assert (got.status, got.output_text) == ("completed", "One two")
    assert got.output_text == made.output_text
    with pytest.raises(openai.BadRequestError):
        await openai_client.responses.retrieve(made.id, stream=True)


async def test_a_response_in_progress_is_retrieved_with_its_output_as_far_as_it_has_formed(
    serve: ServeFactory,
) -> None:
    # Reasoning done, a message done, a call whose arguments are half written: retrieve shows
    # each as the events so far make it (the SDK parses every item), then the cancel ends it.
    app = streamserver.create_app(base_config(resume={"grace_s": 30}, **SCRIPTED))
    web = await serve(app=app)
    deltas = [{"reasoning": "thinking "}, {"reasoning": "hard"}, "Hello ", "world",
              {"tool": 0, "id": "call_1", "name": "f", "arguments": '{"a"'},
              {"tool": 0, "arguments": ": 1"}]  # fmt: skip
    async with AsyncOpenAI(base_url=web.base_url + "/v1", api_key="k", max_retries=0) as client:
        stream = await client.responses.create(
            model="scripted", input=script(deltas, then="hang"), stream=True
        )
        events = []
        async for event in stream:
            events.append(event)
            if event.type == "response.function_call_arguments.delta" and event.delta == ": 1":
                break
        running = await client.responses.retrieve(events[0].response.id)
        await client.responses.cancel(running.id)
        await stream.close()

    assert running.status == "in_progress"
    reasoning, message, call = running.output
    assert reasoning.type == "reasoning" and reasoning.summary[0].text == "thinking hard"
    assert message.type == "message" and message.content[0].text == "Hello world"
    assert (call.type, call.status, call.name) == ("function_call", "in_progress", "f")
    assert call.arguments == '{"a": 1'
