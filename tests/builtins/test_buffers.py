"""Each built-in buffer's boundaries, and the flush timer and size cap the core gives every buffer."""

from __future__ import annotations

import asyncio
import json

import pytest
from conftest import SCRIPTED, base_config, script
from hypothesis import given
from hypothesis import strategies as st

from streamserver.builtins.buffers import (
    DelimiterBuffer,
    DelimiterOptions,
    RawBuffer,
    SentenceBuffer,
    SentenceOptions,
    WordBuffer,
    WordOptions,
)
from streamserver.testing import assert_lossless_buffer


def segments(buffer, deltas: list[str]) -> list[str]:
    out: list[str] = []
    for delta in deltas:
        out.extend(buffer.push(delta))
    rest = buffer.flush()
    return [*out, rest] if rest else out


BUILT_IN = [
    (RawBuffer, None),
    (DelimiterBuffer, DelimiterOptions()),
    (WordBuffer, WordOptions()),
    (WordBuffer, WordOptions(min_words=3)),
    (SentenceBuffer, SentenceOptions()),
]


def all_buffers():
    return [factory(options) for factory, options in BUILT_IN]


@pytest.mark.parametrize(
    ("factory", "options"), BUILT_IN, ids=["raw", "delimiter", "word", "word-3", "sentence"]
)
def test_every_buffer_is_lossless_chunk_invariant_and_knows_what_it_holds(factory, options):
    assert_lossless_buffer(factory, options, pieces=[" \n\t", ".", "!", "?", "。", "Mr. ", "ab"])


def released(buffer, steps: list[str | None]) -> list[str]:
    """Drive ``buffer`` as the core does: a string is a delta, ``None`` a flush timer firing."""
    out: list[str] = []
    for step in steps:
        if step is None:
            text = buffer.release()
            out.extend([text] if text else [])
        else:
            out.extend(buffer.push(step))
    rest = buffer.flush()
    return [*out, rest] if rest else out


timer_steps = st.lists(
    st.one_of(st.none(), st.text(alphabet=" \n\t.!?ab。", max_size=8), st.text())
)


@given(timer_steps)
def test_a_timer_release_ends_at_whitespace_unless_it_empties_the_buffer(steps):
    for buffer in all_buffers():
        pushed = emitted = 0
        for step in steps:
            if step is not None:
                pushed += len(step)
                emitted += sum(len(s) for s in buffer.push(step))
                continue
            text = buffer.release()
            emitted += len(text)
            assert buffer.held == pushed - emitted
            if buffer.held:
                assert text == "" or text[-1].isspace(), (type(buffer).__name__, steps, text)


GRAPHEMES = [
    "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",  # a family: ZWJ sequence
    "\U0001f1eb\U0001f1f7",  # a flag: two regional indicators
    "e\u0301",  # e + combining acute
    "\U0001f44d\U0001f3fd",  # a thumbs up with a skin tone
    "\u0928\u093f",  # Devanagari consonant + vowel sign
]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["", " ", "word ", "Hi. ", "\n", "x"]), st.sampled_from(GRAPHEMES)
        ),
        min_size=1,
        max_size=12,
    )
)
def test_no_buffer_splits_a_grapheme_written_as_one_delta(pairs):
    deltas = [text for pair in pairs for text in pair]
    for buffer in all_buffers():
        out = segments(buffer, deltas)
        assert "".join(out) == "".join(deltas)
        # every grapheme delta lies whole inside one segment
        position = 0
        bounds = []
        for segment in out:
            bounds.append((position, position + len(segment)))
            position += len(segment)
        position = 0
        for delta in deltas:
            if delta in GRAPHEMES:
                assert any(a <= position and position + len(delta) <= b for a, b in bounds), (
                    type(buffer).__name__,
                    deltas,
                    out,
                )
            position += len(delta)


def test_raw_emits_every_delta_as_it_comes():
    assert segments(RawBuffer(None), ["Hel", "lo", " wor", "ld"]) == ["Hel", "lo", " wor", "ld"]


def test_delimiter_flushes_through_the_last_delimiter():
    buffer = DelimiterBuffer(DelimiterOptions())
    assert list(buffer.push("One. Two")) == ["One. "]
    assert list(buffer.push("! Three? Fo")) == ["Two! Three? "]
    assert buffer.flush() == "Fo"


def test_delimiter_found_across_deltas():
    buffer = DelimiterBuffer(DelimiterOptions())
    assert list(buffer.push("Hi.")) == []
    assert list(buffer.push(" there")) == ["Hi. "]


def test_delimiter_uses_configured_strings():
    buffer = DelimiterBuffer(DelimiterOptions(flush_on=(";", "||")))
    assert segments(buffer, ["a; b|", "|c. d"]) == ["a;", " b||", "c. d"]


def test_word_holds_the_trailing_partial_word():
    buffer = WordBuffer(WordOptions())
    assert list(buffer.push("Hel")) == []
    assert list(buffer.push("lo wor")) == ["Hello "]
    assert buffer.held == 3
    assert list(buffer.push("ld\n")) == ["world\n"]


def test_word_waits_for_min_words():
    buffer = WordBuffer(WordOptions(min_words=3))
    assert list(buffer.push("one two ")) == []
    assert list(buffer.push("three four")) == ["one two three "]


def test_word_keeps_leading_and_repeated_whitespace():
    assert (
        "".join(segments(WordBuffer(WordOptions()), ["  a  ", "\t b\r\n", "c"])) == "  a  \t b\r\nc"
    )


@pytest.mark.parametrize(
    ("deltas", "expected"),
    [
        (["Hello world. How are", " you? Fine"], ["Hello world. ", "How are you? ", "Fine"]),
        (["Pi is 3.14 today. Next"], ["Pi is 3.14 today. ", "Next"]),
        (["Ask Mr. Smith, e.g. him. Then"], ["Ask Mr. Smith, e.g. him. ", "Then"]),
        (["Wait… what?! Yes"], ["Wait… ", "what?! ", "Yes"]),
        (['He said "stop." Then'], ['He said "stop." ', "Then"]),
        (["你好。再见！好"], ["你好。", "再见！", "好"]),
        (["1. First item\n2. Second"], ["1. First item\n", "2. Second"]),
        (["J. R. R. Tolkien wrote. Yes"], ["J. R. R. Tolkien wrote. ", "Yes"]),
        (["The end."], ["The end."]),
    ],
)
def test_sentence_boundaries(deltas, expected):
    assert segments(SentenceBuffer(SentenceOptions()), deltas) == expected


def test_sentence_end_needs_the_whitespace_that_follows():
    buffer = SentenceBuffer(SentenceOptions())
    assert list(buffer.push("Done.")) == []
    assert list(buffer.push(" Next")) == ["Done. "]


def test_sentence_abbreviations_are_configurable():
    buffer = SentenceBuffer(SentenceOptions(abbreviations=("approx",)))
    assert segments(buffer, ["It is approx. ten. Ok"]) == ["It is approx. ten. ", "Ok"]


def test_sentence_newline_ending_can_be_switched_off():
    buffer = SentenceBuffer(SentenceOptions(newline_ends=False))
    assert segments(buffer, ["one\ntwo. three"]) == ["one\ntwo. ", "three"]


def test_timer_release_keeps_the_word_in_progress():
    buffer = SentenceBuffer(SentenceOptions())
    buffer.push("Each part can be repl")

    assert buffer.release() == "Each part can be "
    assert buffer.held == len("repl")


def test_timer_release_gives_up_a_word_with_no_boundary_whole():
    buffer = WordBuffer(WordOptions())
    buffer.push("Donaudampfschifffahrt")

    assert buffer.release() == "Donaudampfschifffahrt"
    assert buffer.held == 0


def test_timer_release_of_a_word_buffer_ignores_min_words():
    buffer = WordBuffer(WordOptions(min_words=3))
    buffer.push("one two thr")

    assert buffer.release() == "one two "


async def read_until_text(client, params, want: str, within: float) -> tuple[str, float]:
    """Stream /v1/stream and return the text seen once it contains ``want``, and when."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    text = ""
    async with asyncio.timeout(within):
        async with client.http.stream("GET", "/v1/stream", params=params) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: ") and '"content"' in line:
                    text += json.loads(line[6:])["content"]
                    if want in text:
                        return text, loop.time() - started
    return text, loop.time() - started


async def test_flush_timer_releases_a_held_partial_word(serve):
    client = await serve(base_config(buffers={"word": {"max_delay_ms": 50}}, **SCRIPTED))
    params = {"prompt": script(["hello wor"], then="hang"), "model": "scripted", "buffer": "word"}

    text, elapsed = await read_until_text(client, params, "wor", within=2)

    assert text == "hello wor"
    assert 0.04 <= elapsed < 1.0


async def read_segments(client, params, want: str, within: float) -> list[str]:
    """Stream /v1/stream and return its token segments once their text contains ``want``."""
    contents: list[str] = []
    async with asyncio.timeout(within):
        async with client.http.stream("GET", "/v1/stream", params=params) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: ") and '"content"' in line:
                    contents.append(json.loads(line[6:])["content"])
                    if want in "".join(contents):
                        return contents
    return contents


async def test_flush_timer_does_not_cut_the_word_the_next_delta_completes(serve):
    # The timer fires between the two deltas (at 200 of the 300 ms gap): the sentence is not
    # complete, so it releases the whole words and keeps "repl" for the next delta.
    client = await serve(base_config(buffers={"sentence": {"max_delay_ms": 200}}, **SCRIPTED))
    deltas = ["Each part can be repl", "aced by a plugin. "]
    params = {"prompt": script(deltas, gap_ms=300), "model": "scripted", "buffer": "sentence"}

    got = await read_segments(client, params, "plugin. ", within=5)

    assert got == ["Each part can be ", "replaced by a plugin. "]


async def test_flush_timer_releases_the_word_in_progress_one_period_later(serve):
    client = await serve(base_config(buffers={"sentence": {"max_delay_ms": 50}}, **SCRIPTED))
    params = {
        "prompt": script(["Each part can be repl"], then="hang"),
        "model": "scripted",
        "buffer": "sentence",
    }

    got = await read_segments(client, params, "repl", within=2)

    assert got == ["Each part can be ", "repl"]


async def test_max_chars_releases_through_the_last_word(serve):
    client = await serve(
        base_config(buffers={"sentence": {"max_chars": 10, "max_delay_ms": 0}}, **SCRIPTED)
    )
    params = {
        "prompt": script(["one two three fo"], then="hang"),
        "model": "scripted",
        "buffer": "sentence",
    }

    got = await read_segments(client, params, "three ", within=2)

    assert got == ["one two three "]


async def test_flush_timer_off_holds_the_partial_word(serve):
    client = await serve(base_config(buffers={"word": {"max_delay_ms": 0}}, **SCRIPTED))
    params = {"prompt": script(["hello wor"], then="hang"), "model": "scripted", "buffer": "word"}

    with pytest.raises(TimeoutError):
        await read_until_text(client, params, "wor", within=0.3)


async def test_max_chars_flushes_a_long_held_run(serve):
    client = await serve(
        base_config(buffers={"sentence": {"max_chars": 10, "max_delay_ms": 0}}, **SCRIPTED)
    )
    params = {
        "prompt": script(["abcdefghijkl", "mn"], then="hang"),
        "model": "scripted",
        "buffer": "sentence",
    }

    text, _ = await read_until_text(client, params, "abcdefghijkl", within=2)

    assert text == "abcdefghijkl"


async def test_buffer_is_flushed_when_the_provider_fails(serve):
    client = await serve(base_config(**SCRIPTED))
    got = await client.sse(
        "/v1/stream",
        params={
            "prompt": script(["Half a sen", "tence"], then="fail"),
            "model": "scripted",
            "buffer": "sentence",
        },
    )

    assert [e.event for e in got.events] == ["stream_start", "token", "error", "stream_end"]
    assert json.loads(got.events[1].data)["content"] == "Half a sentence"
