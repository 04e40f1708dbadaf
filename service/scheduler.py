"""The batcher: one queue in front of the model, shared by every request (after TEI's queue.rs).

arrive(n)          a request about to be tokenized; refused at once (QueueFull, 429) when even
                   its least cost would not fit max_queue_tokens, or when the work ahead of it
                   (queued, arriving, and what remains of the running pass, at the measured
                   tokens/s) would keep it waiting longer than max_queue_delay_ms: past that
                   point an answer comes too late for a search backend, and a quick 429 lets
                   it retry elsewhere while accepted requests keep their latency
submit(work)       a request's micro-batches ("jobs", planned on the token budget) join
                   the queue; when more than max_queue_tokens padded tokens would be
                   waiting, QueueFull (429) unless the queue is empty
run_step(work, f)  one step of a request's explanation, queued like any job
the loop           takes the next request round-robin, one job per request per turn, so a
                   1,000-document request cannot starve ten small ones; on the plain score
                   graph, other requests' head jobs of a close length join the same forward
                   pass while the budget allows (shared-prefix jobs run alone: one prefix
                   cache per pass); the batch is held open at most max_wait_ms, and only
                   while requests are still being tokenized
dead work          cancelled requests leave the queue at once; a deadline fires on a timer
                   (504 without waiting for the model) and removes the request's jobs; the
                   inference thread checks once more right before each forward pass
inference thread   one thread runs every forward pass (onnxruntime parallelises inside); a pass
                   past the inference timeout fails its requests (504) and the next batches run
                   on a fresh thread (service.inference_thread: stuck calls, readiness, liveness)
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from afrl.padding import left_pad
from service.admission import Deadline, QueueFull
from service.backend import Backend, prefix_backend
from service.batching import SEQUENCE_BUCKET, bucket_length, can_join, plan_micro_batches
from service.inference_thread import BackendStuck, InferenceThread, InferenceTimeout
from service.kv import KVCache
from service.metrics import ServiceMetrics

logger = logging.getLogger(__name__)

RETRY_AFTER_MAX_S = 60


class ShuttingDown(Exception):
    """The service stopped before this work ran."""


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
    tokens: int  # what it costs: rows x length (+ the prefix, for a request's first shared-prefix job)

    @property
    def mergeable(self) -> bool:
        return self.work.prefix_ids is None


@dataclass(eq=False)
class StepJob:
    work: RequestWork
    fn: Callable[[], Any]
    future: asyncio.Future
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
    prefix_cache: KVCache | None = None
    cancelled: bool = False
    finished: bool = False  # all score jobs delivered, or failed
    queued: bool = False  # in the scheduler's round-robin order
    submitted: float = 0.0  # time.perf_counter()
    first_start: float | None = None
    inference_seconds: float = 0.0
    timer: asyncio.TimerHandle | None = None

    def dead(self) -> bool:
        """Work that must not reach the model: cancelled, or scoring not yet done past its deadline."""
        if self.cancelled:
            return True
        return not self.finished and self.deadline is not None and self.deadline.expired()

    @property
    def queue_seconds(self) -> float:
        return (self.first_start or self.submitted) - self.submitted


class Scheduler:
    """Owns the queue and the inference thread; created and used on the event loop."""

    def __init__(
        self,
        backend: Backend,
        pad_id: int,
        max_batch_tokens: int,
        max_queue_tokens: int,
        max_wait_ms: float,
        metrics: ServiceMetrics,
        max_queue_delay_ms: float = 0.0,
        inference_timeout_ms: float = 0.0,
    ):
        self.backend = backend
        self._prefix = prefix_backend(backend)  # None: shared-prefix work cannot run here
        self.pad_id = pad_id
        self.max_batch_tokens = max_batch_tokens
        self.max_queue_tokens = max_queue_tokens
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_queue_delay_s = max_queue_delay_ms / 1000.0
        self.metrics = metrics
        self.arriving = 0  # requests admitted and still tokenizing: worth holding a batch open for
        self.arriving_tokens = 0  # lower bounds of what those requests will cost
        self.queued_tokens = 0
        self._order: deque[RequestWork] = deque()
        self._wake = asyncio.Event()
        self._tokens_per_s: float | None = None
        self._running: tuple[float, int] | None = None  # (perf_counter at start, padded tokens) of the pass
        self._thread = InferenceThread(inference_timeout_ms / 1000.0, on_change=self._stuck_calls_changed)
        self._task: asyncio.Task | None = None
        self._closed = False

    # ---- called by the engine, on the event loop -------------------------------------------

    def start(self) -> None:
        """Run the loop on the running event loop; idempotent."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="afrl-batcher")

    def arrive(self, documents: int) -> int:
        """A request starts tokenizing: refuse it now (QueueFull) if even its least possible cost
        (every row pads to at least one bucket) cannot fit, so refusals skip tokenization."""
        estimate = documents * SEQUENCE_BUCKET
        ahead = self.queued_tokens + self.arriving_tokens
        if ahead and ahead + estimate > self.max_queue_tokens:
            raise QueueFull(
                f"{ahead} tokens are queued or arriving, this request adds at least {estimate}, "
                f"the limit is {self.max_queue_tokens}",
                retry_after_s=self.retry_after_s(),
            )
        self.check_delay()
        self.arriving += 1
        self.arriving_tokens += estimate
        return estimate

    def arrival_done(self, estimate: int) -> None:
        self.arriving -= 1
        self.arriving_tokens -= estimate
        self._wake.set()

    def submit(self, work: RequestWork) -> None:
        """Queue a request's score jobs; QueueFull when the queued tokens would pass the bound."""
        if self._closed:
            raise ShuttingDown("the service is shutting down")
        if work.prefix_ids is not None and self._prefix is None:
            raise ValueError("shared-prefix work for a backend that cannot score on a prefix")
        self._thread.check()
        self.start()
        lengths = [len(r) for r in work.rows]
        jobs = []
        for batch in plan_micro_batches(lengths, self.max_batch_tokens):
            length = bucket_length(max(lengths[i] for i in batch))
            jobs.append(ScoreJob(work, batch, length, len(batch) * length))
        if work.prefix_ids is not None:
            jobs[0].tokens += len(work.prefix_ids)
        tokens = sum(j.tokens for j in jobs)
        if self.queued_tokens and self.queued_tokens + tokens > self.max_queue_tokens:
            raise QueueFull(
                f"{self.queued_tokens} tokens are queued, this request adds {tokens}, "
                f"the limit is {self.max_queue_tokens}",
                retry_after_s=self.retry_after_s(),
            )
        work.submitted = time.perf_counter()
        work.pending_scores = len(jobs)
        if work.deadline is not None:
            loop = asyncio.get_running_loop()
            work.timer = loop.call_later(work.deadline.remaining_s(), self._expire, work, work.deadline)
        self._enqueue(work, jobs)

    async def run_step(self, work: RequestWork, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the inference thread in the work's turn; cancelled with the work."""
        if work.cancelled:
            raise asyncio.CancelledError
        self._thread.check()
        future = asyncio.get_running_loop().create_future()
        self._enqueue(work, [StepJob(work, fn, future)])
        return await future

    def cancel(self, work: RequestWork) -> None:
        """The request is gone (client disconnect, finished, failed): none of its queued work runs."""
        work.cancelled = True
        self._drop(work)

    def check_delay(self) -> None:
        """QueueFull when a request arriving now would wait past max_queue_delay_ms (cheap: the
        service calls it before reading a body, and again when the request arrives)."""
        wait = self.estimated_wait_s()
        if self.max_queue_delay_s and wait > self.max_queue_delay_s:
            raise QueueFull(
                f"the work ahead would keep this request waiting about {wait * 1000:.0f} ms, "
                f"the limit is {self.max_queue_delay_s * 1000:g} ms",
                retry_after_s=self.retry_after_s(),
            )

    def estimated_wait_s(self) -> float:
        """Seconds before a request arriving now would start computing: the queued and arriving
        tokens plus the rest of the running pass, at the measured throughput (0 before any)."""
        if not self._tokens_per_s:
            return 0.0
        wait = (self.queued_tokens + self.arriving_tokens) / self._tokens_per_s
        running = self._running
        if running is not None:
            started, tokens = running
            wait += max(0.0, tokens / self._tokens_per_s - (time.perf_counter() - started))
        return wait

    def retry_after_s(self) -> int:
        """Seconds until the queued tokens should have drained, at the measured throughput."""
        if not self._tokens_per_s:
            return 1
        return max(1, min(RETRY_AFTER_MAX_S, math.ceil(self.queued_tokens / self._tokens_per_s)))

    def warmup(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the inference thread now (blocking): warmup before the service is ready."""
        return self._thread.run_blocking(fn)

    def close(self) -> None:
        self._closed = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            loop = self._task.get_loop()
            if not loop.is_running() and not loop.is_closed():  # closed from sync code (afrl eval)
                loop.run_until_complete(asyncio.gather(self._task, return_exceptions=True))
        for work in list(self._order):
            self._fail(work, ShuttingDown("the service is shutting down"))
        self._thread.shutdown()

    # ---- queue bookkeeping -------------------------------------------------------------------

    def _enqueue(self, work: RequestWork, jobs: list) -> None:
        work.jobs.extend(jobs)
        self._add_tokens(sum(j.tokens for j in jobs))
        if not work.queued:
            work.queued = True
            self._order.append(work)
        self._wake.set()

    def _add_tokens(self, tokens: int) -> None:
        self.queued_tokens += tokens
        self.metrics.queue_tokens.set(self.queued_tokens)

    def _drop(self, work: RequestWork) -> None:
        """Remove every queued job of `work`; cancel its pending steps."""
        if work.timer is not None:
            work.timer.cancel()
        self._add_tokens(-sum(j.tokens for j in work.jobs))
        for job in work.jobs:
            if isinstance(job, StepJob) and not job.future.done():
                job.future.cancel()
        work.jobs.clear()
        if work.queued:
            work.queued = False
            self._order.remove(work)

    def _fail(self, work: RequestWork, error: BaseException) -> None:
        self._drop(work)
        if not work.finished:
            work.finished = True
            work.results.put_nowait(error)

    def _expire(self, work: RequestWork, deadline: Deadline) -> None:
        """Deadline timer: fail the request if some of its scoring has not started."""
        if not work.finished and any(isinstance(j, ScoreJob) for j in work.jobs):
            self._fail(work, deadline.error())

    # ---- the loop ----------------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            if not self._order:
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._hold_open()
            batch = self._take()
            if not batch:
                continue
            # Kept here, on the event loop, not on the inference thread: a pass abandoned past the
            # timeout never comes back to this loop, so it cannot clear the next pass's `_running`
            # or pull the measured throughput down when it finally returns.
            self._running = (time.perf_counter(), sum(j.tokens for j in batch))
            try:
                outcome, tokens, elapsed = await self._thread.run(self._execute, batch)
                self._measure_throughput(tokens, elapsed)
            except asyncio.CancelledError:
                raise
            except (InferenceTimeout, BackendStuck) as e:  # logged by the inference thread
                if isinstance(e, InferenceTimeout):
                    self.metrics.inference_timeouts.inc()
                outcome = e
            except Exception as e:  # the backend failed: the requests in this batch fail, the service goes on
                logger.exception("forward pass failed")
                outcome = e
            finally:
                self._running = None
            self._deliver(batch, outcome)

    def _measure_throughput(self, tokens: int, elapsed: float) -> None:
        """Padded tokens per second, smoothed: what queue-delay admission and Retry-After estimate with."""
        if tokens and elapsed > 0:
            rate = tokens / elapsed
            self._tokens_per_s = rate if self._tokens_per_s is None else 0.8 * self._tokens_per_s + 0.2 * rate

    def health(self) -> None:
        """Raise if the batcher cannot serve well: its loop ended, or a forward pass is stuck."""
        if self._closed:
            raise RuntimeError("the batcher is closed")
        if self._task is not None and self._task.done():
            error = None if self._task.cancelled() else self._task.exception()
            raise RuntimeError(f"the batcher loop stopped: {error!r}")
        if self._thread.stuck:
            raise RuntimeError(
                f"{self._thread.stuck} forward pass(es) stuck past the inference timeout, the oldest for "
                f"{self._thread.stuck_for_s():.1f} s"
            )

    def liveness(self) -> None:
        """Raise BackendStuck when the backend is wedged (what /health/live reports)."""
        self._thread.check()

    def _stuck_calls_changed(self) -> None:
        """A forward pass was abandoned or came back: report it; when wedged, fail whatever waits."""
        self.metrics.stuck_inference_calls.set(self._thread.stuck)
        if self._thread.wedged:
            for work in list(self._order):
                error = BackendStuck("the model backend is not answering; retry on another replica")
                for job in work.jobs:
                    if isinstance(job, StepJob) and not job.future.done():
                        job.future.set_exception(error)  # an explanation step fails, not cancels, its request
                self._fail(work, error)
        self._wake.set()

    async def _hold_open(self) -> None:
        """Wait up to max_wait_ms for requests still tokenizing, if they could join the next batch."""
        if not (self.max_wait_s and self.arriving):
            return
        head = self._order[0].jobs[0] if self._order and self._order[0].jobs else None
        if not isinstance(head, ScoreJob) or not head.mergeable:
            return
        until = time.monotonic() + self.max_wait_s
        while self.arriving and self.queued_tokens < self.max_batch_tokens:
            remaining = until - time.monotonic()
            if remaining <= 0:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                return

    def _take(self) -> list:
        """The next forward pass: the head request's next job, plus close-length jobs of others."""
        if not self._order:  # everything was cancelled while the batch was held open
            return []
        first = self._order.popleft()
        first.queued = False
        job = first.jobs.popleft()
        if first.jobs:
            first.queued = True
            self._order.append(first)
        batch = [job]
        if isinstance(job, ScoreJob) and job.mergeable:
            rows, length = len(job.rows), job.length
            for other in list(self._order):
                head = other.jobs[0]
                if other is first or not isinstance(head, ScoreJob) or not head.mergeable:
                    continue
                if not can_join(rows, length, len(head.rows), head.length, self.max_batch_tokens):
                    continue
                batch.append(other.jobs.popleft())
                rows, length = rows + len(head.rows), max(length, head.length)
                self._order.remove(other)
                if other.jobs:
                    self._order.append(other)  # its turn is used: to the back of the line
                else:
                    other.queued = False
        self._add_tokens(-sum(j.tokens for j in batch))
        return batch

    # ---- on the inference thread ---------------------------------------------------------------

    def _execute(self, batch: list) -> tuple[dict, int, float]:
        """Run one batch; returns ({job: result}, padded tokens computed, seconds). Dead work is
        skipped right before compute."""
        live = [j for j in batch if not j.work.dead()]
        if not live:
            return {}, 0, 0.0
        start = time.perf_counter()
        for job in live:
            if job.work.first_start is None:
                job.work.first_start = start
                self.metrics.queue_duration.observe(start - job.work.submitted)
        if isinstance(live[0], StepJob):
            out = {live[0]: live[0].fn()}
        elif live[0].mergeable:
            out = self._score_plain(live)
        else:
            out = {live[0]: self._score_prefixed(live[0])}
        elapsed = time.perf_counter() - start
        for job in live:
            job.work.inference_seconds += elapsed
        return out, sum(j.tokens for j in live), elapsed

    def _score_plain(self, jobs: list[ScoreJob]) -> dict:
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

    def _score_prefixed(self, job: ScoreJob) -> ScoredRows:
        work, scorer, prefix_ids = job.work, self._prefix, job.work.prefix_ids
        if scorer is None or prefix_ids is None:  # submit() refuses such work
            raise RuntimeError("a shared-prefix job without a prefix backend or prefix")
        saved = len(prefix_ids) * len(job.rows)
        if work.prefix_cache is None:
            start = time.perf_counter()
            work.prefix_cache = scorer.prefix_cache(np.asarray([prefix_ids], dtype=np.int64))  # (1, P)
            self.metrics.inference_duration.observe(time.perf_counter() - start)
            saved -= len(prefix_ids)
        input_ids, attention_mask = left_pad([work.rows[i] for i in job.rows], self.pad_id, job.length)  # (B, T)
        start = time.perf_counter()
        logits, cache = scorer.score_with_prefix(work.prefix_cache, input_ids, attention_mask, work.keep_cache)
        self._record(input_ids, attention_mask, logits, start)
        self.metrics.prefix_tokens_saved.inc(saved)
        return ScoredRows(job.rows, logits, cache)

    def _record(self, input_ids: np.ndarray, attention_mask: np.ndarray, logits: np.ndarray, start: float) -> None:
        self.metrics.inference_duration.observe(time.perf_counter() - start)
        expected = (input_ids.shape[0], self.backend.num_labels)
        if logits.shape != expected:
            raise RuntimeError(f"backend returned label logits of shape {logits.shape}, expected {expected}")
        tokens = input_ids.size
        self.metrics.batch_size.observe(input_ids.shape[0])
        self.metrics.batch_tokens.observe(tokens)
        self.metrics.padding_ratio.observe(1.0 - float(attention_mask.sum()) / tokens)

    # ---- back on the event loop ------------------------------------------------------------------

    def _deliver(self, batch: list, outcome: dict | Exception) -> None:
        for job in batch:
            work = job.work
            if isinstance(job, StepJob):
                if job.future.done():
                    continue
                if isinstance(outcome, Exception):
                    job.future.set_exception(outcome)
                elif job in outcome:
                    job.future.set_result(outcome[job])
                else:
                    job.future.cancel()
                continue
            if work.finished:
                continue  # failed or expired meanwhile: its late results are dropped
            if isinstance(outcome, Exception):
                self._fail(work, outcome)
            elif job not in outcome:  # skipped as dead right before compute
                if work.cancelled:
                    self._drop(work)
                else:
                    self._fail(work, work.deadline.error())
            else:
                work.results.put_nowait(outcome[job])
                work.pending_scores -= 1
                if work.pending_scores == 0:
                    work.finished = True
                    if work.timer is not None:
                        work.timer.cancel()
                    work.results.put_nowait(None)
