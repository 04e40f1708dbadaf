"""Evaluate any grade predictor on examples, and the explanations a model generates.

`predict(query, documents) -> list[GradeResult]` is all `grade_report` needs,
so the same code measures the torch model during training and the exported
artifact behind `afrl eval`. Examples are grouped by query, as a search
backend sends them, so predictors that share the prefix are exercised as in
production.

Grade figures: accuracy, macro-F1, quadratic weighted kappa, NDCG@10 per
query (ranking by score), expected calibration error, mean label entropy,
head / long-tail slices and per-rule accuracy (by the rules that decided each
example). Explanation figures (`explanation_report`, from greedy decoding):
format validity, first-token vs conclusion agreement, citation F1.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

from afrl.scoring import GradeResult
from training.metrics import (
    accuracy,
    confusion,
    expected_calibration_error,
    macro_f1,
    majority_baseline_accuracy,
    mean_absolute_error,
    mean_label_entropy,
    mean_ndcg_at_k,
    per_rule_accuracy,
    predicted_grade_entropy,
    quadratic_weighted_kappa,
    reliability,
)

Predict = Callable[[str, list[str]], list[GradeResult]]


def predict_examples(examples: Sequence, predict: Predict) -> list[GradeResult]:
    """Predictions in the order of `examples`."""
    by_query: dict[str, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        by_query[ex.query].append(i)
    out: list[GradeResult | None] = [None] * len(examples)
    for query, idx in by_query.items():
        for i, result in zip(idx, predict(query, [examples[i].document for i in idx]), strict=True):
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
        "quadratic_weighted_kappa": quadratic_weighted_kappa(gold, pred, values),
        "expected_grade_mae": mean_absolute_error(gold, [r.expected for r in results]),
        "expected_calibration_error": expected_calibration_error(
            [max(r.probs) for r in results], [g == p for g, p in zip(gold, pred, strict=True)]
        ),
        "mean_label_entropy": mean_label_entropy([r.probs for r in results]),
        "predicted_grade_entropy": predicted_grade_entropy(pred),
        "confusion": {"rows_gold_cols_predicted": list(values), "counts": confusion(gold, pred, values)},
        "reliability": reliability([max(r.probs) for r in results], [g == p for g, p in zip(gold, pred, strict=True)]),
    }
    if all(hasattr(ex, "query_id") for ex in examples):
        report["ndcg@10"] = mean_ndcg_at_k([ex.query_id for ex in examples], gold, [r.score for r in results], 10)
    tail = [i for i, ex in enumerate(examples) if getattr(ex, "long_tail", False)]
    head = [i for i, ex in enumerate(examples) if not getattr(ex, "long_tail", False)]
    if head:
        report["head_examples"] = len(head)
        report["head_accuracy"] = accuracy([gold[i] for i in head], [pred[i] for i in head])
    if tail:
        report["long_tail_examples"] = len(tail)
        report["long_tail_accuracy"] = accuracy([gold[i] for i in tail], [pred[i] for i in tail])
        report["long_tail_label_entropy"] = mean_label_entropy([results[i].probs for i in tail])
    if all(hasattr(ex, "decisive_rule_ids") for ex in examples):
        report["per_rule"] = per_rule_accuracy([ex.decisive_rule_ids for ex in examples], gold, pred)
    return report


def explanation_report(examples: Sequence, completions: Sequence[str]) -> dict:
    """Figures of generated completions ("<grade>\n[Query] ...") against the examples' labels."""
    from training.rewards import first_grade, rules_reward
    from training.world.explanation import parse_explanation

    n = len(completions)
    parsed = [parse_explanation(c.split("\n", 1)[1] if "\n" in c else "") for c in completions]
    firsts = [first_grade(c) for c in completions]
    valid = [p is not None and p.valid and f is not None for p, f in zip(parsed, firsts, strict=True)]
    agree = [p is not None and p.grade is not None and p.grade == f for p, f in zip(parsed, firsts, strict=True)]
    gold_cited = [set(ex.decisive_rule_ids) for ex in examples]
    cited = [set(p.cited_rule_ids) if p else set() for p in parsed]
    recall = [len(c & g) / len(g) for c, g in zip(cited, gold_cited, strict=True) if g]
    rewards = rules_reward(
        list(completions), reference=[ex.explanation for ex in examples], rule_ids=[ex.rule_ids for ex in examples]
    )
    return {
        "explained_examples": n,
        "format_validity": sum(valid) / n,
        "first_token_conclusion_agreement": sum(agree) / n,
        "first_token_accuracy": sum(f == ex.grade for f, ex in zip(firsts, examples, strict=True)) / n,
        "decisive_rule_recall": sum(recall) / len(recall) if recall else float("nan"),
        "rules_reward": sum(rewards) / n,
        "samples": [
            {"query": ex.query, "document": ex.document[:120], "gold": ex.grade, "completion": c}
            for ex, c in list(zip(examples, completions, strict=True))[:5]
        ],
    }
