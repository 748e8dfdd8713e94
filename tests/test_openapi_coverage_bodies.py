"""Schemathesis's coverage phase on the vendor APIs' request bodies (Responses, Messages); the
stream and chat completion bodies are in test_openapi_coverage_chat.py and the rest in
test_openapi_coverage.py, each on a server of its own, so the test workers run them side by
side."""

from __future__ import annotations

import pytest
from openapi_server import SHIPPED, VENDOR_BODIES, assert_coverage, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from start_server(tmp_path_factory.mktemp("openapi-coverage-bodies"), SHIPPED)


@pytest.mark.timeout(300)  # a shared machine: well under it alone
def test_schemathesis_coverage_of_the_vendor_api_bodies_finds_no_server_error(server, tmp_path):
    assert_coverage(server, tmp_path, VENDOR_BODIES, 2)  # POST /v1/responses and /v1/messages
