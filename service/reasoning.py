"""Greedy decoding of explanations, continuing from the score's KV cache (no second prefill), batched
across requests: every active explanation steps in one decode pass per turn.

    stream     one request's explained documents: past = its prefix cache ++ each document's own
               cache (service.kv.join); the first input of a row is its grade token, the token the
               model answered first; a row stops at eos (not emitted) or once it has max_new_tokens
    batch      the rows of every stream that joined it, one past (service.kv.stack: each stream's
               rows left-padded with holes to the longest), stepped together: one decode pass
               gives every row its next token; streams join and leave between steps (finished,
               cancelled), and positions that are holes in every remaining row are dropped
    text       incremental detokenization per row (tokenizers' DecodeStream); the line break
               after the grade token is layout, not explanation, so leading whitespace is dropped

A row's tokens do not depend on the others in its batch: positions come from
each row's own mask, and holes are masked out of attention, so the greedy
output is the one the row would decode alone.

Threads: `ExplanationStream` lives on the event loop (its queue, its text);
`DecodeBatch.step` runs on the inference thread; `add`/`remove` are called
from the event loop and take effect at the next step (under a lock).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.backend import DecodeBackend
from service.kv import KVCache, join, stack


class ExplanationStream:
    """The explanations of one request's chosen documents: what joins a decode batch, and what it yields."""

    def __init__(
        self,
        prefix: KVCache,
        documents: Sequence[KVCache],
        indices: Sequence[int],
        first_tokens: Sequence[int],
        eos_id: int,
        max_new_tokens: int,
        tokenizer: Any,
    ):
        from tokenizers.decoders import DecodeStream

        if not (len(documents) == len(indices) == len(first_tokens)) or not indices:
            raise ValueError(f"{len(documents)} caches for {len(indices)} documents and {len(first_tokens)} tokens")
        self.indices = list(indices)
        self.first_tokens = list(first_tokens)
        self.eos_id = eos_id
        self.max_new_tokens = max_new_tokens
        self.tokenizer = tokenizer
        self._parts: tuple[KVCache, list[KVCache]] | None = (prefix, list(documents))
        self._queue: asyncio.Queue = asyncio.Queue()
        self.done = False  # finished, failed or cancelled: nothing more is delivered
        self._streams = {i: DecodeStream(skip_special_tokens=True) for i in indices}
        self._started: set[int] = set()

    # ---- inference thread ---------------------------------------------------------------------

    def take_past(self) -> KVCache:
        """The rows' decode-ready past (N, Hkv, P + T, D), built when the stream joins a batch; the
        parts are released then, so the request's caches are held once."""
        if self._parts is None:
            raise RuntimeError("this stream already joined a decode batch")
        prefix, documents = self._parts
        self._parts = None
        return join(prefix, documents)

    # ---- event loop ---------------------------------------------------------------------------

    def deliver(self, produced: list[tuple[int, int]]) -> None:
        """One step's [(document index, token id)] for this stream's rows."""
        if not self.done:
            self._queue.put_nowait(produced)

    def finish(self) -> None:
        self._end(None)

    def fail(self, error: BaseException) -> None:
        self._end(error)

    def cancel(self) -> None:
        self._end(asyncio.CancelledError())

    def _end(self, item: BaseException | None) -> None:
        if not self.done:
            self.done = True
            self._queue.put_nowait(item)

    async def steps(self) -> AsyncIterator[list[tuple[int, int]]]:
        """Each step's tokens as they come, until the last row finished; raises what failed it."""
        while (item := await self._queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item

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


@dataclass
class DecodeStep:
    """What one decode pass produced: tokens per stream, and the streams whose last row finished."""

    produced: dict[ExplanationStream, list[tuple[int, int]]] = field(default_factory=dict)
    finished: list[ExplanationStream] = field(default_factory=list)
    rows: int = 0  # rows stepped (by the first pass, when several ran)
    seconds: float = 0.0  # how long the pass (or passes) took
    passes: list[int] = field(default_factory=list)  # rows stepped by each pass

    def extend(self, later: DecodeStep) -> None:
        """Append the tokens and finished streams of the pass that ran after these."""
        for owner, tokens in later.produced.items():
            self.produced.setdefault(owner, []).extend(tokens)
        self.finished += later.finished
        self.passes += later.passes


class DecodeBatch:
    """The rows of every stream in it, decoded together one token per step."""

    def __init__(self, backend: DecodeBackend):
        self.backend = backend
        self._lock = threading.Lock()
        self._joining: list[ExplanationStream] = []
        self._leaving: set[ExplanationStream] = set()
        self._owners: list[ExplanationStream] = []  # per row
        self._indices: list[int] = []  # per row: the document it explains
        self._past: KVCache | None = None  # (B, Hkv, S, D)
        self._next = np.zeros(0, dtype=np.int64)  # (B,) the next input token per row
        self._steps = np.zeros(0, dtype=np.int64)  # (B,) tokens produced per row
        self._limits = np.zeros(0, dtype=np.int64)  # (B,) max_new_tokens per row
        self._eos = np.zeros(0, dtype=np.int64)  # (B,)

    def add(self, stream: ExplanationStream) -> None:
        with self._lock:
            self._joining.append(stream)

    def remove(self, stream: ExplanationStream) -> None:
        """The stream leaves before the next step (its rows are dropped unstepped)."""
        with self._lock:
            if stream in self._joining:
                self._joining.remove(stream)
            else:
                self._leaving.add(stream)

    def step(self) -> DecodeStep:
        """One decode pass for every row: streams that asked to leave are dropped first, those that
        joined are added, finished rows leave after the pass."""
        with self._lock:
            joining, leaving = self._joining, self._leaving
            self._joining, self._leaving = [], set()
        if leaving:
            self._keep([b for b, owner in enumerate(self._owners) if owner not in leaving])
        if joining:
            self._join(joining)
        if not self._owners or self._past is None:
            return DecodeStep()
        logits, present = self.backend.decode(self._next[:, None], self._past)  # (B, V)
        tokens = np.asarray(logits).argmax(axis=-1).astype(np.int64)  # (B,)
        self._steps += 1
        out = DecodeStep(rows=len(self._owners), passes=[len(self._owners)])
        for owner, index, token in zip(self._owners, self._indices, tokens, strict=True):
            out.produced.setdefault(owner, []).append((index, int(token)))
        self._past, self._next = present, tokens
        keep = np.flatnonzero((tokens != self._eos) & (self._steps < self._limits)).tolist()
        if len(keep) < len(self._owners):
            self._keep(keep)
            remaining = set(self._owners)
            out.finished = [owner for owner in out.produced if owner not in remaining]
        return out

    def run(self, slice_s: float) -> DecodeStep:
        """Decode passes (at least one) until `slice_s` seconds have gone or no row is left.

        One token per turn makes an explanation wait for every other request's turn once per token:
        under load (`afrl bench load`) a 1-document explanation took 5.8 s at the median, most of
        it queued behind scoring passes. A slice of a few dozen milliseconds moves every stream of
        the batch many tokens per turn, while the other requests wait at most one slice longer.
        """
        start = time.perf_counter()
        out = self.step()
        while self._owners and time.perf_counter() - start < slice_s:
            out.extend(self.step())
        return out

    def _join(self, streams: list[ExplanationStream]) -> None:
        pasts = [s.take_past() for s in streams]
        self._past = stack(([self._past] if self._past is not None else []) + pasts)
        for s in streams:
            n = len(s.indices)
            self._owners += [s] * n
            self._indices += s.indices
            self._next = np.concatenate([self._next, np.asarray(s.first_tokens, dtype=np.int64)])
            self._steps = np.concatenate([self._steps, np.zeros(n, dtype=np.int64)])
            self._limits = np.concatenate([self._limits, np.full(n, s.max_new_tokens, dtype=np.int64)])
            self._eos = np.concatenate([self._eos, np.full(n, s.eos_id, dtype=np.int64)])

    def _keep(self, rows: list[int]) -> None:
        if self._past is not None and len(rows) < self._past.batch:
            self._past = self._past.compact(rows) if rows else None
        self._owners = [self._owners[b] for b in rows]
        self._indices = [self._indices[b] for b in rows]
        self._next, self._steps = self._next[rows], self._steps[rows]
        self._limits, self._eos = self._limits[rows], self._eos[rows]
