"""The inference thread: where every forward pass runs, with a per-call timeout.

    run(fn, *args)    await fn(*args) on the thread; InferenceTimeout after `timeout_s`
    run_blocking(fn)  the same thread, waited on without a timeout (warmup, before ready)

A Python thread cannot be killed, so a call that passes the timeout is
*abandoned*: its callers get InferenceTimeout (504), the stuck thread is left
to finish on its own (its result is dropped), and a fresh thread takes the
next batches, so one hung backend call cannot wedge the service. Each
abandoned thread still holds cores (or the GPU) until it returns, so:

    stuck calls >= 1          the service is degraded: /health/ready answers 503 (traffic moves
                              to other replicas) while it keeps serving what reaches it
    stuck calls >= max_stuck  the backend is wedged: no new thread is started (bounding the
                              leak), work is refused with BackendStuck (503) and /health/live
                              answers 503 so the orchestrator restarts the process

When stuck calls return, the service recovers by itself. The threads are
daemons, so a call that never returns does not hold the process at exit.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

logger = logging.getLogger(__name__)

MAX_STUCK_CALLS = 2
THREAD_NAME = "afrl-inference"


class InferenceTimeout(Exception):
    """A forward pass did not return within the inference timeout."""


class BackendStuck(Exception):
    """Too many forward passes are stuck: the model backend is not answering."""


class _Worker:
    """One daemon thread running submitted calls in order, started by the first call.

    Not a ThreadPoolExecutor: its threads are joined at interpreter exit, so an abandoned call
    that never returns would keep the process from exiting.
    """

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=THREAD_NAME, daemon=True)
            self._thread.start()
        future: Future = Future()
        self._calls.put((future, fn, args))
        return future

    def stop(self) -> None:
        """Cancel the calls not started yet; the thread ends after the one running, if any."""
        while True:
            try:
                item = self._calls.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[0].cancel()
        self._calls.put(None)

    def _serve(self) -> None:
        while (item := self._calls.get()) is not None:
            future, fn, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as e:  # delivered to the caller, like an executor would
                future.set_exception(e)


class InferenceThread:
    """Runs calls one at a time on a dedicated thread; created and awaited on the event loop."""

    def __init__(
        self,
        timeout_s: float | None = None,
        max_stuck: int = MAX_STUCK_CALLS,
        on_change: Callable[[], None] | None = None,
    ):
        self.timeout_s = timeout_s or None  # 0 or None: wait forever
        self.max_stuck = max_stuck
        self.on_change = on_change  # called on the event loop when a call is abandoned or returns
        self._worker = _Worker()
        self._stuck: dict[asyncio.Future, float] = {}  # abandoned call -> when it started (monotonic)

    @property
    def stuck(self) -> int:
        """Abandoned calls that have not returned yet."""
        return len(self._stuck)

    @property
    def wedged(self) -> bool:
        return self.stuck >= self.max_stuck

    def stuck_for_s(self) -> float:
        """How long the oldest abandoned call has been running (0 when none)."""
        return time.monotonic() - min(self._stuck.values()) if self._stuck else 0.0

    def check(self) -> None:
        """Raise BackendStuck when no call should be started."""
        if self.wedged:
            raise BackendStuck(
                f"the model backend is not answering: {self.stuck} forward passes have been stuck for up to "
                f"{self.stuck_for_s():.0f} s"
            )

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        self.check()
        started = time.monotonic()
        future = asyncio.wrap_future(self._worker.submit(fn, *args))
        timeout_s = self.timeout_s
        if timeout_s is None:
            return await future
        try:
            # shield: the timeout must not cancel the call's future, which tracks the thread's return
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            self._abandon(future, started, timeout_s)
            raise InferenceTimeout(
                f"the forward pass took longer than the inference timeout of {timeout_s * 1000:.0f} ms"
            ) from None

    def run_blocking(self, fn: Callable[[], Any]) -> Any:
        return self._worker.submit(fn).result()

    def shutdown(self) -> None:
        self._worker.stop()

    def _abandon(self, future: asyncio.Future, started: float, timeout_s: float) -> None:
        self._stuck[future] = started
        future.add_done_callback(self._returned)
        logger.error(
            "a forward pass passed the inference timeout (%.0f ms); %d stuck, %s",
            timeout_s * 1000,
            self.stuck,
            "backend wedged: not starting another thread" if self.wedged else "continuing on a new thread",
        )
        old, self._worker = self._worker, _Worker()
        old.stop()  # the stuck thread ends once its call returns
        if self.on_change is not None:
            self.on_change()

    def _returned(self, future: asyncio.Future) -> None:
        started = self._stuck.pop(future, None)
        if not future.cancelled():
            future.exception()  # retrieved: a late failure is not an "unhandled" error
        if started is not None:
            logger.warning(
                "a stuck forward pass returned after %.1f s; %d still stuck", time.monotonic() - started, self.stuck
            )
        if self.on_change is not None:
            self.on_change()
