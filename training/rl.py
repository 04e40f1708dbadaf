"""Stepwise-GRPO with Mode-Balanced Optimisation (MBO): the RL stage, as a plain loop.

Every step:

    1. rollouts   draw P prompts; sample G completions each from the current policy
                  (temperature 1, `training.rollout.generate`); the prompts and the step's expert
                  batch come from `step_data`, a function of the seed alone
    2. rewards    r[i, s] for each completion i and step s = grade, query, document,
                  rules, conclusion (`training.rewards.STEP_REWARDS`)
    3. advantages A[i, s] = (r[i, s] - mean_group r[., s]) / (std_group r[., s] + eps),
                  per step (`losses.group_step_advantages`); every token of step s gets
                  A[i, s], scaled so each step weighs the same (`losses.step_token_advantages`);
                  a group whose rewards are the same on every step (all its advantages 0) is
                  dropped from the policy term (`losses.varied_groups`): it would only dilute the
                  mean over sequences (history: `dropped_groups`; `RLResult.dropped_group_fraction`)
    4. loss       L = L_GRPO + beta x KL(pi || pi_ref) + lambda_t x NLL(expert batch)
                  L_GRPO: PPO-clipped surrogate, token mean per completion, mean over the completions
                  of the kept groups (`losses.clipped_policy_loss`);
                  KL: k3 estimate on every sampled completion against a frozen copy of the model the
                  stage started from (`losses.k3_kl`; only when beta > 0);
                  the expert batch: B_e demonstrations drawn every step from the expert pool
                  (long-tail and evolved hard cases), scored with the SFT loss (`sft.sft_loss`);
                  lambda_t follows `RLConfig.lam_schedule` (`lambda_at`: constant, linear or cosine from
                  lam to lam_final). lambda = 0 is Stepwise-GRPO alone.
    5. update     AdamW, gradient clipping; `epochs_per_batch` updates per batch of rollouts. The
                  first is on-policy (ratio 1, nothing clipped); later ones take the ratio to the
                  log-probabilities of the first, and the PPO clip bounds them (history:
                  `clip_fraction`, the share of policy tokens clipped, mean over the epochs)

By default there is no KL penalty to a reference model (beta = 0, TRL's
default): the SFT term is what keeps the policy near the expert
distribution. beta > 0 adds one against a frozen copy of the starting
checkpoint, scored with the same restricted softmax as the policy.

Why a plain loop and not a subclass of TRL's GRPOTrainer here: on 2 CPU cores
the cost of GRPO with a 150k-token vocabulary is the LM head, in rollouts (one
(N, H) x (H, V) product per token) and in the loss (logits at every completion
position), plus HF `generate` re-running the 200-token guideline for every
row. This loop shares the guideline's KV cache across rows and samples from,
and differentiates, the softmax over the ~500 tokens AFRL completions use.
Measured with `afrl bench gpu-train-smoke --tiny` on this box (64-wide, 2
layers): TRL 52 s per step (8 completions x 32 tokens), this loop 8.8 s (16 x
48). That difference is what lets the miniature comparison (three arms x tens
of steps) fit in minutes. GRPOTrainer does fit the method at scale, and
`training.trl_grpo.StepwiseGRPOTrainer` subclasses it with the same reward,
advantage and loss functions for GPU runs (accelerate, vLLM rollouts).
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from training.context import TrainingContext
from training.losses import (
    clip_fraction,
    clipped_policy_loss,
    group_step_advantages,
    k3_kl,
    mode_balanced_loss,
    step_token_advantages,
    varied_groups,
)
from training.rewards import N_STEPS, STEP_NAMES, assign_steps, first_grade, step_rewards
from training.rollout import generate
from training.sft import adamw, completion_hidden, sft_loss
from training.sft_data import SFTBatch, SFTSequence, collate

log = logging.getLogger(__name__)

LAMBDA_SCHEDULES = ("constant", "linear", "cosine")

StepRewards = Callable[..., list[list[float]]]  # (completions, **columns) -> (N, S), like `rewards.step_rewards`


@dataclass
class RLConfig:
    steps: int = field(default=60, metadata={"help": "optimizer steps (one batch of rollouts each)"})
    prompts_per_step: int = field(default=8, metadata={"help": "P: prompts per step"})
    group_size: int = field(default=4, metadata={"help": "G: completions sampled per prompt (the GRPO group)"})
    learning_rate: float = field(default=3e-4, metadata={"help": "AdamW learning rate (constant)"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW decay (not on embeddings/norms)"})
    clip_eps: float = field(default=0.2, metadata={"help": "PPO ratio clipping"})
    epochs_per_batch: int = field(default=1, metadata={"help": "updates per batch of rollouts (1 = on-policy)"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature of the rollouts"})
    max_new_tokens: int = field(default=110, metadata={"help": "completion length cap (references: <= ~115)"})
    step_weights: tuple[float, ...] = field(
        default=(1.0, 1.0, 1.0, 1.0, 1.0), metadata={"help": "weight of each step: " + ", ".join(STEP_NAMES)}
    )
    beta: float = field(
        default=0.0, metadata={"help": "weight of the k3 KL to the frozen starting checkpoint (0 = no reference model)"}
    )
    lam: float = field(default=0.5, metadata={"help": "lambda: weight of the expert SFT NLL (0 = GRPO alone)"})
    lam_final: float | None = field(default=None, metadata={"help": "lambda at the last step (None = lam)"})
    lam_schedule: str = field(
        default="constant", metadata={"help": "constant | linear | cosine, from lam to lam_final"}
    )
    expert_batch_size: int = field(
        default=8,
        metadata={
            "help": "B_e: expert demonstrations per step (with lambda = 0 their NLL is measured, not trained on)"
        },
    )
    grade_weight: float = field(default=4.0, metadata={"help": "grade-token weight in the expert NLL"})
    gradient_checkpointing: bool | None = field(
        default=None,
        metadata={"help": "recompute activations in the backward pass (None: the engine's default, trl on, plain off)"},
    )
    lora_rank: int = field(default=0, metadata={"help": "LoRA adapters of this rank (0 = full fine-tuning)"})
    grad_clip: float = field(default=1.0, metadata={"help": "max gradient norm"})
    seed: int = field(default=0, metadata={"help": "prompt order and sampling seed"})
    log_every: int = field(default=10, metadata={"help": "steps between progress lines"})

    def __post_init__(self) -> None:
        self.step_weights = tuple(float(w) for w in self.step_weights)
        if self.steps < 1 or self.prompts_per_step < 1:
            raise ValueError(f"steps and prompts_per_step must be >= 1, got {self.steps}, {self.prompts_per_step}")
        if self.group_size < 2:
            raise ValueError(
                f"group_size must be >= 2 (advantages are normalised within a group), got {self.group_size}; try 4"
            )
        if len(self.step_weights) != N_STEPS or min(self.step_weights) < 0 or sum(self.step_weights) <= 0:
            raise ValueError(
                f"step_weights needs {N_STEPS} non-negative weights, not all 0 ({', '.join(STEP_NAMES)}), "
                f"got {list(self.step_weights)}; e.g. {[1.0] * N_STEPS}"
            )
        if self.epochs_per_batch < 1:
            raise ValueError(f"epochs_per_batch must be >= 1 (1 = on-policy), got {self.epochs_per_batch}")
        if self.lam < 0 or (self.lam_final is not None and self.lam_final < 0):
            raise ValueError(
                f"lambda must be >= 0 (0 = Stepwise-GRPO alone), got lam={self.lam}, lam_final={self.lam_final}"
            )
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0 (0 = no reference KL), got {self.beta}; try 0.04")
        if self.lam_schedule not in LAMBDA_SCHEDULES:
            raise ValueError(f"lam_schedule {self.lam_schedule!r}: choose from {LAMBDA_SCHEDULES}")
        if self.lam > 0 and self.expert_batch_size < 1:
            raise ValueError("lambda > 0 needs expert_batch_size >= 1; try 8, or set lam=0")
        if not 0 < self.learning_rate < 1:
            raise ValueError(
                f"learning_rate {self.learning_rate} is outside (0, 1); "
                "try 3e-4 from scratch, 1e-6 on a pretrained model"
            )
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}; 1.0 samples the policy as it is")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}; AFRL completions need ~120")
        if self.lora_rank < 0:
            raise ValueError(f"lora_rank must be >= 0 (0 = full fine-tuning), got {self.lora_rank}")


def lambda_at(step: int, steps: int, lam: float, lam_final: float | None = None, schedule: str = "constant") -> float:
    """lambda at `step` (0-based) of `steps`: from `lam` to `lam_final` (None: lam) by `schedule`."""
    end = lam if lam_final is None else lam_final
    progress = step / max(1, steps - 1)
    if schedule == "constant":
        return lam
    if schedule == "linear":
        return lam + (end - lam) * progress
    if schedule == "cosine":
        return end + (lam - end) * 0.5 * (1 + math.cos(math.pi * progress))
    raise ValueError(f"unknown lambda schedule {schedule!r}; choose from {LAMBDA_SCHEDULES}")


@dataclass
class RLExample:
    """One RL prompt with what the rewards read."""

    sequence: SFTSequence  # prompt ids; the completion is the expert reference (unused by GRPO)
    grade: int
    reference: str  # the reference explanation
    rule_ids: tuple[str, ...]


def rl_examples(examples, sequences: Sequence[SFTSequence]) -> list[RLExample]:
    return [RLExample(s, e.grade, e.explanation, tuple(e.rule_ids)) for e, s in zip(examples, sequences, strict=True)]


@dataclass
class RLResult:
    history: list[dict]  # one row per step: loss, lambda, rewards, dropped groups, clip fraction, ...
    seconds: float

    @property
    def dropped_group_fraction(self) -> float:
        """Share of all groups left out of the policy loss: every completion earned the same rewards."""
        dropped = sum(h.get("dropped_groups", 0) for h in self.history)
        return dropped / max(1, dropped + sum(h.get("kept_groups", 0) for h in self.history))


def token_logps(
    model: torch.nn.Module, batch, vocab: torch.Tensor | None, prefix: torch.Tensor | None, lengths: list[int]
) -> torch.Tensor:
    """(N, T) log pi(token) of every completion token (right-padded with 0), under the restricted softmax."""
    hidden = completion_hidden(model, batch, prefix)  # (M, H), M = sum(lengths)
    head = model.get_output_embeddings().weight
    if vocab is None:
        logits, local = hidden @ head.T, batch.targets
    else:
        logits, local = hidden @ head[vocab].T, torch.searchsorted(vocab, batch.targets)  # (M, S)
    flat = torch.log_softmax(logits.float(), dim=-1).gather(1, local[:, None])[:, 0]  # (M,)
    return torch.nn.utils.rnn.pad_sequence(list(flat.split(lengths)), batch_first=True)  # (N, T)


@dataclass
class StepData:
    """What one step trains on: P prompts and B_e expert demonstrations."""

    prompts: list[RLExample]
    expert: list[SFTSequence]  # empty when there is no expert pool or B_e = 0


def step_data(prompts: Sequence[RLExample], expert: Sequence[SFTSequence], config: RLConfig) -> Iterator[StepData]:
    """Every step's data, drawn from `config.seed` alone (not from the model or its samples).

    Prompts go through shuffled passes over `prompts`; the expert batch is drawn with replacement.
    So the comparison's arms (`training.method`) see the same prompts and expert batches, step by
    step, whatever their objective: SFT alone, lambda = 0, lambda > 0.
    """
    rng = random.Random(config.seed)
    order: list[int] = []
    for _ in range(config.steps):
        if len(order) < config.prompts_per_step:
            order += rng.sample(range(len(prompts)), len(prompts))
        chosen = [prompts[order.pop()] for _ in range(config.prompts_per_step)]
        chunk = [expert[rng.randrange(len(expert))] for _ in range(config.expert_batch_size)] if expert else []
        yield StepData(chosen, chunk)


def rl_optimizer(model: torch.nn.Module, config: RLConfig) -> torch.optim.Optimizer:
    """AdamW at the stage's constant learning rate (the SFT arm of the comparison uses the same)."""
    return adamw(model, config.learning_rate, config.weight_decay)


def train_rl(
    model: torch.nn.Module,
    prompts: Sequence[RLExample],
    expert: Sequence[SFTSequence],
    ctx: TrainingContext,
    config: RLConfig,
    vocab: torch.Tensor | None,
    progress: Callable[[str], None] | None = None,
    reward_fn: StepRewards = step_rewards,
) -> RLResult:
    """Train `model` in place; `expert` may be empty when lambda is 0 throughout.

    With beta > 0 the reference is a frozen copy of `model` as it is on entry (the starting checkpoint).
    reward_fn: (completions, grade=, reference=, rule_ids=) -> (N, S) rewards, one column per step
    (default: the AFRL step rewards; tests pass simpler ones).
    """
    if config.gradient_checkpointing:
        raise ValueError(
            "the plain RL loop reuses the guideline's KV cache, which gradient checkpointing drops: "
            "use --engine trl for gradient checkpointing"
        )
    sampler = torch.Generator().manual_seed(config.seed)
    device = next(model.parameters()).device
    vocab = None if vocab is None else vocab.to(device)
    prefix_len = ctx.prefix_len
    prefix = torch.tensor(prompts[0].sequence.prompt_ids[:prefix_len], device=device)
    weights = torch.tensor(config.step_weights)
    if (config.lam > 0 or (config.lam_final or 0) > 0) and not expert:
        raise ValueError("lambda > 0 needs expert demonstrations")
    optimizer = rl_optimizer(model, config)
    reference = _frozen_copy(model) if config.beta > 0 else None
    history: list[dict] = []
    start = time.perf_counter()
    g = config.group_size
    for step, data in enumerate(step_data(prompts, expert, config)):
        model.eval()
        rollouts = generate(
            model,
            [x.sequence.prompt_ids for x in data.prompts],
            prefix_len=prefix_len,
            eos_id=ctx.eos_id,
            max_new_tokens=config.max_new_tokens,
            vocab=vocab,
            num_samples=g,
            temperature=config.temperature,
            generator=sampler,
        )
        model.train()
        texts = [ctx.decode(ids) for ids in rollouts.completion_ids]
        rows = [x for x in data.prompts for _ in range(g)]
        rewards = torch.tensor(
            reward_fn(
                texts,
                grade=[x.grade for x in rows],
                reference=[x.reference for x in rows],
                rule_ids=[x.rule_ids for x in rows],
            ),
            dtype=torch.float32,
        )  # (N, S)
        varied = varied_groups(rewards, g)  # (P,) groups with a learning signal
        scored = _scored_rows(rows, rollouts.completion_ids, rewards, varied, ctx, config, weights)
        if scored is not None:
            scored = scored.to(device)
        ref_logps = None
        if reference is not None and scored is not None:
            with torch.no_grad():
                ref_logps = token_logps(reference, scored.batch, vocab, prefix, scored.lengths)
        expert_batch = (
            collate(data.expert, ctx.pad_id, skip_prefix=prefix_len).to(device) if data.expert else None
        )  # lambda = 0: its NLL is measured (how far the policy drifts), not trained on
        lam = lambda_at(step, config.steps, config.lam, config.lam_final, config.lam_schedule)
        policy = kl = torch.zeros((), device=device)
        nll = torch.full((), float("nan"))
        clipped: list[float] = []
        old = None
        for epoch in range(config.epochs_per_batch):
            loss = torch.zeros((), device=device)
            if scored is not None:
                logps = token_logps(model, scored.batch, vocab, prefix, scored.lengths)  # (R, T)
                old = logps.detach() if old is None else old
                if scored.policy.any():
                    k = scored.policy
                    args = (logps[k], old[k], scored.advantages[k], scored.mask[k], config.clip_eps)
                    policy = clipped_policy_loss(*args)
                    clipped.append(clip_fraction(*args))
                    loss = loss + policy
                if ref_logps is not None:
                    kl = k3_kl(logps, ref_logps, scored.mask)
                    loss = loss + config.beta * kl
            if expert_batch is not None and (lam > 0 or epoch == 0):
                with torch.set_grad_enabled(lam > 0):
                    nll = sft_loss(model, expert_batch, vocab, config.grade_weight, prefix)
                if lam > 0:
                    loss = mode_balanced_loss(loss, nll, lam)
            if not loss.requires_grad:  # every group constant, no KL, no expert term: no update this step
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()

        sampled = [first_grade(t) for t in texts]
        history.append(
            {
                "step": step + 1,
                "loss": loss.item(),
                "policy_loss": policy.item(),
                "expert_nll": nll.item(),
                "kl": kl.item() if reference is not None else float("nan"),
                "lambda": lam,
                "dropped_groups": int((~varied).sum().item()),
                "kept_groups": int(varied.sum().item()),
                "clip_fraction": sum(clipped) / len(clipped) if clipped else 0.0,
                "sample_grade_accuracy": sum(p == x.grade for p, x in zip(sampled, rows, strict=True)) / len(rows),
                "finished": sum(rollouts.finished) / len(rows),
                **{f"reward_{name}": rewards[:, s].mean().item() for s, name in enumerate(STEP_NAMES)},
                "reward": rewards.sum(dim=1).mean().item(),
            }
        )
        if progress and (step % config.log_every == 0 or step == config.steps - 1):
            h = history[-1]
            elapsed = time.perf_counter() - start
            progress(
                f"rl step {step + 1}/{config.steps} lambda {lam:.2f} reward grade {h['reward_grade']:+.2f} "
                f"rules {h['reward_rules']:+.2f} sampled-grade acc {h['sample_grade_accuracy']:.2f} "
                f"dropped groups {h['dropped_groups']}/{config.prompts_per_step} "
                f"({elapsed:.0f}s elapsed, ~{elapsed / (step + 1) * (config.steps - step - 1):.0f}s left)"
            )
    model.eval()
    result = RLResult(history, time.perf_counter() - start)
    if progress:
        progress(f"rl: {result.dropped_group_fraction:.0%} of groups dropped (the same reward on every completion)")
    return result


@dataclass
class _ScoredRows:
    """The sampled rows one step scores under the policy, as one batch."""

    batch: SFTBatch  # prompt + sampled completion of each row
    lengths: list[int]  # completion tokens per row
    mask: torch.Tensor  # (R, T) 1 on real completion tokens
    advantages: torch.Tensor  # (R, T) per-token advantages
    policy: torch.Tensor  # (R,) bool: the row's group varied, so it enters the policy loss

    def to(self, device) -> _ScoredRows:
        moved = (self.mask.to(device), self.advantages.to(device), self.policy.to(device))
        return _ScoredRows(self.batch.to(device), self.lengths, *moved)


def _scored_rows(rows, completion_ids, rewards, varied, ctx, config, weights) -> _ScoredRows | None:
    """The rows of the varied groups (every row when beta > 0: the KL reads them all); None when there are none.

    rewards: (N, S); varied: (P,) bool from `varied_groups`.
    """
    g = config.group_size
    in_policy = varied.repeat_interleave(g)  # (N,)
    index = list(range(len(rows))) if config.beta > 0 else in_policy.nonzero()[:, 0].tolist()
    if not index:
        return None
    completions = [completion_ids[i] for i in index]
    lengths = [len(ids) for ids in completions]
    sequences = [
        SFTSequence(rows[i].sequence.prompt_ids, ids, rows[i].grade) for i, ids in zip(index, completions, strict=True)
    ]
    step_ids = torch.nn.utils.rnn.pad_sequence(
        [torch.tensor(assign_steps([ctx.piece(t) for t in ids])) for ids in completions], batch_first=True
    )  # (R, T)
    mask = torch.nn.utils.rnn.pad_sequence([torch.ones(n) for n in lengths], batch_first=True)  # (R, T)
    step_adv = group_step_advantages(rewards, g)[index]  # (R, S)
    return _ScoredRows(
        batch=collate(sequences, ctx.pad_id, skip_prefix=ctx.prefix_len),
        lengths=lengths,
        mask=mask,
        advantages=step_token_advantages(step_adv, step_ids, mask, weights),
        policy=in_policy[index],
    )


def _frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    reference = copy.deepcopy(model).eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    return reference
