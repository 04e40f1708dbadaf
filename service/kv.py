"""Key/value caches as the graphs of afrl/graphs.py exchange them, and the few ways serving reshapes them.

A `KVCache` is the list of past/present tensors in `past_names` order
(layer 0 key, layer 0 value, layer 1 key, ...), each (B, Hkv, S, D), with
the (B, S) mask saying which cached positions hold real tokens. Holes (mask
0) are fine anywhere: every graph derives positions from its mask.

    prefix cache      (1, Hkv, P, D), mask all ones: guideline + query, once per request
    document cache    (1, Hkv, T, D) one row of score_prefix's `present`, mask = the row's own mask
    join(...)         prefix ++ document for each explained document, documents left-padded to a
                      common length: [prefix P][holes][document T], the decode graph's past

Tensors are numpy arrays, or onnxruntime OrtValues that a GPU session kept on
the device; reshaping works on host copies (`host`), once per explanation.
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
    tensors: list[Any]  # 2L tensors, each (B, Hkv, S, D)
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

    def select(self, rows: Sequence[int]) -> KVCache:
        """The given rows, in that order (dropping finished rows of a decode batch)."""
        idx = np.asarray(rows, dtype=np.int64)
        return KVCache([np.ascontiguousarray(host(t)[idx]) for t in self.tensors], self.mask[idx])

    def nbytes(self) -> int:
        return sum(host(t).nbytes for t in self.tensors)


def prefix_cache(tensors: list[Any]) -> KVCache:
    """The prefix graph's `present` outputs, (1, Hkv, P, D) each: every position is real."""
    length = shape(tensors[0])[2]
    return KVCache(list(tensors), np.ones((1, length), dtype=np.int64))


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
