"""The cross-request batcher on its own: merging, fairness, max wait, dead work, the token bound."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from service_testkit import PAD_ID, FakeBackend

from service.admission import Deadline, DeadlineExceeded, QueueFull
from service.batching import can_join
from service.metrics import ServiceMetrics
from service.scheduler import RequestWork, Scheduler


def make_scheduler(
    backend, max_batch_tokens=8192, max_queue_tokens=65536, max_wait_ms=0.0, max_queue_delay_ms=0.0
) -> Scheduler:
    scheduler = Scheduler(
        backend,
        PAD_ID,
        max_batch_tokens,
        max_queue_tokens,
        max_wait_ms,
        ServiceMetrics(),
        max_queue_delay_ms=max_queue_delay_ms,
    )
    scheduler.start()
    return scheduler


async def collect(work: RequestWork, timeout: float = 5.0) -> list:
    out = []
    while (item := await asyncio.wait_for(work.results.get(), timeout)) is not None:
        if isinstance(item, BaseException):
            raise item
        out.append(item)
    return out


async def until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.002)


def doc(token: int, n: int) -> list[int]:
    return [token] * n


def gated() -> FakeBackend:
    backend = FakeBackend()
    backend.gate = threading.Event()
    return backend


def test_can_join_limits_padding_and_budget():
    assert can_join(2, 128, 1, 128, 1024) and can_join(2, 128, 1, 64, 1024) and can_join(2, 64, 1, 128, 1024)
    assert not can_join(2, 64, 1, 192, 8192)  # two buckets apart: too much padding
    assert not can_join(7, 128, 2, 128, 1024)  # 9 x 128 > 1024


def test_small_requests_share_one_forward_pass():
    async def main():
        backend = gated()
        scheduler = make_scheduler(backend)
        blocker = RequestWork([doc(1, 100)])
        scheduler.submit(blocker)
        await until(backend.entered.is_set)
        works = [RequestWork([doc(10 + i, 30)]) for i in range(3)] + [RequestWork([doc(20, 300)])]
        for work in works:
            scheduler.submit(work)
        backend.gate.set()
        results = [await collect(w) for w in [blocker, *works]]
        scheduler.close()
        return backend.calls, results

    calls, results = asyncio.run(main())
    # the three 30-token requests ran together; the 300-token one is too long to join them
    assert calls == [(1, 128), (3, 64), (1, 320)]
    assert all(len(r) == 1 and r[0].logits.shape == (1, 5) for r in results)


def test_a_large_request_does_not_starve_small_ones():
    async def main():
        backend = FakeBackend()
        backend.delay = 0.005
        scheduler = make_scheduler(backend, max_batch_tokens=64)
        big = RequestWork([doc(2 + i % 50, 60) for i in range(60)])  # one row per forward pass: 60 passes
        scheduler.submit(big)
        await until(lambda: len(backend.calls) >= 2)
        small = [RequestWork([doc(100 + i, 20)]) for i in range(5)]
        for work in small:
            scheduler.submit(work)
        for work in small:
            await collect(work)
        pending_when_small_done = big.pending_scores
        await collect(big)
        scheduler.close()
        return pending_when_small_done

    assert asyncio.run(main()) > 40


def test_batch_held_open_only_while_requests_are_arriving():
    async def main():
        backend = FakeBackend()
        scheduler = make_scheduler(backend, max_wait_ms=300)
        start = time.perf_counter()
        alone = RequestWork([doc(3, 20)])
        scheduler.submit(alone)  # nothing else arriving: runs at once
        await collect(alone)
        alone_s = time.perf_counter() - start
        estimate = scheduler.arrive(1)  # a request is tokenizing...
        first = RequestWork([doc(4, 20)])
        scheduler.submit(first)
        await asyncio.sleep(0.03)
        second = RequestWork([doc(5, 20)])
        scheduler.submit(second)  # ...and arrives: both share one pass
        scheduler.arrival_done(estimate)
        await collect(first), await collect(second)
        scheduler.close()
        return alone_s, backend.calls

    alone_s, calls = asyncio.run(main())
    assert alone_s < 0.2
    assert calls == [(1, 64), (2, 64)]


def test_cancelled_work_never_reaches_the_model():
    async def main():
        backend = gated()
        scheduler = make_scheduler(backend)
        blocker = RequestWork([doc(1, 10)])
        scheduler.submit(blocker)
        await until(backend.entered.is_set)
        gone = RequestWork([doc(77, 10)] * 3)
        scheduler.submit(gone)
        assert scheduler.queued_tokens == 3 * 64
        scheduler.cancel(gone)
        assert scheduler.queued_tokens == 0
        backend.gate.set()
        await collect(blocker)
        after = RequestWork([doc(2, 10)])
        scheduler.submit(after)
        await collect(after)
        scheduler.close()
        return backend.rows_seen, gone.results.empty()

    rows_seen, nothing_delivered = asyncio.run(main())
    assert (77,) * 10 not in rows_seen and nothing_delivered


def test_deadline_fails_queued_work_without_waiting_for_the_model():
    async def main():
        backend = gated()
        scheduler = make_scheduler(backend)
        blocker = RequestWork([doc(1, 10)])
        scheduler.submit(blocker)
        await until(backend.entered.is_set)
        late = RequestWork([doc(66, 10)], deadline=Deadline.after_ms(50))
        scheduler.submit(late)
        start = time.perf_counter()
        with pytest.raises(DeadlineExceeded, match="50 ms"):
            await collect(late)
        waited = time.perf_counter() - start
        backend.gate.set()  # the model was busy all along
        await collect(blocker)
        scheduler.close()
        return waited, backend.rows_seen

    waited, rows_seen = asyncio.run(main())
    assert waited < 1.0
    assert (66,) * 10 not in rows_seen


def test_queued_tokens_are_bounded_with_a_retry_estimate():
    async def main():
        backend = gated()
        scheduler = make_scheduler(backend, max_queue_tokens=200)
        running = RequestWork([doc(1, 10)])
        scheduler.submit(running)
        await until(backend.entered.is_set)
        queued = RequestWork([doc(2, 10)] * 2)  # 128 padded tokens
        scheduler.submit(queued)
        with pytest.raises(QueueFull, match="limit is 200") as refused:
            scheduler.submit(RequestWork([doc(3, 10)] * 2))
        with pytest.raises(QueueFull, match="at least 128"):
            scheduler.arrive(2)  # refused before tokenizing: 128 queued + at least 2 x 64
        assert scheduler.arrive(1) == 64 and scheduler.arriving_tokens == 64
        scheduler.arrival_done(64)
        backend.gate.set()
        await collect(running), await collect(queued)
        huge = RequestWork([doc(4, 10)] * 10)  # 640 tokens: over the bound, but the queue is empty
        scheduler.submit(huge)
        await collect(huge)
        scheduler.close()
        return refused.value

    error = asyncio.run(main())
    assert error.retry_after_s >= 1


def test_a_request_that_would_wait_past_the_queue_delay_bound_is_refused_before_tokenizing():
    async def main():
        backend = FakeBackend()
        backend.delay = 0.1  # 64 padded tokens per 0.1 s pass: about 640 tokens/s once measured
        scheduler = make_scheduler(backend, max_queue_delay_ms=150)
        assert scheduler.estimated_wait_s() == 0.0  # nothing measured yet: admit
        first = RequestWork([doc(1, 10)])
        scheduler.submit(first)
        await collect(first)
        idle_wait = scheduler.estimated_wait_s()
        scheduler.arrival_done(scheduler.arrive(1))  # idle: admitted
        backend.delay, backend.entered = 0.0, threading.Event()
        backend.gate = threading.Event()
        running = RequestWork([doc(2, 10)])
        scheduler.submit(running)
        await until(backend.entered.is_set)
        one_behind = scheduler.estimated_wait_s()  # the rest of the running pass
        scheduler.arrival_done(scheduler.arrive(1))
        queued = RequestWork([doc(3, 10)] * 2)  # 128 more tokens: about 0.2 s of work ahead
        scheduler.submit(queued)
        with pytest.raises(QueueFull, match=r"waiting about \d+ ms, the limit is 150 ms") as refused:
            scheduler.arrive(1)
        backend.gate.set()
        await collect(running), await collect(queued)
        scheduler.arrival_done(scheduler.arrive(1))  # drained: admitted again
        scheduler.close()
        return idle_wait, one_behind, refused.value

    idle_wait, one_behind, error = asyncio.run(main())
    assert idle_wait == 0.0 and 0.0 < one_behind <= 0.15
    assert error.retry_after_s >= 1


def test_a_failing_forward_pass_fails_its_requests_only():
    async def main():
        backend = FakeBackend()
        scheduler = make_scheduler(backend)
        backend.fail = True
        failed = RequestWork([doc(1, 10)])
        scheduler.submit(failed)
        with pytest.raises(RuntimeError, match="simulated"):
            await collect(failed)
        backend.fail = False
        fine = RequestWork([doc(2, 10)])
        scheduler.submit(fine)
        out = await collect(fine)
        scheduler.close()
        return out

    assert len(asyncio.run(main())) == 1
