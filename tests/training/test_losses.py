"""The reference-KL penalty, the trl engine's grade-weighted SFT loss and the label grade objective, by hand."""

import math

import pytest
import torch

from training.losses import (
    clip_fraction,
    completion_nll,
    explanation_plus_label_ce,
    grade_weighted_lm_loss,
    group_step_advantages,
    k3_kl,
    label_ce,
    varied_groups,
)
from training.sft import completion_loss
from training.sft_data import SFTBatch


def test_k3_kl_hand_computed_and_zero_where_policy_and_reference_agree():
    logps = torch.log(torch.tensor([[0.5, 0.25, 0.9]]))
    ref = torch.log(torch.tensor([[0.25, 0.25, 0.1]]))
    mask = torch.tensor([[1, 1, 0]])  # the third token is padding
    # per token r - log r - 1 with r = ref / pi: token 0 r = 0.5, token 1 r = 1 (-> 0)
    expected = ((0.5 - math.log(0.5) - 1) + 0.0) / 2
    assert k3_kl(logps, ref, mask).item() == pytest.approx(expected, rel=1e-6)
    assert k3_kl(logps, logps, torch.ones(1, 3)).item() == pytest.approx(0.0, abs=1e-7)
    # never negative, and the gradient pushes the policy toward the reference
    x = torch.log(torch.tensor([[0.5]])).requires_grad_()
    value = k3_kl(x, torch.log(torch.tensor([[0.25]])), torch.ones(1, 1))
    value.backward()
    assert value.item() > 0 and x.grad.item() > 0  # lowering log pi (toward 0.25) lowers the penalty


def test_k3_kl_averages_tokens_within_a_sequence_then_sequences():
    logps = torch.zeros(2, 2)
    ref = torch.tensor([[math.log(0.5), 0.0], [math.log(0.5), math.log(0.5)]])
    mask = torch.tensor([[1, 1], [1, 1]])
    k = 0.5 - math.log(0.5) - 1
    assert k3_kl(logps, ref, mask).item() == pytest.approx((k / 2 + k) / 2, rel=1e-6)


def test_grade_weighted_lm_loss_weights_the_first_completion_token():
    # 1 row, 4 positions, vocabulary 3; labels: prompt (-100), grade token 2, token 0, padding (-100)
    logits = torch.log(torch.tensor([[[0.2, 0.3, 0.5], [0.6, 0.2, 0.2], [0.1, 0.1, 0.8], [1 / 3, 1 / 3, 1 / 3]]]))
    labels = torch.tensor([[-100, 2, 0, -100]])
    # position 0 predicts the grade (p = 0.5), position 1 predicts token 0 (p = 0.6)
    nll_grade, nll_next = -math.log(0.5), -math.log(0.6)
    got = grade_weighted_lm_loss(logits, labels, grade_weight=3.0)
    assert got.item() == pytest.approx((3 * nll_grade + nll_next) / 4, rel=1e-5)
    # weight 1 is the plain completion mean; the trainer's token count replaces the weight sum
    assert grade_weighted_lm_loss(logits, labels, 1.0).item() == pytest.approx((nll_grade + nll_next) / 2, rel=1e-5)
    counted = grade_weighted_lm_loss(logits, labels, 3.0, num_items_in_batch=8)
    assert counted.item() == pytest.approx((3 * nll_grade + nll_next) / 8, rel=1e-5)


def test_varied_groups_keep_a_group_that_differs_on_any_step():
    rewards = torch.tensor(
        [[0.1, 1.0], [0.1, 1.0], [0.5, 0.0], [0.5, 1.0], [0.2, 0.3], [0.2, 0.3]]
    )  # 3 groups of G=2: constant, differs on step 1 only, constant
    assert varied_groups(rewards, 2).tolist() == [False, True, False]
    # a constant group gets exactly 0, not its float32 mean's rounding residue over eps (7e-5 for 0.11 x 3)
    three = torch.tensor([[0.11], [0.11], [0.11], [0.0], [1.0], [0.0]])
    adv = group_step_advantages(three, 3)
    assert adv[:3].abs().max().item() == 0.0 and adv[3:].abs().max().item() > 0
    assert varied_groups(three, 3).tolist() == [False, True]
    with pytest.raises(ValueError, match="groups"):
        varied_groups(rewards, 4)


def test_clip_fraction_counts_the_tokens_the_clip_stops():
    old = torch.zeros(1, 5)
    logps = torch.log(torch.tensor([[1.5, 0.5, 1.5, 1.1, 9.0]]))  # ratios 1.5, 0.5, 1.5, 1.1, (padding)
    adv = torch.tensor([[1.0, -1.0, -1.0, 1.0, 1.0]])
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    # clipped: token 0 (ratio > 1.2, A > 0) and token 1 (ratio < 0.8, A < 0); token 2 moves against its
    # advantage (the unclipped branch is the minimum), token 3 is inside the band, token 4 is padding
    assert clip_fraction(logps, old, adv, mask, clip_eps=0.2) == pytest.approx(2 / 4)
    assert clip_fraction(old, old, adv, mask) == 0.0  # on-policy: every ratio is 1


# grade_objective="labels": the grade over the label tokens, beside the explanation's mean NLL
HEAD = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [5.0, 5.0]])  # (V=4, H=2); token 3 is no label
LABELS = torch.tensor([1, 2])  # K = 2 label tokens


def test_label_ce_renormalises_over_the_label_tokens_only():
    grade_hidden = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # (B=2, H)
    targets = torch.tensor([1, 2])
    # label logits: row 0 (1, 0) for target 1; row 1 (0, 2) for target 2; token 3's logits (5) do not count
    expected = (-math.log(math.e / (math.e + 1)) - math.log(math.e**2 / (math.e**2 + 1))) / 2
    assert label_ce(grade_hidden, HEAD, targets, LABELS).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="not one of the label tokens"):
        label_ce(grade_hidden, HEAD, torch.tensor([1, 3]), LABELS)


def test_explanation_plus_label_ce_is_mean_explanation_nll_plus_weighted_label_ce():
    hidden = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # (N=3, H): the grade, then two explanation tokens
    targets = torch.tensor([1, 0, 3])
    is_grade = torch.tensor([True, False, False])

    def nll(logits: list[float], target: int) -> float:
        return -logits[target] + math.log(sum(math.exp(x) for x in logits))

    explanation = (nll([0.0, 0.0, 2.0, 5.0], 0) + nll([0.0, 1.0, 2.0, 10.0], 3)) / 2  # full softmax over V = 4
    grade = nll([1.0, 0.0], 0)  # over the labels (1, 2) only
    got = explanation_plus_label_ce(hidden, HEAD, targets, is_grade, LABELS, grade_weight=3.0)
    assert got.item() == pytest.approx(explanation + 3.0 * grade, rel=1e-6)
    # its own term: twice the explanation (same mean) leaves the grade's share where it was
    longer = explanation_plus_label_ce(
        torch.cat([hidden, hidden[1:]]),
        HEAD,
        torch.cat([targets, targets[1:]]),
        torch.cat([is_grade, is_grade[1:]]),
        LABELS,
        3.0,
    )
    assert longer.item() == pytest.approx(got.item(), rel=1e-6)
    # restricted softmax for the explanation: over {0, 1, 2, 3} it is the full one; bare grades: label term only
    subset = explanation_plus_label_ce(hidden, HEAD, targets, is_grade, LABELS, 3.0, torch.tensor([0, 1, 2, 3]))
    assert subset.item() == pytest.approx(got.item(), rel=1e-6)
    bare = explanation_plus_label_ce(hidden[:1], HEAD, targets[:1], is_grade[:1], LABELS, 3.0)
    assert bare.item() == pytest.approx(3.0 * grade, rel=1e-6)


def test_completion_loss_vocab_is_the_weighted_completion_nll_and_labels_the_label_objective():
    hidden = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    batch = SFTBatch(
        input_ids=torch.zeros(1, 3, dtype=torch.long),
        attention_mask=torch.ones(1, 3, dtype=torch.long),
        target_positions=torch.tensor([[0, 0], [0, 1], [0, 2]]),
        targets=torch.tensor([1, 0, 3]),
        is_grade=torch.tensor([True, False, False]),
    )
    weights = torch.tensor([4.0, 1.0, 1.0])
    vocab = completion_loss(hidden, HEAD, batch, None, 4.0)
    assert torch.equal(vocab, completion_nll(hidden, HEAD, batch.targets, weights))  # today's objective, exactly
    labels = completion_loss(hidden, HEAD, batch, None, 4.0, "labels", LABELS)
    expected = explanation_plus_label_ce(hidden, HEAD, batch.targets, batch.is_grade, LABELS, 4.0)
    assert torch.equal(labels, expected)
    with pytest.raises(ValueError, match="label_ids"):
        completion_loss(hidden, HEAD, batch, None, 4.0, "labels")
