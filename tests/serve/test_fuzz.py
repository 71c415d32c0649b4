"""Schemathesis against our own OpenAPI spec: generated requests, valid and invalid, never get a 5xx.

Bounded: a few examples per operation and generation mode, so the module takes seconds on the tiny
pipeline. (Schemathesis' pytest plugin is not used: its lazy fixtures do not run on this pytest.)
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error, response_schema_conformance  # noqa: E402

EXAMPLES = 6


@pytest.fixture(scope="module")
def api_schema(open_url):
    return schemathesis.openapi.from_url(f"{open_url}/openapi.json")


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_generated_requests_get_no_server_error(api_schema, mode):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /v1/images/generations", "POST /v1/chat/completions"}
    checks = [not_a_server_error] + ([response_schema_conformance] if mode == GenerationMode.POSITIVE else [])
    if mode == GenerationMode.NEGATIVE:  # a GET without parameters has no invalid form
        operations = [op for op in operations if op.method.upper() == "POST"]
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)  # fmt: skip
        def call(case):
            case.call_and_validate(checks=checks, timeout=60)

        call()
