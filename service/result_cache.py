"""The result cache (AFRL_RESULT_CACHE_SIZE): (model, query, document) -> label logits, least recently used out.

Search traffic repeats itself (the same query over the same top candidates,
pagination, retries), so a pair already scored skips tokenization and the
model. The key is a 128-bit BLAKE2b digest of the model name, the document
token limit the pair was truncated to (a per-request limit changes the
prompt), the query and the document: a fixed 16 bytes per entry, whatever
the texts' length. The value keeps what a response reports besides the
grade: the pair's prompt tokens and whether its document was truncated.

One engine's cache, used on its event loop only (no lock).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CachedScore:
    logits: np.ndarray  # (K,) float32
    prompt_tokens: int
    truncated: bool


class ResultCache:
    """An LRU of at most `size` entries."""

    def __init__(self, size: int, model: str):
        if size < 1:
            raise ValueError(f"a result cache needs a size of at least 1, got {size}")
        self.size = size
        self.model = model
        self._entries: OrderedDict[bytes, CachedScore] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def key(self, query: str, document: str, document_tokens: int) -> bytes:
        digest = hashlib.blake2b(digest_size=16)
        for part in (self.model, str(document_tokens), query, document):
            data = part.encode("utf-8", "surrogatepass")
            digest.update(len(data).to_bytes(8, "little"))  # length-prefixed: no two splits of one text collide
            digest.update(data)
        return digest.digest()

    def get(self, key: bytes) -> CachedScore | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: bytes, value: CachedScore) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
