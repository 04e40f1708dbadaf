"""The frameworks' Cohere rerankers against the server: langchain-cohere, llama-index, haystack.

Each wraps cohere.ClientV2: the base URL is the server root, and any non-empty key does when the
server has none (each refuses to start without one).
"""

from __future__ import annotations

import asyncio

from client_testkit import ANY_KEY, QUERY
from service_testkit import DOCS


def test_langchain_cohere_rerank(server):
    from langchain_cohere import CohereRerank
    from langchain_core.documents import Document

    order, scores = server.expected(DOCS).top(3)
    reranker = CohereRerank(model="afrl", cohere_api_key=ANY_KEY, base_url=server.url, top_n=3)
    assert reranker.rerank(DOCS, QUERY) == [
        {"index": i, "relevance_score": s} for i, s in zip(order, scores, strict=True)
    ]
    compressed = reranker.compress_documents([Document(page_content=d) for d in DOCS], QUERY)
    assert [d.page_content for d in compressed] == [DOCS[i] for i in order]
    assert [d.metadata["relevance_score"] for d in compressed] == scores


def test_langchain_cohere_dicts_score_as_cohere_v1_rank_fields_do(server):
    """langchain-cohere flattens dict documents to YAML on the client, Cohere v1's rank_fields has the
    server render the same `key: value` lines: the same text, so the same scores either way."""
    import cohere
    import yaml
    from langchain_cohere import CohereRerank

    products = [
        {"title": "Insulated bottle 500ml", "brand": "HydroPeak", "sku": "HP-500"},
        {"title": "Coffee mug", "brand": "Mugsy", "sku": "MG-350"},
        {"title": "Bottle cage for road bikes", "brand": "RoadCo", "sku": "RC-1"},
    ]
    fields = ["title", "brand"]
    order, scores = server.expected([yaml.dump({k: p[k] for k in fields}, sort_keys=False) for p in products]).top()
    reranker = CohereRerank(model="afrl", cohere_api_key=ANY_KEY, base_url=server.url)
    via_langchain = reranker.rerank(products, QUERY, rank_fields=fields, top_n=None)
    assert via_langchain == [{"index": i, "relevance_score": s} for i, s in zip(order, scores, strict=True)]
    v1 = cohere.Client(api_key=ANY_KEY, base_url=server.url).rerank(
        model="afrl", query=QUERY, documents=products, rank_fields=fields
    )
    assert [(r.index, r.relevance_score) for r in v1.results] == list(zip(order, scores, strict=True))


def test_llama_index_cohere_rerank(server):
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
    from llama_index.postprocessor.cohere_rerank import CohereRerank

    order, scores = server.expected(DOCS).top(4)
    reranker = CohereRerank(model="afrl", api_key=ANY_KEY, base_url=server.url, top_n=4)
    nodes = [NodeWithScore(node=TextNode(text=d, id_=str(i))) for i, d in enumerate(DOCS)]
    ranked = reranker.postprocess_nodes(nodes, QueryBundle(QUERY))
    assert [int(n.node.node_id) for n in ranked] == order
    assert [n.score for n in ranked] == scores


def test_haystack_cohere_ranker_sync_and_async(server):
    from haystack import Document
    from haystack.utils import Secret
    from haystack_integrations.components.rankers.cohere import CohereRanker

    order, scores = server.expected(DOCS).top(5)
    ranker = CohereRanker(model="afrl", api_key=Secret.from_token(ANY_KEY), api_base_url=server.url, top_k=5)
    documents = [Document(id=str(i), content=d) for i, d in enumerate(DOCS)]
    ranker.warm_up()
    ranked = ranker.run(query=QUERY, documents=documents)["documents"]
    assert [int(d.id) for d in ranked] == order
    assert [d.score for d in ranked] == scores

    async def run_async():
        await ranker.warm_up_async()
        return (await ranker.run_async(query=QUERY, documents=documents))["documents"]

    assert [d.score for d in asyncio.run(run_async())] == scores
