"""schemathesis against the endpoint's own OpenAPI description: no 5xx, and answers match the schema.

The endpoint is real (uvicorn on loopback); every operation gets a bounded number of generated cases.
(schemathesis' pytest plugin does not run under pytest 9, so the operations are driven through Hypothesis here.)
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from tests.fuzz.budget import LONG
from tests.fuzz.conftest import FuzzEndpoint

EXAMPLES = 400 if LONG else 25


def _is_stream(operation: Any) -> bool:
    responses = operation.definition.raw.get("responses", {})
    return any("text/event-stream" in (answer.get("content") or {}) for answer in responses.values())


def _fuzz(operation: Any, endpoint: FuzzEndpoint, auth: dict[str, str]) -> None:
    # The agent routes read their bodies themselves (size caps, gzip), so the OpenAPI description declares no
    # request body for them; "schema-valid" (empty) bodies are then rightly refused. Reported to the lead.
    undeclared_body = operation.method.upper() == "POST" and "requestBody" not in operation.definition.raw
    excluded = [checks.positive_data_acceptance] if undeclared_body else []

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    def check(case: Any) -> None:
        case.call_and_validate(
            base_url=endpoint.url, headers={**(case.headers or {}), **auth}, excluded_checks=excluded
        )

    check()


def test_no_server_errors_and_answers_conform(fuzz_endpoint: FuzzEndpoint) -> None:
    schema = schemathesis.openapi.from_dict(fuzz_endpoint.app.openapi())
    labels: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]
        labels.append(operation.label)
        if _is_stream(operation):
            continue  # an endless text/event-stream; tests/security covers its access control
        reader = operation.method.upper() == "GET" and operation.path != "/v1/policy"
        _fuzz(operation, fuzz_endpoint, fuzz_endpoint.api_auth if reader else fuzz_endpoint.device_auth)
    assert {"POST /v1/events", "POST /v1/enroll", "GET /v1/events"} <= set(labels), labels
