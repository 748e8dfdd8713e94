"""Schemathesis's coverage phase against the shipped server: the boundary and invalid values of
every documented parameter and body field get no 5xx and no undocumented answer (the examples
and fuzzing phases are in test_openapi.py, on a server of their own, so the test workers run the
two side by side). The vendor APIs' bodies run in test_openapi_coverage_bodies.py, for the same
reason."""

from __future__ import annotations

import pytest
from openapi_server import API_BODIES, CONFORMANCE, SHIPPED, schemathesis, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from start_server(tmp_path_factory.mktemp("openapi-coverage"), SHIPPED)


@pytest.mark.timeout(300)  # about 60 s alone; the suite's other worker shares the machine
def test_schemathesis_coverage_finds_no_server_error_and_no_undocumented_response(server, tmp_path):
    result = schemathesis(server, tmp_path, CONFORMANCE, "coverage", skip=API_BODIES)

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "/api/chat/{chat_id}/stream" in result.stdout  # useChat's three operations were run
