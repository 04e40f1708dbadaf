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

Compact vocabulary (`SFTConfig.compact_vocab`, on by default). With the
restricted softmax the loss never reads an embedding row outside the tokens
of the training rows, their completion vocabulary, pad and labels, yet the
full 151,936-row table costs a dense gradient, its clipping norm and AdamW
over every row. The loop therefore trains on `training.compact_vocab`'s
table of those rows and scatters them back when it returns (or raises):
checkpoints, export and serving see the full table, and the run is the
full-table run: on the default preset, losses and weights bit-identical,
1.54x (1 thread) and 1.56x (the preset's 2) the steps per minute, paired
median step times (`afrl bench train-compact-vocab speed`; the batches are
put in compact ids as they are drawn, so a call's overhead is one shrink
and one scatter back). It is skipped, with a log line, where the
embedding does not train (LoRA), the head is untied, the softmax is the
full one, or a custom `loss_fn` has no `compacted(vocab)` to learn the
compact ids. The trl engine always trains the full table.

One optimizer for many parts. `SFTTrainer` keeps one AdamW and one
learning-rate schedule (warm-up once, cosine over the steps planned in
all) across calls of `SFTTrainer.train`: the curriculum's stages and the
evolution rounds (`training.curriculum.curriculum_trainer`). The model has
its full table between calls (evaluation reads it); the compact table is the
same Parameter from call to call, so its AdamW moments carry on, and when a
later call brings new tokens it grows, the new rows with zero moments (what
they have in a full-table run, where they never had a gradient).
`train_sft` is the one-shot wrapper.

The grade's objective (`SFTConfig.grade_objective`): "vocab", its NLL over
the completion vocabulary, weighted `grade_weight` among the completion
tokens; or "labels", `grade_weight` x its cross-entropy over the label
tokens only (the renormalised distribution serving reads) added to the
explanation tokens' mean NLL (`training.losses.explanation_plus_label_ce`).

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
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch

from training.attention import ATTENTIONS, training_attention
from training.compact_vocab import CompactVocab, FullTable, embedding_and_head
from training.losses import completion_nll, explanation_plus_label_ce
from training.precision import PRECISIONS, autocast, resolve_precision
from training.sft_data import SFTBatch, SFTSequence, collate, common_prefix, completion_vocab, length_bucketed_batches

if TYPE_CHECKING:
    from afrl.labels import LabelSet

log = logging.getLogger(__name__)

GRADE_OBJECTIVES = ("vocab", "labels")


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
    grade_objective: str = field(
        default="vocab",
        metadata={
            "help": "the grade token's loss: 'vocab' (its NLL over the completion vocabulary, weighted grade_weight) "
            "or 'labels' (grade_weight x its cross-entropy over the label tokens + the explanation's mean NLL)"
        },
    )
    max_completion_tokens: int | None = field(default=None, metadata={"help": "truncate completions (None = whole)"})
    restrict_vocab: bool = field(default=True, metadata={"help": "softmax over the completion vocabulary only"})
    compact_vocab: bool = field(
        default=True,
        metadata={
            "help": "train on the embedding rows of the tokens that occur, scattered back into the full table "
            "afterwards (with restrict_vocab; the same model, faster)"
        },
    )
    share_prefix: bool = field(
        default=True, metadata={"help": "run the prompt prefix common to all rows once per step"}
    )
    gradient_checkpointing: bool | None = field(
        default=None,
        metadata={"help": "recompute activations in the backward pass (None: the engine's default, trl on, plain off)"},
    )
    lora_rank: int = field(default=0, metadata={"help": "LoRA adapters of this rank (0 = full fine-tuning)"})
    precision: str = field(
        default="fp32",
        metadata={
            "help": "'fp32', 'bf16' (autocast: matmuls in bfloat16, weights and AdamW in float32) or 'auto' "
            "(bf16 where the device multiplies bfloat16 natively: see training.precision)"
        },
    )
    attention: str = field(
        default="auto",
        metadata={
            "help": "attention kernel while training: 'eager', 'sdpa' or 'auto' (eager on a CPU, where torch's "
            "flash-attention backward is slow at these sizes: see training.attention)"
        },
    )
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
        if self.grade_objective not in GRADE_OBJECTIVES:
            raise ValueError(
                f"grade_objective must be one of {GRADE_OBJECTIVES}, got {self.grade_objective!r} "
                "('vocab': NLL over the completion vocabulary, 'labels': cross-entropy over the label tokens)"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {self.attention!r}")
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
    """Linear warm-up over `warmup_steps`, then cosine to 10% at `steps` (and 10% past them)."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps))
    return config.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def adamw(model: torch.nn.Module, learning_rate: float, weight_decay: float) -> torch.optim.Optimizer:
    """The AdamW every training loop uses (SFT, RL): no decay on embeddings and norms, betas (0.9, 0.95)."""
    return torch.optim.AdamW(
        _param_groups(model, weight_decay), lr=learning_rate, betas=(0.9, 0.95), fused=True
    )  # fused: one kernel per tensor; the 19M-row embedding update is 10x cheaper


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


def completion_loss(
    hidden: torch.Tensor,
    head_weight: torch.Tensor,
    batch: SFTBatch,
    vocab_subset: torch.Tensor | None,
    grade_weight: float,
    objective: str = "vocab",
    label_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """The SFT objective on the (N, H) hidden states of `batch`'s targets (see `SFTConfig.grade_objective`).

    label_ids: (K,) the label token ids, needed by the "labels" objective.
    """
    if objective == "vocab":
        weights = torch.where(batch.is_grade, grade_weight, 1.0)
        return completion_nll(hidden, head_weight, batch.targets, weights, vocab_subset)
    if objective != "labels" or label_ids is None:
        raise ValueError(f"objective {objective!r} needs to be 'vocab', or 'labels' with label_ids")
    return explanation_plus_label_ce(
        hidden, head_weight, batch.targets, batch.is_grade, label_ids, grade_weight, vocab_subset
    )


def sft_loss(
    model: torch.nn.Module,
    batch: SFTBatch,
    vocab_subset: torch.Tensor | None,
    grade_weight: float,
    shared_prefix: torch.Tensor | None = None,
    objective: str = "vocab",
    label_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """The completion loss of one batch (see `completion_hidden` for the shared prefix, `completion_loss`)."""
    selected = completion_hidden(model, batch, shared_prefix)  # (N, H)
    head = model.get_output_embeddings().weight
    return completion_loss(selected, head, batch, vocab_subset, grade_weight, objective, label_ids)


LossFn = Callable[
    [torch.nn.Module, SFTBatch, Sequence[SFTSequence], "torch.Tensor | None", "torch.Tensor | None"], torch.Tensor
]


@runtime_checkable
class CompactableLoss(Protocol):
    """A loss_fn that also works on a compact table: `compacted(vocab)` is the same loss in its ids.

    The loop passes every loss_fn compact batches, sequences and vocabulary subsets; a loss that holds
    token ids of its own (distillation's label ids) must translate them, or the loop trains the full table.
    """

    def __call__(
        self,
        model: torch.nn.Module,
        batch: SFTBatch,
        chunk: Sequence[SFTSequence],
        vocab_subset: torch.Tensor | None,
        shared_prefix: torch.Tensor | None,
    ) -> torch.Tensor: ...

    def compacted(self, vocab: CompactVocab) -> LossFn: ...


class SFTTrainer:
    """One AdamW and one learning-rate schedule for a model trained in several calls (curriculum stages, rounds).

        trainer = SFTTrainer(model, config.with_steps(total), labels, pad_id)  # total: the steps of all calls
        trainer.train(head_rows, 300, seed=0)        # warm-up, then the cosine continues over the next calls
        predict_grades(model, ...)                   # the full table between calls
        trainer.train(evolved_rows, 100, seed=1)     # same optimizer; new tokens grow the compact table

    config.steps is the schedule's length; each call says how many of them it takes.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        config: SFTConfig,
        labels: LabelSet,
        pad_id: int,
        loss_fn: LossFn | None = None,
    ) -> None:
        self.model = model
        self.config = config
        self.labels = labels
        self.pad_id = pad_id
        self.loss_fn = loss_fn
        self.step = 0  # optimizer steps taken over all calls: the schedule's position
        self.optimizer: torch.optim.Optimizer | None = None
        self._vocab: CompactVocab | None = None  # the compact table's tokens so far (it only grows)
        self._weight: torch.nn.Parameter | None = None  # its Parameter: AdamW's state is keyed on it
        self.compact_off = self._why_not_compact()
        if self.compact_off is not None and config.compact_vocab:
            log.info("compact vocabulary: off (%s); training the full table", self.compact_off)
        if config.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    def train(
        self,
        sequences: Sequence[SFTSequence],
        steps: int | None = None,
        *,
        seed: int | None = None,
        vocab: torch.Tensor | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> SFTResult:
        """`steps` optimizer steps on `sequences` (default: the rest of the schedule); returns this call's losses.

        seed: this call's data order and torch seed (default `config.seed`). vocab: the completion vocabulary
        (full ids) when the caller has a wider one (default: the tokens of `sequences`). The model is back on
        its full table when this returns, or raises.
        """
        config = self.config
        steps = config.steps - self.step if steps is None else steps
        if steps < 1:
            raise ValueError(f"no steps to train: the schedule has {config.steps}, {self.step} taken")
        seed = config.seed if seed is None else seed
        rng = random.Random(seed)
        torch.manual_seed(seed)
        if not config.restrict_vocab:
            vocab = None
        elif vocab is None:
            vocab = completion_vocab(sequences, self.labels)
        device = next(self.model.parameters()).device
        with training_attention(self.model, config.attention, device):
            if self.compact_off is not None or vocab is None:
                return self._steps(sequences, steps, rng, vocab, None, progress)
            compact, table = self._shrink(sequences, vocab)
            try:
                return self._steps(sequences, steps, rng, vocab, compact, progress)
            finally:
                compact.expand(self.model, table)

    def _steps(
        self,
        sequences: Sequence[SFTSequence],
        steps: int,
        rng: random.Random,
        vocab: torch.Tensor | None,
        compact: CompactVocab | None,
        progress: Callable[[str], None] | None,
    ) -> SFTResult:
        """The loop; with `compact` the model's table is compact, and each batch is put in its ids as it is drawn
        (encoding every row up front costs more than a short stage saves)."""
        config, model = self.config, self.model
        labels, pad_id, loss_fn = self.labels, self.pad_id, self.loss_fn
        prefix = torch.tensor(common_prefix(sequences), dtype=torch.long) if config.share_prefix else None
        if compact is not None:
            labels, pad_id = compact.labels(labels), compact.id(pad_id)
            vocab = None if vocab is None else compact.ids_to_compact(vocab)
            loss_fn = None if loss_fn is None else loss_fn.compacted(compact)  # type: ignore[attr-defined]
            prefix = None if prefix is None else compact.ids_to_compact(prefix)
        device = next(model.parameters()).device
        vocab = None if vocab is None else vocab.to(device)
        label_ids = torch.tensor(labels.token_ids, device=device)
        skip = 0 if prefix is None else len(prefix)
        prefix = None if prefix is None or skip == 0 else prefix.to(device)
        if self.optimizer is None:
            self.optimizer = adamw(model, config.learning_rate, config.weight_decay)
        optimizer = self.optimizer
        precision = resolve_precision(config.precision, device)
        if precision != config.precision:
            log.info("precision %s: %s on this %s", config.precision, precision, device.type)
        model.train()
        losses: list[float] = []
        start = time.perf_counter()
        batches = length_bucketed_batches(sequences, config.batch_size, rng)
        for step in range(steps):
            try:
                chunk = next(batches)
            except StopIteration:
                batches = length_bucketed_batches(sequences, config.batch_size, rng)
                chunk = next(batches)
            if compact is not None:
                chunk = compact.encode(chunk)
            batch = collate(chunk, pad_id, config.max_completion_tokens, skip_prefix=skip).to(device)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(self.step, config)
            with autocast(precision, device):  # the forward pass; backward follows its dtypes
                if loss_fn is None:
                    loss = sft_loss(model, batch, vocab, config.grade_weight, prefix, config.grade_objective, label_ids)
                else:
                    loss = loss_fn(model, batch, chunk, vocab, prefix)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            self.step += 1
            losses.append(loss.item())
            if progress and (step % config.log_every == 0 or step == steps - 1):
                recent = losses[-config.log_every :]
                elapsed = time.perf_counter() - start
                eta = elapsed / (step + 1) * (steps - step - 1)
                progress(
                    f"sft step {step + 1}/{steps} loss {sum(recent) / len(recent):.3f} "
                    f"({elapsed:.0f}s elapsed, ~{eta:.0f}s left)"
                )
        model.eval()
        return SFTResult(losses=losses, seconds=time.perf_counter() - start)

    # the compact table ---------------------------------------------------------

    def _why_not_compact(self) -> str | None:
        """None when this model and config can train on a compact table, else why not (logged)."""
        config = self.config
        if not config.compact_vocab:
            return "compact_vocab=False"
        if not config.restrict_vocab:
            return "restrict_vocab=False: a softmax over the compact table is not the full table's"
        if self.loss_fn is not None and not isinstance(self.loss_fn, CompactableLoss):
            name = getattr(self.loss_fn, "__qualname__", type(self.loss_fn).__name__)
            return f"the loss function {name} has no compacted(vocab) to translate its token ids"
        try:
            emb, head = embedding_and_head(self.model)
        except ValueError as e:
            return str(e)
        if not emb.weight.requires_grad:
            return "the embedding does not train (LoRA adapters, or frozen)"
        if head is not None and head.weight is not emb.weight:
            return "the LM head is untied (the loop decays it: its unseen rows would shrink in the full table only)"
        return None

    def _shrink(self, sequences: Sequence[SFTSequence], vocab: torch.Tensor) -> tuple[CompactVocab, FullTable]:
        """Shrink the model to what this call reads and predicts, growing the table of earlier calls if needed."""
        emb = self.model.get_input_embeddings()
        ids = {self.pad_id, *self.labels.token_ids, *vocab.tolist()}
        if emb.padding_idx is not None:
            ids.add(emb.padding_idx)
        for s in sequences:
            ids.update(s.prompt_ids)
            ids.update(s.completion_ids)
        before = self._vocab
        if before is None:
            compact = CompactVocab.from_ids(ids, emb.num_embeddings)
            log.info("compact vocabulary: %d of %d rows", len(compact), compact.full_size)
        elif before.full_size != emb.num_embeddings:
            raise ValueError(
                f"the model's table has {emb.num_embeddings} rows, {before.full_size} when this trainer began"
            )
        else:
            compact = before.widened(ids)
        grown = before is not None and compact is not before
        table = compact.shrink(self.model, None if grown else self._weight)
        weight = self.model.get_input_embeddings().weight
        if grown and before is not None and self._weight is not None:
            self._move_state(before, compact, self._weight, weight)
            log.info("compact vocabulary: %d -> %d rows (new tokens)", len(before), len(compact))
        self._vocab, self._weight = compact, weight
        return compact, table

    def _move_state(
        self, before: CompactVocab, after: CompactVocab, old: torch.nn.Parameter, new: torch.nn.Parameter
    ) -> None:
        """Hand the old compact Parameter's AdamW state to the grown one (new rows: zero moments)."""
        if self.optimizer is None:
            return
        state = self.optimizer.state.pop(old, {})
        self.optimizer.state[new] = {
            k: before.rows_into(after, v) if torch.is_tensor(v) and v.shape == old.shape else v
            for k, v in state.items()
        }
        for group in self.optimizer.param_groups:
            group["params"] = [new if p is old else p for p in group["params"]]


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
    batches (distillation adds a first-token KL); default `sft_loss`. On a compact table it gets
    compact ids, so it needs `compacted(vocab)` (`CompactableLoss`), else the table stays full.
    vocab: the completion vocabulary when the caller has a wider one (default: the tokens of `sequences`).
    One optimizer and schedule for this call alone; `SFTTrainer` carries them across calls.
    """
    config = config.resolved(len(sequences))
    trainer = SFTTrainer(model, config, labels, pad_id, loss_fn)
    return trainer.train(sequences, config.steps, seed=config.seed, vocab=vocab, progress=progress)
