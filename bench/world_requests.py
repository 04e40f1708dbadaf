"""Benchmark requests drawn from the generated relevance world (training.world, pure Python, no torch).

A request is one test-split query with its judged candidates, topped up to
the wanted size with other test queries' documents, as a first-stage
retriever hands a reranker many weak candidates. Deterministic from the seed.

    world_requests(count=20, documents=200)  ->  [(query, [document, ...]), ...]
"""

from __future__ import annotations

import random

DOCS_PER_QUERY = 10  # judged candidates per world query


def world_requests(count: int, documents: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    """`count` distinct queries, each with exactly `documents` documents (its own candidates first)."""
    from training.world import build_world

    if count < 1 or documents < 1:
        raise ValueError(f"need count >= 1 and documents >= 1, got {count}, {documents}")
    # The test split is a tenth of the queries: enough queries, and enough documents to top up from.
    n_queries = max(30, 10 * count, documents + 10 * DOCS_PER_QUERY)
    world = build_world(seed=seed, n_queries=n_queries, docs_per_query=DOCS_PER_QUERY)
    by_query: dict[str, list[str]] = {}
    for example in world.test:
        by_query.setdefault(example.query, []).append(example.document)
    pool = list(dict.fromkeys(doc for docs in by_query.values() for doc in docs))
    rng = random.Random(seed)
    requests = []
    for query, own in list(by_query.items())[:count]:
        others = [doc for doc in pool if doc not in own]
        extra = rng.sample(others, max(0, documents - len(own)))
        requests.append((query, (own + extra)[:documents]))
    return requests
