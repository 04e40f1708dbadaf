"""`/v1/rerank` and `/v2/rerank`: the Cohere/Jina protocol, checked with the official cohere client."""

from __future__ import annotations

import pytest
from service_testkit import DOCS, FakeBackend, LiveServer

from service.app import create_app
from service.settings import ServiceSettings

QUERY = "insulated water bottle 500ml"


def scores(client) -> list[float]:
    return [r["score"] for r in client.post("/v1/score", json={"query": QUERY, "documents": DOCS}).json()["results"]]


@pytest.mark.parametrize("path", ["/v1/rerank", "/v2/rerank"])
def test_rerank_is_best_first_with_the_afrl_score(shared, path):
    client, _ = shared
    expected = scores(client)
    r = client.post(path, json={"model": "any", "query": QUERY, "documents": DOCS, "top_n": 4, "priority": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"id", "model", "results", "meta", "usage"}
    order = sorted(range(len(DOCS)), key=lambda i: (-expected[i], i))[:4]
    assert [x["index"] for x in body["results"]] == order
    assert [x["relevance_score"] for x in body["results"]] == [expected[i] for i in order]
    assert all("document" not in x for x in body["results"])
    assert body["meta"]["api_version"]["version"] == path[2] and "warnings" not in body["meta"]
    assert body["usage"]["total_tokens"] == body["meta"]["tokens"]["input_tokens"] > 0


def test_rerank_returns_documents_and_accepts_objects(shared):
    client, _ = shared
    docs = [{"text": DOCS[0], "title": "ignored"}, DOCS[1]]
    r = client.post("/v1/rerank", json={"query": QUERY, "documents": docs, "return_documents": True, "top_n": None})
    assert r.status_code == 200, r.text
    assert sorted(x["document"]["text"] for x in r.json()["results"]) == sorted(DOCS[:2])


def test_rerank_truncation_is_reported(shared):
    client, _ = shared
    long_doc = "stainless steel insulated water bottle " * 50
    r = client.post("/v2/rerank", json={"query": QUERY, "documents": [long_doc, "mug"], "max_tokens_per_doc": 8})
    assert r.status_code == 200, r.text
    assert "[0]" in r.json()["meta"]["warnings"][0]


@pytest.mark.parametrize(
    "payload, words",
    [
        ({"documents": ["a"]}, ["query", "required"]),
        ({"query": "q", "documents": []}, ["documents"]),
        ({"query": "q", "documents": [{"title": "no text"}]}, ["documents", "item 0"]),
        ({"query": "q", "documents": ["a"], "top_n": 0}, ["top_n"]),
    ],
)
def test_rerank_malformed_input_is_422(shared, payload, words):
    client, _ = shared
    r = client.post("/v2/rerank", json=payload)
    assert r.status_code == 422 and r.json()["error"]["type"] == "invalid_request"
    assert all(w in r.json()["error"]["message"] for w in words)


def test_the_official_cohere_client_reranks_against_the_server(artifact_dir):
    import cohere  # dev dependency: the official client is the compatibility check

    app = create_app(ServiceSettings(model=artifact_dir, api_key="k3y"), backend_factory=lambda f, m, s: FakeBackend())
    with LiveServer(app) as server:
        import httpx

        expected = httpx.post(
            f"{server.url}/v1/score", json={"query": QUERY, "documents": DOCS}, headers={"authorization": "Bearer k3y"}
        ).json()["results"]
        order = sorted(range(len(DOCS)), key=lambda i: (-expected[i]["score"], i))

        v2 = cohere.ClientV2(api_key="k3y", base_url=server.url).rerank(
            model="afrl", query=QUERY, documents=DOCS, top_n=3
        )
        assert [x.index for x in v2.results] == order[:3]
        assert [x.relevance_score for x in v2.results] == [expected[i]["score"] for i in order[:3]]
        assert v2.id and v2.meta.api_version.version == "2"

        v1 = cohere.Client(api_key="k3y", base_url=server.url).rerank(
            model="afrl", query=QUERY, documents=DOCS, return_documents=True
        )
        assert [x.index for x in v1.results] == order
        assert [x.document.text for x in v1.results] == [DOCS[i] for i in order]

        with pytest.raises(cohere.errors.UnauthorizedError):
            cohere.ClientV2(api_key="wrong", base_url=server.url).rerank(model="afrl", query=QUERY, documents=DOCS)
