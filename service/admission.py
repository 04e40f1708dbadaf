"""Admission: what a request must pass before its work may queue for the model.

Admission        a bound on requests in flight (queued or running), reported as afrl_queue_depth
QueueFull        429: that bound, the batcher's bound on queued tokens, or its bound on the
                 queue delay is reached; carries the Retry-After estimate
Deadline         `timeout_ms` as an absolute time; expired work never reaches the model (504)

The HTTP layer asks the engine only (ScoringEngine.check_admission before the body is read,
ScoringEngine.admit for the request's life); the engine owns the `Admission`, and the
scheduler, which counts the queued tokens and measures the throughput, checks the token and
delay bounds as a request arrives and is submitted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prometheus_client import Gauge


class QueueFull(Exception):
    """More work is waiting than the service admits."""

    def __init__(self, message: str, retry_after_s: int | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineExceeded(Exception):
    """The request's deadline passed before its compute ran."""


@dataclass(frozen=True)
class Deadline:
    """When a request stops being worth computing: an absolute `time.monotonic()` value."""

    at: float
    timeout_ms: int

    @classmethod
    def after_ms(cls, timeout_ms: int, start: float | None = None) -> Deadline:
        return cls((time.monotonic() if start is None else start) + timeout_ms / 1000.0, timeout_ms)

    def expired(self) -> bool:
        return time.monotonic() >= self.at

    def remaining_s(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def error(self) -> DeadlineExceeded:
        return DeadlineExceeded(f"the deadline of {self.timeout_ms} ms passed before compute")


class Admission:
    """Counts requests in flight; refuses one past `max_in_flight`.

    Only touched from the event loop thread, so a plain counter is enough.
    """

    def __init__(self, max_in_flight: int, depth: Gauge):
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self._depth = depth

    def check(self) -> None:
        """Refuse early (before the body is read and parsed) when no request could be admitted now."""
        if self.in_flight >= self.max_in_flight:
            raise QueueFull(f"{self.in_flight} requests in flight, the limit is {self.max_in_flight}")

    @contextmanager
    def admit(self) -> Iterator[None]:
        self.check()
        self.in_flight += 1
        self._depth.set(self.in_flight)
        try:
            yield
        finally:
            self.in_flight -= 1
            self._depth.set(self.in_flight)
