"""Losses: small pure functions over tensors, each tested against hand values.

`completion_nll` is the SFT loss. Its softmax may run over a subset of the
vocabulary (the tokens that occur in the training completions): on 2 CPU
cores the full 151,936-row projection costs ~5x the rest of the step for a
tiny model, while tokens absent from every target only ever receive a push
down. The grade token (first completion position) keeps its own weight
because serving reads only that position.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def completion_nll(
    hidden: torch.Tensor,
    head_weight: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor,
    vocab_subset: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weighted mean next-token NLL at the selected positions.

    hidden: (N, H) final hidden states of the positions that predict a target
    head_weight: (V, H) output embedding
    targets: (N,) token ids in the full vocabulary
    weights: (N,) per-position weight (e.g. the grade token weighs more)
    vocab_subset: (S,) sorted token ids that the softmax runs over; every
        target must be in it. None = full vocabulary.
    """
    if vocab_subset is None:
        logits = hidden @ head_weight.T  # (N, V)
        local = targets
    else:
        logits = hidden @ head_weight[vocab_subset].T  # (N, S)
        local = torch.searchsorted(vocab_subset, targets)
        if not torch.equal(vocab_subset[local.clamp(max=len(vocab_subset) - 1)], targets):
            raise ValueError("a target token is missing from vocab_subset")
    nll = F.cross_entropy(logits.float(), local, reduction="none")  # (N,)
    return (nll * weights).sum() / weights.sum()
