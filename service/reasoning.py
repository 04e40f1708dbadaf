"""Greedy decoding of explanations, continuing from the score's KV cache (no second prefill).

    past     prefix cache ++ each explained document's own cache (service.kv.join)
    step 1   input: each document's grade token, the token the model answered first
    step n   input: the argmax of step n-1; a row stops at eos (not emitted) or once it
             has max_new_tokens tokens; finished rows leave the batch
    text     incremental detokenization per row (tokenizers' DecodeStream); the line break
             after the grade token is layout, not explanation, so leading whitespace is dropped

`DecodeSession.step` runs on the inference thread (one scheduler turn per
step, so explanations interleave fairly with scoring); `delta` runs on the
event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from service.backend import DecodeBackend
from service.kv import KVCache


class DecodeSession:
    """The explanations of one request's chosen documents, decoded together."""

    def __init__(
        self,
        backend: DecodeBackend,
        past: KVCache,
        indices: Sequence[int],
        first_tokens: Sequence[int],
        eos_id: int,
        max_new_tokens: int,
        tokenizer: Any,
    ):
        from tokenizers.decoders import DecodeStream

        if past.batch != len(indices) or len(first_tokens) != len(indices):
            raise ValueError(f"{past.batch} cache rows for {len(indices)} documents and {len(first_tokens)} tokens")
        self.backend = backend
        self.past = past
        self.indices = list(indices)  # document index of each unfinished row
        self.next_ids = np.asarray(first_tokens, dtype=np.int64)  # (B,)
        self.eos_id = eos_id
        self.max_new_tokens = max_new_tokens
        self.tokenizer = tokenizer
        self.steps = 0
        self._streams = {i: DecodeStream(skip_special_tokens=True) for i in indices}
        self._started: set[int] = set()

    @property
    def done(self) -> bool:
        return not self.indices

    def step(self) -> list[tuple[int, int]]:
        """One token for every unfinished row: [(document index, token id)], eos included."""
        logits, present = self.backend.decode(self.next_ids[:, None], self.past)  # (B, V)
        tokens = np.asarray(logits).argmax(axis=-1)  # (B,)
        self.steps += 1
        produced = [(i, int(t)) for i, t in zip(self.indices, tokens, strict=True)]
        keep = [b for b, t in enumerate(tokens) if t != self.eos_id and self.steps < self.max_new_tokens]
        if len(keep) < len(self.indices):
            present = present.select(keep) if keep else present
            tokens = tokens[keep]
            self.indices = [self.indices[b] for b in keep]
        self.past, self.next_ids = present, tokens.astype(np.int64)
        return produced

    def delta(self, index: int, token: int) -> str:
        """The text `token` adds to document `index`'s explanation ('' for eos or a partial character)."""
        if token == self.eos_id:
            return ""
        text = self._streams[index].step(self.tokenizer, token) or ""
        if index not in self._started:
            text = text.lstrip()
            if text:
                self._started.add(index)
        return text
