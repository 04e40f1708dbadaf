"""The engine's shared work: the guideline cache, passes shared across requests, batched explanation
decoding, and the result cache, over the tiny ONNX graphs of the afrl/graphs.py contract.

`ExtendingBackend` is the gated onnxruntime backend with the `extend_cache` capability the production
backend has (the plain GatedBackend lacks it, so the other tests run the path without the guideline cache).
tests/service/test_service_engine_tiny_qwen3.py checks the same on a real (tiny, random) Qwen3.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack

import numpy as np
import pytest
from fastapi.testclient import TestClient
from service_testkit import (
    CHAIN_TEXT,
    DOCS,
    ExtendingBackend,
    GatedBackend,
    metric_value,
    parse_sse,
    reference_onnx_logits,
    wait_ready,
)

from afrl.scoring import grade_results
from service.app import create_app
from service.artifact_loader import onnx_backend_factory
from service.engine import guideline_ids
from service.settings import ServiceSettings

QUERY = "insulated water bottle 500ml"
QUERIES = [f"{w} bottle {i}" for i, w in enumerate(["steel", "glass", "kids", "sport"] * 4)]  # 16 queries
EXPLANATION = CHAIN_TEXT.removesuffix("<|im_end|>").strip()
VARIED = [f"{DOCS[i % 10]} " + "more detail " * (i * 3) for i in range(16)]


@pytest.fixture
def make_prefix_client(prefix_artifact_dir) -> Iterator:
    """make(extend=True, **settings) -> (ready TestClient, the gated backend) over the prefix artifact."""
    stack = ExitStack()

    def make(extend: bool = True, **overrides):
        overrides.setdefault("intra_op_threads", 1)
        holder: dict = {}

        def factory(folder, manifest, s):
            wrapper = ExtendingBackend if extend else GatedBackend
            holder["backend"] = wrapper(onnx_backend_factory(folder, manifest, s))
            return holder["backend"]

        settings = ServiceSettings(model=prefix_artifact_dir, **overrides)
        client = stack.enter_context(TestClient(create_app(settings, backend_factory=factory)))
        wait_ready(client)
        return client, holder["backend"]

    with stack:
        yield make


def reference_probs(encoder, query: str, docs: list[str]) -> np.ndarray:
    """What the tiny score graph gives each full prompt alone."""
    rows = [p.input_ids for p in encoder().encode(query, docs)]
    logits = np.stack([reference_onnx_logits(r, 5) for r in rows])
    return np.asarray([g.probs for g in grade_results(logits, [0, 1, 2, 3, 4])])


def probs(body: dict) -> np.ndarray:
    return np.asarray([r["probs"] for r in body["results"]])


def calls_of(backend, method: str) -> list[tuple]:
    with backend._lock:
        return [shapes for m, shapes in backend.calls if m == method]


def post_all_at_once(client, backend, bodies: list[dict]) -> list[dict]:
    """Send every body concurrently while the model is held, so they are all queued together."""
    backend.gate = threading.Event()
    out: dict[int, dict] = {}

    def send(i: int) -> None:
        r = client.post("/v1/score", json=bodies[i])
        assert r.status_code == 200, r.text
        out[i] = r.json()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    [t.start() for t in threads]
    deadline = time.monotonic() + 10
    while metric_value(client.get("/metrics").text, "afrl_queue_depth") < len(bodies):
        assert time.monotonic() < deadline, "the requests never were all in flight"
        time.sleep(0.01)
    time.sleep(0.05)  # the last one tokenized and queued
    backend.gate.set()
    [t.join(30) for t in threads]
    backend.gate = None
    return [out[i] for i in range(len(bodies))]


def test_guideline_ids_stop_where_the_query_starts(encoder):
    ids = guideline_ids(encoder())
    prefix = encoder().encode_prefix(QUERY)
    assert prefix[: len(ids)] == ids and len(prefix) > len(ids)
    text = encoder().tokenizer.decode(ids, skip_special_tokens=False)
    assert text.startswith("<|im_start|>system\n") and text.endswith("Query:")


def test_the_guideline_is_cached_once_and_each_request_computes_only_its_query(make_prefix_client, encoder):
    client, backend = make_prefix_client(max_batch_tokens=256)
    g = len(guideline_ids(encoder()))
    assert ((1, g),) in calls_of(backend, "prefix"), "warmup computes the guideline's cache"
    p = len(encoder().encode_prefix(QUERY))
    for _ in range(2):
        backend.reset()
        body = client.post("/v1/score", json={"query": QUERY, "documents": VARIED}).json()
        assert "prefix" not in backend.methods() and "score" not in backend.methods()
        assert calls_of(backend, "extend") == [((1, p - g), g)]  # the query alone, on the guideline's cache
        scores = calls_of(backend, "score_prefix")
        assert len(scores) > 1 and {past for _, past, _ in scores} == {p}
        np.testing.assert_allclose(probs(body), reference_probs(encoder, QUERY, VARIED), atol=1e-5)
    saved = metric_value(client.get("/metrics").text, "afrl_prefix_tokens_saved_total")
    assert saved == 2 * (p * len(VARIED) - (p - g))


def test_explanations_continue_from_the_guideline_cache(make_prefix_client, encoder):
    client, backend = make_prefix_client()
    backend.reset()
    r = client.post("/v1/score", json={"query": QUERY, "documents": DOCS[:4], "reasoning": True})
    assert [x["reasoning"] for x in r.json()["results"]] == [EXPLANATION] * 4
    np.testing.assert_allclose(probs(r.json()), reference_probs(encoder, QUERY, DOCS[:4]), atol=1e-5)
    (doc_shape, p, _), *_ = calls_of(backend, "score_prefix")
    assert p == len(encoder().encode_prefix(QUERY))
    assert calls_of(backend, "decode")[0][:2] == ((4, 1), p + doc_shape[1])  # prefix ++ the documents' cache


def test_guideline_cache_off_computes_every_prefix(make_prefix_client):
    client, backend = make_prefix_client(guideline_cache=False)
    backend.reset()
    client.post("/v1/score", json={"query": QUERY, "documents": DOCS[:3]})
    assert backend.methods() == ["prefix", "score_prefix"]


@pytest.mark.parametrize("extend", [True, False], ids=["guideline-cache", "whole-prefixes"])
def test_concurrent_requests_with_different_queries_share_passes_and_equal_each_alone(
    make_prefix_client, encoder, extend
):
    """On the guideline cache, requests share score passes (and query extensions); without it their
    whole prefixes are too long to share a past, so each request keeps its passes."""
    client, backend = make_prefix_client(extend=extend)
    bodies = [
        {"query": q, "documents": [VARIED[(i + j) % 16] for j in range(2 + i % 5)]} for i, q in enumerate(QUERIES)
    ]
    backend.reset()
    together = post_all_at_once(client, backend, bodies)
    scores = calls_of(backend, "score_prefix")
    biggest = max(len(b["documents"]) for b in bodies)
    prefixes = {len(encoder().encode_prefix(b["query"])) for b in bodies}
    if extend:
        assert max(shape[0] for shape, _, _ in scores) > biggest, "requests shared score passes"
        assert max(past for _, past, _ in scores) <= max(prefixes) + 32  # at most half a bucket beyond
        assert max(shape[0] for shape, _ in calls_of(backend, "extend")) > 1, "queries were extended together"
    else:
        assert all(shape[0] <= biggest and past in prefixes for shape, past, _ in scores)
    for body, got in zip(bodies, together, strict=True):
        alone = client.post("/v1/score", json=body).json()
        np.testing.assert_allclose(probs(got), probs(alone), atol=1e-5)
        np.testing.assert_allclose(probs(got), reference_probs(encoder, body["query"], body["documents"]), atol=1e-5)


def test_cross_request_batching_off_keeps_each_request_in_its_own_passes(make_prefix_client, encoder):
    client, backend = make_prefix_client(cross_request_batching=False)
    bodies = [{"query": q, "documents": DOCS[: 2 + i % 3]} for i, q in enumerate(QUERIES[:6])]
    backend.reset()
    together = post_all_at_once(client, backend, bodies)
    prefixes = {len(encoder().encode_prefix(b["query"])) for b in bodies}
    assert all(shape[0] <= 4 and past in prefixes for shape, past, _ in calls_of(backend, "score_prefix"))
    assert all(shape[0] == 1 for shape, _ in calls_of(backend, "extend"))
    for body, got in zip(bodies, together, strict=True):
        np.testing.assert_allclose(probs(got), reference_probs(encoder, body["query"], body["documents"]), atol=1e-5)


@pytest.mark.parametrize("cross", [True, False], ids=["one-batch", "per-request"])
def test_explanations_of_concurrent_requests_step_in_one_decode_pass(make_prefix_client, cross):
    client, backend = make_prefix_client(cross_request_batching=cross)
    bodies = [{"query": q, "documents": DOCS[i : i + 3], "reasoning": True} for i, q in enumerate(QUERIES[:4])]
    backend.reset()
    backend.decode_delay = 0.02  # streams that start a little apart still overlap
    together = post_all_at_once(client, backend, bodies)
    for got in together:
        assert [r["reasoning"] for r in got["results"]] == [EXPLANATION] * 3
    decodes = calls_of(backend, "decode")
    rows = [shape[0] for shape, _, _ in decodes]
    metrics = client.get("/metrics").text
    if cross:
        assert max(rows) > 3, "rows of several requests decoded in one pass"
        assert metric_value(metrics, "afrl_decode_batch_size_count") == len(decodes)
    else:
        assert max(rows) <= 3
    alone = client.post("/v1/score", json=bodies[0]).json()
    assert [r["reasoning"] for r in alone["results"]] == [r["reasoning"] for r in together[0]["results"]]


def test_repeated_pairs_are_answered_from_the_result_cache(make_client):
    client, backend = make_client(result_cache_size=100)
    first = client.post("/v1/score", json={"query": QUERY, "documents": DOCS[:4]}).json()
    backend.reset()
    again = client.post("/v1/score", json={"query": QUERY, "documents": DOCS[:4]}).json()
    assert backend.calls == [], "every pair came from the cache"
    assert again["results"] == first["results"] and again["usage"] == first["usage"]
    mixed = client.post("/v1/score", json={"query": QUERY, "documents": [DOCS[5], DOCS[1], DOCS[6]]}).json()
    assert len(backend.rows_seen) == 2, "only the two new pairs reached the model"
    assert [r["probs"] for r in mixed["results"]][1] == first["results"][1]["probs"]
    other_query = client.post("/v1/score", json={"query": "mug", "documents": DOCS[:1]}).json()
    assert len(backend.rows_seen) == 3 and other_query["results"][0]["probs"] != first["results"][0]["probs"]
    metrics = client.get("/metrics").text
    assert metric_value(metrics, "afrl_result_cache_hits_total") == 4 + 1
    assert metric_value(metrics, "afrl_result_cache_misses_total") == 4 + 2 + 1
    stream = client.post("/v1/score", json={"query": QUERY, "documents": DOCS[:2], "stream": True})
    assert [k for k, _ in parse_sse(stream.text)] == ["score", "score", "done"]


def test_the_result_cache_keys_on_the_document_limit_and_is_off_by_default(make_client):
    client, backend = make_client(result_cache_size=10)
    backend.reset()  # the warmup's rows
    long_doc = "insulated bottle " * 40
    body = {"query": QUERY, "documents": [long_doc]}
    client.post("/v2/rerank", json=body)
    cut = client.post("/v2/rerank", json={**body, "max_tokens_per_doc": 8}).json()
    assert len(backend.rows_seen) == 2, "a different truncation is a different pair"
    assert client.post("/v2/rerank", json={**body, "max_tokens_per_doc": 8}).json()["results"] == cut["results"]
    assert len(backend.rows_seen) == 2
    plain, plain_backend = make_client()
    plain_backend.reset()
    for _ in range(2):
        plain.post("/v1/score", json={"query": QUERY, "documents": DOCS[:2]})
    assert len(plain_backend.rows_seen) == 4
    assert metric_value(plain.get("/metrics").text, "afrl_result_cache_misses_total") == 0


def test_requests_that_explain_are_scored_and_feed_the_result_cache(make_prefix_client):
    client, backend = make_prefix_client(result_cache_size=10)
    explained = client.post("/v1/score", json={"query": QUERY, "documents": DOCS[:2], "reasoning": True}).json()
    again = client.post("/v1/score", json={"query": QUERY, "documents": DOCS[:2], "reasoning": True}).json()
    assert again["results"] == explained["results"]
    backend.reset()
    plain = client.post("/v1/score", json={"query": QUERY, "documents": DOCS[:2]}).json()
    assert backend.calls == [] and [r["probs"] for r in plain["results"]] == [r["probs"] for r in again["results"]]
