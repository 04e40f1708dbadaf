"""The evaluation figures added for the full method, against hand-computed values."""

import math

import pytest

from afrl.scoring import GradeResult
from training.evaluate import explanation_report, grade_report
from training.metrics import (
    expected_calibration_error,
    mean_label_entropy,
    mean_ndcg_at_k,
    ndcg_at_k,
    per_rule_accuracy,
    predicted_grade_entropy,
    quadratic_weighted_kappa,
)


def test_quadratic_weighted_kappa_hand_computed():
    assert quadratic_weighted_kappa([0, 1, 2], [0, 1, 2], [0, 1, 2]) == 1.0
    # gold (0, 2), predicted (2, 0): observed weighted disagreement 2 x 1 vs expected (4 cells, 2 of weight 1) / 2
    assert quadratic_weighted_kappa([0, 2], [2, 0], [0, 1, 2]) == pytest.approx(1 - 2 / 1)


def test_ndcg_hand_computed():
    # gains 2^g - 1: ranking (1, 3) vs ideal (3, 1): dcg = 1 + 7/log2(3), ideal = 7 + 1/log2(3)
    assert ndcg_at_k([1, 3], [0.9, 0.1]) == pytest.approx((1 + 7 / math.log2(3)) / (7 + 1 / math.log2(3)))
    assert ndcg_at_k([0, 0], [0.5, 0.4]) is None
    assert mean_ndcg_at_k(["a", "a", "b", "b"], [1, 3, 0, 2], [0.2, 0.8, 0.1, 0.9]) == 1.0


def test_calibration_and_entropy_hand_computed():
    # bin (0.5, 0.6]: conf 0.55 twice, 1 of 2 right -> |0.5 - 0.55|; bin (0.9, 1]: conf 0.95, right -> 0.05
    assert expected_calibration_error([0.55, 0.55, 0.95], [True, False, True]) == pytest.approx(
        2 / 3 * 0.05 + 1 / 3 * 0.05
    )
    assert mean_label_entropy([[0.5, 0.5], [1.0, 0.0]]) == pytest.approx(math.log(2) / 2)
    assert predicted_grade_entropy([1, 1, 2, 2]) == pytest.approx(math.log(2))
    assert per_rule_accuracy([("R1",), ("R1", "R20"), ("R20",)], [4, 0, 0], [4, 1, 0]) == {
        "R1": {"accuracy": 0.5, "support": 2},
        "R20": {"accuracy": 0.5, "support": 2},
    }


def test_grade_report_has_every_figure(small_world):
    exs = small_world.test
    results = [GradeResult(e.grade, [0.2] * 5, 2.0, 0.5) for e in exs]
    report = grade_report(exs, results, [e.grade for e in small_world.train], [0, 1, 2, 3, 4])
    for key in (
        "accuracy",
        "macro_f1",
        "quadratic_weighted_kappa",
        "ndcg@10",
        "expected_calibration_error",
        "mean_label_entropy",
        "head_accuracy",
        "per_rule",
        "reliability",
    ):
        assert key in report, key
    assert report["accuracy"] == 1.0 and report["mean_label_entropy"] == pytest.approx(math.log(5))


def test_explanation_report_checks_format_and_agreement(small_world):
    a, b = small_world.train[:2]
    completions = [f"{a.grade}\n{a.explanation}", f"{(b.grade + 1) % 5}\n{b.explanation}", "no grade"]
    report = explanation_report([a, b, b], completions)
    assert report["format_validity"] == pytest.approx(2 / 3)
    assert report["first_token_conclusion_agreement"] == pytest.approx(1 / 3)  # b's first token disagrees
    assert report["first_token_accuracy"] == pytest.approx(1 / 3)
