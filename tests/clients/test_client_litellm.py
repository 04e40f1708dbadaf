"""litellm's rerank through every provider whose protocol the server speaks.

| provider       | base          | litellm posts        | protocol                            |
| cohere/        | root          | /v2/rerank           | Cohere v2                           |
| jina_ai/       | root or /v1   | /v1/rerank           | Jina (Cohere's shape)               |
| hosted_vllm/   | /v1           | /v1/rerank           | vLLM (Cohere's shape)               |
| hosted_vllm/   | root          | /rerank              | vLLM: documents not echoed          |
| infinity/      | root          | /rerank              | Infinity: documents not echoed      |
| huggingface/   | root          | /rerank with texts   | TEI: a bare array                   |

litellm asks for the documents back by default (`return_documents=True`).
"""

from __future__ import annotations

import pytest
from client_testkit import ANY_KEY, QUERY
from service_testkit import DOCS

CASES = [  # (provider, what to add to the server root, documents come back)
    ("cohere", "", True),
    ("jina_ai", "", True),
    ("jina_ai", "/v1", True),
    ("hosted_vllm", "/v1", True),
    ("hosted_vllm", "", False),
    ("infinity", "", False),
    ("huggingface", "", True),
]


@pytest.fixture(scope="module")
def litellm():
    import litellm

    return litellm


@pytest.mark.parametrize("provider, suffix, echoed", CASES, ids=[f"{p}{s or '-root'}" for p, s, _ in CASES])
def test_litellm_reranks_like_v1_score(server, litellm, provider, suffix, echoed):
    order, scores = server.expected(DOCS).top(4)
    response = litellm.rerank(
        model=f"{provider}/afrl", query=QUERY, documents=DOCS, top_n=4, api_base=server.url + suffix, api_key=ANY_KEY
    )
    assert [r["index"] for r in response.results] == order
    assert [r["relevance_score"] for r in response.results] == scores
    documents = [r.get("document") for r in response.results]
    assert documents == ([{"text": DOCS[i]} for i in order] if echoed else [None] * len(order))


@pytest.mark.parametrize("provider", ["infinity", "hosted_vllm", "huggingface"])
def test_litellm_without_documents_back(server, litellm, provider):
    order, scores = server.expected(DOCS).top()
    response = litellm.rerank(
        model=f"{provider}/afrl",
        query=QUERY,
        documents=DOCS,
        return_documents=False,
        api_base=server.url,
        api_key=ANY_KEY,
    )
    assert [(r["index"], r["relevance_score"]) for r in response.results] == list(zip(order, scores, strict=True))
    assert all("document" not in r for r in response.results)
