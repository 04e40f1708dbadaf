"""What the scheduler queues: one request's model work, and the jobs it is cut into.

RequestWork   a request's document rows (full prompts, or document parts after a shared
              prefix), its prefix ids, deadline, results queue, and, once computed, its prefix
              cache: the guideline's cache (shared by every request) plus its own part
ScoreJob      a micro-batch of a request's rows, planned on the token budget
DecodeJob     a request's turn to step the explanation streams it belongs to
ScoredRows    one finished micro-batch: its rows' label logits (and cache, when kept)
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from service.admission import Deadline
from service.kv import KVCache, concat

if TYPE_CHECKING:
    from service.reasoning import DecodeBatch, ExplanationStream


@dataclass
class ScoredRows:
    """One finished micro-batch of a request: its rows' label logits (and cache, when kept)."""

    rows: list[int]  # indices into the request's documents
    logits: np.ndarray  # (n, K)
    cache: KVCache | None  # the rows' own cache (n rows), when the request keeps caches


@dataclass(eq=False)
class ScoreJob:
    work: RequestWork
    rows: list[int]
    length: int  # padded length of these rows
    tokens: int  # what it costs: rows x length (+ the request's own prefix part, for its first shared-prefix job)

    @property
    def plain(self) -> bool:
        """Full prompts on the score graph (no shared prefix)."""
        return self.work.prefix_ids is None


@dataclass(eq=False)
class DecodeJob:
    work: RequestWork
    batch: DecodeBatch  # the explanation streams this turn steps (all requests', or this request's)
    tokens: int = 0


@dataclass(eq=False)
class RequestWork:
    """One request's model work. The engine reads `results`: ScoredRows..., then None, or an exception."""

    rows: list[list[int]]  # the ids the score graph sees per document (full prompt, or document part)
    prefix_ids: list[int] | None = None  # shared prefix: computed once, then score_prefix on `rows`
    deadline: Deadline | None = None
    keep_cache: bool = False
    results: asyncio.Queue = field(default_factory=asyncio.Queue)
    jobs: deque = field(default_factory=deque)
    pending_scores: int = 0
    base_length: int = 0  # guideline tokens the prefix starts with and takes from the shared cache (0: none)
    base: KVCache | None = None  # that guideline cache (1, Hkv, G, D), once the own part is computed
    segment: KVCache | None = None  # the request's own prefix part: its query after the guideline, or all of it
    stream: ExplanationStream | None = None  # its explanations, while they decode
    cancelled: bool = False
    finished: bool = False  # all score jobs delivered, or failed
    queued: bool = False  # in the scheduler's round-robin order
    submitted: float = 0.0  # time.perf_counter()
    first_start: float | None = None
    inference_seconds: float = 0.0
    timer: asyncio.TimerHandle | None = None
    _prefix: KVCache | None = None

    def dead(self) -> bool:
        """Work that must not reach the model: cancelled, or scoring not yet done past its deadline."""
        if self.cancelled:
            return True
        return not self.finished and self.deadline is not None and self.deadline.expired()

    @property
    def queue_seconds(self) -> float:
        return (self.first_start or self.submitted) - self.submitted

    @property
    def own_length(self) -> int:
        """Prefix tokens this request computes itself (the rest come from the guideline cache)."""
        return len(self.prefix_ids or ()) - self.base_length

    def prefix_cache(self) -> KVCache | None:
        """The whole prefix cache (1, Hkv, P, D): guideline ++ own part, built once; None before it is computed."""
        if self._prefix is None and self.segment is not None:
            self._prefix = concat([self.base, self.segment]) if self.base is not None else self.segment
        return self._prefix
