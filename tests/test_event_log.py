"""The stream log on its own: what ``read`` and ``available`` answer is exactly a plain list's,
whatever mix of appends, readers, trimming and compression of retained events came before.

Transports and resume are tested over HTTP elsewhere; this is the log's own contract, driven
synchronously (appends, ``attach``/``advance``/``detach``, ``close``), against a list model.
"""

from __future__ import annotations

import asyncio
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamserver.event_log import StreamLog

EVENTS = st.binary(max_size=200) | st.sampled_from(
    [b"", b"data: x\n\n", "id: s:1\ndata: 🙂\r\n\n".encode(), b"\n\n\n", b"\x00" * 40]
)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), EVENTS),
        st.tuples(st.just("attach"), st.integers(0, 400)),
        st.tuples(st.just("advance"), st.integers(0, 400)),
        st.tuples(st.just("detach"), st.integers(0, 10)),
        st.tuples(st.just("close"), st.none()),
    ),
    max_size=400,
)


@settings(max_examples=300, deadline=None)
@given(
    ops=OPS,
    compress=st.booleans(),
    max_bytes=st.sampled_from([0, 0, 500, 3000]),
    filler=st.integers(0, 300),
)
def test_a_retained_log_reads_back_exactly_what_was_appended(
    ops: list[tuple[str, object]], compress: bool, max_bytes: int, filler: int
) -> None:
    log = StreamLog(10_000, retain=True, max_bytes=max_bytes, compress=compress)
    model: list[bytes] = []
    readers = []
    # Enough events first that compression and trimming both get going.
    ops = [("append", b"filler %d" % i) for i in range(filler)] + ops
    for op, arg in ops:
        if op == "append" and not log.closed:
            assert isinstance(arg, bytes)
            log.append(arg)
            model.append(arg)
        elif op == "attach":
            assert isinstance(arg, int)
            pos = oldest(log, len(model)) + arg % (len(model) + 1)
            readers.append(log.attach(min(pos, len(model))))
        elif op == "advance" and readers:
            assert isinstance(arg, int)
            reader = readers[arg % len(readers)]
            log.advance(reader, min(len(model), reader.pos + arg))
        elif op == "detach" and readers:
            assert isinstance(arg, int)
            log.detach(readers.pop(arg % len(readers)))
        elif op == "close":
            log.close()
        check(log, model, max_bytes)
    for reader in readers:  # every reader writes everything: a closed log archives its tail too
        log.advance(reader, len(model))
    log.close()
    for reader in readers:
        log.detach(reader)
        check(log, model, max_bytes)


def oldest(log: StreamLog, end: int) -> int:
    """The first position still kept: ``available`` must hold exactly from there on."""
    return next(pos for pos in range(end + 1) if log.available(pos))


def check(log: StreamLog, model: list[bytes], max_bytes: int) -> None:
    end = len(model)
    assert log.end == end
    first = oldest(log, end)
    assert all(log.available(pos) for pos in range(first, end + 1))
    assert first <= log.floor or first == 0  # an event a reader has not written is never dropped
    for pos in {first, (first + end) // 2, max(first, end - 1), end}:
        assert log.read(pos) == model[pos:]
    assert log.nbytes == sum(map(len, model[first:]))
    if max_bytes and log.nbytes > max_bytes:
        # Over budget only by events some reader still needs (above the floor).
        assert sum(map(len, model[first : log.floor])) <= 4 * 200 + 40 * 200


def test_retained_events_every_reader_has_written_are_kept_compressed() -> None:
    # A thousand token events as the production formatter writes them: ~136 bytes each as
    # objects in a list, a fraction of that compressed.
    def event(i: int) -> bytes:
        return (
            b'id: st_OehvW9nip7kkDCK4:%d\nevent: token\ndata: {"content": " word%d", "index": %d}\n\n'
            % (i, i % 97, i)
        )

    count = 1024
    size = {}
    for compress in (False, True):
        tracemalloc.start()
        log = StreamLog(10_000, retain=True, compress=compress)
        reader = log.attach(0)
        for i in range(count):
            log.append(event(i))  # made here, as the pipeline makes them: the log owns them
            log.advance(reader, log.end)
        size[compress] = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert log.read(0) == [event(i) for i in range(count)]
        assert log.read(1000) == [event(i) for i in range(1000, count)]
    assert size[False] > 120 * count
    assert size[True] < 40 * count


@settings(max_examples=100, deadline=None)
@given(
    before=st.lists(EVENTS, max_size=5),
    batches=st.lists(st.lists(EVENTS, max_size=6), max_size=8),
    stop_at=st.none() | st.integers(0, 8),
)
async def test_a_watcher_takes_every_event_once_in_order_with_no_task(
    before: list[bytes], batches: list[list[bytes]], stop_at: int | None
) -> None:
    # A store's mirror: it takes what the log held when it began, then each append as it
    # happens, beside a client that reads the ordinary way and one parked waiting (woken by
    # each batch's first append); it never holds the producer back, and hears of the close once,
    # unless it was stopped first.
    log = StreamLog(4, retain=True, compress=True)
    for item in before:
        log.append(item)
    client = log.attach(0)
    taken: list[bytes | str] = []
    closes: list[int] = []
    tasks = len(asyncio.all_tasks())
    watcher = log.watch(0, lambda item: taken.append(item) or True, lambda: closes.append(1))
    assert len(asyncio.all_tasks()) == tasks
    appended = list(before)
    for index, batch in enumerate(batches):
        if index == stop_at:
            log.unwatch(watcher)
        waiting = asyncio.ensure_future(log.wait(log.end))
        await asyncio.sleep(0)  # parked
        for item in batch:
            log.append(item)
            appended.append(item)
        if stop_at is None or index < stop_at:
            assert watcher.pos == log.end
        assert log.read(client.pos) == appended[client.pos :]
        log.advance(client, log.end)  # the client catches up: only it sets the floor
        assert not log.full
        if not batch:
            waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
    stopped = stop_at is not None and stop_at < len(batches)
    log.close()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    expected = appended[: len(before) + sum(map(len, batches[:stop_at]))] if stopped else appended
    assert taken == expected
    assert closes == ([] if stopped else [1])
    assert log.readers == 1  # the watcher never counted as a client, and has left
    assert watcher not in log._readers


async def test_a_watcher_of_a_closed_log_takes_it_all_and_hears_of_the_close() -> None:
    log = StreamLog(4, retain=False)
    log.append(b"a")
    log.close()
    taken: list[bytes | str] = []
    closes: list[int] = []
    log.watch(0, lambda item: taken.append(item) or True, lambda: closes.append(1))
    await asyncio.sleep(0)
    assert (taken, closes) == ([b"a"], [1])


@pytest.mark.parametrize("already_closed", [False, True])
async def test_a_watcher_unwatched_between_the_close_and_its_callback_hears_nothing(
    already_closed: bool,
) -> None:
    # The close wakes the watcher's future; its callback runs a loop step later. A store that
    # stops mirroring in between (the writer task's own step) must not hear of the close.
    log = StreamLog(4, retain=False)
    closes: list[int] = []
    if already_closed:
        log.close()
    watcher = log.watch(0, lambda item: True, lambda: closes.append(1))
    log.close()
    log.unwatch(watcher)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert closes == []
    assert watcher not in log._readers
