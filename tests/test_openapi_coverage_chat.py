"""Schemathesis's coverage phase on ``POST /v1/stream`` and ``/v1/chat/completions`` (the largest
request bodies; the vendor APIs' are in test_openapi_coverage_bodies.py, the rest in
test_openapi_coverage.py, each on a server of its own)."""

from __future__ import annotations

import pytest
from openapi_server import CHAT_BODIES, SHIPPED, assert_coverage, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from start_server(tmp_path_factory.mktemp("openapi-coverage-chat"), SHIPPED)


@pytest.mark.timeout(300)  # a shared machine: well under it alone
def test_schemathesis_coverage_of_the_chat_bodies_finds_no_server_error(server, tmp_path):
    assert_coverage(
        server, tmp_path, CHAT_BODIES, 3
    )  # GET and POST /v1/stream, /v1/chat/completions
