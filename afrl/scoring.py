"""Score math: label logits of the first generated position -> grade and score.

p = softmax(l[label_token_ids])      renormalised over the labels only
grade = values[argmax p]
expected = sum_k values_k * p_k
score = (expected - min) / (max - min)   in [0, 1]; = expected / (K-1) for 0..K-1
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GradeResult:
    grade: int
    probs: list[float]
    expected: float
    score: float


def label_probs(label_logits: np.ndarray) -> np.ndarray:
    """Stable softmax over the last axis. (B, K) -> (B, K), float64."""
    logits = np.asarray(label_logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def grade_results(label_logits: np.ndarray, values: Sequence[int]) -> list[GradeResult]:
    """Grades, renormalised probabilities, expected grade and score for each row."""
    logits = np.atleast_2d(np.asarray(label_logits))
    if logits.shape[-1] != len(values):
        raise ValueError(f"got {logits.shape[-1]} label logits for {len(values)} grades")
    probs = label_probs(logits)  # (B, K)
    vals = np.asarray(values, dtype=np.float64)  # (K,)
    expected = probs @ vals  # (B,)
    span = float(vals[-1] - vals[0])
    scores = (expected - vals[0]) / span
    best = probs.argmax(axis=-1)
    return [
        GradeResult(
            grade=int(vals[b]),
            probs=[float(x) for x in row],
            expected=float(e),
            score=float(min(1.0, max(0.0, s))),
        )
        for row, b, e, s in zip(probs, best, expected, scores, strict=True)
    ]
