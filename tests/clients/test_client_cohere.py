"""The official cohere SDK against the server: v1 (object documents, rank_fields, warnings), v2, async.

The base URL is the server root: the SDK appends /v1/rerank or /v2/rerank itself.
"""

from __future__ import annotations

import asyncio

import cohere
import pytest
from client_testkit import ANY_KEY, QUERY
from service_testkit import DOCS


def test_v2_client_reranks_like_v1_score(server):
    order, scores = server.expected(DOCS).top(4)
    response = cohere.ClientV2(api_key=ANY_KEY, base_url=server.url).rerank(
        model="afrl", query=QUERY, documents=DOCS, top_n=4, max_tokens_per_doc=512
    )
    assert [r.index for r in response.results] == order
    assert [r.relevance_score for r in response.results] == scores
    assert response.meta.api_version.version == "2"


def test_async_v2_client_reranks_like_v1_score(server):
    order, scores = server.expected(DOCS).top()

    async def rerank():
        return await cohere.AsyncClientV2(api_key=ANY_KEY, base_url=server.url).rerank(
            model="afrl", query=QUERY, documents=DOCS
        )

    response = asyncio.run(rerank())
    assert [r.index for r in response.results] == order
    assert [r.relevance_score for r in response.results] == scores


def test_v1_client_returns_documents(server):
    order, scores = server.expected(DOCS).top(3)
    response = cohere.Client(api_key=ANY_KEY, base_url=server.url).rerank(
        model="afrl", query=QUERY, documents=DOCS, top_n=3, return_documents=True
    )
    assert [r.index for r in response.results] == order
    assert [r.relevance_score for r in response.results] == scores
    assert [r.document.text for r in response.results] == [DOCS[i] for i in order]


PRODUCTS = [
    {"title": "Insulated bottle 500ml", "brand": "HydroPeak", "sku": "HP-500"},
    {"title": "Coffee mug", "brand": "Mugsy", "sku": "MG-350", "text": "ceramic mug"},
    {"title": "Bottle cage for road bikes", "brand": "RoadCo", "sku": "RC-1"},
]


def test_v1_object_documents_rank_on_rank_fields_and_come_back_whole(server):
    rendered = [f"title: {p['title']}\nbrand: {p['brand']}\n" for p in PRODUCTS]
    order, scores = server.expected(rendered).top()
    response = cohere.Client(api_key=ANY_KEY, base_url=server.url).rerank(
        model="afrl", query=QUERY, documents=PRODUCTS, rank_fields=["title", "brand"], return_documents=True
    )
    assert [r.index for r in response.results] == order
    assert [r.relevance_score for r in response.results] == scores
    assert [r.document.dict() for r in response.results] == [PRODUCTS[i] for i in order]  # extra fields kept


def test_v1_unsupported_parameters_come_back_as_warnings(server):
    order, scores = server.expected(DOCS).top()
    response = cohere.Client(api_key=ANY_KEY, base_url=server.url).rerank(
        model="afrl", query=QUERY, documents=DOCS, max_chunks_per_doc=3
    )
    assert [r.relevance_score for r in response.results] == scores
    assert [w.split(" ", 1)[0] for w in response.meta.warnings] == ["max_chunks_per_doc"]


def test_a_base_url_ending_in_v1_is_not_found_for_v2(server):
    """What the README warns about: ClientV2 appends /v2/rerank to the base, so '/v1' gives /v1/v2/rerank."""
    with pytest.raises(cohere.errors.NotFoundError):
        cohere.ClientV2(api_key=ANY_KEY, base_url=f"{server.url}/v1").rerank(model="afrl", query=QUERY, documents=DOCS)


def test_v2_relevant_spans_are_accepted_and_named_in_warnings(server):
    """Cohere 7's relevant_spans: the same ranking, no spans, and a warning saying so."""
    relevant_spans = getattr(cohere, "RerankRelevantSpans", None)
    if relevant_spans is None:
        pytest.skip(f"cohere {cohere.__version__} has no relevant_spans (7.x has)")
    order, scores = server.expected(DOCS).top()
    response = cohere.ClientV2(api_key=ANY_KEY, base_url=server.url).rerank(
        model="afrl", query=QUERY, documents=DOCS, relevant_spans=relevant_spans(mode="enabled")
    )
    assert [(r.index, r.relevance_score) for r in response.results] == list(zip(order, scores, strict=True))
    assert all(getattr(r, "relevant_spans", None) is None for r in response.results)
    assert [w.split(" ", 1)[0] for w in response.meta.warnings] == ["relevant_spans"]
