"""Turns world examples into token sequences for supervised fine-tuning.

Prompts go through `afrl.prompt.PromptEncoder`, the same encoder serving
uses, so training never sees a prompt layout that serving does not send.
The completion is the grade token, a newline, the explanation and the turn's
end token: the model answers first and reasons later.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from afrl.labels import LabelSet
from afrl.prompt import PromptEncoder


@dataclass(frozen=True)
class SFTSequence:
    prompt_ids: list[int]
    completion_ids: list[int]  # completion_ids[0] is the grade token
    grade: int

    def __len__(self) -> int:
        return len(self.prompt_ids) + len(self.completion_ids)


def encode_examples(examples: Sequence, encoder: PromptEncoder, labels: LabelSet) -> list[SFTSequence]:
    """Examples need `query`, `document`, `grade` and `explanation` attributes."""
    token_of = dict(zip(labels.values, labels.tokens, strict=True))
    out = []
    for ex in examples:
        pair = encoder.encode(ex.query, [ex.document])[0]
        completion = encoder.template.completion_text(token_of[ex.grade], ex.explanation)
        completion_ids = encoder._encode(completion)
        grade_id = labels.token_ids[labels.values.index(ex.grade)]
        if completion_ids[0] != grade_id:
            raise ValueError(f"completion does not start with the grade token: {completion!r}")
        out.append(SFTSequence(pair.input_ids, completion_ids, ex.grade))
    return out


def completion_vocab(sequences: Sequence[SFTSequence], labels: LabelSet) -> torch.Tensor:
    """Sorted ids of every token that a completion may need to predict."""
    ids = set(labels.token_ids)
    for s in sequences:
        ids.update(s.completion_ids)
    return torch.tensor(sorted(ids), dtype=torch.long)


@dataclass
class SFTBatch:
    input_ids: torch.Tensor  # (B, T) right-padded
    attention_mask: torch.Tensor  # (B, T)
    target_positions: torch.Tensor  # (N, 2) [row, position whose hidden state predicts the target]
    targets: torch.Tensor  # (N,)
    is_grade: torch.Tensor  # (N,) bool: the first completion token

    def to(self, device: torch.device | str) -> SFTBatch:
        return SFTBatch(
            *(
                t.to(device)
                for t in (self.input_ids, self.attention_mask, self.target_positions, self.targets, self.is_grade)
            )
        )


def common_prefix(sequences: Sequence[SFTSequence]) -> list[int]:
    """The longest token prefix that every prompt shares (the system turn with the guideline)."""
    first = sequences[0].prompt_ids
    n = len(first)
    for s in sequences[1:]:
        limit = min(n, len(s.prompt_ids))
        n = next((i for i in range(limit) if s.prompt_ids[i] != first[i]), limit)
    return first[:n]


def collate(
    sequences: Sequence[SFTSequence], pad_id: int, max_completion_tokens: int | None = None, skip_prefix: int = 0
) -> SFTBatch:
    """Right-pad a batch and list the completion positions that carry loss.

    `skip_prefix` tokens shared by every prompt are left out of the batch: the
    caller computes them once and passes their KV cache (see `training.sft`).
    """
    rows = []
    for s in sequences:
        completion = s.completion_ids if max_completion_tokens is None else s.completion_ids[:max_completion_tokens]
        if len(s.prompt_ids) <= skip_prefix:
            raise ValueError(f"prompt of {len(s.prompt_ids)} tokens is not longer than the shared prefix {skip_prefix}")
        rows.append((s.prompt_ids[skip_prefix:] + completion, len(s.prompt_ids) - skip_prefix, len(completion)))
    width = max(len(ids) for ids, _, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    positions, targets, is_grade = [], [], []
    for b, (ids, n_prompt, n_completion) in enumerate(rows):
        input_ids[b, : len(ids)] = torch.tensor(ids)
        mask[b, : len(ids)] = 1
        for j in range(n_completion):
            positions.append((b, n_prompt - 1 + j))  # hidden at t predicts token t+1
            targets.append(ids[n_prompt + j])
            is_grade.append(j == 0)
    return SFTBatch(
        input_ids=input_ids,
        attention_mask=mask,
        target_positions=torch.tensor(positions, dtype=torch.long),
        targets=torch.tensor(targets, dtype=torch.long),
        is_grade=torch.tensor(is_grade, dtype=torch.bool),
    )


def length_bucketed_batches(
    sequences: Sequence[SFTSequence], batch_size: int, rng: random.Random
) -> Iterator[list[SFTSequence]]:
    """One epoch of batches of similar length (less padding), in random order."""
    order = list(range(len(sequences)))
    rng.shuffle(order)
    chunk = batch_size * 32  # sort within chunks: mostly random, little padding
    batches = []
    for start in range(0, len(order), chunk):
        block = sorted(order[start : start + chunk], key=lambda i: len(sequences[i]))
        batches += [block[i : i + batch_size] for i in range(0, len(block), batch_size)]
    rng.shuffle(batches)
    for idx in batches:
        yield [sequences[i] for i in idx]
