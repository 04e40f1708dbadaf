"""Teachers for distillation: who writes the AFRL completions a student learns from.

    CheckpointTeacher   a torch model (trained by this pipeline, or any checkpoint): greedy completions
                        and its label distribution at the first position, from one decode pass
    EndpointTeacher     a chat model behind an OpenAI-compatible `/chat/completions` (e.g. a 32B teacher
                        served by vLLM); its first token's `top_logprobs` give the label distribution
                        when the server returns them (else sequence-level KD only)

A teacher brings its own `TrainingContext` (tokenizer and prompt); it returns
text, which the student's context tokenizes again, so teacher and student
need not share a tokenizer. `training.setup.TrainingSetup.teacher` builds the
one a run asks for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from training.context import TrainingContext
from training.endpoint import Post, auth_headers, chat_completions_url, post_json


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
        out = self.ctx.greedy(self.model, pairs, self.max_new_tokens, self.vocab, True, self.batch_size)
        return [
            TeacherOutput(self.ctx.decode(ids), done, tuple(p.tolist()))
            for ids, done, p in zip(out.completion_ids, out.finished, out.label_probs, strict=True)
        ]


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
        self.url = chat_completions_url(base_url)
        self.model, self.ctx, self.api_key = model, ctx, api_key
        self.max_new_tokens, self.post = max_new_tokens, post or post_json

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
        choice = self.post(self.url, payload, auth_headers(self.api_key))["choices"][0]
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
