"""The API against its own OpenAPI document: generated requests never get a 5xx, and every
answer conforms to the documented status codes, content types and schemas.

Cases come from schemathesis strategies driven by plain Hypothesis (one test per operation),
so the test needs no pytest plugin.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.test_serve_common import serve, world_of

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
OPERATIONS = [
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("POST", "/v1/platforms/{platform}/events"),
    ("GET", "/v1/platforms/{platform}/accounts/{account}/recommendations"),
    ("GET", "/v1/platforms/{platform}/accounts/{account}/links"),
    ("GET", "/v1/platforms/{platform}/accounts/{account}/similar"),
    ("GET", "/v1/platforms/{platform}/accounts/{account}/profile"),
    ("DELETE", "/v1/platforms/{platform}/accounts/{account}"),
    ("GET", "/v1/explorer/summary"),
    ("GET", "/v1/explorer/signals"),
    ("GET", "/v1/explorer/platforms/{platform}/accounts/{account}"),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    world = world_of(tmp_path_factory)
    with serve(world, tmp_path_factory.mktemp("schemathesis") / "ws") as s:
        yield s


@pytest.fixture(scope="module")
def api(served):
    return schemathesis.openapi.from_asgi("/openapi.json", served.client.app)


def test_every_documented_operation_is_exercised(api):
    found = {(op.ok().method.upper(), op.ok().path) for op in api.get_all_operations()}
    assert found == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_generated_requests_conform(api, served, method, path):
    operation = api[path][method]

    @given(case=operation.as_strategy())
    @settings(
        max_examples=15,
        deadline=None,
        derandomize=True,  # the same cases every run
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def check(case):
        case.call_and_validate(headers=served.auth(), checks=CHECKS)

    check()
