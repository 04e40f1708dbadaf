"""Evaluate any grade predictor on world examples.

`predict(query, documents) -> list[GradeResult]` is all this needs, so the
same code measures the torch model during training and the exported artifact
behind `afrl eval`. Examples are grouped by query, as a search backend sends
them, so predictors that share the prefix are exercised as in production.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

from afrl.scoring import GradeResult
from training.metrics import accuracy, confusion, macro_f1, majority_baseline_accuracy, mean_absolute_error

Predict = Callable[[str, list[str]], list[GradeResult]]


def predict_examples(examples: Sequence, predict: Predict) -> list[GradeResult]:
    """Predictions in the order of `examples`."""
    by_query: dict[str, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        by_query[ex.query].append(i)
    out: list[GradeResult | None] = [None] * len(examples)
    for query, idx in by_query.items():
        for i, result in zip(idx, predict(query, [examples[i].document for i in idx])):
            out[i] = result
    return out  # type: ignore[return-value]


def grade_report(
    examples: Sequence, results: Sequence[GradeResult], train_grades: Sequence[int], values: Sequence[int]
) -> dict:
    gold = [ex.grade for ex in examples]
    pred = [r.grade for r in results]
    report = {
        "examples": len(examples),
        "accuracy": accuracy(gold, pred),
        "majority_baseline_accuracy": majority_baseline_accuracy(train_grades, gold),
        "macro_f1": macro_f1(gold, pred, values),
        "expected_grade_mae": mean_absolute_error(gold, [r.expected for r in results]),
        "confusion": {"rows_gold_cols_predicted": list(values), "counts": confusion(gold, pred, values)},
    }
    tail = [i for i, ex in enumerate(examples) if getattr(ex, "long_tail", False)]
    if tail:
        report["long_tail_examples"] = len(tail)
        report["long_tail_accuracy"] = accuracy([gold[i] for i in tail], [pred[i] for i in tail])
    return report
