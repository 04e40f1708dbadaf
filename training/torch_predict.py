"""Grades from a torch causal LM, for evaluation during training.

Uses the export's `LabelScoreModel`, so training measures exactly the
computation that the exported score graph performs.
"""

from __future__ import annotations

import torch

from afrl.labels import LabelSet
from afrl.padding import left_pad
from afrl.prompt import PromptEncoder
from afrl.scoring import GradeResult, grade_results
from export.score_graph import LabelScoreModel


class TorchPredictor:
    def __init__(
        self, model: torch.nn.Module, encoder: PromptEncoder, labels: LabelSet, pad_id: int, batch_size: int = 64
    ):
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
