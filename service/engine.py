"""The scoring engine: (query, documents) -> grades as micro-batches finish, then explanations on request.

    tokenize   thread pool, overlapping inference; the shared prefix (guideline + query) once per request
    queue      the batcher (service.scheduler): token-budget micro-batches, fair across requests,
               bounded in tokens (429), deadlines and cancellations honoured before compute
    score      shared-prefix graphs when the backend has them (the prefix runs once, its KV cache
               serves every document), else full left-padded prompts on the score graph
    guideline  the tokens every prefix starts with (the system turn) are cached once per model load;
               a request computes only its query on top (AFRL_GUIDELINE_CACHE, service.passes)
    grades     afrl.scoring.grade_results over each micro-batch's label logits
    results    with AFRL_RESULT_CACHE_SIZE, pairs scored before are answered from an LRU of their
               label logits, before tokenizing (service.result_cache)
    explain    greedy decoding from the score's KV cache (service.reasoning): every active explanation,
               of every request, steps in one decode pass per turn

`ScoringEngine.start` admits a request and returns a `ScoreRun`: iterate
`run.scores()` for the documents graded by each finished micro-batch, then
`run.explain(indices)` for explanation deltas; `run.close()` drops whatever
is still queued (the HTTP layer calls it when the client goes away).

The engine is the one object the HTTP layer talks to:

    check_admission()  429 before a body is read: requests in flight at max_queue, or the work
                       ahead past max_queue_delay_ms (the queued-token bound is checked as a
                       request arrives and is submitted, by the scheduler that counts them)
    admit()            holds one of max_queue in-flight slots for the life of a request
    health()           raise unless it can serve well (/health/ready)
    liveness()         raise BackendStuck when the backend is wedged (/health/live)
    name, manifest, recipe, providers, reasoning, shared_prefix   what /info reports
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from afrl.manifest import Manifest
from afrl.padding import left_pad
from afrl.prompt import EncodedPair, PromptEncoder
from afrl.recipe import Recipe
from afrl.scoring import GradeResult, grade_results
from service.admission import Admission, Deadline
from service.artifact_loader import LoadedModel
from service.backend import DeviceBackend, decode_backend, extend_backend, prefix_backend
from service.batching import shape_buckets
from service.kv import KVCache, join
from service.metrics import ServiceMetrics
from service.reasoning import ExplanationStream
from service.result_cache import CachedScore, ResultCache
from service.scheduler import RequestWork, Scheduler
from service.settings import ServiceSettings

logger = logging.getLogger(__name__)

WARMUP_QUERY_TOKENS = 64  # query length assumed when choosing which shape buckets to warm
WARMUP_DECODE_STEPS = 2


GUIDELINE_PROBES = ("a", "A", "0", " ", "\n", "-", ":", "(", "ü", "Query")  # how queries may start


def guideline_ids(encoder: PromptEncoder) -> list[int]:
    """The tokens every request's prefix starts with: the system turn and the user turn up to where the
    query's text begins.

    Found as the common token prefix of the prefixes of probe queries that start differently: BPE
    may merge the template's last characters with a query's first ones (Qwen's tokenizer puts the
    space after "Query:" into the query's first token). A request whose prefix does not start with
    these tokens computes its whole prefix (service.passes), so the probes decide speed, never results.
    """
    return list(os.path.commonprefix([encoder.encode_prefix(q) for q in GUIDELINE_PROBES]))


class InputTooLong(Exception):
    """A prompt is longer than the model accepts even after document truncation."""


@dataclass
class ScoreOutcome:
    """A finished non-streamed request."""

    results: list[GradeResult]  # input order
    truncated: list[bool]  # per document: cut to max_document_tokens
    usage: dict[str, int] = field(default_factory=dict)
    explanations: dict[int, str] = field(default_factory=dict)  # document index -> explanation
    tokenize_seconds: float = 0.0
    queue_seconds: float = 0.0
    inference_seconds: float = 0.0


class ScoreRun:
    """One admitted request inside the engine.

    `work` scores the documents not found in the result cache: its row j is document `scored[j]`;
    the others are graded from `cached` from the start and come first out of `scores()`.
    """

    def __init__(
        self,
        engine: ScoringEngine,
        work: RequestWork,
        documents: int,
        scored: list[int],
        pairs: Sequence[EncodedPair],
        cached: dict[int, CachedScore],
        keys: list[bytes] | None,
        tokenize_seconds: float,
        keep: int,
        arrived: float,
    ):
        self.engine = engine
        self.work = work
        self.results: list[GradeResult | None] = [None] * documents
        self.truncated = [False] * documents
        self._scored = scored
        self._keys = keys
        self._prompt_tokens = [0] * documents
        for i, pair in zip(scored, pairs, strict=True):
            self.truncated[i], self._prompt_tokens[i] = pair.truncated, len(pair.prefix_ids) + len(pair.document_ids)
        for i, hit in cached.items():
            self.truncated[i], self._prompt_tokens[i] = hit.truncated, hit.prompt_tokens
        if cached:
            hits = sorted(cached)
            grades = grade_results(np.stack([cached[i].logits for i in hits]), engine.values)
            for i, grade in zip(hits, grades, strict=True):
                self.results[i] = grade
        self._cached = sorted(cached)
        self.usage = {"prompt_tokens": sum(self._prompt_tokens), "truncated_documents": sum(self.truncated)}
        self.tokenize_seconds = tokenize_seconds
        self.arrived = arrived
        self._keep = keep  # how many of the best documents keep their cache for explanation
        self._caches: dict[int, KVCache] = {}

    @property
    def queue_seconds(self) -> float:
        return self.work.queue_seconds

    @property
    def inference_seconds(self) -> float:
        return self.work.inference_seconds

    async def scores(self) -> AsyncIterator[list[int]]:
        """Yields the document indices graded by each finished micro-batch (first those the result
        cache answered), until all are graded."""
        values, cache = self.engine.values, self.engine.result_cache
        if self._cached:
            yield self._cached
        while True:
            item = await self.work.results.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            rows = [self._scored[r] for r in item.rows]
            for b, (row, grade) in enumerate(zip(rows, grade_results(item.logits, values), strict=True)):
                self.results[row] = grade
                if cache is not None and self._keys is not None:
                    logits = np.array(item.logits[b], dtype=np.float32)
                    cache.put(self._keys[row], CachedScore(logits, self._prompt_tokens[row], self.truncated[row]))
            if item.cache is not None and self._keep:
                self._keep_best(rows, item.cache)
            yield rows

    def _keep_best(self, rows: list[int], cache: KVCache) -> None:
        """Hold caches only for the documents that can still be among the `keep` best (copied out of
        the batch's arrays, so those can be freed)."""
        candidates = set(self._caches) | set(rows)
        keep = sorted(candidates, key=lambda i: (-self.result(i).score, i))[: self._keep]
        for row in set(self._caches) - set(keep):
            del self._caches[row]
        for b, row in enumerate(rows):
            if row in keep:
                self._caches[row] = cache.row(b)

    def result(self, index: int) -> GradeResult:
        """Document `index`'s grade, which its micro-batch has delivered."""
        result = self.results[index]
        if result is None:
            raise RuntimeError(f"document {index} is not graded yet")
        return result

    def graded(self) -> list[GradeResult]:
        """Every document's grade, input order, once `scores()` is exhausted."""
        return [self.result(i) for i in range(len(self.results))]

    def best(self, k: int | None = None) -> list[int]:
        """Indices of graded documents, best score first (ties: input order)."""
        graded = [i for i, r in enumerate(self.results) if r is not None]
        return sorted(graded, key=lambda i: (-self.result(i).score, i))[:k]

    async def explain(self, indices: Sequence[int]) -> AsyncIterator[tuple[int, str]]:
        """(document index, text delta) as tokens are decoded; the rows decode with every other
        request's explanations, one decode pass per turn."""
        engine = self.engine
        if not indices:
            return
        missing = [i for i in indices if i not in self._caches]
        if missing:
            raise RuntimeError(f"no kept cache for documents {missing}")
        decoder, eos_id, prefix = engine.decoder, engine.model.eos_id, self.work.prefix_cache()
        if decoder is None or eos_id is None or prefix is None:  # caches are kept only when all are there
            raise RuntimeError("this request's model cannot explain")
        labels = engine.manifest.labels
        first = [labels.token_ids[labels.values.index(self.result(i).grade)] for i in indices]
        documents = [self._caches.pop(i) for i in indices]
        stream = ExplanationStream(
            prefix, documents, indices, first, eos_id, engine.max_new_tokens, engine.model.tokenizer
        )
        engine.scheduler.explain(self.work, stream)
        first_token = True
        async for produced in stream.steps():
            if first_token:
                first_token = False
                engine.metrics.time_to_first_reasoning_token.observe(time.monotonic() - self.arrived)
            engine.metrics.reasoning_tokens.inc(len(produced))
            for index, token in produced:
                if text := stream.delta(index, token):
                    yield index, text

    def close(self) -> None:
        """Drop whatever of this request is still queued; idempotent."""
        self.engine.scheduler.cancel(self.work)
        self._caches.clear()


class ScoringEngine:
    """Scores (query, documents) with one loaded model; safe to share across requests on one event loop."""

    def __init__(
        self,
        model: LoadedModel,
        max_batch_tokens: int,
        metrics: ServiceMetrics,
        settings: ServiceSettings | None = None,
        scheduler: Scheduler | None = None,
    ):
        """`settings` gives every other knob (defaults when None; afrl eval passes only the budget)."""
        settings = (settings or ServiceSettings(model=model.folder)).model_copy(
            update={"max_batch_tokens": max_batch_tokens}
        )
        self.model = model
        self.settings = settings
        self.metrics = metrics
        self.values = model.manifest.labels.values
        self.max_sequence_length = model.manifest.max_sequence_length
        self.max_new_tokens = settings.max_new_tokens
        self.prefix_scorer = prefix_backend(model.backend)  # None: full prompts on the score graph
        self.decoder = decode_backend(model.backend) if model.eos_id is not None else None  # None: no explaining
        self.shared_prefix = self.prefix_scorer is not None
        self.reasoning = self.decoder is not None
        self.admission = Admission(settings.max_queue, metrics.queue_depth)
        cache_guideline = self.shared_prefix and settings.guideline_cache and extend_backend(model.backend) is not None
        self.scheduler = scheduler or Scheduler(
            model.backend,
            model.pad_id,
            settings.max_batch_tokens,
            settings.max_queue_tokens,
            settings.max_wait_ms,
            metrics,
            max_queue_delay_ms=settings.max_queue_delay_ms,
            inference_timeout_ms=settings.inference_timeout_ms,
            cross_request_batching=settings.cross_request_batching,
            guideline_ids=guideline_ids(model.encoder) if cache_guideline else (),
            decode_slice_ms=settings.decode_slice_ms,
        )
        size = settings.result_cache_size
        self.result_cache = ResultCache(size, model.name) if size else None
        workers = settings.tokenize_workers or min(4, os.cpu_count() or 1)
        self._tokenize_pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="afrl-tokenize")

    def start_background(self) -> None:
        """Start the batcher loop on the running event loop (else the first request starts it)."""
        self.scheduler.start()

    # ---- what the HTTP layer asks, besides scoring ------------------------------------------

    @property
    def name(self) -> str:
        """The model's name in responses and /info."""
        return self.model.name

    @property
    def manifest(self) -> Manifest:
        return self.model.manifest

    @property
    def recipe(self) -> Recipe | None:
        """What built the model, when its artifact records that (afrl.recipe)."""
        return self.model.recipe

    @property
    def providers(self) -> list[str]:
        """Execution providers of the backend, [] for one not on ONNX Runtime (a fake)."""
        backend = self.model.backend
        return list(backend.providers) if isinstance(backend, DeviceBackend) else []

    def check_admission(self) -> None:
        """QueueFull unless a request arriving now could be admitted; cheap, so the HTTP layer calls
        it before reading a body: under overload a refusal should cost next to nothing."""
        self.admission.check()
        self.scheduler.check_delay()

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Hold one in-flight slot (QueueFull when none is free) while the request lives."""
        with self.admission.admit():
            yield

    def health(self) -> None:
        """Raise unless the engine can serve well: backend healthy, batcher running, no pass stuck."""
        self.model.backend.health()
        self.scheduler.health()

    def liveness(self) -> None:
        """Raise BackendStuck when the backend is wedged (restart the process)."""
        self.scheduler.liveness()

    async def start(
        self,
        query: str,
        documents: Sequence[str],
        deadline: Deadline | None = None,
        keep: int = 0,
        arrived: float | None = None,
        max_document_tokens: int | None = None,
    ) -> ScoreRun:
        """Tokenize and queue one request. `keep`: how many of the best documents may be explained."""
        loop = asyncio.get_running_loop()
        arrived = time.monotonic() if arrived is None else arrived
        keep = keep if self.reasoning else 0
        keys, cached = self._look_up(query, documents, max_document_tokens, keep)
        scored = [i for i in range(len(documents)) if i not in cached]
        pairs: list[EncodedPair] = []
        tokenize_seconds = 0.0
        work = RequestWork([], finished=True)  # everything came from the result cache: nothing to run
        if scored:
            estimate = self.scheduler.arrive(len(scored))
            try:
                start = time.perf_counter()
                texts = [documents[i] for i in scored]
                pairs = await loop.run_in_executor(self._tokenize_pool, self.model.encoder.encode, query, texts)
                if max_document_tokens is not None:
                    pairs = self._truncate(pairs, max_document_tokens)
                tokenize_seconds = time.perf_counter() - start
                self.metrics.tokenize_duration.observe(tokenize_seconds)
                self._check_lengths(pairs)
                if deadline is not None and deadline.expired():
                    raise deadline.error()
                if self.shared_prefix:
                    rows, keep_cache = [p.document_ids for p in pairs], keep > 0
                    work = RequestWork(rows, pairs[0].prefix_ids, deadline, keep_cache)
                else:
                    work = RequestWork([p.input_ids for p in pairs], None, deadline)
                self.scheduler.submit(work)
            finally:
                self.scheduler.arrival_done(estimate)
        else:
            work.results.put_nowait(None)
        return ScoreRun(self, work, len(documents), scored, pairs, cached, keys, tokenize_seconds, keep, arrived)

    def _look_up(
        self, query: str, documents: Sequence[str], max_document_tokens: int | None, keep: int
    ) -> tuple[list[bytes] | None, dict[int, CachedScore]]:
        """Result-cache keys of the documents (None without a cache) and the hits. A request that asks
        for explanations needs every document's KV cache, so it is scored (and feeds the cache)."""
        cache = self.result_cache
        if cache is None:
            return None, {}
        limit = self.model.encoder.max_document_tokens
        if max_document_tokens is not None:
            limit = min(limit, max_document_tokens)
        keys = [cache.key(query, d, limit) for d in documents]
        if keep:
            return keys, {}
        hits = {i: hit for i, key in enumerate(keys) if (hit := cache.get(key)) is not None}
        self.metrics.result_cache_hits.inc(len(hits))
        self.metrics.result_cache_misses.inc(len(documents) - len(hits))
        return keys, hits

    async def score(
        self,
        query: str,
        documents: Sequence[str],
        deadline: Deadline | None = None,
        explain: int | None = None,
        arrived: float | None = None,
        max_document_tokens: int | None = None,
    ) -> ScoreOutcome:
        """Grade every document; with `explain`, also the explanations of the `explain` best."""
        run = await self.start(query, documents, deadline, explain or 0, arrived, max_document_tokens)
        try:
            async for _ in run.scores():
                pass
            explanations: dict[int, list[str]] = {}
            if explain:
                chosen = run.best(explain)
                explanations = {i: [] for i in chosen}
                async for index, text in run.explain(chosen):
                    explanations[index].append(text)
        finally:
            run.close()
        return ScoreOutcome(
            results=run.graded(),
            truncated=run.truncated,
            usage=run.usage,
            explanations={i: "".join(parts) for i, parts in explanations.items()},
            tokenize_seconds=run.tokenize_seconds,
            queue_seconds=run.queue_seconds,
            inference_seconds=run.inference_seconds,
        )

    def retry_after_s(self) -> int:
        return self.scheduler.retry_after_s()

    def _truncate(self, pairs: list[EncodedPair], limit: int) -> list[EncodedPair]:
        """A per-request document limit below the server's (Cohere's max_tokens_per_doc)."""
        if limit >= self.model.encoder.max_document_tokens:
            return pairs
        suffix = len(self.model.encoder.suffix_ids)
        out = []
        for p in pairs:
            document = p.document_ids[: len(p.document_ids) - suffix]
            if len(document) > limit:
                p = EncodedPair(p.prefix_ids, document[:limit] + p.document_ids[len(document) :], True)
            out.append(p)
        return out

    def _check_lengths(self, pairs: Sequence[EncodedPair]) -> None:
        longest = max(len(p.prefix_ids) + len(p.document_ids) for p in pairs)
        if longest > self.max_sequence_length:
            raise InputTooLong(
                f"a prompt takes {longest} tokens (query and guideline {len(pairs[0].prefix_ids)}, documents "
                f"truncated to {self.model.encoder.max_document_tokens}); the model accepts "
                f"{self.max_sequence_length}: shorten the query"
            )

    # ---- warmup --------------------------------------------------------------------------------

    def warmup_lengths(self) -> list[int]:
        """Padded lengths the score graph can see: full prompts, or document parts on the shared prefix."""
        (empty,) = self.model.encoder.encode("", [""])
        if self.shared_prefix:
            shortest = len(empty.document_ids)
            longest = shortest + self.model.encoder.max_document_tokens
            limit = self.max_sequence_length - len(empty.prefix_ids)
        else:
            shortest = len(empty.input_ids)
            longest = shortest + self.model.encoder.max_document_tokens + WARMUP_QUERY_TOKENS
            limit = self.max_sequence_length
        return [n for n in shape_buckets(shortest, longest) if n <= limit] or [limit]

    def warmup(self) -> list[int]:
        """Run every shape bucket once (and capture CUDA graphs) before the service reports ready."""
        (pair,) = self.model.encoder.encode("warmup query", ["warmup document"])
        backend, pad_id = self.model.backend, self.model.pad_id
        lengths = self.warmup_lengths()
        base = pair.document_ids if self.shared_prefix else pair.input_ids
        rows = [(base * (n // len(base) + 1))[-n:] for n in lengths]  # real tokens, full length
        if isinstance(backend, DeviceBackend):  # CUDA graphs: one per (rows, length) bucket
            shapes = backend.warmup_shapes(lengths, self.settings.max_batch_tokens)
        else:
            shapes = [(1, n) for n in lengths]
        start = time.perf_counter()

        def run_all() -> None:
            scorer, decoder = self.prefix_scorer, self.decoder
            if self.scheduler.guideline_length:
                self.scheduler.passes.guideline_cache()  # once per model load, before the first request
            prefix = scorer.prefix_cache(np.asarray([pair.prefix_ids])) if scorer is not None else None
            for batch, length in shapes:
                input_ids, attention_mask = left_pad([rows[lengths.index(length)]] * batch, pad_id)
                if scorer is None or prefix is None:
                    backend.label_logits(input_ids, attention_mask)
                    continue
                _, cache = scorer.score_with_prefix(prefix, input_ids, attention_mask, self.reasoning)
                if decoder is not None and cache is not None and batch == 1:
                    past = join(prefix, [cache])
                    for _ in range(WARMUP_DECODE_STEPS):
                        _, past = decoder.decode(np.asarray([[self.model.eos_id]]), past)

        self.scheduler.warmup(run_all)
        logger.info("warmed %d shapes (lengths %s) in %.2f s", len(shapes), lengths, time.perf_counter() - start)
        return lengths

    def close(self) -> None:
        self.scheduler.close()
        self._tokenize_pool.shutdown(wait=False, cancel_futures=True)
