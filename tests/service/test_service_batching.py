"""Micro-batch planning and left padding, as pure functions."""

from __future__ import annotations

import numpy as np

from afrl.padding import left_pad
from service.batching import bucket_length, plan_micro_batches, shape_buckets


def test_bucket_length_rounds_up_to_64():
    assert [bucket_length(n) for n in (1, 64, 65, 128, 129)] == [64, 64, 128, 128, 192]
    assert shape_buckets(70, 300) == [128, 192, 256, 320]


def test_plan_covers_every_row_once_within_the_budget():
    lengths = [30, 500, 70, 65, 300, 10, 129, 800, 64, 64]
    batches = plan_micro_batches(lengths, max_batch_tokens=512)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        padded = bucket_length(max(lengths[i] for i in batch))
        assert len(batch) == 1 or len(batch) * padded <= 512
    assert [7] in batches  # longer than the budget: runs alone
    assert plan_micro_batches([10] * 100, max_batch_tokens=640) == [list(range(i, i + 10)) for i in range(0, 100, 10)]


def test_left_pad_puts_real_tokens_at_the_right_end():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0, length=4)
    assert ids.tolist() == [[0, 5, 6, 7], [0, 0, 0, 8]]
    assert mask.tolist() == [[0, 1, 1, 1], [0, 0, 0, 1]]
    assert ids.dtype == mask.dtype == np.int64
