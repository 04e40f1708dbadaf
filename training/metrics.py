"""Evaluation figures from gold and predicted grades: pure functions.

`afrl eval` and the pipeline report call these; the grades come from any
scorer (the exported ONNX artifact, or torch during training).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence


def accuracy(gold: Sequence[int], predicted: Sequence[int]) -> float:
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold grades vs {len(predicted)} predictions")
    if not gold:
        raise ValueError("accuracy of an empty set is undefined")
    return sum(g == p for g, p in zip(gold, predicted)) / len(gold)


def majority_grade(train_grades: Sequence[int]) -> int:
    """The most frequent training grade (ties: the lowest grade)."""
    counts = Counter(train_grades)
    return max(sorted(counts), key=lambda g: counts[g])


def majority_baseline_accuracy(train_grades: Sequence[int], test_grades: Sequence[int]) -> float:
    """Accuracy of always answering the training split's most frequent grade."""
    m = majority_grade(train_grades)
    return accuracy(test_grades, [m] * len(test_grades))


def macro_f1(gold: Sequence[int], predicted: Sequence[int], values: Sequence[int]) -> float:
    f1s = []
    for v in values:
        tp = sum(g == v and p == v for g, p in zip(gold, predicted))
        fp = sum(g != v and p == v for g, p in zip(gold, predicted))
        fn = sum(g == v and p != v for g, p in zip(gold, predicted))
        denom = 2 * tp + fp + fn
        f1s.append(2 * tp / denom if denom else 0.0)
    return sum(f1s) / len(f1s)


def confusion(gold: Sequence[int], predicted: Sequence[int], values: Sequence[int]) -> list[list[int]]:
    """rows = gold grade, columns = predicted grade, in `values` order."""
    index = {v: i for i, v in enumerate(values)}
    table = [[0] * len(values) for _ in values]
    for g, p in zip(gold, predicted):
        table[index[g]][index[p]] += 1
    return table


def mean_absolute_error(gold: Sequence[float], predicted: Sequence[float]) -> float:
    return sum(abs(g - p) for g, p in zip(gold, predicted)) / len(gold)
