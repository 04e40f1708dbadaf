"""The RL stage learns, and each of its parts acts: tests that fail when learning breaks.

The learnable toy: the conftest's warm 32-wide model (40 SFT steps) opens about 12% of its
samples with the grade token "2"; a reward of 1 for that first token and 0 otherwise (every other
step 0) is learnable in a few dozen steps, and it pulls the policy away from the expert data,
which is what the SFT term of mode-balanced RL is there to resist. Rollouts are 4 tokens: the
reward reads the first, the rest is what the reference KL and the expert NLL see move.

Margins were set from seeds 0, 1 and 2 (the tests run seed 0); the figures are in each test.
"""

import copy
import math
from dataclasses import replace

import pytest
import torch

import training.rl
from training.rewards import N_STEPS
from training.rl import RLConfig, rl_examples, train_rl
from training.sft import completion_hidden, sft_loss
from training.sft_data import collate

TOY = RLConfig(steps=30, prompts_per_step=4, group_size=8, learning_rate=3e-3, max_new_tokens=4, lam=0.0, seed=0)


def opens_with(token: str):
    """Reward 1 on the grade step for a completion whose first token is `token`; 0 everywhere else."""

    def rewards(completions, **columns):
        return [[float(c.startswith(token))] + [0.0] * (N_STEPS - 1) for c in completions]

    return rewards


def mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs)


@pytest.fixture
def toy(small_world, sequences):
    prompts = rl_examples(small_world.train, sequences)
    expert = [s for s, e in zip(sequences, small_world.train, strict=True) if e.long_tail]
    return prompts, expert


def test_the_policy_learns_a_rewarded_first_token(ctx, vocab, warm_model, toy):
    """Mean reward of the first 5 vs the last 5 of 30 steps, G = 8 (about 3 s).

    Measured (seeds 0 / 1 / 2): 0.19 -> 0.93, 0.23 -> 0.95, 0.16 -> 0.90.
    """
    prompts, expert = toy
    history = train_rl(warm_model, prompts, expert, ctx, TOY, vocab, reward_fn=opens_with("2")).history
    first, last = mean(h["reward_grade"] for h in history[:5]), mean(h["reward_grade"] for h in history[-5:])
    assert last > 0.7 and last - first > 0.4, (first, last)
    assert all(h["reward"] == h["reward_grade"] for h in history)  # the other steps earn 0 here


def test_mode_balanced_keeps_the_expert_nll_lower_than_grpo_alone(ctx, vocab, warm_model, toy):
    """Same seed, same steps, lambda 0.5 vs 0: expert NLL afterwards, on the whole expert pool (about 7 s).

    Measured (seeds 0 / 1 / 2), from 2.70 at the start: lambda 0 3.87 / 4.01 / 4.29, lambda 0.5
    2.02 / 2.05 / 2.08; the last-5-step reward is 0.90-0.95 in both arms.
    """
    prompts, expert = toy
    prefix = torch.tensor(expert[0].prompt_ids[: ctx.prefix_len])
    pool = collate(expert, ctx.pad_id, skip_prefix=ctx.prefix_len)
    nll, reward = {}, {}
    for lam in (0.0, 0.5):
        model = copy.deepcopy(warm_model)
        config = replace(TOY, lam=lam, expert_batch_size=4)
        history = train_rl(model, prompts, expert, ctx, config, vocab, reward_fn=opens_with("2")).history
        with torch.no_grad():
            nll[lam] = sft_loss(model.eval(), pool, vocab, config.grade_weight, prefix).item()
        reward[lam] = mean(h["reward_grade"] for h in history[-5:])
        assert all(math.isfinite(h["expert_nll"]) for h in history)  # measured in both arms
    assert nll[0.5] < nll[0.0] - 0.5, nll
    assert min(reward.values()) > 0.7, reward  # and both still learn the reward


def test_a_second_epoch_per_batch_clips_the_ratio_and_one_epoch_never_does(ctx, vocab, warm_model, toy):
    """epochs_per_batch=2 at lr 1e-2: the second update's ratio leaves the band (measured as a share of the
    policy tokens per step, seeds 0-2, averaged over the two epochs: 0.05-0.11); on-policy it is exactly 1."""
    prompts, expert = toy
    config = replace(TOY, steps=3, learning_rate=1e-2)
    one = train_rl(copy.deepcopy(warm_model), prompts, expert, ctx, config, vocab, reward_fn=opens_with("2"))
    two = train_rl(
        warm_model, prompts, expert, ctx, replace(config, epochs_per_batch=2), vocab, reward_fn=opens_with("2")
    )
    assert [h["clip_fraction"] for h in one.history] == [0.0] * 3
    assert min(h["clip_fraction"] for h in two.history) > 0, [h["clip_fraction"] for h in two.history]


def test_the_reference_kl_keeps_the_policy_near_its_start(ctx, sequences, vocab, warm_model, toy):
    """beta 0.5 vs 0, same seed, 15 steps at lr 1e-2: exact KL(policy || start) over the completion
    vocabulary at every completion position of 32 reference sequences (about 3 s).

    Measured (seeds 0 / 1 / 2): beta 0 2.66 / 4.01 / 5.15, beta 0.5 0.63 / 0.65 / 0.65.
    """
    prompts, expert = toy
    start = copy.deepcopy(warm_model)
    batch = collate(sequences[:32], ctx.pad_id, skip_prefix=ctx.prefix_len)
    prefix = torch.tensor(sequences[0].prompt_ids[: ctx.prefix_len])

    def log_probs(model):  # (M, S) at every completion position
        with torch.no_grad():
            hidden = completion_hidden(model.eval(), batch, prefix)
            return torch.log_softmax(hidden @ model.get_output_embeddings().weight[vocab].T, dim=-1)

    reference = log_probs(start)
    kl = {}
    for beta in (0.0, 0.5):
        model = copy.deepcopy(start)
        config = replace(TOY, steps=15, learning_rate=1e-2, beta=beta)
        train_rl(model, prompts, expert, ctx, config, vocab, reward_fn=opens_with("2"))
        policy = log_probs(model)
        kl[beta] = (policy.exp() * (policy - reference)).sum(dim=-1).mean().item()
    assert kl[0.5] < 0.5 * kl[0.0], kl


def test_groups_without_a_reward_spread_leave_the_policy_loss(ctx, vocab, warm_model, toy, monkeypatch):
    """A group whose completions all earn the same rewards is not among the policy loss's rows (so not in
    its normaliser either); the KL (beta > 0) still reads every row; no group with a spread: no update."""
    prompts, expert = toy
    rows_seen: list[tuple[str, int]] = []
    for name in ("clipped_policy_loss", "k3_kl"):
        real = getattr(training.rl, name)

        def recorded(logps, *args, _real=real, _name=name, **kwargs):
            rows_seen.append((_name, logps.shape[0]))
            return _real(logps, *args, **kwargs)

        monkeypatch.setattr(training.rl, name, recorded)

    def every_group_varies(completions, **columns):  # rows come group by group: G = 2 consecutive rows
        return [[float(i % 2)] + [0.0] * (N_STEPS - 1) for i in range(len(completions))]

    def the_first_group_varies(completions, **columns):
        return [[float(i == 0)] + [0.0] * (N_STEPS - 1) for i in range(len(completions))]

    config = replace(TOY, steps=1, prompts_per_step=4, group_size=2, beta=0.1)
    result = train_rl(copy.deepcopy(warm_model), prompts, expert, ctx, config, vocab, reward_fn=every_group_varies)
    assert result.history[0]["dropped_groups"] == 0 and result.dropped_group_fraction == 0.0
    assert rows_seen == [("clipped_policy_loss", 8), ("k3_kl", 8)]

    rows_seen.clear()
    result = train_rl(copy.deepcopy(warm_model), prompts, expert, ctx, config, vocab, reward_fn=the_first_group_varies)
    assert (result.history[0]["dropped_groups"], result.history[0]["kept_groups"]) == (3, 1)
    assert result.dropped_group_fraction == pytest.approx(0.75)
    assert rows_seen == [("clipped_policy_loss", 2), ("k3_kl", 8)]

    before = {n: p.detach().clone() for n, p in warm_model.named_parameters()}
    config = replace(config, steps=2, beta=0.0)
    flat = train_rl(warm_model, prompts, expert, ctx, config, vocab, reward_fn=opens_with("#"))  # never earned
    assert flat.dropped_group_fraction == 1.0 and [h["policy_loss"] for h in flat.history] == [0.0, 0.0]
    assert all(torch.equal(p, before[n]) for n, p in warm_model.named_parameters())  # nothing to learn from
