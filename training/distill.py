"""Distillation: a teacher's AFRL outputs into a smaller student.

    1. teacher outputs   for every prompt (training prompts, plus unlabeled prompts from a fresh
                         world), the teacher's greedy completion "<grade>\\n[Query] ..." and, where
                         available, its label distribution at the first position
    2. filter            drop outputs that do not start with a grade token or never end
    3. student loss      sequence-level KD: the SFT loss on the teacher's completions
                         (`sft.sft_loss`: completion-only, restricted vocabulary, grade weight)
                         + kd_weight x KL(teacher || student) over the K labels at the grade
                         position (`losses.label_kl`), where the teacher gave a distribution

Teachers (`training.teachers`): a checkpoint (a model trained by this
pipeline, or any checkpoint folder) or a model behind an OpenAI-compatible
`/chat/completions` (`teacher_base_url`, `teacher_model`, the key from the
environment variable `teacher_api_key_env`).

The student is trained with `training.sft.train_sft` and this module's
`distill_loss`, so it gets the same speed tricks as SFT, the compact
vocabulary included (`DistillLoss.compacted` translates its label ids; the
student comes out the same, see tests/training/test_distill.py). The
student is what export and serving use.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from training.compact_vocab import CompactVocab
from training.context import TrainingContext
from training.losses import label_ce, label_kl
from training.model_factory import TinyQwen3Spec
from training.rewards import first_grade
from training.sft import SFTConfig, completion_hidden, completion_loss, train_sft
from training.sft_data import SFTBatch, SFTSequence
from training.teachers import Teacher, TeacherOutput


@dataclass
class DistillConfig:
    student: TinyQwen3Spec = field(
        default_factory=lambda: TinyQwen3Spec(hidden_size=64, intermediate_size=192, num_hidden_layers=3),
        metadata={"help": "student architecture (random init; `--student CHECKPOINT` starts from weights instead)"},
    )
    sft: SFTConfig = field(
        default_factory=lambda: SFTConfig(steps=400, batch_size=16),
        metadata={"help": "the student's optimiser settings"},
    )
    kd_weight: float = field(default=1.0, metadata={"help": "weight of the first-token label KL"})
    kd_temperature: float = field(default=1.0, metadata={"help": "softmax temperature of the label KL"})
    gold_weight: float = field(
        default=1.0,
        metadata={"help": "weight of the label cross-entropy on the gold grade, where a prompt has one (0 = off)"},
    )
    train_prompts: int | None = field(
        default=None, metadata={"help": "training prompts the teacher labels (None: all)"}
    )
    extra_prompts: int = field(default=0, metadata={"help": "unlabeled prompts from a fresh world (seed + 1000)"})
    max_new_tokens: int = field(default=120, metadata={"help": "teacher completion cap"})
    keep_unfinished: bool = field(
        default=False,
        metadata={
            "help": "also learn from completions cut at the cap (only for smoke runs with a barely trained teacher)"
        },
    )
    teacher_base_url: str | None = field(default=None, metadata={"help": "OpenAI-compatible endpoint as teacher"})
    teacher_model: str | None = field(default=None, metadata={"help": "model name at the endpoint"})
    teacher_api_key_env: str = field(
        default="OPENAI_API_KEY", metadata={"help": "environment variable holding the endpoint's API key"}
    )

    def __post_init__(self) -> None:
        if isinstance(self.student, dict):
            self.student = TinyQwen3Spec(**self.student)
        if isinstance(self.sft, dict):
            self.sft = SFTConfig(**self.sft)
        if self.kd_weight < 0 or self.kd_temperature <= 0:
            raise ValueError(
                f"kd_weight must be >= 0 and kd_temperature > 0, got {self.kd_weight} and {self.kd_temperature}; "
                "try 1.0 and 1.0 (kd_weight 0: sequence-level KD only)"
            )
        if (self.teacher_base_url is None) != (self.teacher_model is None):
            raise ValueError("set both teacher_base_url and teacher_model (or neither: a checkpoint teacher)")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}; AFRL completions need ~120")
        if self.train_prompts is not None and self.train_prompts < 1:
            raise ValueError(f"train_prompts must be >= 1 or null (all), got {self.train_prompts}")


@dataclass(frozen=True)
class KDSequence(SFTSequence):
    label_probs: tuple[float, ...] | None = None  # the teacher's label distribution, when known
    gold: int | None = None  # the gold grade's index in the label set, where the prompt has one


def student_sequences(
    pairs: Sequence[tuple[str, str]],
    outputs: Sequence[TeacherOutput],
    ctx: TrainingContext,
    keep_unfinished: bool = False,
    gold: Sequence[int | None] | None = None,
) -> tuple[list[KDSequence], dict[str, int]]:
    """Teacher outputs as student training sequences; the second value counts what was dropped and why.

    gold: each pair's gold grade (None where it has none), kept beside the teacher's output.
    """
    token_of = dict(zip(ctx.labels.values, ctx.labels.tokens, strict=True))
    kept: list[KDSequence] = []
    dropped = {"no grade first": 0, "unfinished": 0}
    golds = [None] * len(pairs) if gold is None else list(gold)
    for (query, document), out, g in zip(pairs, outputs, golds, strict=True):
        grade = first_grade(out.text)
        if grade is None or grade not in token_of:
            dropped["no grade first"] += 1
            continue
        if not out.finished and not keep_unfinished:
            dropped["unfinished"] += 1
            continue
        explanation = out.text.split("\n", 1)[1] if "\n" in out.text else ""
        completion = ctx.encoder._encode(ctx.encoder.template.completion_text(token_of[grade], explanation))
        gold_index = None if g is None else ctx.labels.values.index(g)
        kept.append(KDSequence(ctx.prompt_ids(query, document), completion, grade, out.label_probs, gold_index))
    return kept, dropped


def distill_loss(config: DistillConfig, label_ids: Sequence[int]) -> DistillLoss:
    """loss_fn for `train_sft`: completion NLL on the teacher's text + kd_weight x first-token label KL."""
    return DistillLoss(config, tuple(label_ids))


@dataclass(frozen=True)
class DistillLoss:
    """The student's loss (see `distill_loss`); `compacted` is the same loss on a compact table's ids."""

    config: DistillConfig
    label_ids: tuple[int, ...]  # the K label tokens, in the order of the teacher's label_probs

    def compacted(self, vocab: CompactVocab) -> DistillLoss:
        return DistillLoss(self.config, tuple(vocab.ids_to_compact(torch.tensor(self.label_ids)).tolist()))

    def __call__(
        self, model: torch.nn.Module, batch: SFTBatch, chunk: Sequence[KDSequence], vocab, prefix
    ) -> torch.Tensor:
        config = self.config
        hidden = completion_hidden(model, batch, prefix)  # (N, H)
        head = model.get_output_embeddings().weight
        label_index = torch.tensor(self.label_ids, device=head.device)
        sft = config.sft
        total = completion_loss(hidden, head, batch, vocab, sft.grade_weight, sft.grade_objective, label_index)
        grade_hidden = hidden[batch.is_grade]  # (B, H): one grade position per row, in chunk order
        has = [i for i, s in enumerate(chunk) if getattr(s, "label_probs", None) is not None]
        if config.kd_weight > 0 and has:
            student = grade_hidden[has] @ head[label_index].T  # (B', K): rows in chunk order
            teacher = torch.tensor([chunk[i].label_probs for i in has], device=head.device)
            total = total + config.kd_weight * label_kl(student, teacher, config.kd_temperature)
        graded = [i for i, s in enumerate(chunk) if getattr(s, "gold", None) is not None]
        if config.gold_weight > 0 and graded:  # the gold grade keeps the student from copying the teacher's errors
            gold = label_index[torch.tensor([chunk[i].gold for i in graded], device=head.device)]  # token ids
            total = total + config.gold_weight * label_ce(grade_hidden[graded], head, gold, label_index)
        return total


@dataclass
class DistillResult:
    losses: list[float]
    sequences: int
    dropped: dict[str, int]
    teacher_seconds: float
    student_seconds: float


def run_distillation(
    teacher: Teacher,
    student: torch.nn.Module,
    pairs: Sequence[tuple[str, str]],
    ctx: TrainingContext,
    config: DistillConfig,
    vocab: torch.Tensor | None,
    progress: Callable[[str], None] | None = None,
    gold: Sequence[int | None] | None = None,
) -> DistillResult:
    """Label `pairs` with the teacher, then train `student` in place on its outputs (and `gold`, each pair's
    gold grade or None, with `config.gold_weight`)."""
    t = time.perf_counter()
    outputs = teacher.outputs(pairs)
    teacher_seconds = time.perf_counter() - t
    sequences, dropped = student_sequences(pairs, outputs, ctx, config.keep_unfinished, gold)
    if not sequences:
        raise RuntimeError(f"the teacher gave no usable output for {len(pairs)} prompts: {dropped}")
    if progress:
        progress(
            f"distill: teacher ({teacher.name}) labelled {len(pairs)} prompts in {teacher_seconds:.0f}s; "
            f"{len(sequences)} kept, dropped {dropped}"
        )
    if vocab is not None:
        vocab = torch.unique(torch.cat([vocab, ctx.vocab(sequences)]))
    tagged = (lambda m: progress(f"[student] {m}")) if progress else None
    result = train_sft(
        student,
        sequences,
        ctx.labels,
        config.sft,
        ctx.pad_id,
        progress=tagged,
        loss_fn=distill_loss(config, ctx.labels.token_ids),
        vocab=vocab,
    )
    return DistillResult(result.losses, len(sequences), dropped, teacher_seconds, result.seconds)
