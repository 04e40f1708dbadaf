"""Schema-driven fuzzing (schemathesis) of every operation in the app's own /openapi.json.

The app serves the tiny ONNX artifact with prefix and decode graphs, so streams and
explanations run for real. Each scoring operation gets valid bodies (POSITIVE) and
schema-violating ones (NEGATIVE): no answer may be a 5xx, every answer must be documented
in the schema with a body that conforms to it, and invalid bodies must be refused (4xx).
Hypothesis runs derandomized so CI failures replay; deeper runs: raise FUZZ_EXAMPLES.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from service_testkit import DOCS, LiveServer

from service.app import create_app
from service.settings import ServiceSettings

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "170"))  # per operation and mode: 3 x 2 x 170 = 1,020
SCORING = ["/v1/score", "/v1/rerank", "/v2/rerank"]
CHECKS = [  # not_a_server_error is asserted by hand: a 504 for the client's own timeout_ms is the contract
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]
statuses: Counter = Counter()  # every answer of the module, for the total asserted at the end
scoring_runs: set = set()  # (path, mode) fuzzed so far


def assert_no_server_error(case, response) -> None:
    """5xx only for a deadline the request itself set (504 deadline_exceeded, e.g. timeout_ms: 1)."""
    if response.status_code < 500:
        return
    asked = isinstance(case.body, dict) and isinstance(case.body.get("timeout_ms"), int)
    error_type = response.json().get("error", {}).get("type") if response.status_code == 504 else None
    assert asked and error_type == "deadline_exceeded", (
        f"{case.method} {case.path} answered {response.status_code}: {response.text[:500]}\nbody: {case.body!r}"
    )


@pytest.fixture(scope="module")
def fuzz_target(prefix_artifact_dir):
    """(schema, session, url): the app under uvicorn over the tiny ONNX graphs; small limits so that big
    inputs are refused fast. Real sockets rather than schemathesis' ASGI transport, whose pytest
    plugin ends an app's lifespan after every test."""
    app = create_app(
        ServiceSettings(
            model=prefix_artifact_dir,
            intra_op_threads=1,
            tokenize_workers=1,
            max_new_tokens=8,
            max_documents=64,
            max_document_chars=2000,
            max_request_bytes=64_000,
        )
    )
    with LiveServer(app) as server, requests.Session() as session:
        yield schemathesis.openapi.from_url(f"{server.url}/openapi.json"), session, server.url


def test_the_schema_describes_bodies_errors_and_events(artifact_dir):
    document = create_app(ServiceSettings(model=artifact_dir)).openapi()
    for path in SCORING:
        operation = document["paths"][path]["post"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert {"query", "documents"} <= set(body["required"]) and body["properties"]["documents"]["minItems"] == 1
        assert {"401", "413", "422", "429", "503", "504"} <= set(map(str, operation["responses"]))
    events = document["paths"]["/v1/score"]["post"]["responses"]["200"]["content"]["text/event-stream"]
    assert {e["properties"]["event"]["const"] for e in events["schema"]["oneOf"]} == {
        "score",
        "reasoning",
        "done",
        "error",
    }


def run_cases(schema, session, method: str, path: str, mode: GenerationMode, examples: int) -> Counter:
    seen: Counter = Counter()
    checks = CHECKS + ([schemathesis.checks.negative_data_rejection] if mode is GenerationMode.NEGATIVE else [])

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=schema[path][method].as_strategy(generation_mode=mode))
    def fuzz(case):
        response = case.call(session=session, timeout=30)
        assert_no_server_error(case, response)
        seen["504 asked" if response.status_code == 504 else response.status_code] += 1
        case.validate_response(response, checks=checks)

    fuzz()
    return seen


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
@pytest.mark.parametrize("path", SCORING)
def test_fuzzed_scoring_requests_get_no_5xx_and_conform(fuzz_target, path, mode):
    schema, session, url = fuzz_target
    seen = run_cases(schema, session, "POST", path, mode, FUZZ_EXAMPLES)
    statuses.update(seen)
    scoring_runs.add((path, mode))
    assert sum(seen.values()) >= FUZZ_EXAMPLES * 0.9, seen  # hypothesis did not give up early
    if mode is GenerationMode.POSITIVE:
        assert seen[200] >= sum(seen.values()) // 3, f"valid bodies were mostly refused: {seen}"
    else:
        assert all(isinstance(s, int) and 400 <= s < 500 for s in seen), seen
    still = session.post(f"{url}/v1/score", json={"query": "water bottle", "documents": DOCS[:2]})
    assert still.status_code == 200


@pytest.mark.parametrize("path", ["/health/live", "/health/ready", "/metrics", "/info"])
def test_fuzzed_read_endpoints_conform(fuzz_target, path):
    schema, session, _ = fuzz_target
    statuses.update(run_cases(schema, session, "GET", path, GenerationMode.POSITIVE, 5))


def test_the_fuzzing_sent_over_a_thousand_requests_and_no_5xx():
    if len(scoring_runs) < 2 * len(SCORING):
        pytest.skip("counts the answers of every fuzz test above: run them all")
    assert sum(statuses.values()) >= min(1000, 6 * FUZZ_EXAMPLES), statuses  # 1,000+ at the default
    assert not [s for s in statuses if isinstance(s, int) and s >= 500], statuses
