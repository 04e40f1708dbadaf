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


def test_a_shared_past_may_hold_half_a_bucket_beyond_the_longest_prefix():
    from service.batching import can_share_past

    assert can_share_past(200, [8, 9, 7, 6, 9], [208, 209, 207, 206, 209])  # queries on a cached guideline
    assert not can_share_past(200, [8, 9, 7, 6, 9, 8, 7], [208, 209, 207, 206, 209, 208, 207])  # 45 beyond
    assert can_share_past(0, [60], [60]) and not can_share_past(0, [60, 58], [60, 58])  # whole prefixes


def kv(values: list[list[float]], mask: list[list[int]]):
    """A one-layer cache (B, 1, S, 1) holding `values`."""
    from service.kv import KVCache

    t = np.asarray(values, dtype=np.float32)[:, None, :, None]
    return KVCache([t, t + 100], np.asarray(mask, dtype=np.int64))


def test_shared_past_concat_stack_tail_and_compact():
    from service.kv import shared_past, stack

    guideline, a, b = kv([[1, 2, 3]], [[1, 1, 1]]), kv([[4]], [[1]]), kv([[5, 6]], [[1, 1]])
    past = shared_past([guideline, a, b], [[0, 1], [0, 1], [0, 2]])  # rows of request a, a, b
    assert past.tensors[0].shape == (1, 1, 6, 1) and past.tensors[0][0, 0, :, 0].tolist() == [1, 2, 3, 4, 5, 6]
    assert past.mask.tolist() == [[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 1, 1]]
    assert past.tensors[1][0, 0, :, 0].tolist() == [101, 102, 103, 104, 105, 106]
    own = kv([[0, 7, 8], [0, 0, 9]], [[0, 1, 1], [0, 0, 1]])
    assert own.tail(1, 1).tensors[0][0, 0, :, 0].tolist() == [9] and own.tail(0, 2).mask.tolist() == [[1, 1]]
    both = stack([kv([[1, 2, 3]], [[1, 1, 1]]), kv([[4], [5]], [[1], [1]])])  # left-padded with holes
    assert both.mask.tolist() == [[1, 1, 1], [0, 0, 1], [0, 0, 1]]
    assert both.tensors[0][:, 0, :, 0].tolist() == [[1, 2, 3], [0, 0, 4], [0, 0, 5]]
    kept = both.compact([2, 1])  # the long row left: its positions go with it
    assert kept.mask.tolist() == [[1], [1]] and kept.tensors[0][:, 0, :, 0].tolist() == [[5], [4]]
