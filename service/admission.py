"""Admission: a bound on requests in flight, reported as `afrl_queue_depth`.

The walking skeleton bounds whole requests; the cross-request batcher will
own a real queue and report its depth through the same gauge.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Gauge


class QueueFull(Exception):
    """More requests are in flight than the service admits."""


class Admission:
    """Counts requests in flight; refuses one past `max_in_flight`.

    Only touched from the event loop thread, so a plain counter is enough.
    """

    def __init__(self, max_in_flight: int, depth: Gauge):
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self._depth = depth

    @contextmanager
    def admit(self) -> Iterator[None]:
        if self.in_flight >= self.max_in_flight:
            raise QueueFull(f"{self.in_flight} requests in flight, the limit is {self.max_in_flight}")
        self.in_flight += 1
        self._depth.set(self.in_flight)
        try:
            yield
        finally:
            self.in_flight -= 1
            self._depth.set(self.in_flight)
