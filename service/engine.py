"""The scoring engine: (query, documents) -> grades, through tokenize -> batch -> backend.

    tokenize   thread pool; the shared prefix (guideline + query) once per request
    batch      rows sorted by length, packed into left-padded micro-batches of at
               most `max_batch_tokens` padded tokens, input order restored after
    backend    one dedicated thread (onnxruntime parallelises inside a run);
               expired or abandoned work is skipped before it reaches the model
    grades     afrl.scoring.grade_results over the label logits

Seams for later work: a cross-request batcher (token budget + `max_wait_ms`
across requests) implements `Batcher` and replaces `RequestBatcher`; a
shared-prefix (KV cache) backend receives `EncodedPair`s, whose `prefix_ids`
are shared by every document of a request, instead of concatenated rows.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from afrl.prompt import EncodedPair
from afrl.scoring import GradeResult, grade_results
from service.artifact_loader import LoadedModel
from service.backend import Backend
from afrl.padding import left_pad
from service.batching import bucket_length, plan_micro_batches, shape_buckets
from service.metrics import ServiceMetrics

logger = logging.getLogger(__name__)

WARMUP_QUERY_TOKENS = 64  # query length assumed when choosing which shape buckets to warm


class DeadlineExceeded(Exception):
    """The request's deadline passed before its compute ran."""


class InputTooLong(Exception):
    """A prompt is longer than the model accepts even after document truncation."""


@dataclass(frozen=True)
class Deadline:
    """When a request stops being worth computing: an absolute `time.monotonic()` value."""

    at: float
    timeout_ms: int

    @classmethod
    def after_ms(cls, timeout_ms: int, start: float | None = None) -> "Deadline":
        return cls((time.monotonic() if start is None else start) + timeout_ms / 1000.0, timeout_ms)

    def expired(self) -> bool:
        return time.monotonic() >= self.at


@dataclass
class LogitsOutcome:
    logits: np.ndarray  # (N, K) in input order
    queue_seconds: float  # submitted -> first batch started
    inference_seconds: float  # sum of this request's forward passes


class Batcher(Protocol):
    """Turns one request's encoded prompts into label logits."""

    async def label_logits(self, pairs: Sequence[EncodedPair], deadline: Deadline | None) -> LogitsOutcome: ...

    def warmup(self, rows_by_length: Sequence[list[int]]) -> None: ...

    def close(self) -> None: ...


@dataclass
class _Ticket:
    """Shared by one request's micro-batch jobs, so they can skip dead work."""

    deadline: Deadline | None
    submitted: float
    abandoned: bool = False
    first_start: float | None = None
    inference_seconds: float = 0.0

    def dead(self) -> bool:
        return self.abandoned or (self.deadline is not None and self.deadline.expired())


class RequestBatcher:
    """Micro-batches within one request, run FIFO on a single inference thread."""

    def __init__(self, backend: Backend, pad_id: int, max_batch_tokens: int, metrics: ServiceMetrics):
        self.backend = backend
        self.pad_id = pad_id
        self.max_batch_tokens = max_batch_tokens
        self.metrics = metrics
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="afrl-inference")

    async def label_logits(self, pairs: Sequence[EncodedPair], deadline: Deadline | None) -> LogitsOutcome:
        rows = [p.input_ids for p in pairs]
        batches = plan_micro_batches([len(r) for r in rows], self.max_batch_tokens)
        ticket = _Ticket(deadline=deadline, submitted=time.perf_counter())
        loop = asyncio.get_running_loop()
        jobs = [
            loop.run_in_executor(self._executor, self._run_batch, ticket, [rows[i] for i in batch])
            for batch in batches
        ]
        try:
            outputs = await asyncio.gather(*jobs, return_exceptions=True)
        finally:
            ticket.abandoned = True  # cancelled or failed: queued jobs of this request skip the model
        for out in outputs:
            if isinstance(out, BaseException):
                raise out
        if any(out is None for out in outputs):
            timeout = deadline.timeout_ms if deadline is not None else "?"
            raise DeadlineExceeded(f"the deadline of {timeout} ms passed before compute")
        logits = np.empty((len(rows), self.backend.num_labels), dtype=np.float32)  # (N, K)
        for batch, out in zip(batches, outputs):
            logits[batch] = out
        queue_seconds = (ticket.first_start or ticket.submitted) - ticket.submitted
        self.metrics.queue_duration.observe(queue_seconds)
        return LogitsOutcome(logits, queue_seconds, ticket.inference_seconds)

    def _run_batch(self, ticket: _Ticket, rows: list[list[int]]) -> np.ndarray | None:
        """Runs on the inference thread. None: skipped because the request is dead."""
        if ticket.dead():
            return None
        start = time.perf_counter()
        if ticket.first_start is None:
            ticket.first_start = start
        try:
            logits = self._forward(rows, bucket_length(max(len(r) for r in rows)))
        except BaseException:
            ticket.abandoned = True
            raise
        ticket.inference_seconds += time.perf_counter() - start
        return logits

    def _forward(self, rows: Sequence[list[int]], length: int) -> np.ndarray:
        input_ids, attention_mask = left_pad(rows, self.pad_id, length)  # (B, T) each
        start = time.perf_counter()
        logits = np.asarray(self.backend.label_logits(input_ids, attention_mask))  # (B, K)
        self.metrics.inference_duration.observe(time.perf_counter() - start)
        expected = (len(rows), self.backend.num_labels)
        if logits.shape != expected:
            raise RuntimeError(f"backend returned label logits of shape {logits.shape}, expected {expected}")
        tokens = input_ids.size
        self.metrics.batch_size.observe(len(rows))
        self.metrics.batch_tokens.observe(tokens)
        self.metrics.padding_ratio.observe(1.0 - float(attention_mask.sum()) / tokens)
        return logits

    def warmup(self, rows_by_length: Sequence[list[int]]) -> None:
        """Run one single-row batch per padded length, on the inference thread."""
        for row in rows_by_length:
            input_ids, attention_mask = left_pad([row], self.pad_id)
            self._executor.submit(self.backend.label_logits, input_ids, attention_mask).result()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


@dataclass
class ScoreOutcome:
    results: list[GradeResult]  # input order
    truncated: list[bool]  # per document: cut to max_document_tokens
    usage: dict[str, int] = field(default_factory=dict)
    tokenize_seconds: float = 0.0
    queue_seconds: float = 0.0
    inference_seconds: float = 0.0


class ScoringEngine:
    """Scores (query, documents) with one loaded model; safe to share across requests."""

    def __init__(self, model: LoadedModel, max_batch_tokens: int, metrics: ServiceMetrics,
                 batcher: Batcher | None = None, tokenize_workers: int | None = None):  # fmt: skip
        self.model = model
        self.metrics = metrics
        self.values = model.manifest.labels.values
        self.max_sequence_length = model.manifest.max_sequence_length
        self.batcher = batcher or RequestBatcher(model.backend, model.pad_id, max_batch_tokens, metrics)
        workers = tokenize_workers or min(4, os.cpu_count() or 1)
        self._tokenize_pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="afrl-tokenize")

    async def score(self, query: str, documents: Sequence[str], deadline: Deadline | None = None) -> ScoreOutcome:
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        pairs = await loop.run_in_executor(self._tokenize_pool, self.model.encoder.encode, query, list(documents))
        tokenize_seconds = time.perf_counter() - start
        self.metrics.tokenize_duration.observe(tokenize_seconds)
        self._check_lengths(pairs)
        if deadline is not None and deadline.expired():
            raise DeadlineExceeded(f"the deadline of {deadline.timeout_ms} ms passed before compute")
        out = await self.batcher.label_logits(pairs, deadline)
        truncated = [p.truncated for p in pairs]
        return ScoreOutcome(
            results=grade_results(out.logits, self.values),
            truncated=truncated,
            usage={
                "prompt_tokens": sum(len(p.prefix_ids) + len(p.document_ids) for p in pairs),
                "truncated_documents": sum(truncated),
            },
            tokenize_seconds=tokenize_seconds,
            queue_seconds=out.queue_seconds,
            inference_seconds=out.inference_seconds,
        )

    def _check_lengths(self, pairs: Sequence[EncodedPair]) -> None:
        longest = max(len(p.prefix_ids) + len(p.document_ids) for p in pairs)
        if longest > self.max_sequence_length:
            raise InputTooLong(
                f"a prompt takes {longest} tokens (query and guideline {len(pairs[0].prefix_ids)}, documents "
                f"truncated to {self.model.encoder.max_document_tokens}); the model accepts "
                f"{self.max_sequence_length}: shorten the query"
            )

    def warmup_lengths(self) -> list[int]:
        """Padded lengths a request can produce, for a query of up to WARMUP_QUERY_TOKENS tokens."""
        (empty,) = self.model.encoder.encode("", [""])
        shortest = len(empty.input_ids)
        longest = shortest + self.model.encoder.max_document_tokens + WARMUP_QUERY_TOKENS
        buckets = shape_buckets(shortest, longest)
        return [n for n in buckets if n <= self.max_sequence_length] or [self.max_sequence_length]

    def warmup(self) -> list[int]:
        """Run every shape bucket once so the first real requests meet no cold start; returns the lengths."""
        (pair,) = self.model.encoder.encode("warmup query", ["warmup document"])
        base = pair.input_ids
        lengths = self.warmup_lengths()
        rows = [(base * (n // len(base) + 1))[-n:] for n in lengths]  # real tokens, full length
        start = time.perf_counter()
        self.batcher.warmup(rows)
        logger.info("warmed %d shape buckets (%s tokens) in %.2f s", len(rows), lengths, time.perf_counter() - start)
        return lengths

    def close(self) -> None:
        self.batcher.close()
        self._tokenize_pool.shutdown(wait=False, cancel_futures=True)
