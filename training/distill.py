"""Distillation: a teacher's AFRL outputs into a smaller student.

    1. teacher outputs   for every prompt (training prompts, plus unlabeled prompts from a fresh
                         world), the teacher's greedy completion "<grade>\\n[Query] ..." and, where
                         available, its label distribution at the first position
    2. filter            drop outputs that do not start with a grade token or never end
    3. student loss      sequence-level KD: the SFT loss on the teacher's completions
                         (`sft.sft_loss`: completion-only, restricted vocabulary, grade weight)
                         + kd_weight x KL(teacher || student) over the K labels at the grade
                         position (`losses.label_kl`), where the teacher gave a distribution

Teachers (`Teacher`): `CheckpointTeacher` (a model trained by this pipeline or
any checkpoint folder with an afrl.json: `training.context.load_checkpoint`)
and `EndpointTeacher` (any model behind an OpenAI-compatible
`/chat/completions`; it uses `logprobs`/`top_logprobs` of the first token for
the label distribution when the server returns them, else sequence-level KD only).

The student is trained with `training.sft.train_sft` and this module's
`distill_loss`, so it gets the same speed tricks as SFT. The student is what
export and serving use.
"""

from __future__ import annotations

import json
import math
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from training.context import TrainingContext
from training.losses import completion_nll, label_kl
from training.model_factory import TinyQwen3Spec
from training.rewards import first_grade
from training.rollout import generate
from training.sft import SFTConfig, completion_hidden, train_sft
from training.sft_data import SFTBatch, SFTSequence


@dataclass
class DistillConfig:
    student: TinyQwen3Spec = field(
        default_factory=lambda: TinyQwen3Spec(hidden_size=64, intermediate_size=192, num_hidden_layers=3),
        metadata={"help": "student architecture (random init)"},
    )
    sft: SFTConfig = field(
        default_factory=lambda: SFTConfig(steps=400, batch_size=16),
        metadata={"help": "the student's optimiser settings"},
    )
    kd_weight: float = field(default=1.0, metadata={"help": "weight of the first-token label KL"})
    kd_temperature: float = field(default=1.0, metadata={"help": "softmax temperature of the label KL"})
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

    def __post_init__(self) -> None:
        if isinstance(self.student, dict):
            self.student = TinyQwen3Spec(**self.student)
        if isinstance(self.sft, dict):
            self.sft = SFTConfig(**self.sft)
        if self.kd_weight < 0 or self.kd_temperature <= 0:
            raise ValueError("kd_weight must be >= 0 and kd_temperature > 0")
        if (self.teacher_base_url is None) != (self.teacher_model is None):
            raise ValueError("set both teacher_base_url and teacher_model (or neither)")


@dataclass(frozen=True)
class TeacherOutput:
    text: str  # "<grade>\n[Query] ..." without the end-of-turn token
    finished: bool
    label_probs: tuple[float, ...] | None


class Teacher(Protocol):
    name: str

    def outputs(self, pairs: Sequence[tuple[str, str]]) -> list[TeacherOutput]: ...


class CheckpointTeacher:
    """A torch model: greedy completions and its label distribution, from one decode pass."""

    def __init__(
        self,
        model: torch.nn.Module,
        ctx: TrainingContext,
        vocab: torch.Tensor | None,
        max_new_tokens: int = 120,
        batch_size: int = 64,
        name: str = "checkpoint",
    ):
        self.model, self.ctx, self.vocab = model, ctx, vocab
        self.max_new_tokens, self.batch_size, self.name = max_new_tokens, batch_size, name

    def outputs(self, pairs: Sequence[tuple[str, str]]) -> list[TeacherOutput]:
        prompts = [self.ctx.prompt_ids(q, d) for q, d in pairs]
        out = generate(
            self.model,
            prompts,
            prefix_len=self.ctx.prefix_len,
            eos_id=self.ctx.eos_id,
            max_new_tokens=self.max_new_tokens,
            vocab=self.vocab,
            greedy=True,
            label_ids=self.ctx.labels.token_ids,
            batch_size=self.batch_size,
        )
        return [
            TeacherOutput(self.ctx.decode(ids), done, tuple(p.tolist()))
            for ids, done, p in zip(out.completion_ids, out.finished, out.label_probs, strict=True)
        ]


Post = Callable[[str, dict, dict], dict]


def _http_post(url: str, payload: dict, headers: dict) -> dict:
    req = urllib.request.Request(
        url, data=json.dumps(payload).encode(), method="POST", headers={"content-type": "application/json", **headers}
    )
    with urllib.request.urlopen(req, timeout=120) as resp:  # noqa: S310 (the user configures the endpoint)
        return json.loads(resp.read())


class EndpointTeacher:
    """A chat model behind an OpenAI-compatible endpoint (e.g. a 32B teacher served by vLLM)."""

    name = "endpoint"

    def __init__(
        self,
        base_url: str,
        model: str,
        ctx: TrainingContext,
        api_key: str | None = None,
        max_new_tokens: int = 120,
        post: Post | None = None,
    ):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.ctx, self.api_key = model, ctx, api_key
        self.max_new_tokens, self.post = max_new_tokens, post or _http_post

    def outputs(self, pairs: Sequence[tuple[str, str]]) -> list[TeacherOutput]:
        return [self._one(q, d) for q, d in pairs]

    def _one(self, query: str, document: str) -> TeacherOutput:
        payload = {
            "model": self.model,
            "temperature": 0.0,
            "max_tokens": self.max_new_tokens,
            "logprobs": True,
            "top_logprobs": 10,
            "messages": [
                {"role": "system", "content": self.ctx.guideline},
                {"role": "user", "content": f"Query: {query}\nDocument: {document}"},
            ],
            "chat_template_kwargs": {"enable_thinking": False},
        }
        headers = {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        choice = self.post(self.url, payload, headers)["choices"][0]
        text = choice["message"]["content"] or ""
        return TeacherOutput(
            text.strip("\n"),
            choice.get("finish_reason") == "stop",
            endpoint_label_probs(choice.get("logprobs"), self.ctx.labels.tokens),
        )


def endpoint_label_probs(logprobs: dict | None, label_tokens: Sequence[str]) -> tuple[float, ...] | None:
    """The label distribution from the first token's `top_logprobs`, renormalised; None if a label is missing."""
    try:
        top = logprobs["content"][0]["top_logprobs"]
    except (TypeError, KeyError, IndexError):
        return None
    by_token = {t["token"].strip(): t["logprob"] for t in top}
    if not all(tok in by_token for tok in label_tokens):
        return None
    weights = [math.exp(by_token[tok]) for tok in label_tokens]
    total = sum(weights)
    return tuple(w / total for w in weights)


@dataclass(frozen=True)
class KDSequence(SFTSequence):
    label_probs: tuple[float, ...] | None = None  # the teacher's label distribution, when known


def student_sequences(
    pairs: Sequence[tuple[str, str]],
    outputs: Sequence[TeacherOutput],
    ctx: TrainingContext,
    keep_unfinished: bool = False,
) -> tuple[list[KDSequence], dict[str, int]]:
    """Teacher outputs as student training sequences; the second value counts what was dropped and why."""
    token_of = dict(zip(ctx.labels.values, ctx.labels.tokens, strict=True))
    kept: list[KDSequence] = []
    dropped = {"no grade first": 0, "unfinished": 0}
    for (query, document), out in zip(pairs, outputs, strict=True):
        grade = first_grade(out.text)
        if grade is None or grade not in token_of:
            dropped["no grade first"] += 1
            continue
        if not out.finished and not keep_unfinished:
            dropped["unfinished"] += 1
            continue
        explanation = out.text.split("\n", 1)[1] if "\n" in out.text else ""
        completion = ctx.encoder._encode(ctx.encoder.template.completion_text(token_of[grade], explanation))
        kept.append(KDSequence(ctx.prompt_ids(query, document), completion, grade, out.label_probs))
    return kept, dropped


def distill_loss(config: DistillConfig, label_ids: Sequence[int]):
    """loss_fn for `train_sft`: completion NLL on the teacher's text + kd_weight x first-token label KL."""
    label_index = torch.tensor(list(label_ids))

    def loss(model: torch.nn.Module, batch: SFTBatch, chunk: Sequence[KDSequence], vocab, prefix) -> torch.Tensor:
        hidden = completion_hidden(model, batch, prefix)  # (N, H)
        head = model.get_output_embeddings().weight
        weights = torch.where(batch.is_grade, config.sft.grade_weight, 1.0)
        total = completion_nll(hidden, head, batch.targets, weights, vocab)
        has = [i for i, s in enumerate(chunk) if getattr(s, "label_probs", None) is not None]
        if config.kd_weight > 0 and has:
            grade_hidden = hidden[batch.is_grade][has]  # (B', H): rows in chunk order
            student = grade_hidden @ head[label_index.to(head.device)].T  # (B', K)
            teacher = torch.tensor([chunk[i].label_probs for i in has], device=head.device)
            total = total + config.kd_weight * label_kl(student, teacher, config.kd_temperature)
        return total

    return loss


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
) -> DistillResult:
    """Label `pairs` with the teacher, then train `student` in place on its outputs."""
    t = time.perf_counter()
    outputs = teacher.outputs(pairs)
    teacher_seconds = time.perf_counter() - t
    sequences, dropped = student_sequences(pairs, outputs, ctx, config.keep_unfinished)
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
