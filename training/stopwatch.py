"""Wall time per phase of a run, for the report's `timings` (`with clock("sft"): ...` records `sft_s`)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator


class Stopwatch:
    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.timings[f"{phase}_s"] = time.perf_counter() - t

    def total(self) -> dict[str, float]:
        """The phases so far and `total_s` since the stopwatch started."""
        return {**self.timings, "total_s": time.perf_counter() - self.started}
