"""Left padding: the score graph reads the last position of every row.

Serving, export validation and training evaluation all build batches here,
so a prompt is laid out the same way wherever it is scored.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def left_pad(
    sequences: Sequence[Sequence[int]], pad_id: int, length: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Token id lists -> (input_ids, attention_mask), both (B, T) int64, real tokens at the right end.

    T is `length` when given (a shape bucket), else the longest row.
    """
    if not sequences:
        raise ValueError("nothing to pad")
    width = max(len(s) for s in sequences) if length is None else length
    ids = np.full((len(sequences), width), pad_id, dtype=np.int64)  # (B, T)
    mask = np.zeros((len(sequences), width), dtype=np.int64)  # (B, T)
    for row, seq in enumerate(sequences):
        if len(seq) > width:
            raise ValueError(f"row of {len(seq)} tokens does not fit a padded length of {width}")
        if len(seq):
            ids[row, width - len(seq) :] = seq
            mask[row, width - len(seq) :] = 1
    return ids, mask
