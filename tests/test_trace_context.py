"""A stream's trace context from the request's ``traceparent`` (W3C Trace Context)."""

from __future__ import annotations

import pytest

from streamserver.trace_context import stream_trace

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def test_a_valid_traceparent_makes_the_stream_a_child_of_the_callers_span():
    trace = stream_trace(f"00-{TRACE}-{SPAN}-01")

    assert (trace.trace_id, trace.parent_span_id, trace.sampled) == (TRACE, SPAN, True)
    assert trace.span_id not in (SPAN, "0" * 16)
    assert trace.traceparent == f"00-{TRACE}-{trace.span_id}-01"


def test_the_callers_unsampled_flag_is_kept_and_passed_on():
    trace = stream_trace(f"00-{TRACE}-{SPAN}-00")

    assert not trace.sampled
    assert trace.traceparent.endswith("-00")


def test_a_later_version_with_more_fields_is_read_for_the_four_it_shares():
    trace = stream_trace(f"01-{TRACE}-{SPAN}-09-what-comes-next")

    assert (trace.trace_id, trace.parent_span_id, trace.sampled) == (TRACE, SPAN, True)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        f"00-{'0' * 32}-{SPAN}-01",  # no trace
        f"00-{TRACE}-{'0' * 16}-01",  # no parent span
        f"ff-{TRACE}-{SPAN}-01",  # the forbidden version
        f"00-{TRACE}-{SPAN}-01-extra",  # version 00 has four fields
        f"00-{TRACE.upper()}-{SPAN}-01",  # ids are lowercase
        f"00-{TRACE[:-1]}-{SPAN}-01",
    ],
)
def test_no_or_an_invalid_traceparent_starts_a_new_sampled_trace(header):
    trace = stream_trace(header)

    assert trace.parent_span_id is None
    assert trace.sampled
    assert len(trace.trace_id) == 32 and trace.trace_id != TRACE
    assert len(trace.span_id) == 16
