"""Timing one compared path and checking its answers against the naive FP32 reference.

A path is a zero-argument call that scores the whole request and returns
(B, K) label logits or probabilities. Its time per request is the wall time
of the call (tokenization included), after `warmup` untimed calls; p50 is
the median of `repeats` timed calls and pairs/s is documents / p50.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from afrl.scoring import label_probs


@dataclass
class PathResult:
    key: str
    label: str
    dtype: str
    documents: int
    seconds: list[float] = field(default_factory=list)  # one per timed call; empty when the path failed
    probs: np.ndarray | None = field(default=None, repr=False)  # (B, K) from the last call
    checks: dict[str, float] = field(default_factory=dict)  # agreement with the reference path
    note: str = ""
    error: str = ""

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.seconds) * 1000

    @property
    def pairs_per_s(self) -> float:
        return self.documents / statistics.median(self.seconds)


def time_path(
    call: Callable[[], np.ndarray], warmup: int, repeats: int, probabilities: bool = False
) -> tuple[list[float], np.ndarray]:
    """Seconds of each timed call and the (B, K) label probabilities of the last one."""
    out = None
    for _ in range(warmup):
        out = call()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = call()
        seconds.append(time.perf_counter() - start)
    out = np.asarray(out, dtype=np.float64)
    return seconds, out if probabilities else label_probs(out)


def agreement(probs: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Grade agreement and the largest label-probability difference against the reference path."""
    return {
        "grade_agreement": float(np.mean(probs.argmax(-1) == reference.argmax(-1))),
        "max_abs_prob_diff": float(np.abs(probs - reference).max()),
    }
