"""Micro-batch planning: which rows run together, and their left-padded arrays.

Pure functions, so the padding and token-budget rules are tested on their
own. Rows are sorted by length before packing (less padding); lengths are
rounded up to a shape bucket so the backend sees few distinct shapes, each
warmed once at startup. Requests on a shared prefix share a pass when their
rows fit (`can_join`) and their prefixes fit one shared past (`can_share_past`).
"""

from __future__ import annotations

from collections.abc import Sequence

SEQUENCE_BUCKET = 64  # padded lengths are multiples of this: <= 63 pad tokens per row, few shapes
MAX_SHARED_PAST_EXTRA = SEQUENCE_BUCKET // 2  # past positions a row of a shared pass may see beyond its own prefix


def bucket_length(length: int, bucket: int = SEQUENCE_BUCKET) -> int:
    """Smallest multiple of `bucket` that holds `length` tokens."""
    return max(bucket, -(-length // bucket) * bucket)


def shape_buckets(shortest: int, longest: int, bucket: int = SEQUENCE_BUCKET) -> list[int]:
    """Every padded length a row of `shortest`..`longest` tokens can get."""
    return list(range(bucket_length(shortest, bucket), bucket_length(longest, bucket) + 1, bucket))


def plan_micro_batches(lengths: Sequence[int], max_batch_tokens: int, bucket: int = SEQUENCE_BUCKET) -> list[list[int]]:
    """Group row indices into batches whose padded size (rows x bucketed length) fits the budget.

    Longest rows first, so each batch's length is set by its first row and
    its neighbours are close in length. A row longer than the budget runs
    alone rather than being refused (the request checks the model's limit).
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    padded = 0
    for i in order:
        if not current:
            current, padded = [i], bucket_length(lengths[i], bucket)
        elif (len(current) + 1) * padded <= max_batch_tokens:
            current.append(i)
        else:
            batches.append(current)
            current, padded = [i], bucket_length(lengths[i], bucket)
    if current:
        batches.append(current)
    return batches


def can_join(
    batch_rows: int,
    batch_length: int,
    rows: int,
    length: int,
    max_batch_tokens: int,
    bucket: int = SEQUENCE_BUCKET,
) -> bool:
    """Whether `rows` x `length` may share a forward pass with a batch of `batch_rows` x `batch_length`.

    Lengths at most one bucket apart (a joining row adds at most one bucket of
    padding), and the padded total within the token budget.
    """
    if abs(length - batch_length) > bucket:
        return False
    return (batch_rows + rows) * max(length, batch_length) <= max_batch_tokens


def can_share_past(base: int, own: Sequence[int], prefixes: Sequence[int], extra: int = MAX_SHARED_PAST_EXTRA) -> bool:
    """Whether requests may share one past: `prefixes` their prefix lengths, `own` the part of each that
    is its own, the rest a guideline of `base` tokens they share (0: none).

    The shared past is [guideline][own part A][own part B]..., base + sum(own) positions, and every
    row attends over all of them (the other requests' masked out, but computed), so a row pays for
    the positions beyond its own prefix: at most `extra` of them, as `can_join` allows at most one
    bucket of padding. With the guideline cache the own parts are queries, a few tokens each, and
    several requests fit; whole prefixes (no guideline cache) are too long to share a past.
    Measured on the default model's size on CPU (bench/engine_batching.py), where attention is a
    large share of a pass: a past twice the longest prefix cost 7% of pairs/s against no sharing.
    """
    return base + sum(own) - max(prefixes) <= extra
