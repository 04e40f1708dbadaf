"""Stepwise-GRPO and mode-balanced optimisation: advantages and losses by hand, then real steps."""

import math
from dataclasses import replace

import pytest
import torch

from training.losses import (
    clipped_policy_loss,
    group_step_advantages,
    label_kl,
    mode_balanced_loss,
    step_token_advantages,
)
from training.rl import RLConfig, lambda_at, rl_examples, token_logps, train_rl
from training.sft_data import collate


def test_group_step_advantages_normalise_each_step_within_its_group():
    rewards = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.5, 1.0], [0.5, 0.0]])  # 2 groups of G=2, S=2 steps
    adv = group_step_advantages(rewards, group_size=2)
    a = 0.5 / (math.sqrt(0.5) + 1e-4)  # deviation 0.5, unbiased std sqrt(0.5)
    expected = torch.tensor([[a, 0.0], [-a, 0.0], [0.0, a], [0.0, -a]])
    assert torch.allclose(adv, expected, atol=1e-6)
    with pytest.raises(ValueError, match="groups"):
        group_step_advantages(rewards, group_size=3)


def test_each_token_gets_its_steps_advantage_and_every_step_weighs_the_same():
    step_adv = torch.tensor([[2.0, -1.0, 3.0], [1.0, 5.0, 7.0]])  # (N=2, S=3)
    step_ids = torch.tensor([[0, 1, 1, 2], [0, 1, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    adv = step_token_advantages(step_adv, step_ids, mask, torch.ones(3))
    # row 0: 4 tokens, steps of 1, 2 and 1 tokens -> scale w * 4 / (n_step * 3): 4/3, 2/3, 2/3, 4/3
    # row 1: 2 real tokens, one per step, 2 steps present -> scale 1; padding -> 0
    expected = torch.tensor([[8 / 3, -2 / 3, -2 / 3, 4.0], [1.0, 5.0, 0.0, 0.0]])
    assert torch.allclose(adv, expected, atol=1e-6)
    # with the per-sequence token mean, row 0's loss is the mean over steps of each step's mean: -(2 - 1 + 3) / 3
    logps = torch.zeros(2, 4, requires_grad=True)
    loss = clipped_policy_loss(logps, logps.detach(), adv, mask)
    assert loss.item() == pytest.approx((-(2 - 1 + 3) / 3 + -(1 + 5) / 2) / 2, rel=1e-6)
    # step weights: the grade step (0) weighs twice the others
    weighted = step_token_advantages(step_adv[:1], step_ids[:1], mask[:1], torch.tensor([2.0, 1.0, 1.0]))
    assert torch.allclose(weighted, torch.tensor([[2 * 2 * 4 / 4, -1 * 4 / 8, -1 * 4 / 8, 3 * 4 / 4]]), atol=1e-6)


def test_clipped_policy_loss_hand_computed():
    old = torch.zeros(1, 2)
    logps = torch.log(torch.tensor([[1.5, 0.5]]))  # ratios 1.5 and 0.5
    adv = torch.tensor([[1.0, -1.0]])
    # token 0: min(1.5, clip 1.2) * 1 = 1.2 -> -1.2 ; token 1: min(-0.5, -0.8) = -0.8 -> +0.8
    assert clipped_policy_loss(logps, old, adv, torch.ones(1, 2), clip_eps=0.2).item() == pytest.approx(-0.2)
    # on policy the gradient is -A / T per token
    x = torch.zeros(1, 2, requires_grad=True)
    clipped_policy_loss(x, x.detach(), adv, torch.ones(1, 2)).backward()
    assert torch.allclose(x.grad, torch.tensor([[-0.5, 0.5]]))


def test_mode_balanced_loss_and_label_kl_hand_computed():
    assert mode_balanced_loss(torch.tensor(1.5), torch.tensor(2.0), 0.25).item() == pytest.approx(2.0)
    kl = label_kl(torch.zeros(1, 2), torch.tensor([[0.75, 0.25]]))
    assert kl.item() == pytest.approx(0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5), rel=1e-5)
    assert label_kl(torch.tensor([[2.0, 0.0]]), torch.softmax(torch.tensor([[2.0, 0.0]]), -1)).item() == pytest.approx(
        0.0, abs=1e-6
    )


def test_lambda_schedules():
    assert lambda_at(3, 5, 0.5) == 0.5
    assert lambda_at(2, 5, 1.0, 0.0, "linear") == pytest.approx(0.5)
    assert [lambda_at(s, 5, 1.0, 0.0, "cosine") for s in (0, 2, 4)] == pytest.approx([1.0, 0.5, 0.0])
    with pytest.raises(ValueError, match="schedule"):
        RLConfig(lam_schedule="step")
    with pytest.raises(ValueError, match="group_size"):
        RLConfig(group_size=1)


def test_token_logps_equal_a_plain_forward(ctx, sequences, vocab, warm_model):
    chunk = sequences[:3]
    batch = collate(chunk, ctx.pad_id, skip_prefix=ctx.prefix_len)
    prefix = torch.tensor(chunk[0].prompt_ids[: ctx.prefix_len])
    lengths = [len(s.completion_ids) for s in chunk]
    with torch.no_grad():
        fast = token_logps(warm_model, batch, vocab, prefix, lengths)
        for row, s in enumerate(chunk):
            ids = torch.tensor([s.prompt_ids + s.completion_ids])
            logits = warm_model(input_ids=ids).logits[0, len(s.prompt_ids) - 1 : -1][:, vocab]  # (T, S)
            local = torch.searchsorted(vocab, torch.tensor(s.completion_ids))
            slow = torch.log_softmax(logits, -1).gather(1, local[:, None])[:, 0]
            assert torch.allclose(fast[row, : lengths[row]], slow, atol=1e-4)


@pytest.mark.parametrize("lam", [0.0, 0.5])
def test_a_few_steps_move_every_trainable_parameter(ctx, small_world, sequences, vocab, warm_model, lam):
    """GRPO alone (lambda = 0) and mode-balanced: each step's gradient reaches every parameter."""
    before = {n: p.detach().clone() for n, p in warm_model.named_parameters()}
    prompts = rl_examples(small_world.train, sequences)
    config = RLConfig(
        steps=2,
        prompts_per_step=4,
        group_size=4,
        learning_rate=1e-2,
        max_new_tokens=90,
        lam=lam,
        expert_batch_size=4,
        seed=1,
    )
    result = train_rl(warm_model, prompts, sequences, ctx, config, vocab)
    assert len(result.history) == 2 and all(math.isfinite(h["loss"]) for h in result.history)
    assert any(h["reward_grade"] != -1.0 for h in result.history)  # the warm model answers with grades
    for name, p in warm_model.named_parameters():
        if "embed_tokens" in name:  # tied head: the rows of the completion vocabulary move
            assert not torch.equal(p[vocab], before[name][vocab]), name
        else:
            assert not torch.equal(p, before[name]), f"{name} did not move"


def test_beta_adds_a_kl_to_the_frozen_starting_model(ctx, small_world, sequences, vocab, warm_model):
    """beta > 0: each step measures k3 KL against the model as it was; the first step starts at 0."""
    start = {n: p.detach().clone() for n, p in warm_model.named_parameters()}
    prompts = rl_examples(small_world.train, sequences)
    config = RLConfig(
        steps=3, prompts_per_step=2, group_size=2, learning_rate=1e-2, max_new_tokens=40, lam=0.0, beta=0.5, seed=1
    )
    history = train_rl(warm_model, prompts, sequences, ctx, config, vocab).history
    assert history[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # the policy is the reference before the first update
    assert all(h["kl"] >= 0 for h in history) and history[-1]["kl"] > 0  # it has moved away since
    assert any(not torch.equal(p, start[n]) for n, p in warm_model.named_parameters())
    plain = train_rl(warm_model, prompts, sequences, ctx, replace(config, beta=0.0, steps=1), vocab).history
    assert math.isnan(plain[0]["kl"])  # no reference model without beta
    with pytest.raises(ValueError, match="beta"):
        RLConfig(beta=-0.1)
