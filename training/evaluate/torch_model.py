"""Measure a torch model during training: grades from one prefill, explanations by greedy decoding.

The label distribution is read exactly as serving reads it (renormalised over
the label tokens at the first generated position; equal to `TorchPredictor`,
the export's score computation, to ~1e-7), but through
`training.rollout.generate`, which runs the shared guideline once per batch.
`TorchPredictor` itself runs full prompts through the export's
`LabelScoreModel`: what the latency figures time and what tests compare with.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from afrl.labels import LabelSet
from afrl.padding import left_pad
from afrl.prompt import PromptEncoder
from afrl.scoring import GradeResult, grade_results
from training.context import TrainingContext
from training.evaluate.reports import explanation_report, grade_report
from training.model_factory import body_parameters


@torch.no_grad()
def label_probs(
    model: torch.nn.Module, ctx: TrainingContext, examples: Sequence, batch_size: int = 128
) -> torch.Tensor:
    """(N, K) label distribution of each example's first generated position."""
    labels = torch.tensor(sorted(ctx.labels.token_ids))
    pairs = [(ex.query, ex.document) for ex in examples]
    return ctx.greedy(model, pairs, 1, vocab=labels, with_label_probs=True, batch_size=batch_size).label_probs


def score(model: torch.nn.Module, ctx: TrainingContext, examples: Sequence) -> list[GradeResult]:
    probs = label_probs(model, ctx, examples).double().clamp(min=1e-300)
    return grade_results(np.log(probs.numpy()), ctx.labels.values)


def predict_grades(model: torch.nn.Module, ctx: TrainingContext, examples: Sequence) -> list[int]:
    return [r.grade for r in score(model, ctx, examples)]


def generate_completions(
    model: torch.nn.Module,
    ctx: TrainingContext,
    examples: Sequence,
    vocab: torch.Tensor | None = None,
    max_new_tokens: int = 120,
    batch_size: int = 64,
) -> list[str]:
    """Greedy AFRL completions ("<grade>\\n[Query] ..."), without the end-of-turn token (vocab None: all tokens)."""
    out = ctx.greedy(model, [(ex.query, ex.document) for ex in examples], max_new_tokens, vocab, batch_size=batch_size)
    return [ctx.decode(ids) for ids in out.completion_ids]


def evaluate_model(
    model: torch.nn.Module,
    ctx: TrainingContext,
    examples: Sequence,
    train_grades: Sequence[int],
    explain: int = 0,
    explain_vocab: torch.Tensor | None = None,
) -> dict:
    """`grade_report` on all examples, plus `explanation_report` on `explain` of them (a fixed, spread slice).

    Explanations are decoded greedily over the full vocabulary by default, as serving's decode graph does;
    `explain_vocab` restricts decoding to the completion vocabulary (3-4x faster on CPU; on the tiny
    preset's teacher and student it gave the same completions, format validity 0.98 and 0.69 both ways).
    """
    start = time.perf_counter()
    report = grade_report(examples, score(model, ctx, examples), train_grades, ctx.labels.values)
    report["score_seconds"] = time.perf_counter() - start
    if explain:
        chosen = _spread(examples, explain)
        t = time.perf_counter()
        report["explanations"] = explanation_report(chosen, generate_completions(model, ctx, chosen, explain_vocab))
        report["explanations"]["seconds"] = time.perf_counter() - t
        report["explanations"]["vocabulary"] = "full" if explain_vocab is None else "completion tokens"
    return report


def _spread(examples: Sequence, n: int) -> list:
    """n examples evenly spaced through the split (every query type, not just the first few queries)."""
    if n >= len(examples):
        return list(examples)
    step = len(examples) / n
    return [examples[int(i * step)] for i in range(n)]


class TorchPredictor:
    """`predict(query, documents)` from a torch model, through the export's score computation."""

    def __init__(
        self, model: torch.nn.Module, encoder: PromptEncoder, labels: LabelSet, pad_id: int, batch_size: int = 64
    ):
        from export.score_graph import LabelScoreModel  # export's module; training measures what it exports

        self.scorer = LabelScoreModel(model, labels.token_ids).eval()
        self.encoder, self.labels, self.pad_id, self.batch_size = encoder, labels, pad_id, batch_size

    @torch.inference_mode()
    def __call__(self, query: str, documents: list[str]) -> list[GradeResult]:
        pairs = self.encoder.encode(query, documents)
        out: list[GradeResult] = []
        for start in range(0, len(pairs), self.batch_size):
            ids, mask = left_pad([p.input_ids for p in pairs[start : start + self.batch_size]], self.pad_id)
            logits = self.scorer(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()  # (B, K)
            out += grade_results(logits, self.labels.values)
        return out


@torch.no_grad()
def latency_ms(model: torch.nn.Module, ctx: TrainingContext, examples: Sequence, n_queries: int) -> float:
    """Milliseconds to score one query with 10 documents (full prompts, one batch), median over queries."""
    predictor = TorchPredictor(model, ctx.encoder, ctx.labels, ctx.pad_id)
    by_query: dict[str, list[str]] = {}
    for e in examples:
        by_query.setdefault(e.query, []).append(e.document)
    batches = [(q, (docs * 10)[:10]) for q, docs in list(by_query.items())[:n_queries]]
    predictor(*batches[0])  # warm-up
    times = []
    for q, docs in batches:
        t = time.perf_counter()
        predictor(q, docs)
        times.append(1000 * (time.perf_counter() - t))
    return sorted(times)[len(times) // 2]


@dataclass(frozen=True)
class ModelSize:
    parameters: int
    body_parameters: int  # without the embedding table
    weights_mb: float  # the saved safetensors files


def model_size(model: torch.nn.Module, folder: Path) -> ModelSize:
    weights = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    return ModelSize(sum(p.numel() for p in model.parameters()), body_parameters(model), weights / 1e6)
