"""Every refusal is the right status with a JSON error, and the service keeps working after it."""

from __future__ import annotations

import json
import threading
import time

import pytest
from service_testkit import DOCS

GOOD = {"query": "water bottle", "documents": DOCS[:3]}


def assert_error(r, status: int, type_: str, *words: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert err["type"] == type_ and set(r.json()) == {"error"}
    for w in words:
        assert w in err["message"], err["message"]
    return err


def assert_still_serving(client) -> None:
    r = client.post("/v1/score", json=GOOD)
    assert r.status_code == 200, r.text
    assert len(r.json()["results"]) == 3


@pytest.mark.parametrize(
    "payload, words",
    [
        ({"documents": ["a"]}, ["query", "required"]),
        ({"query": "", "documents": ["a"]}, ["query"]),
        ({"query": "   ", "documents": ["a"]}, ["query", "non-empty"]),
        ({"query": 5, "documents": ["a"]}, ["query", "string"]),
        ({"query": "q"}, ["documents", "required"]),
        ({"query": "q", "documents": []}, ["documents", "at least one"]),
        ({"query": "q", "documents": "a single string"}, ["documents", "list"]),
        ({"query": "q", "documents": {"text": "a"}}, ["documents", "list"]),
        ({"query": "q", "documents": ["ok", 5]}, ["documents", "item 1", "a number"]),
        ({"query": "q", "documents": ["ok", None]}, ["documents", "item 1", "null"]),
        ({"query": "q", "documents": [{"id": "x"}]}, ["documents", "item 0", "text"]),
        ({"query": "q", "documents": [{"text": "a", "id": 7}]}, ["documents", "item 0", "id"]),
        ({"query": "q", "documents": ["a"], "top_n": 0}, ["top_n"]),
        ({"query": "q", "documents": ["a"], "top_n": "3"}, ["top_n"]),
        ({"query": "q", "documents": ["a"], "timeout_ms": -1}, ["timeout_ms"]),
        ({"query": "q", "documents": ["a"], "stream": "yes"}, ["stream"]),
        ({"query": "q", "documents": ["a"], "reasoning": True}, ["reasoning", "no decode graph"]),
        ({"query": "q", "documents": ["a"], "reasoning": {"top_k": 2}}, ["reasoning", "no decode graph"]),
        ({"query": "q", "documents": ["a"], "reasoning": {"top_k": 0}}, ["reasoning"]),
        ({"query": "q", "documents": ["a"], "stream": True, "reasoning": True}, ["reasoning", "no decode graph"]),
        ([1, 2], ["body"]),
    ],
)
def test_malformed_input_is_422_naming_the_field(shared, payload, words):
    client, _ = shared
    assert_error(client.post("/v1/score", json=payload), 422, "invalid_request", *words)
    assert_still_serving(client)


@pytest.mark.parametrize("raw", [b"{not json", b"", b'{"query": "q", "documents": ["a"]', "\xff".encode("latin-1")])
def test_invalid_json_is_422(shared, raw):
    client, _ = shared
    r = client.post("/v1/score", content=raw, headers={"content-type": "application/json"})
    assert_error(r, 422, "invalid_request", "body")
    assert_still_serving(client)


def test_reasoning_and_stream_false_are_accepted(shared):
    client, _ = shared
    r = client.post("/v1/score", json={**GOOD, "reasoning": False, "stream": False, "unknown_field": 1})
    assert r.status_code == 200, r.text


def test_too_many_documents_is_413(shared):
    client, _ = shared
    r = client.post("/v1/score", json={"query": "q", "documents": ["doc"] * 10_000})
    assert_error(r, 413, "payload_too_large", "10000 documents", "1000")
    assert_still_serving(client)


def test_document_over_max_chars_is_413(shared):
    client, _ = shared
    r = client.post("/v1/score", json={"query": "q", "documents": ["ok", "x" * 1_000_000]})
    assert_error(r, 413, "payload_too_large", "documents[1]", "100000")
    assert_still_serving(client)


def test_body_over_max_request_bytes_is_413_from_content_length(shared):
    client, _ = shared
    big = json.dumps({"query": "q", "documents": ["word " * 10_000] * 100}).encode()  # ~5 MB
    assert len(big) > 4 * 1024 * 1024
    r = client.post("/v1/score", content=big, headers={"content-type": "application/json"})
    assert_error(r, 413, "payload_too_large", "bytes")
    assert_still_serving(client)


def test_chunked_body_over_max_request_bytes_is_413_while_reading(make_client):
    client, _ = make_client(max_request_bytes=10_000)

    def chunks():
        yield b'{"query": "q", "documents": ["'
        for _ in range(50):
            yield b"x" * 1000
        yield b'"]}'

    r = client.post("/v1/score", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert_error(r, 413, "payload_too_large", "10000 bytes")
    assert_still_serving(client)


def test_backend_failure_is_generic_500_and_next_request_ok(make_client):
    client, backend = make_client()
    backend.fail = True
    r = client.post("/v1/score", json=GOOD)
    err = assert_error(r, 500, "internal_error")
    assert "secret" not in r.text and "Traceback" not in r.text and "RuntimeError" not in err["message"]
    backend.fail = False
    assert_still_serving(client)


def test_unexpected_error_outside_scoring_is_generic_500(make_client, monkeypatch):
    client, _ = make_client(raise_server_exceptions=False)
    runtime = client.app.state.runtime
    monkeypatch.setattr(runtime.metrics, "render", lambda: (_ for _ in ()).throw(ValueError("secret detail")))
    r = client.get("/metrics")
    assert_error(r, 500, "internal_error")
    assert "secret" not in r.text


def test_queue_full_is_429_with_retry_after(make_client):
    client, backend = make_client(max_queue=1)
    backend.gate, backend.entered = threading.Event(), threading.Event()
    first: dict = {}
    worker = threading.Thread(target=lambda: first.update(r=client.post("/v1/score", json=GOOD)))
    worker.start()
    try:
        assert backend.entered.wait(5)
        r = client.post("/v1/score", json=GOOD)
        assert_error(r, 429, "queue_full", "busy")
        assert int(r.headers["retry-after"]) >= 1
        assert "afrl_queue_depth 1.0" in client.get("/metrics").text
    finally:
        backend.gate.set()
        worker.join(10)
    assert first["r"].status_code == 200
    assert "afrl_queue_depth 0.0" in client.get("/metrics").text
    assert_still_serving(client)


def test_deadline_passed_before_compute_is_504_and_skips_the_model(make_client):
    client, backend = make_client()
    backend.gate, backend.entered = threading.Event(), threading.Event()
    backend.reset()
    results: dict = {}
    blocker = threading.Thread(target=lambda: results.update(a=client.post("/v1/score", json=GOOD)))
    blocker.start()
    assert backend.entered.wait(5)
    late = threading.Thread(target=lambda: results.update(b=client.post("/v1/score", json={**GOOD, "timeout_ms": 50})))
    late.start()
    for _ in range(500):  # the late request waits behind the blocked one...
        if "afrl_queue_depth 2.0" in client.get("/metrics").text:
            break
        time.sleep(0.01)
    time.sleep(0.2)  # ...until its deadline passes
    backend.gate.set()
    blocker.join(10)
    late.join(10)
    assert results["a"].status_code == 200
    assert_error(results["b"], 504, "deadline_exceeded", "50 ms")
    assert len(backend.calls) == 1, "the expired request must never reach the model"
    assert_still_serving(client)


def test_rejections_are_counted_by_reason(make_client):
    client, _ = make_client()
    client.post("/v1/score", json={"query": "q", "documents": []})
    client.post("/v1/score", json={"query": "q", "documents": ["doc"] * 1001})
    text = client.get("/metrics").text
    assert 'afrl_requests_rejected_total{reason="invalid_request"} 1.0' in text
    assert 'afrl_requests_rejected_total{reason="too_many_documents"} 1.0' in text
    assert 'afrl_request_duration_seconds_count{endpoint="/v1/score",status="422"} 1.0' in text


def test_unknown_route_is_json_404(shared):
    client, _ = shared
    assert_error(client.get("/v1/nope"), 404, "not_found")
    assert_error(client.get("/v1/score"), 405, "method_not_allowed")
