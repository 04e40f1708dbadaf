"""Stepwise-GRPO with Mode-Balanced Optimisation (MBO): the RL stage, as a plain loop.

Every step:

    1. rollouts   draw P prompts; sample G completions each from the current policy
                  (temperature 1, `training.rollout.generate`)
    2. rewards    r[i, s] for each completion i and step s = grade, query, document,
                  rules, conclusion (`training.rewards.STEP_REWARDS`)
    3. advantages A[i, s] = (r[i, s] - mean_group r[., s]) / (std_group r[., s] + eps),
                  per step (`losses.group_step_advantages`); every token of step s gets
                  A[i, s], scaled so each step weighs the same (`losses.step_token_advantages`)
    4. loss       L = L_GRPO + beta x KL(pi || pi_ref) + lambda_t x NLL(expert batch)
                  L_GRPO: PPO-clipped surrogate, token mean per completion (`losses.clipped_policy_loss`);
                  KL: k3 estimate on the sampled tokens against the frozen starting checkpoint
                  (`losses.k3_kl`; only when beta > 0);
                  the expert batch: B_e demonstrations drawn every step from the expert pool
                  (long-tail and evolved hard cases), scored with the SFT loss (`sft.sft_loss`);
                  lambda_t follows `RLConfig.lam_schedule` (`lambda_at`: constant, linear or cosine from
                  lam to lam_final). lambda = 0 is Stepwise-GRPO alone.
    5. update     AdamW, gradient clipping; one update per batch of rollouts (on-policy, so the
                  ratio is 1 and clipping only matters if `epochs_per_batch` > 1)

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from training.context import TrainingContext
from training.losses import (
    clipped_policy_loss,
    group_step_advantages,
    k3_kl,
    mode_balanced_loss,
    step_token_advantages,
)
from training.rewards import N_STEPS, STEP_NAMES, assign_steps, first_grade, step_rewards
from training.rollout import generate
from training.sft import _param_groups, completion_hidden, sft_loss
from training.sft_data import SFTSequence, collate

log = logging.getLogger(__name__)

LAMBDA_SCHEDULES = ("constant", "linear", "cosine")


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
    history: list[dict]  # one row per step: loss, lambda, mean reward per step, sampled grade accuracy
    seconds: float


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


def train_rl(
    model: torch.nn.Module,
    prompts: Sequence[RLExample],
    expert: Sequence[SFTSequence],
    ctx: TrainingContext,
    config: RLConfig,
    vocab: torch.Tensor | None,
    progress: Callable[[str], None] | None = None,
) -> RLResult:
    """Train `model` in place; `expert` may be empty when lambda is 0 throughout.

    With beta > 0 the reference is a frozen copy of `model` as it is on entry (the starting checkpoint).
    """
    if config.gradient_checkpointing:
        raise ValueError(
            "the plain RL loop reuses the guideline's KV cache, which gradient checkpointing drops: "
            "use --engine trl for gradient checkpointing"
        )
    rng = random.Random(config.seed)
    sampler = torch.Generator().manual_seed(config.seed)
    device = next(model.parameters()).device
    vocab = None if vocab is None else vocab.to(device)
    prefix_len = ctx.prefix_len
    prefix = torch.tensor(prompts[0].sequence.prompt_ids[:prefix_len], device=device)
    weights = torch.tensor(config.step_weights)
    if (config.lam > 0 or (config.lam_final or 0) > 0) and not expert:
        raise ValueError("lambda > 0 needs expert demonstrations")
    optimizer = torch.optim.AdamW(
        _param_groups(model, config.weight_decay), lr=config.learning_rate, betas=(0.9, 0.95), fused=True
    )
    reference = _frozen_copy(model) if config.beta > 0 else None
    history: list[dict] = []
    order: list[int] = []
    start = time.perf_counter()
    g = config.group_size
    for step in range(config.steps):
        if len(order) < config.prompts_per_step:
            order += rng.sample(range(len(prompts)), len(prompts))
        chosen = [prompts[order.pop()] for _ in range(config.prompts_per_step)]

        model.eval()
        rollouts = generate(
            model,
            [x.sequence.prompt_ids for x in chosen],
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
        rows = [x for x in chosen for _ in range(g)]
        rewards = torch.tensor(
            step_rewards(
                texts,
                grade=[x.grade for x in rows],
                reference=[x.reference for x in rows],
                rule_ids=[x.rule_ids for x in rows],
            )
        )  # (N, S)
        step_adv = group_step_advantages(rewards, g)  # (N, S)

        sequences = [
            SFTSequence(x.sequence.prompt_ids, ids, x.grade)
            for x, ids in zip(rows, rollouts.completion_ids, strict=True)
        ]
        lengths = [len(ids) for ids in rollouts.completion_ids]
        batch = collate(sequences, ctx.pad_id, skip_prefix=prefix_len).to(device)
        step_ids = torch.nn.utils.rnn.pad_sequence(
            [torch.tensor(assign_steps([ctx.piece(t) for t in ids])) for ids in rollouts.completion_ids],
            batch_first=True,
        )  # (N, T)
        mask = torch.nn.utils.rnn.pad_sequence([torch.ones(n) for n in lengths], batch_first=True)  # (N, T)
        advantages = step_token_advantages(step_adv, step_ids, mask, weights).to(device)
        mask = mask.to(device)
        lam = lambda_at(step, config.steps, config.lam, config.lam_final, config.lam_schedule)
        old = None
        for _ in range(config.epochs_per_batch):
            logps = token_logps(model, batch, vocab, prefix, lengths)
            old = logps.detach() if old is None else old
            loss = policy = clipped_policy_loss(logps, old, advantages, mask, config.clip_eps)
            kl = torch.full((), float("nan"))
            if reference is not None:
                with torch.no_grad():
                    ref_logps = token_logps(reference, batch, vocab, prefix, lengths)
                kl = k3_kl(logps, ref_logps, mask)
                loss = loss + config.beta * kl
            nll = torch.full((), float("nan"))
            if expert and config.expert_batch_size:  # lambda = 0: measured only (how far the policy drifts)
                chunk = [expert[rng.randrange(len(expert))] for _ in range(config.expert_batch_size)]
                expert_batch = collate(chunk, ctx.pad_id, skip_prefix=prefix_len).to(device)
                with torch.set_grad_enabled(lam > 0):
                    nll = sft_loss(model, expert_batch, vocab, config.grade_weight, prefix)
                if lam > 0:
                    loss = mode_balanced_loss(loss, nll, lam)
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
                "kl": kl.item(),
                "lambda": lam,
                "sample_grade_accuracy": sum(p == x.grade for p, x in zip(sampled, rows, strict=True)) / len(rows),
                "finished": sum(rollouts.finished) / len(rows),
                **{f"reward_{name}": rewards[:, s].mean().item() for s, name in enumerate(STEP_NAMES)},
            }
        )
        if progress and (step % config.log_every == 0 or step == config.steps - 1):
            h = history[-1]
            elapsed = time.perf_counter() - start
            progress(
                f"rl step {step + 1}/{config.steps} lambda {lam:.2f} reward grade {h['reward_grade']:+.2f} "
                f"rules {h['reward_rules']:+.2f} sampled-grade acc {h['sample_grade_accuracy']:.2f} "
                f"({elapsed:.0f}s elapsed, ~{elapsed / (step + 1) * (config.steps - step - 1):.0f}s left)"
            )
    model.eval()
    return RLResult(history, time.perf_counter() - start)


def _frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    reference = copy.deepcopy(model).eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    return reference
