import math

import numpy as np
import pytest

from afrl.scoring import grade_results, label_probs


def test_label_probs_hand_computed():
    # logits (0, ln 2, ln 3, -inf-ish...) for K=3: p = (1, 2, 3) / 6
    p = label_probs(np.array([[0.0, math.log(2), math.log(3)]]))
    np.testing.assert_allclose(p, [[1 / 6, 2 / 6, 3 / 6]], atol=1e-12)


def test_grade_expected_and_score_hand_computed():
    # K=5, probs (0, 0, 0.5, 0.5, 0) -> grade 2 (first max), expected 2.5, score 2.5/4
    logits = np.log(np.array([[1e-30, 1e-30, 0.5, 0.5, 1e-30]]))
    (r,) = grade_results(logits, [0, 1, 2, 3, 4])
    assert r.grade == 2
    assert r.expected == pytest.approx(2.5, abs=1e-9)
    assert r.score == pytest.approx(0.625, abs=1e-9)
    assert sum(r.probs) == pytest.approx(1.0)


def test_renormalises_over_labels_only_and_is_shift_invariant():
    logits = np.array([[1.0, 2.0, 3.0, 4.0, 5.0]])
    a = grade_results(logits, [0, 1, 2, 3, 4])[0]
    b = grade_results(logits + 1000.0, [0, 1, 2, 3, 4])[0]  # stable at large magnitudes
    assert a.probs == pytest.approx(b.probs)
    assert a.grade == 4
    e = np.exp([1, 2, 3, 4, 5.0])
    assert a.expected == pytest.approx(float((e / e.sum()) @ np.arange(5)))


def test_batch_rows_independent_and_shape_checked():
    rows = grade_results(np.array([[9.0, 0, 0, 0, 0], [0, 0, 0, 0, 9.0]]), [0, 1, 2, 3, 4])
    assert [r.grade for r in rows] == [0, 4]
    assert rows[0].score < 0.01 and rows[1].score > 0.99
    with pytest.raises(ValueError, match="4 label logits for 5 grades"):
        grade_results(np.zeros((1, 4)), [0, 1, 2, 3, 4])
