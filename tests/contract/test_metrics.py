import pytest

from training.metrics import accuracy, confusion, macro_f1, majority_baseline_accuracy, majority_grade


def test_accuracy_and_majority_hand_computed():
    assert accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75
    assert majority_grade([2, 2, 1, 4, 4]) == 2  # tie 2 vs 4 -> lowest
    assert majority_baseline_accuracy([3, 3, 0], [3, 1, 3, 3]) == 0.75
    with pytest.raises(ValueError):
        accuracy([1], [1, 2])


def test_macro_f1_and_confusion_hand_computed():
    gold, pred = [0, 0, 1, 1], [0, 1, 1, 1]
    # class 0: tp1 fp0 fn1 -> 2/3 ; class 1: tp2 fp1 fn0 -> 4/5
    assert macro_f1(gold, pred, [0, 1]) == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert confusion(gold, pred, [0, 1]) == [[1, 1], [0, 2]]
