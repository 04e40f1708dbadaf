"""Helpers of the client compatibility suite (named uniquely: tests/ folders share one import namespace)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

ANY_KEY = "any-non-empty-key"  # the server has none; the clients insist on one
QUERY = "insulated water bottle 500ml"


@dataclass
class Expected:
    """What /v1/score says about some documents: the best-first order and each document's score."""

    order: list[int]
    scores: list[float]

    def top(self, n: int | None = None) -> tuple[list[int], list[float]]:
        """The best `n` (all) documents' indices and their scores, best first."""
        order = self.order[:n]
        return order, [self.scores[i] for i in order]


class Server:
    """A live server's root URL, and its own /v1/score answers to compare the clients' with."""

    def __init__(self, url: str):
        self.url = url

    def expected(self, documents: list[str], query: str = QUERY) -> Expected:
        r = httpx.post(f"{self.url}/v1/score", json={"query": query, "documents": documents}, timeout=30)
        r.raise_for_status()
        scores = [x["score"] for x in r.json()["results"]]
        return Expected(sorted(range(len(scores)), key=lambda i: (-scores[i], i)), scores)
