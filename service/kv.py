"""Key/value caches as the graphs of afrl/graphs.py exchange them, and the few ways serving reshapes them.

A `KVCache` is the list of past/present tensors in `past_names` order
(layer 0 key, layer 0 value, layer 1 key, ...), each (B, Hkv, S, D), with
the (B, S) mask saying which cached positions hold real tokens. Holes (mask
0) are fine anywhere: every graph derives positions from its mask.

    prefix cache      (1, Hkv, P, D), mask all ones: guideline + query, once per request
    guideline cache   (1, Hkv, G, D): the tokens every request's prefix starts with, once per model load;
                      a request's own part is its query, (1, Hkv, Q, D), computed on top of it
    shared past       tensors (1, Hkv, S, D), mask (B, S): one past for a pass over several requests'
                      rows, [guideline][query A][query B]..., each row seeing only its own request's
                      positions (the score_prefix graph broadcasts a batch-1 past to its rows)
    document cache    (1, Hkv, T, D) one row of score_prefix's `present`, mask = the row's own mask
    join(...)         prefix ++ document for each explained document, documents left-padded to a
                      common length: [prefix P][holes][document T], the decode graph's past
    stack(...)        caches of different lengths as one batch, each left-padded with holes: the
                      decode batch of every explanation stream

Tensors are numpy arrays, or onnxruntime OrtValues that a GPU session kept on
the device; reshaping works on host copies (`host`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def host(tensor: Any) -> np.ndarray:
    """A numpy view or copy of a numpy array or an OrtValue."""
    return tensor if isinstance(tensor, np.ndarray) else tensor.numpy()


def shape(tensor: Any) -> tuple[int, ...]:
    return tuple(tensor.shape) if isinstance(tensor, np.ndarray) else tuple(tensor.shape())


@dataclass
class KVCache:
    tensors: list[Any]  # 2L tensors, each (B, Hkv, S, D); (1, Hkv, S, D) for a shared past
    mask: np.ndarray  # (B, S) int64

    @property
    def batch(self) -> int:
        return int(self.mask.shape[0])

    @property
    def length(self) -> int:
        return int(self.mask.shape[1])

    def row(self, b: int) -> KVCache:
        """Row b as its own (1, ...) cache, copied so the batch's arrays can be freed."""
        return KVCache([host(t)[b : b + 1].copy() for t in self.tensors], self.mask[b : b + 1].copy())

    def rows(self, start: int, stop: int) -> KVCache:
        """Rows start..stop-1, as views (one request's rows of a pass shared with others)."""
        return KVCache([host(t)[start:stop] for t in self.tensors], self.mask[start:stop])

    def tail(self, b: int, n: int) -> KVCache:
        """The last `n` positions of row b, copied: one left-padded row without its holes."""
        start = self.length - n
        tensors = [host(t)[b : b + 1, :, start:].copy() for t in self.tensors]
        return KVCache(tensors, self.mask[b : b + 1, start:].copy())

    def select(self, rows: Sequence[int]) -> KVCache:
        """The given rows, in that order (dropping finished rows of a decode batch)."""
        idx = np.asarray(rows, dtype=np.int64)
        return KVCache([np.ascontiguousarray(host(t)[idx]) for t in self.tensors], self.mask[idx])

    def compact(self, rows: Sequence[int]) -> KVCache:
        """`select(rows)`, also dropping the leading positions that are holes in every kept row (what
        rows that left a decode batch leave behind), so the batch's past does not keep growing."""
        idx = np.asarray(rows, dtype=np.int64)
        mask = self.mask[idx]
        used = np.flatnonzero(mask.any(axis=0))
        start = int(used[0]) if used.size else 0
        return KVCache([np.ascontiguousarray(host(t)[idx, :, start:]) for t in self.tensors], mask[:, start:])

    def nbytes(self) -> int:
        return sum(host(t).nbytes for t in self.tensors)


def prefix_cache(tensors: list[Any]) -> KVCache:
    """The prefix graph's `present` outputs, (1, Hkv, P, D) each: every position is real."""
    length = shape(tensors[0])[2]
    return KVCache(list(tensors), np.ones((1, length), dtype=np.int64))


def concat(parts: Sequence[KVCache]) -> KVCache:
    """Batch-1 caches one after the other along the sequence: guideline ++ query, or a shared past."""
    if not parts:
        raise ValueError("nothing to concatenate")
    if len(parts) == 1:
        return parts[0]
    tensors = [np.concatenate([host(p.tensors[i]) for p in parts], axis=2) for i in range(len(parts[0].tensors))]
    return KVCache(tensors, np.concatenate([p.mask for p in parts], axis=1))


def shared_past(parts: Sequence[KVCache], visible: Sequence[Sequence[int]]) -> KVCache:
    """One batch-1 past of `parts` for a pass whose row b sees only the parts listed in visible[b].

    parts (1, Hkv, S_i, D) -> tensors (1, Hkv, sum S_i, D), mask (B, sum S_i): row b's mask is the
    parts' own masks where it sees them, holes elsewhere.
    """
    past = concat(parts)
    offsets = np.cumsum([0] + [p.length for p in parts])
    mask = np.zeros((len(visible), past.length), dtype=np.int64)  # (B, S)
    for b, seen in enumerate(visible):
        for i in seen:
            mask[b, offsets[i] : offsets[i + 1]] = parts[i].mask[0]
    return KVCache(past.tensors, mask)


def join(prefix: KVCache, documents: Sequence[KVCache]) -> KVCache:
    """Decode-ready past: prefix ++ each document cache, documents left-padded to the longest.

    prefix (1, Hkv, P, D); documents (1, Hkv, T_i, D) -> (N, Hkv, P + max T_i, D), mask (N, P + max T_i).
    """
    if not documents:
        raise ValueError("nothing to join")
    width = max(d.length for d in documents)
    n, p = len(documents), prefix.length
    tensors = []
    for layer, head in enumerate(prefix.tensors):
        head = host(head)  # (1, Hkv, P, D)
        _, hkv, _, dim = head.shape
        out = np.zeros((n, hkv, p + width, dim), dtype=head.dtype)  # (N, Hkv, P + T, D)
        out[:, :, :p] = head
        for i, doc in enumerate(documents):
            out[i, :, p + width - doc.length :] = host(doc.tensors[layer])[0]
        tensors.append(out)
    mask = np.zeros((n, p + width), dtype=np.int64)  # (N, P + T)
    mask[:, :p] = prefix.mask[0]
    for i, doc in enumerate(documents):
        mask[i, p + width - doc.length :] = doc.mask[0]
    return KVCache(tensors, mask)


def stack(caches: Sequence[KVCache]) -> KVCache:
    """Caches of any batch and length as one batch: (sum B_i, Hkv, max S_i, D), each left-padded with holes."""
    if not caches:
        raise ValueError("nothing to stack")
    if len(caches) == 1:
        return caches[0]
    width = max(c.length for c in caches)
    tensors = []
    for i in range(len(caches[0].tensors)):
        parts = [host(c.tensors[i]) for c in caches]
        _, hkv, _, dim = parts[0].shape
        out = np.zeros((sum(p.shape[0] for p in parts), hkv, width, dim), dtype=parts[0].dtype)
        row = 0
        for p in parts:
            out[row : row + p.shape[0], :, width - p.shape[2] :] = p
            row += p.shape[0]
        tensors.append(out)
    mask = np.zeros((sum(c.batch for c in caches), width), dtype=np.int64)
    row = 0
    for c in caches:
        mask[row : row + c.batch, width - c.length :] = c.mask
        row += c.batch
    return KVCache(tensors, mask)
