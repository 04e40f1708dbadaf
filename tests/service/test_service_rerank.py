"""`/v1/rerank`, `/v2/rerank` and `/rerank`: the Cohere/Jina protocol (with Cohere v1's object documents and
`rank_fields`), TEI's on `/rerank`, checked against `/v1/score` and with the official cohere client.

tests/clients reranks through every client library users point at the server."""

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


def test_tei_rerank_is_a_bare_array_best_first_with_the_afrl_score(shared):
    client, _ = shared
    expected = scores(client)
    order = sorted(range(len(DOCS)), key=lambda i: (-expected[i], i))
    r = client.post(
        "/rerank", json={"query": QUERY, "texts": DOCS, "raw_scores": False, "truncation_direction": "Right"}
    )
    assert r.status_code == 200, r.text
    assert r.json() == [{"index": i, "score": expected[i]} for i in order]
    assert float(r.headers["x-inference-time-ms"]) >= 0


def test_tei_rerank_returns_texts_raw_scores_and_top_n(shared):
    client, _ = shared
    graded = client.post("/v1/score", json={"query": QUERY, "documents": DOCS}).json()["results"]
    r = client.post(
        "/rerank", json={"query": QUERY, "texts": DOCS, "return_text": True, "raw_scores": True, "top_n": 3}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    order = sorted(range(len(DOCS)), key=lambda i: (-graded[i]["score"], i))[:3]
    assert [x["index"] for x in body] == order
    assert [x["text"] for x in body] == [DOCS[i] for i in order]
    # raw score: the expected grade on the label scale 0..4, i.e. 4 x the [0, 1] score
    assert [x["score"] for x in body] == pytest.approx([4 * graded[i]["score"] for i in order], abs=1e-9)


def test_tei_rerank_truncation(shared):
    client, _ = shared
    long_text = "stainless steel insulated water bottle " * 200  # > 512 tokens
    ok = client.post("/rerank", json={"query": QUERY, "texts": [long_text, "mug"]})
    assert ok.status_code == 200, ok.text
    refused = client.post("/rerank", json={"query": QUERY, "texts": ["mug", long_text], "truncate": False})
    assert refused.status_code == 413 and "texts[1]" in refused.json()["error"]["message"]
    assert (
        client.post("/rerank", json={"query": QUERY, "texts": ["mug", long_text], "truncate": True}).status_code == 200
    )


@pytest.mark.parametrize(
    "payload, words",
    [
        ({"query": "q", "texts": []}, ["texts", "non-empty"]),
        ({"query": "q", "texts": ["a", {"text": "b"}]}, ["texts", "item 1", "an object"]),
        ({"query": " ", "texts": ["a"]}, ["query", "non-empty"]),
        ({"query": "q", "texts": ["a"], "truncation_direction": "Left"}, ["truncation_direction", "Right"]),
        ({"query": "q", "texts": ["a"], "raw_scores": "yes"}, ["raw_scores"]),
        ({"query": "q"}, ["documents", "required"]),  # neither texts nor documents: the documents form's error
        ([{"query": "q"}], ["body"]),
        (None, ["body", "JSON"]),
    ],
)
def test_tei_rerank_malformed_input_is_422(shared, payload, words):
    client, _ = shared
    r = client.post("/rerank", json=payload) if payload is not None else client.post("/rerank", content=b"{oops")
    assert r.status_code == 422 and r.json()["error"]["type"] == "invalid_request", r.text
    assert all(w in r.json()["error"]["message"] for w in words), r.json()


def test_tei_rerank_limits_name_texts(make_client):
    client, _ = make_client(max_documents=2, max_document_chars=50)
    r = client.post("/rerank", json={"query": QUERY, "texts": ["a", "b", "c"]})
    assert r.status_code == 413 and r.json()["error"]["message"].startswith("texts: 3 documents")
    r = client.post("/rerank", json={"query": QUERY, "texts": ["a", "b" * 51]})
    assert r.status_code == 413 and r.json()["error"]["message"].startswith("texts[1]: 51 characters")


def test_root_rerank_with_documents_answers_as_v1_without_echoing_documents(shared):
    client, _ = shared
    body = {"model": "m", "query": QUERY, "documents": DOCS, "top_n": 5}
    v1 = client.post("/v1/rerank", json=body).json()
    r = client.post("/rerank", json={**body, "return_documents": True})
    assert r.status_code == 200, r.text
    root = r.json()
    assert set(root) == {"id", "model", "results", "meta", "usage"}
    assert root["results"] == [{k: x[k] for k in ("index", "relevance_score")} for x in v1["results"]]
    assert root["usage"] == v1["usage"]
    assert ["/v1/rerank echoes" in w for w in root["meta"]["warnings"]] == [True]
    assert "warnings" not in client.post("/rerank", json=body).json()["meta"]


PRODUCTS = [
    {"id": "p1", "title": "Insulated bottle 500ml", "brand": "HydroPeak", "price": 25},
    {"id": "p2", "title": "Coffee mug", "brand": "Mugsy", "text": "ceramic mug 350 ml"},
    {"id": "p3", "brand": "RoadCo"},  # no title, no text: ranked on brand
    {"id": "p4", "text": "steel bottle 0.5 l"},  # none of the rank_fields: ranked on its text
]


def test_rank_fields_rank_the_named_fields_as_key_value_lines_and_return_the_whole_object(shared):
    client, _ = shared
    rendered = [
        "title: Insulated bottle 500ml\nbrand: HydroPeak\n",
        "title: Coffee mug\nbrand: Mugsy\n",
        "brand: RoadCo\n",
        "steel bottle 0.5 l",
    ]
    expected = [
        r["score"] for r in client.post("/v1/score", json={"query": QUERY, "documents": rendered}).json()["results"]
    ]
    body = {"query": QUERY, "documents": PRODUCTS, "rank_fields": ["title", "brand"], "return_documents": True}
    r = client.post("/v1/rerank", json=body)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    order = sorted(range(len(PRODUCTS)), key=lambda i: (-expected[i], i))
    assert [x["index"] for x in results] == order
    assert [x["relevance_score"] for x in results] == [expected[i] for i in order]
    assert [x["document"] for x in results] == [PRODUCTS[i] for i in order]
    assert "warnings" not in r.json()["meta"]


def test_object_documents_without_rank_fields_rank_their_text_and_come_back_whole(shared):
    client, _ = shared
    docs = [{"text": DOCS[0], "url": "https://shop.example/1", "stock": 3}, DOCS[1]]
    expected = [
        r["score"] for r in client.post("/v1/score", json={"query": QUERY, "documents": DOCS[:2]}).json()["results"]
    ]
    r = client.post("/v2/rerank", json={"query": QUERY, "documents": docs, "return_documents": True})
    assert r.status_code == 200, r.text
    by_index = {x["index"]: x for x in r.json()["results"]}
    assert [by_index[i]["relevance_score"] for i in range(2)] == expected
    assert by_index[0]["document"] == docs[0] and by_index[1]["document"] == {"text": DOCS[1]}


@pytest.mark.parametrize(
    "documents, rank_fields, words",
    [
        ([{"title": "a"}], None, ["documents: item 0", "'text'", "rank_fields"]),
        (["a", {"title": "a"}], ["brand"], ["documents: item 1", "no 'text' and none of the rank_fields", "brand"]),
        ([{"text": 3}], None, ["documents", "item 0"]),
        (["a"], "title", ["rank_fields"]),
    ],
)
def test_rank_fields_errors_are_422(shared, documents, rank_fields, words):
    client, _ = shared
    r = client.post("/v1/rerank", json={"query": QUERY, "documents": documents, "rank_fields": rank_fields})
    assert r.status_code == 422, r.text
    assert all(w in r.json()["error"]["message"] for w in words), r.json()


def test_known_unsupported_parameters_are_accepted_and_named_in_warnings(shared):
    client, _ = shared
    base = {"query": QUERY, "documents": DOCS[:3]}
    unsupported = {
        "relevant_spans": {"mode": "enabled", "threshold": 0.2},
        "max_chunks_per_doc": 4,
        "instruction": "prefer cheap products",
        "truncation_side": "left",
        "raw_scores": True,
    }
    plain = client.post("/v2/rerank", json=base).json()
    r = client.post("/v2/rerank", json={**base, **unsupported, "priority": 1})
    assert r.status_code == 200, r.text
    warnings = r.json()["meta"]["warnings"]
    assert sorted(w.split(" ", 1)[0] for w in warnings) == sorted(unsupported)
    assert all("not supported" in w for w in warnings)
    assert r.json()["results"] == plain["results"]  # ignored: the same answer
    harmless = {"relevant_spans": {"mode": "disabled"}, "truncation_side": "right", "raw_scores": False}
    assert "warnings" not in client.post("/v1/rerank", json={**base, **harmless}).json()["meta"]
