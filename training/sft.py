"""Supervised fine-tuning on AFRL completions (grade token first, then reasons).

Optimises the weighted next-token NLL of the completion only (prompt tokens
carry no loss): the grade token with weight `grade_weight`, each explanation
token with weight 1. A plain loop rather than TRL's SFTTrainer: at this size
on 2 CPU cores the cost is the LM head, and the loop computes head logits
only at completion positions and, optionally, only over the completion
vocabulary (`training.losses.completion_nll`), which is ~5x faster per step
than the trainer's full-vocabulary logits at every position. Real-size runs
go through TRL's SFTTrainer with the same completion-only objective
(`training.trl_sft`, `afrl train sft --engine trl`).

Run it through the pipeline (`afrl train pipeline --preset tiny --out runs/tiny`)
or alone (`afrl train sft --out CKPT`).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import torch

from training.losses import completion_nll
from training.sft_data import SFTBatch, SFTSequence, collate, common_prefix, completion_vocab, length_bucketed_batches

log = logging.getLogger(__name__)


@dataclass
class SFTConfig:
    steps: int = field(default=400, metadata={"help": "optimizer steps"})
    epochs: float | None = field(
        default=None, metadata={"help": "passes over the training rows instead of `steps` (None: use steps)"}
    )
    batch_size: int = field(default=16, metadata={"help": "sequences per step"})
    learning_rate: float = field(default=2e-3, metadata={"help": "peak AdamW learning rate"})
    warmup_steps: int = field(default=30, metadata={"help": "linear warmup, then cosine decay to 10%"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW decay (not applied to embeddings/norms)"})
    grade_weight: float = field(
        default=4.0, metadata={"help": "loss weight of the grade token vs 1 per explanation token"}
    )
    max_completion_tokens: int | None = field(default=None, metadata={"help": "truncate completions (None = whole)"})
    restrict_vocab: bool = field(default=True, metadata={"help": "softmax over the completion vocabulary only"})
    share_prefix: bool = field(
        default=True, metadata={"help": "run the prompt prefix common to all rows once per step"}
    )
    gradient_checkpointing: bool | None = field(
        default=None,
        metadata={"help": "recompute activations in the backward pass (None: the engine's default, trl on, plain off)"},
    )
    lora_rank: int = field(default=0, metadata={"help": "LoRA adapters of this rank (0 = full fine-tuning)"})
    grad_clip: float = field(default=1.0, metadata={"help": "max gradient norm"})
    seed: int = field(default=0, metadata={"help": "data order and init seed"})
    log_every: int = field(default=20, metadata={"help": "steps between progress lines"})

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be >= 1, got {self.steps} and {self.batch_size}")
        if self.epochs is not None and self.epochs <= 0:
            raise ValueError(f"epochs must be > 0, got {self.epochs}; or leave it unset and give steps")
        if not 0 < self.learning_rate < 1:
            raise ValueError(
                f"learning_rate {self.learning_rate} is outside (0, 1); "
                "try 1e-3 from scratch, 1e-5 on a pretrained model"
            )
        if self.epochs is None and self.warmup_steps >= self.steps:
            raise ValueError(
                f"warmup_steps {self.warmup_steps} must be below steps {self.steps}; "
                f"try warmup_steps={self.steps // 10}"
            )
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.grade_weight <= 0:
            raise ValueError(f"grade_weight must be > 0, got {self.grade_weight}; 1.0 weighs it like any token")
        if self.lora_rank < 0:
            raise ValueError(f"lora_rank must be >= 0 (0 = full fine-tuning), got {self.lora_rank}")
        if self.gradient_checkpointing and self.share_prefix:
            raise ValueError(
                "gradient_checkpointing keeps no KV cache for the shared prompt prefix: set share_prefix=False with it"
            )

    def with_steps(self, steps: int) -> SFTConfig:
        """`steps` optimizer steps (no epochs), the warmup kept below them."""
        return replace(self, steps=steps, epochs=None, warmup_steps=min(self.warmup_steps, steps - 1))

    def resolved(self, rows: int) -> SFTConfig:
        """The config with `epochs` turned into steps for `rows` training rows (warmup kept below the steps)."""
        steps = self.steps if self.epochs is None else max(1, math.ceil(self.epochs * rows / self.batch_size))
        return self.with_steps(steps)


@dataclass
class SFTResult:
    losses: list[float]
    seconds: float


def lr_at(step: int, config: SFTConfig) -> float:
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "embed" in name or "norm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def completion_hidden(
    model: torch.nn.Module, batch: SFTBatch, shared_prefix: torch.Tensor | None = None
) -> torch.Tensor:
    """(N, H) final hidden states of the positions that predict `batch.targets`.

    shared_prefix: (P,) token ids that precede every row of `batch` (the system
    turn). They run once, batch size 1, and their KV cache is repeated for the
    rows, so the guideline costs one pass per step instead of one per row;
    gradients flow through the cache into the prefix pass as well.
    """
    decoder = model.get_decoder()
    if shared_prefix is None:
        hidden = decoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
    else:
        b, r = batch.input_ids.shape
        p = shared_prefix.shape[0]
        device = batch.input_ids.device
        cache = decoder(input_ids=shared_prefix[None], use_cache=True).past_key_values  # (1, heads, P, d) per layer
        cache.batch_repeat_interleave(b)  # (B, heads, P, d)
        mask = torch.cat([torch.ones((b, p), dtype=batch.attention_mask.dtype, device=device), batch.attention_mask], 1)
        positions = torch.arange(p, p + r, device=device)
        hidden = decoder(
            input_ids=batch.input_ids,  # (B, R) right-padded rest of each sequence
            attention_mask=mask,  # (B, P + R)
            past_key_values=cache,
            position_ids=positions[None].expand(b, r),
            cache_position=positions,
        ).last_hidden_state  # (B, R, H)
    rows, cols = batch.target_positions[:, 0], batch.target_positions[:, 1]
    return hidden[rows, cols]  # (N, H)


def sft_loss(
    model: torch.nn.Module,
    batch: SFTBatch,
    vocab_subset: torch.Tensor | None,
    grade_weight: float,
    shared_prefix: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weighted completion NLL of one batch (see `completion_hidden` for the shared prefix)."""
    selected = completion_hidden(model, batch, shared_prefix)  # (N, H)
    weights = torch.where(batch.is_grade, grade_weight, 1.0)
    return completion_nll(selected, model.get_output_embeddings().weight, batch.targets, weights, vocab_subset)


LossFn = Callable[
    [torch.nn.Module, SFTBatch, Sequence[SFTSequence], "torch.Tensor | None", "torch.Tensor | None"], torch.Tensor
]


def train_sft(
    model: torch.nn.Module,
    sequences: Sequence[SFTSequence],
    labels,
    config: SFTConfig,
    pad_id: int,
    progress: Callable[[str], None] | None = None,
    loss_fn: LossFn | None = None,
    vocab: torch.Tensor | None = None,
) -> SFTResult:
    """Train in place for `config.steps` steps (or `config.epochs` passes over `sequences`); returns the loss curve.

    loss_fn(model, batch, chunk, vocab_subset, shared_prefix): another objective on the same
    batches (distillation adds a first-token KL); default `sft_loss`. vocab: the completion
    vocabulary when the caller has a wider one (default: the tokens of `sequences`).
    """
    config = config.resolved(len(sequences))
    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    device = next(model.parameters()).device
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.restrict_vocab and vocab is None:
        vocab = completion_vocab(sequences, labels)
    vocab = vocab.to(device) if config.restrict_vocab else None
    prefix = torch.tensor(common_prefix(sequences), device=device) if config.share_prefix else None
    skip = 0 if prefix is None else len(prefix)
    if prefix is not None and skip == 0:
        prefix = None
    optimizer = torch.optim.AdamW(
        _param_groups(model, config.weight_decay), lr=config.learning_rate, betas=(0.9, 0.95), fused=True
    )  # fused: one kernel per tensor; the 19M-row embedding update is 10x cheaper
    model.train()
    losses: list[float] = []
    start = time.perf_counter()
    batches = length_bucketed_batches(sequences, config.batch_size, rng)
    for step in range(config.steps):
        try:
            chunk = next(batches)
        except StopIteration:
            batches = length_bucketed_batches(sequences, config.batch_size, rng)
            chunk = next(batches)
        batch = collate(chunk, pad_id, config.max_completion_tokens, skip_prefix=skip).to(device)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config)
        if loss_fn is None:
            loss = sft_loss(model, batch, vocab, config.grade_weight, prefix)
        else:
            loss = loss_fn(model, batch, chunk, vocab, prefix)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        losses.append(loss.item())
        if progress and (step % config.log_every == 0 or step == config.steps - 1):
            recent = losses[-config.log_every :]
            elapsed = time.perf_counter() - start
            eta = elapsed / (step + 1) * (config.steps - step - 1)
            progress(
                f"sft step {step + 1}/{config.steps} loss {sum(recent) / len(recent):.3f} "
                f"({elapsed:.0f}s elapsed, ~{eta:.0f}s left)"
            )
    model.eval()
    return SFTResult(losses=losses, seconds=time.perf_counter() - start)
