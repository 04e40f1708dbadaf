"""A ScoringEngine driven from synchronous code (afrl eval, benchmarks): it owns a private event loop.

scorer = BlockingScorer(engine)
outcome = scorer.score(query, documents)   # ScoreOutcome, as the HTTP routes get it
scorer.close()                             # the engine (its batcher and threads), then the loop
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from service.engine import ScoreOutcome, ScoringEngine


class BlockingScorer:
    def __init__(self, engine: ScoringEngine):
        self.engine = engine
        self._loop = asyncio.new_event_loop()

    def score(self, query: str, documents: Sequence[str]) -> ScoreOutcome:
        return self._loop.run_until_complete(self.engine.score(query, documents))

    def close(self) -> None:
        self.engine.close()  # before the loop: the batcher's task is cancelled on it
        self._loop.close()
