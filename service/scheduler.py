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
explain(work, s)   a request's explanation stream joins the decode batch; the request's turns
                   step it, with every other stream in that batch
the loop           takes the next request round-robin, one job per request per turn, so a
                   1,000-document request cannot starve ten small ones; other requests' head
                   jobs of a close length join the same forward pass while the budget allows:
                   full prompts on the score graph, or, with cross-request batching, document
                   rows on the shared prefix (one shared past: the guideline's cache and each
                   request's own query part, service.passes); the batch is held open at most
                   max_wait_ms, and only while requests are still being tokenized
decoding           a decoding request's turn is decode passes for every stream of its batch, for
                   up to decode_slice_ms (at least one pass): with cross-request batching one
                   batch holds every request's streams, so each turn moves all of them several
                   tokens (streams join and leave between passes); without it, each request
                   has its own batch
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
from collections.abc import Callable, Sequence
from typing import Any

from service.admission import Deadline, QueueFull
from service.backend import Backend, decode_backend
from service.batching import SEQUENCE_BUCKET, bucket_length, can_join, can_share_past, plan_micro_batches
from service.inference_thread import BackendStuck, InferenceThread, InferenceTimeout
from service.metrics import ServiceMetrics
from service.passes import PassRunner
from service.reasoning import DecodeBatch, DecodeStep, ExplanationStream
from service.work import DecodeJob, RequestWork, ScoreJob

__all__ = ["RequestWork", "Scheduler", "ShuttingDown"]  # RequestWork: defined in service.work, queued here

logger = logging.getLogger(__name__)

RETRY_AFTER_MAX_S = 60


class ShuttingDown(Exception):
    """The service stopped before this work ran."""


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
        cross_request_batching: bool = True,
        guideline_ids: Sequence[int] = (),
        decode_slice_ms: float = 0.0,
    ):
        """`guideline_ids`: the tokens every prefix starts with, cached once (used when the backend can
        extend a cache; empty: every request computes its whole prefix)."""
        self.backend = backend
        self.passes = PassRunner(backend, pad_id, metrics, guideline_ids)
        self._prefix = self.passes.prefix  # None: shared-prefix work cannot run here
        self._decoder = decode_backend(backend)
        self.pad_id = pad_id
        self.max_batch_tokens = max_batch_tokens
        self.max_queue_tokens = max_queue_tokens
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_queue_delay_s = max_queue_delay_ms / 1000.0
        self.cross_request_batching = cross_request_batching
        self.decode_slice_s = decode_slice_ms / 1000.0
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
        self._decode_batches: dict[RequestWork | None, DecodeBatch] = {}  # None: the one shared batch
        self._streams: dict[ExplanationStream, tuple[RequestWork, DecodeBatch]] = {}  # active streams

    @property
    def guideline_length(self) -> int:
        """Tokens of the cached guideline (0: none, every request computes its whole prefix)."""
        return len(self.passes.guideline_ids)

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
            work.base_length = self.passes.base_length(work.prefix_ids)
            jobs[0].tokens += work.own_length
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

    def explain(self, work: RequestWork, stream: ExplanationStream) -> None:
        """Decode `stream` from now on: it joins its decode batch, and the request's turns step it."""
        if work.cancelled:
            raise asyncio.CancelledError
        if self._decoder is None:
            raise RuntimeError("this backend cannot decode explanations")
        self._thread.check()
        self.start()
        key = None if self.cross_request_batching else work
        batch = self._decode_batches.get(key)
        if batch is None:
            batch = self._decode_batches[key] = DecodeBatch(self._decoder)
        work.stream = stream
        self._streams[stream] = (work, batch)
        batch.add(stream)
        self._enqueue(work, [DecodeJob(work, batch)])

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
        for stream in list(self._streams):  # also those whose turn was running
            self._end_stream(stream, None)
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
        """Remove every queued job of `work`; its explanation stream leaves its decode batch."""
        if work.timer is not None:
            work.timer.cancel()
        self._add_tokens(-sum(j.tokens for j in work.jobs))
        work.jobs.clear()
        if work.queued:
            work.queued = False
            self._order.remove(work)
        if work.stream is not None:
            self._end_stream(work.stream, None)

    def _end_stream(self, stream: ExplanationStream, error: BaseException | None) -> None:
        """The stream leaves its batch: with `error`, its consumer gets it; else it is cancelled (a
        stream that finished is already done and gets nothing more)."""
        entry = self._streams.pop(stream, None)
        if entry is not None:
            work, batch = entry
            batch.remove(stream)
            work.stream = None
            if self._decode_batches.get(work) is batch:  # a request's own batch (no cross-request batching)
                del self._decode_batches[work]
            if work.jobs and any(isinstance(j, DecodeJob) for j in work.jobs):
                work.jobs = type(work.jobs)(j for j in work.jobs if not isinstance(j, DecodeJob))
                if not work.jobs and work.queued:
                    work.queued = False
                    self._order.remove(work)
        if error is not None:
            stream.fail(error)
        else:
            stream.cancel()

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
            error = BackendStuck("the model backend is not answering; retry on another replica")
            for stream in list(self._streams):  # an explanation fails, not cancels, its request
                self._end_stream(stream, error)
            for work in list(self._order):
                self._fail(work, error)
        self._wake.set()

    def _merges(self, job: ScoreJob) -> bool:
        """Whether other requests' jobs may join this one's pass."""
        return job.plain or self.cross_request_batching

    async def _hold_open(self) -> None:
        """Wait up to max_wait_ms for requests still tokenizing, if they could join the next batch."""
        if not (self.max_wait_s and self.arriving):
            return
        head = self._order[0].jobs[0] if self._order and self._order[0].jobs else None
        if not isinstance(head, ScoreJob) or not self._merges(head):
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
        if isinstance(job, ScoreJob) and self._merges(job):
            rows, length = len(job.rows), job.length
            works = [first]
            for other in list(self._order):
                head = other.jobs[0]
                if other is first or not isinstance(head, ScoreJob) or head.plain != job.plain:
                    continue
                if not can_join(rows, length, len(head.rows), head.length, self.max_batch_tokens):
                    continue
                if not job.plain and not self._can_share_past(job, head, [*works, other]):
                    continue
                batch.append(other.jobs.popleft())
                works.append(other)
                rows, length = rows + len(head.rows), max(length, head.length)
                self._order.remove(other)
                if other.jobs:
                    self._order.append(other)  # its turn is used: to the back of the line
                else:
                    other.queued = False
        self._add_tokens(-sum(j.tokens for j in batch))
        return batch

    def _can_share_past(self, job: ScoreJob, head: ScoreJob, works: list[RequestWork]) -> bool:
        """Shared-prefix rows join a pass of their own padded length only: a pass costs its padded tokens
        (and every row attends over the whole shared past), so padding another request's rows up a
        bucket would cost more than the pass it saves."""
        if head.length != job.length:
            return False
        base = self.guideline_length if any(w.base_length for w in works) else 0
        return can_share_past(base, [w.own_length for w in works], [len(w.prefix_ids or ()) for w in works])

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
        out: dict
        if isinstance(live[0], DecodeJob):
            step = live[0].batch.run(self.decode_slice_s)
            step.seconds = time.perf_counter() - start
            for rows in step.passes:
                self.metrics.decode_batch_size.observe(rows)
            out = {live[0]: step}
        elif live[0].plain:
            out = self.passes.score_plain(live)
        else:
            out = self.passes.score_prefixed(live)
        elapsed = time.perf_counter() - start
        for job in live:
            job.work.inference_seconds += elapsed
        return out, sum(j.tokens for j in live), elapsed

    # ---- back on the event loop ------------------------------------------------------------------

    def _deliver(self, batch: list, outcome: dict | Exception) -> None:
        for job in batch:
            if isinstance(job, DecodeJob):
                self._deliver_step(job, outcome)
                continue
            work = job.work
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

    def _deliver_step(self, job: DecodeJob, outcome: dict | Exception) -> None:
        """Tokens to every stream the pass stepped; a failed pass fails every stream of its batch (which
        starts afresh: an abandoned pass may still change the old one when it returns)."""
        if isinstance(outcome, Exception):
            for key, batch in list(self._decode_batches.items()):
                if batch is job.batch:
                    del self._decode_batches[key]
            for stream, (_, batch) in list(self._streams.items()):
                if batch is job.batch:
                    self._end_stream(stream, outcome)
            return
        step = outcome.get(job)
        if not isinstance(step, DecodeStep):  # skipped: its request was cancelled
            return
        for stream, produced in step.produced.items():
            entry = self._streams.get(stream)
            if entry is not None and entry[0] is not job.work:  # the pass computed its tokens too
                entry[0].inference_seconds += step.seconds
            stream.deliver(produced)
        for stream in step.finished:
            stream.finish()
            self._end_stream(stream, None)
        work = job.work
        if work.stream is not None and not work.cancelled and work.stream in self._streams:
            self._enqueue(work, [DecodeJob(work, job.batch)])
