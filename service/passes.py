"""One forward pass on the inference thread: the score jobs the scheduler put together, run on the backend.

    plain      full prompts of one or more requests, left-padded, on the score graph
    prefixed   document rows of one or more requests after their prefixes, on score_prefix:
               1. each request's own prefix part, if not computed yet: the queries of requests
                  that start with the guideline in one extension on the guideline's cache (computed
                  once per model load), any other prefix whole on the prefix graph
               2. one pass on a shared past [guideline][own part A][own part B]..., every row
                  seeing the guideline and its own request's part (a pass of one request uses that
                  request's whole prefix cache as it is)

`afrl_prefix_tokens_saved_total` counts prefix tokens not computed: each row's
whole prefix, less what this pass computed of it (a request's own part once).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np

from afrl.padding import left_pad
from service.backend import Backend, ExtendBackend, PrefixBackend, extend_backend, prefix_backend
from service.kv import KVCache, shared_past
from service.metrics import ServiceMetrics
from service.work import RequestWork, ScoredRows, ScoreJob

logger = logging.getLogger(__name__)


class PassRunner:
    """Runs score passes; owns the guideline's cache (one per model load, built on first use or warmup)."""

    def __init__(self, backend: Backend, pad_id: int, metrics: ServiceMetrics, guideline_ids: Sequence[int] = ()):
        self.backend = backend
        self.pad_id = pad_id
        self.metrics = metrics
        self.prefix: PrefixBackend | None = prefix_backend(backend)
        self.extend: ExtendBackend | None = extend_backend(backend)
        self.guideline_ids = list(guideline_ids) if self.extend is not None else []
        self._guideline: KVCache | None = None

    def base_length(self, prefix_ids: Sequence[int]) -> int:
        """Guideline tokens a prefix takes from the guideline cache: all of them when it starts with
        them and has a query after them, else 0 (it is computed whole)."""
        g = len(self.guideline_ids)
        if g and len(prefix_ids) > g and list(prefix_ids[:g]) == self.guideline_ids:
            return g
        return 0

    def guideline_cache(self) -> KVCache:
        """The guideline's cache (1, Hkv, G, D), computed on the first call."""
        if self._guideline is None:
            if self.prefix is None or not self.guideline_ids:
                raise RuntimeError("no guideline cache on this backend")
            start = time.perf_counter()
            self._guideline = self.prefix.prefix_cache(np.asarray([self.guideline_ids], dtype=np.int64))
            self.metrics.inference_duration.observe(time.perf_counter() - start)
            logger.info("guideline cache: %d tokens, %.1f MB", self._guideline.length, self._guideline.nbytes() / 1e6)
        return self._guideline

    def score_plain(self, jobs: list[ScoreJob]) -> dict[ScoreJob, ScoredRows]:
        rows = [job.work.rows[i] for job in jobs for i in job.rows]
        input_ids, attention_mask = left_pad(rows, self.pad_id, max(j.length for j in jobs))  # (B, T)
        start = time.perf_counter()
        logits = np.asarray(self.backend.label_logits(input_ids, attention_mask))  # (B, K)
        self._record(input_ids, attention_mask, logits, start)
        out, first = {}, 0
        for job in jobs:
            out[job] = ScoredRows(job.rows, logits[first : first + len(job.rows)], None)
            first += len(job.rows)
        return out

    def score_prefixed(self, jobs: list[ScoreJob]) -> dict[ScoreJob, ScoredRows]:
        scorer = self.prefix
        if scorer is None:  # the scheduler refuses shared-prefix work without a prefix backend
            raise RuntimeError("shared-prefix jobs without a prefix backend")
        works = list(dict.fromkeys(job.work for job in jobs))
        computed = self._own_parts([w for w in works if w.segment is None])
        past = self._past(works, jobs)
        input_ids, attention_mask = left_pad(
            [job.work.rows[i] for job in jobs for i in job.rows], self.pad_id, max(j.length for j in jobs)
        )  # (B, T)
        keep = any(w.keep_cache for w in works)
        start = time.perf_counter()
        logits, cache = scorer.score_with_prefix(past, input_ids, attention_mask, keep)
        logits = np.asarray(logits)
        self._record(input_ids, attention_mask, logits, start)
        whole = sum(len(job.work.prefix_ids or ()) * len(job.rows) for job in jobs)
        self.metrics.prefix_tokens_saved.inc(whole - computed)
        out, first = {}, 0
        for job in jobs:
            n = len(job.rows)
            own = cache.rows(first, first + n) if cache is not None and job.work.keep_cache else None
            out[job] = ScoredRows(job.rows, logits[first : first + n], own)
            first += n
        return out

    def _own_parts(self, works: list[RequestWork]) -> int:
        """Compute each request's own prefix part; returns the tokens computed."""
        on_guideline = [w for w in works if w.base_length]
        if on_guideline and self.extend is not None:
            guideline = self.guideline_cache()
            queries = [(w.prefix_ids or [])[w.base_length :] for w in on_guideline]
            input_ids, attention_mask = left_pad(queries, self.pad_id)  # (R, Q)
            start = time.perf_counter()
            own = self.extend.extend_cache(guideline, input_ids, attention_mask)  # (R, Hkv, Q, D)
            self.metrics.inference_duration.observe(time.perf_counter() - start)
            for r, (work, query) in enumerate(zip(on_guideline, queries, strict=True)):
                work.base, work.segment = guideline, own.tail(r, len(query))
        for work in works:
            if work.segment is None and self.prefix is not None:
                work.base_length = 0  # computed whole
                start = time.perf_counter()
                work.segment = self.prefix.prefix_cache(np.asarray([work.prefix_ids], dtype=np.int64))  # (1, P)
                self.metrics.inference_duration.observe(time.perf_counter() - start)
        return sum(w.own_length for w in works)

    def _past(self, works: list[RequestWork], jobs: list[ScoreJob]) -> KVCache:
        """The past of this pass: one request's own prefix cache, or a shared past with a mask per row."""
        if len(works) == 1:
            past = works[0].prefix_cache()
            if past is None:
                raise RuntimeError("a request's prefix cache is missing after computing it")
            return past
        parts: list[KVCache] = []
        guideline = next((w.base for w in works if w.base is not None), None)
        if guideline is not None:
            parts.append(guideline)
        where = {}
        for work in works:
            if work.segment is None:
                raise RuntimeError("a request's prefix cache is missing after computing it")
            where[work] = len(parts)
            parts.append(work.segment)
        visible = []
        for job in jobs:
            seen = [0, where[job.work]] if job.work.base is not None else [where[job.work]]
            visible += [seen] * len(job.rows)
        return shared_past(parts, visible)

    def _record(self, input_ids: np.ndarray, attention_mask: np.ndarray, logits: np.ndarray, start: float) -> None:
        self.metrics.inference_duration.observe(time.perf_counter() - start)
        expected = (input_ids.shape[0], self.backend.num_labels)
        if logits.shape != expected:
            raise RuntimeError(f"backend returned label logits of shape {logits.shape}, expected {expected}")
        tokens = input_ids.size
        self.metrics.batch_size.observe(input_ids.shape[0])
        self.metrics.batch_tokens.observe(tokens)
        self.metrics.padding_ratio.observe(1.0 - float(attention_mask.sum()) / tokens)
