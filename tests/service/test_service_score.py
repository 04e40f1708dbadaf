"""POST /v1/score over the fake backend: shapes, order, ids, top_n, truncation, batching."""

from __future__ import annotations

import math

import numpy as np
from service_testkit import DOCS, FakeBackend

from afrl.scoring import grade_results

QUERY = "insulated water bottle 500ml"


def expected_results(encoder, query, docs, max_document_tokens=512):
    rows = [p.input_ids for p in encoder(max_document_tokens).encode(query, docs)]
    return grade_results(np.stack([FakeBackend.logits_for(r) for r in rows]), [0, 1, 2, 3, 4])


def test_happy_path_ten_documents_in_input_order(shared, encoder):
    client, _ = shared
    r = client.post("/v1/score", json={"query": QUERY, "documents": DOCS})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "afrl-test-tiny"
    assert [x["index"] for x in body["results"]] == list(range(10))
    expected = expected_results(encoder, QUERY, DOCS)
    for res, exp in zip(body["results"], expected, strict=True):
        assert res["grade"] in range(5)
        assert len(res["probs"]) == 5 and math.isclose(sum(res["probs"]), 1.0, abs_tol=1e-9)
        assert 0.0 <= res["score"] <= 1.0
        # the engine fed exactly this document's prompt tokens and kept input order
        assert res["grade"] == exp.grade and np.allclose(res["probs"], exp.probs)
        assert "id" not in res and "truncated" not in res  # never null fields
    assert len({round(x["score"], 6) for x in body["results"]}) > 1
    assert body["usage"]["prompt_tokens"] > 10 * 50
    assert float(r.headers["x-queue-time-ms"]) >= 0
    assert float(r.headers["x-inference-time-ms"]) > 0


def test_document_objects_echo_ids_and_mix_with_strings(shared):
    client, _ = shared
    docs = [{"text": DOCS[0], "id": "sku-1"}, DOCS[1], {"text": DOCS[2]}, {"text": DOCS[3], "id": "sku-4", "extra": 1}]
    plain = client.post("/v1/score", json={"query": QUERY, "documents": DOCS[:4]}).json()
    r = client.post("/v1/score", json={"query": QUERY, "documents": docs})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x.get("id") for x in results] == ["sku-1", None, None, "sku-4"]
    assert [x["probs"] for x in results] == [x["probs"] for x in plain["results"]]


def test_top_n_returns_best_first(shared):
    client, _ = shared
    full = client.post("/v1/score", json={"query": QUERY, "documents": DOCS}).json()["results"]
    r = client.post("/v1/score", json={"query": QUERY, "documents": DOCS, "top_n": 3})
    assert r.status_code == 200, r.text
    top = r.json()["results"]
    best = sorted(full, key=lambda x: (-x["score"], x["index"]))[:3]
    assert [x["index"] for x in top] == [x["index"] for x in best]
    assert top[0]["score"] >= top[1]["score"] >= top[2]["score"]
    assert (
        len(client.post("/v1/score", json={"query": QUERY, "documents": DOCS[:2], "top_n": 5}).json()["results"]) == 2
    )


def test_overlong_document_is_truncated_and_reported(make_client):
    client, _ = make_client(max_document_tokens=16)
    long_doc = "Stainless steel insulated water bottle " * 30
    docs = [long_doc, long_doc + " extra words", "short"]
    r = client.post("/v1/score", json={"query": QUERY, "documents": docs})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x.get("truncated") for x in body["results"]] == [True, True, None]
    assert body["usage"]["truncated_documents"] == 2
    # both long documents were cut to the same 16 tokens, so the model saw the same prompt
    assert body["results"][0]["probs"] == body["results"][1]["probs"]


def test_batched_equals_single_and_batches_respect_token_budget(make_client):
    client, backend = make_client(max_batch_tokens=640)
    docs = [f"{DOCS[i % 10]} " + "extra detail " * (i * 3) for i in range(20)]
    backend.reset()
    together = client.post("/v1/score", json={"query": QUERY, "documents": docs})
    assert together.status_code == 200, together.text
    assert len(backend.calls) > 1, "20 documents should need several micro-batches at 640 tokens"
    for rows, length in backend.calls:
        assert rows == 1 or rows * length <= 640
        assert length % 64 == 0
    for i in (0, 7, 19):
        alone = client.post("/v1/score", json={"query": QUERY, "documents": [docs[i]]}).json()["results"][0]
        assert alone["probs"] == together.json()["results"][i]["probs"]
        assert alone["grade"] == together.json()["results"][i]["grade"]


def test_query_too_long_for_the_model_is_refused(make_client):
    client, _ = make_client()
    r = client.post("/v1/score", json={"query": "bottle 42 " * 900, "documents": ["x"]})
    assert r.status_code == 413 and "shorten the query" in r.json()["error"]["message"]
    assert client.post("/v1/score", json={"query": QUERY, "documents": ["x"]}).status_code == 200
