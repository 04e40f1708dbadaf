"""Stepwise-GRPO + Mode-Balanced Optimisation as a subclass of TRL's GRPOTrainer (real sizes, GPUs).

The algorithm is the one `training.rl` states; this module runs it on TRL's
engine so that scale-out is TRL's and accelerate's, not ours: DDP / FSDP /
DeepSpeed ZeRO-3 through `accelerate launch --config_file configs/accelerate/...`,
rollouts from vLLM with `use_vllm=True` (`vllm_mode="colocate"` or `"server"`
with `trl vllm-serve`), gradient accumulation, logging, checkpoints.

What the subclass changes, and nothing else:

- reward functions: `training.rewards.STEP_REWARDS`, one per step (grade, query,
  document, rules, conclusion); TRL computes and gathers them across processes
  as usual, and `_calculate_rewards` keeps that (B, S) matrix;
- `_generate_and_score_completions`: TRL's per-sequence advantages are replaced
  by per-token ones, normalised within the group per step
  (`losses.group_step_advantages`) and given to that step's tokens
  (`rewards.assign_steps` on the decoded tokens, `losses.step_token_advantages`);
  TRL's `_compute_loss` accepts (B, T) advantages as they are;
- `compute_loss`: adds lambda_t x the SFT NLL (completion tokens only) of an
  expert batch drawn every step (`losses.mode_balanced_loss`, `rl.lambda_at`).

One config: the stage's `training.rl.RLConfig` holds the method's settings
(lambda and its schedule, the expert batch, step weights) for both engines;
`grpo_args` derives TRL's arguments (steps, batch, learning rate, sampling,
clipping, beta) from it, and the trainer reads the rest from `rl=`.

`loss_type` must be "grpo" (token mean per sequence): the per-step weighting
of `step_token_advantages` is built for that aggregation, and it is the
aggregation of `losses.clipped_policy_loss`, so both engines optimise the same
objective. The expert NLL here is the plain completion cross-entropy over the
full vocabulary (no grade weight, no restricted softmax): on a GPU the LM head
is not the bottleneck that shaped the CPU loop.

Data set columns: `prompt` (the full prompt text, `PromptTemplate.full_text`),
`grade`, `reference` (the reference explanation), `rule_ids`; see
`trl_dataset`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from trl import GRPOConfig, GRPOTrainer

from training.losses import group_step_advantages, mode_balanced_loss, step_token_advantages
from training.rewards import STEP_REWARDS, assign_steps
from training.rl import RLConfig, lambda_at


@dataclass
class StepwiseGRPOConfig(GRPOConfig):
    """TRL's GRPOConfig with the aggregation this trainer is built on; the method's settings are an `RLConfig`."""

    def __post_init__(self) -> None:
        if self.loss_type == "dapo":  # TRL's default; this trainer is built on per-sequence token means
            self.loss_type = "grpo"
        super().__post_init__()
        if self.loss_type != "grpo":
            raise ValueError(
                f"StepwiseGRPOConfig needs loss_type='grpo' (token mean per sequence), got {self.loss_type!r}"
            )


def grpo_args(rl: RLConfig, out: Path, use_vllm: bool = False, vllm_mode: str = "colocate") -> StepwiseGRPOConfig:
    """TRL's arguments for the RL stage's config: one group of `group_size` completions per prompt.

    Under `accelerate launch --num_processes N` each process samples `prompts_per_step` prompts'
    groups (TRL's `per_device_train_batch_size`): a step sees N x prompts_per_step prompts. Build
    these before loading the model: they start the process group `from_pretrained` consults.
    """
    cuda = torch.cuda.is_available()
    return StepwiseGRPOConfig(
        output_dir=str(out),  # save_strategy "no": written only by save_model, the one checkpoint
        max_steps=rl.steps,
        per_device_train_batch_size=rl.prompts_per_step * rl.group_size,
        num_generations=rl.group_size,
        max_completion_length=rl.max_new_tokens,
        learning_rate=rl.learning_rate,
        weight_decay=rl.weight_decay,
        max_grad_norm=rl.grad_clip,
        temperature=rl.temperature,
        epsilon=rl.clip_eps,
        beta=rl.beta,
        gradient_checkpointing=rl.gradient_checkpointing is not False,  # TRL's default: on
        gradient_checkpointing_kwargs={"use_reentrant": False},  # works under DDP; transformers' default is reentrant
        use_vllm=use_vllm,
        vllm_mode=vllm_mode,
        bf16=cuda,
        use_cpu=not cuda,
        report_to="none",
        save_strategy="no",
        logging_steps=max(1, rl.log_every),
        seed=rl.seed,
    )


class StepwiseGRPOTrainer(GRPOTrainer):
    """GRPOTrainer with per-step advantages and the mode-balanced SFT term.

    rl: the stage's config (lambda and its schedule, expert batch size, step weights).
    expert: (prompt text, completion text) demonstrations for the SFT term; the
    completion is "<grade>\\n<explanation>" and gets the end-of-turn token appended.
    """

    def __init__(self, *args, rl: RLConfig, expert: Sequence[tuple[str, str]] = (), **kwargs):
        kwargs.setdefault("reward_funcs", list(STEP_REWARDS))
        super().__init__(*args, **kwargs)
        if [getattr(f, "__name__", None) for f in self.reward_funcs] != [f.__name__ for f in STEP_REWARDS]:
            raise ValueError("reward_funcs must be training.rewards.STEP_REWARDS, one per step, in order")
        if (rl.lam > 0 or (rl.lam_final or 0) > 0) and not expert:
            raise ValueError("lam > 0 needs expert demonstrations")
        self.rl = rl
        self.expert = list(expert)
        self._rng = random.Random(self.args.seed)
        self._pieces: dict[int, str] = {}
        self._step_rewards: torch.Tensor | None = None

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._step_rewards = rewards  # (B_global, S): one column per step reward
        return rewards

    def _piece(self, token_id: int) -> str:
        if token_id not in self._pieces:
            self._pieces[token_id] = self.processing_class.decode([token_id])
        return self._pieces[token_id]

    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        group = self.num_generations if mode == "train" else self.num_generations_eval
        step_adv = group_step_advantages(torch.nan_to_num(self._step_rewards.float(), nan=0.0), group)  # (B_global, S)
        ids, mask = out["completion_ids"], out["completion_mask"]
        b = ids.shape[0]
        rank = self.accelerator.process_index
        step_adv = step_adv[rank * b : (rank + 1) * b]  # this process's rows
        step_ids = torch.zeros_like(ids)
        for row, (tokens, n) in enumerate(zip(ids.tolist(), mask.sum(dim=1).tolist(), strict=True)):
            step_ids[row, :n] = torch.tensor(assign_steps([self._piece(t) for t in tokens[:n]]))
        weights = torch.tensor(self.rl.step_weights, device=ids.device)
        out["advantages"] = step_token_advantages(step_adv.to(ids.device), step_ids, mask, weights)  # (B, T)
        return out

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        lam = lambda_at(
            self.state.global_step,
            max(1, self.state.max_steps),
            self.rl.lam,
            self.rl.lam_final,
            self.rl.lam_schedule,
        )
        mode = "train" if self.model.training else "eval"
        if lam > 0 and self.expert and mode == "train":
            nll = self._expert_nll(model)
            loss = mode_balanced_loss(loss, nll / self.current_gradient_accumulation_steps, lam)
            self._metrics[mode]["expert_nll"].append(nll.item())
        self._metrics[mode]["lambda"].append(lam)
        return loss

    def _expert_nll(self, model) -> torch.Tensor:
        tok = self.processing_class
        chosen = [self.expert[self._rng.randrange(len(self.expert))] for _ in range(self.rl.expert_batch_size)]
        rows, labels = [], []
        for prompt, completion in chosen:
            p = tok(prompt, add_special_tokens=False)["input_ids"]
            c = tok(completion + tok.eos_token, add_special_tokens=False)["input_ids"]
            rows.append(p + c)
            labels.append([-100] * len(p) + c)
        width = max(len(r) for r in rows)
        device = self.accelerator.device
        input_ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long, device=device)
        label_ids = torch.full((len(rows), width), -100, dtype=torch.long, device=device)
        attention = torch.zeros((len(rows), width), dtype=torch.long, device=device)
        for i, (r, lab) in enumerate(zip(rows, labels, strict=True)):
            input_ids[i, : len(r)] = torch.tensor(r)
            label_ids[i, : len(r)] = torch.tensor(lab)
            attention[i, : len(r)] = 1
        return model(input_ids=input_ids, attention_mask=attention, labels=label_ids).loss


def trl_dataset(examples, template) -> datasets.Dataset:  # noqa: F821
    """World examples as the prompt data set StepwiseGRPOTrainer reads."""
    from datasets import Dataset

    return Dataset.from_list(
        [
            {
                "prompt": template.full_text(e.query, e.document),
                "grade": e.grade,
                "reference": e.explanation,
                "rule_ids": list(e.rule_ids),
            }
            for e in examples
        ]
    )


def expert_pairs(examples, template, labels) -> list[tuple[str, str]]:
    """(prompt text, "<grade>\\n<explanation>") demonstrations for the expert term."""
    token_of = dict(zip(labels.values, labels.tokens, strict=True))
    return [(template.full_text(e.query, e.document), f"{token_of[e.grade]}\n{e.explanation}") for e in examples]
