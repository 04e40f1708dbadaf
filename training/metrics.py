"""Evaluation figures from gold and predicted grades: pure functions.

`afrl eval` and the pipeline report call these; the grades come from any
scorer (the exported ONNX artifact, or torch during training).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence


def accuracy(gold: Sequence[int], predicted: Sequence[int]) -> float:
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold grades vs {len(predicted)} predictions")
    if not gold:
        raise ValueError("accuracy of an empty set is undefined")
    return sum(g == p for g, p in zip(gold, predicted, strict=True)) / len(gold)


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
        tp = sum(g == v and p == v for g, p in zip(gold, predicted, strict=True))
        fp = sum(g != v and p == v for g, p in zip(gold, predicted, strict=True))
        fn = sum(g == v and p != v for g, p in zip(gold, predicted, strict=True))
        denom = 2 * tp + fp + fn
        f1s.append(2 * tp / denom if denom else 0.0)
    return sum(f1s) / len(f1s)


def confusion(gold: Sequence[int], predicted: Sequence[int], values: Sequence[int]) -> list[list[int]]:
    """rows = gold grade, columns = predicted grade, in `values` order."""
    index = {v: i for i, v in enumerate(values)}
    table = [[0] * len(values) for _ in values]
    for g, p in zip(gold, predicted, strict=True):
        table[index[g]][index[p]] += 1
    return table


def mean_absolute_error(gold: Sequence[float], predicted: Sequence[float]) -> float:
    return sum(abs(g - p) for g, p in zip(gold, predicted, strict=True)) / len(gold)


def quadratic_weighted_kappa(gold: Sequence[int], predicted: Sequence[int], values: Sequence[int]) -> float:
    """Cohen's kappa with quadratic weights (1 = perfect agreement, 0 = chance level)."""
    k = len(values)
    observed = confusion(gold, predicted, values)
    n = len(gold)
    row = [sum(r) for r in observed]
    col = [sum(observed[i][j] for i in range(k)) for j in range(k)]
    num = den = 0.0
    for i in range(k):
        for j in range(k):
            w = (i - j) ** 2 / (k - 1) ** 2
            num += w * observed[i][j]
            den += w * row[i] * col[j] / n
    return 1.0 - num / den if den else 1.0


def ndcg_at_k(gold_grades: Sequence[int], scores: Sequence[float], k: int = 10) -> float | None:
    """NDCG@k of one query's documents ranked by `scores` (gain 2^grade - 1); None when no gain is possible."""
    ranked = [g for _, g in sorted(zip(scores, gold_grades, strict=True), key=lambda x: -x[0])][:k]
    ideal = sorted(gold_grades, reverse=True)[:k]

    def dcg(grades: Sequence[int]) -> float:
        return sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(grades))

    best = dcg(ideal)
    return dcg(ranked) / best if best > 0 else None


def mean_ndcg_at_k(query_ids: Sequence[str], gold: Sequence[int], scores: Sequence[float], k: int = 10) -> float:
    """NDCG@k per query (the documents of one query id), averaged over queries with any gain."""
    by_query: dict[str, list[int]] = {}
    for i, q in enumerate(query_ids):
        by_query.setdefault(q, []).append(i)
    values = [ndcg_at_k([gold[i] for i in idx], [scores[i] for i in idx], k) for idx in by_query.values()]
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else float("nan")


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool], bins: int = 10) -> float:
    """ECE: |accuracy - confidence| per equal-width confidence bin, weighted by the bin's share."""
    total = len(confidences)
    ece = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i, c in enumerate(confidences) if (lo < c <= hi) or (b == 0 and c == 0)]
        if idx:
            acc = sum(correct[i] for i in idx) / len(idx)
            conf = sum(confidences[i] for i in idx) / len(idx)
            ece += len(idx) / total * abs(acc - conf)
    return ece


def reliability(confidences: Sequence[float], correct: Sequence[bool], bins: int = 10) -> list[dict]:
    """Per confidence bin: mean confidence, accuracy and count (for the calibration plot)."""
    out = []
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i, c in enumerate(confidences) if (lo < c <= hi) or (b == 0 and c == 0)]
        if idx:
            out.append(
                {
                    "bin": [lo, hi],
                    "confidence": sum(confidences[i] for i in idx) / len(idx),
                    "accuracy": sum(correct[i] for i in idx) / len(idx),
                    "count": len(idx),
                }
            )
    return out


def entropy(probs: Sequence[float]) -> float:
    """Shannon entropy in nats."""
    return 0.0 - sum(p * math.log(p) for p in probs if p > 0)


def mean_label_entropy(prob_rows: Sequence[Sequence[float]]) -> float:
    """Mean entropy (nats) of the per-example label distribution: how sure the model is, on average."""
    return sum(entropy(p) for p in prob_rows) / len(prob_rows)


def predicted_grade_entropy(predicted: Sequence[int]) -> float:
    """Entropy (nats) of the predicted-grade histogram: low when a model collapses onto few grades."""
    counts = Counter(predicted)
    return entropy([c / len(predicted) for c in counts.values()])


def per_rule_accuracy(decisive: Sequence[Sequence[str]], gold: Sequence[int], predicted: Sequence[int]) -> dict:
    """rule id -> {accuracy, support} over the examples that rule decided."""
    hits: Counter = Counter()
    seen: Counter = Counter()
    for rules, g, p in zip(decisive, gold, predicted, strict=True):
        for r in rules:
            seen[r] += 1
            hits[r] += g == p
    return {r: {"accuracy": hits[r] / seen[r], "support": seen[r]} for r in sorted(seen, key=lambda r: int(r[1:]))}
