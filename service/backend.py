"""The model behind the service, as capabilities: score; prefix (and extending a cache); decode.

A backend is deliberately tiny (after TEI's backend trait) so that tests
drive the real HTTP app over a fake. What it can do is said by which
protocol it satisfies, checked with `isinstance` (never attribute probing):

    Backend         label_logits(ids (B, T), mask (B, T)) -> (B, K); health(); num_labels
    PrefixBackend   + prefix_cache(ids (1, P)) -> KVCache
                    + score_with_prefix(prefix, ids (B, T), mask (B, T), keep_cache) -> (B, K), KVCache | None
                      (prefix: batch 1, its mask one row for all, or one row per document: a shared past)
    ExtendBackend   + extend_cache(past, ids (B, T), mask (B, T)) -> the new tokens' own cache (B, Hkv, T, D):
                      what lets serving keep the guideline's cache and compute only each query on top
    DecodeBackend   + decode(ids (B, T), past) -> logits (B, V), present   (mask = past.mask ++ ones)
    DeviceBackend   providers, and the (rows, length) shapes warmup must run (CUDA graphs: one per shape)

A prefix or decode backend whose artifact lacks those graphs says so in
`supports_prefix` / `supports_decode`; `prefix_backend` / `decode_backend`
give the backend typed as the capability when it has it, else None.

`OnnxBackend` implements them over the graphs of afrl/graphs.py that the
manifest lists; names and shapes are checked at load time, before any value.
It extends a cache with the score_prefix graph (its `present` is the new
tokens' own cache, on any batch-1 past), so no graph beyond the contract's is
needed. A backend without `extend_cache` (a test double wrapping only the
three capabilities) computes every request's whole prefix, as before.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from afrl import graphs
from afrl.manifest import Manifest
from service.kv import KVCache, prefix_cache, shape
from service.onnx_session import CudaGraphRunner, GraphSession, cuda_graph_shapes
from service.providers import ProviderPlan

logger = logging.getLogger(__name__)

INPUT_NAMES = (graphs.INPUT_IDS, graphs.ATTENTION_MASK)
OUTPUT_NAME = graphs.LABEL_LOGITS


@runtime_checkable
class Backend(Protocol):
    """What every backend can do: the label logits of the first generated position."""

    num_labels: int

    def label_logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """(B, T) int64 left-padded ids and mask -> (B, K) float32 label logits."""
        ...

    def health(self) -> None:
        """Raise if the backend cannot serve; return None when it can."""
        ...


@runtime_checkable
class PrefixBackend(Backend, Protocol):
    """Scores documents after a shared prefix (guideline + query) computed once per request."""

    @property
    def supports_prefix(self) -> bool:
        """False when this instance has no prefix graphs to run (the methods would fail)."""
        ...

    def prefix_cache(self, input_ids: np.ndarray) -> KVCache:
        """(1, P) prefix ids -> its KV cache."""
        ...

    def score_with_prefix(
        self, prefix: KVCache, input_ids: np.ndarray, attention_mask: np.ndarray, keep_cache: bool = False
    ) -> tuple[np.ndarray, KVCache | None]:
        """(B, T) left-padded document rows after `prefix` -> (B, K) logits and, if kept, their own cache."""
        ...


@runtime_checkable
class ExtendBackend(PrefixBackend, Protocol):
    """Extends a batch-1 cache by new tokens: the guideline's cache, by each request's query."""

    def extend_cache(self, past: KVCache, input_ids: np.ndarray, attention_mask: np.ndarray) -> KVCache:
        """(B, T) left-padded new tokens after `past` (batch 1) -> their own cache (B, Hkv, T, D), mask (B, T)."""
        ...


@runtime_checkable
class DecodeBackend(PrefixBackend, Protocol):
    """Decodes explanations from the score's KV cache (which needs the prefix graphs too)."""

    @property
    def supports_decode(self) -> bool:
        """False when this instance has no decode graph to run."""
        ...

    def decode(self, input_ids: np.ndarray, past: KVCache) -> tuple[np.ndarray, KVCache]:
        """One step: (B, T) new tokens after `past` -> (B, V) next-token logits and the grown cache."""
        ...


@runtime_checkable
class DeviceBackend(Protocol):
    """Runs on ONNX Runtime execution providers: what /info reports, and what warmup must run."""

    @property
    def providers(self) -> list[str]: ...

    def warmup_shapes(self, lengths: list[int], max_batch_tokens: int) -> list[tuple[int, int]]:
        """The (rows, length) batches to run once before serving, for these padded lengths."""
        ...


def prefix_backend(backend: Backend) -> PrefixBackend | None:
    """`backend` as a PrefixBackend when it can score on a shared prefix, else None."""
    return backend if isinstance(backend, PrefixBackend) and backend.supports_prefix else None


def extend_backend(backend: Backend) -> ExtendBackend | None:
    """`backend` as an ExtendBackend when it can score on a prefix and extend a cache, else None."""
    return backend if isinstance(backend, ExtendBackend) and backend.supports_prefix else None


def decode_backend(backend: Backend) -> DecodeBackend | None:
    """`backend` as a DecodeBackend when it can explain (prefix graphs and a decode graph), else None."""
    if isinstance(backend, DecodeBackend) and backend.supports_prefix and backend.supports_decode:
        return backend
    return None


def supports_prefix(backend: Backend) -> bool:
    return prefix_backend(backend) is not None


def supports_decode(backend: Backend) -> bool:
    return decode_backend(backend) is not None


def prefix_mask(prefix: KVCache, rows: int) -> np.ndarray:
    """(B, P) mask of a batch-1 prefix for `rows` rows: its one row broadcast, or its own row per document."""
    if prefix.batch == rows:
        return prefix.mask
    if prefix.batch == 1:
        return np.broadcast_to(prefix.mask, (rows, prefix.length))
    raise ValueError(f"a prefix with a mask of {prefix.batch} rows for {rows} document rows")


def decode_mask(past: KVCache, new_tokens: int) -> np.ndarray:
    """(B, S + T) attention mask of a decode step: the cache's own mask, then the new tokens."""
    return np.concatenate([past.mask, np.ones((past.batch, new_tokens), dtype=np.int64)], axis=1)


class OnnxBackend:
    """onnxruntime sessions over the artifact's graphs: `score` always, the prefix and decode graphs
    when the manifest lists them (and `shared_prefix` is on)."""

    def __init__(
        self,
        folder: str | Path,
        manifest: Manifest,
        plan: ProviderPlan,
        intra_op_threads: int | None = None,
        shared_prefix: bool = True,
        io_binding: bool | None = None,
        pad_id: int = 0,
    ):
        folder = Path(folder)
        listed = manifest.graphs
        self.num_labels = manifest.labels.size
        self.plan = plan

        def open_graph(name: str, cuda_graph: bool = False) -> GraphSession:
            return GraphSession(name, folder / listed[name].file, plan, intra_op_threads, io_binding, cuda_graph)

        self.score = open_graph(graphs.SCORE, cuda_graph=plan.cuda_graphs)
        self.score.check_io(num_labels=self.num_labels)
        self.cuda_graphs = (
            CudaGraphRunner(self.score, INPUT_NAMES, OUTPUT_NAME, pad_id)
            if plan.cuda_graphs and self.score.plan.on_gpu
            else None
        )
        self.prefix: GraphSession | None = None
        self.score_prefix: GraphSession | None = None
        self.decoder: GraphSession | None = None
        self.layers = 0
        if shared_prefix and {graphs.PREFIX, graphs.SCORE_PREFIX} <= listed.keys():
            self.prefix = open_graph(graphs.PREFIX)
            self.layers = self.prefix.check_io()
            self.score_prefix = open_graph(graphs.SCORE_PREFIX)
            self.score_prefix.check_io(self.layers, num_labels=self.num_labels)
            if graphs.DECODE in listed:
                self.decoder = open_graph(graphs.DECODE)
                self.decoder.check_io(self.layers)

    @property
    def supports_prefix(self) -> bool:
        return self.score_prefix is not None

    @property
    def supports_decode(self) -> bool:
        return self.decoder is not None

    @property
    def providers(self) -> list[str]:
        return self.score.providers

    def warmup_shapes(self, lengths: list[int], max_batch_tokens: int) -> list[tuple[int, int]]:
        if self.cuda_graphs is not None:  # one graph per (rows, length) bucket, all captured before serving
            return cuda_graph_shapes(lengths, max_batch_tokens)
        return [(1, n) for n in lengths]

    def label_logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        input_ids = np.ascontiguousarray(input_ids, dtype=np.int64)
        attention_mask = np.ascontiguousarray(attention_mask, dtype=np.int64)
        if self.cuda_graphs is not None:
            return self.cuda_graphs.run(input_ids, attention_mask)
        feed = {graphs.INPUT_IDS: input_ids, graphs.ATTENTION_MASK: attention_mask}
        (logits,) = self.score.run(feed, [OUTPUT_NAME])
        return np.asarray(logits, dtype=np.float32)  # (B, K); fp16 graphs return float16

    def prefix_cache(self, input_ids: np.ndarray) -> KVCache:
        present = graphs.present_names(self.layers)
        feed = {graphs.INPUT_IDS: np.ascontiguousarray(input_ids, dtype=np.int64)}  # (1, P)
        return prefix_cache(_opened(self.prefix, graphs.PREFIX).run(feed, present, keep_on_device=present))

    def score_with_prefix(
        self, prefix: KVCache, input_ids: np.ndarray, attention_mask: np.ndarray, keep_cache: bool = False
    ) -> tuple[np.ndarray, KVCache | None]:
        """(B, T) left-padded document rows after the shared prefix -> (B, K) logits and their own cache."""
        past_mask = prefix_mask(prefix, input_ids.shape[0])  # (B, P)
        mask = np.concatenate([past_mask, np.asarray(attention_mask, dtype=np.int64)], axis=1)  # (B, P+T)
        feed = {graphs.INPUT_IDS: np.ascontiguousarray(input_ids, dtype=np.int64), graphs.ATTENTION_MASK: mask}
        feed.update(zip(graphs.past_names(self.layers), prefix.tensors, strict=True))
        present = graphs.present_names(self.layers) if keep_cache else []
        logits, *cache = _opened(self.score_prefix, graphs.SCORE_PREFIX).run(feed, [OUTPUT_NAME, *present])
        own = KVCache(cache, np.asarray(attention_mask, dtype=np.int64)) if keep_cache else None
        return np.asarray(logits, dtype=np.float32), own

    def extend_cache(self, past: KVCache, input_ids: np.ndarray, attention_mask: np.ndarray) -> KVCache:
        """The score_prefix graph's `present`: the new tokens' own cache on top of `past` (its label
        logits, K columns of the last position, are the little this costs beyond the prefix graph)."""
        _, own = self.score_with_prefix(past, input_ids, attention_mask, keep_cache=True)
        if own is None:  # keep_cache=True always returns the cache
            raise RuntimeError("score_prefix returned no cache")
        return own

    def decode(self, input_ids: np.ndarray, past: KVCache) -> tuple[np.ndarray, KVCache]:
        """One step: (B, T) new tokens after `past` -> (B, V) next-token logits and the grown cache."""
        mask = decode_mask(past, input_ids.shape[1])  # (B, S + T)
        feed = {graphs.INPUT_IDS: np.ascontiguousarray(input_ids, dtype=np.int64), graphs.ATTENTION_MASK: mask}
        feed.update(zip(graphs.past_names(self.layers), past.tensors, strict=True))
        present = graphs.present_names(self.layers)
        decoder = _opened(self.decoder, graphs.DECODE)
        logits, *cache = decoder.run(feed, [graphs.LOGITS, *present], keep_on_device=present)
        if shape(cache[0])[2] != mask.shape[1]:
            raise RuntimeError(f"decode returned a cache of {shape(cache[0])[2]} positions, expected {mask.shape[1]}")
        return np.asarray(logits, dtype=np.float32), KVCache(cache, mask)

    def health(self) -> None:
        if self.score.session is None:
            raise RuntimeError("the onnxruntime session is closed")


def _opened(graph: GraphSession | None, name: str) -> GraphSession:
    """An optional graph that a caller needs: one that did not check `supports_*` first gets a clear error."""
    if graph is None:
        raise RuntimeError(f"this backend has no {name} graph (the artifact lacks it, or shared_prefix is off)")
    return graph
