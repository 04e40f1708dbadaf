"""The model behind the service: label logits for a left-padded batch.

A `Backend` is deliberately tiny (after TEI's backend trait) so that tests
drive the real HTTP app over a fake, and so that later backends (a shared
prefix KV-cache graph, a GPU session with IO binding) plug in unchanged.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from afrl.manifest import ArtifactError

logger = logging.getLogger(__name__)

INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "label_logits"


@runtime_checkable
class Backend(Protocol):
    """Computes the label logits of the first generated position."""

    num_labels: int

    def label_logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """(B, T) int64 left-padded ids and mask -> (B, K) float32 label logits."""
        ...

    def health(self) -> None:
        """Raise if the backend cannot serve; return None when it can."""
        ...


class OnnxScoreBackend:
    """An onnxruntime session over the artifact's score graph."""

    def __init__(
        self,
        graph_path: str | Path,
        num_labels: int,
        providers: list[str],
        intra_op_threads: int | None = None,
    ):
        import onnxruntime as ort  # imported here so fakes and tests need no onnxruntime

        available = ort.get_available_providers()
        missing = [p for p in providers if p not in available]
        if missing:
            # Falling back silently from a GPU to the CPU would hide a broken deployment.
            raise ArtifactError(
                f"execution provider(s) {missing} are not available in this onnxruntime build "
                f"(available: {available}); set AFRL_PROVIDERS"
            )
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_threads is not None:
            options.intra_op_num_threads = intra_op_threads
        try:
            self.session = ort.InferenceSession(str(graph_path), sess_options=options, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types
            raise ArtifactError(f"{graph_path}: onnxruntime cannot load the score graph: {e}") from e
        self.num_labels = num_labels
        self._check_signature(graph_path)
        logger.info("score graph %s loaded on %s", graph_path, self.session.get_providers())

    def _check_signature(self, graph_path: str | Path) -> None:
        inputs = {i.name for i in self.session.get_inputs()}
        outputs = {o.name: o for o in self.session.get_outputs()}
        if not set(INPUT_NAMES) <= inputs:
            raise ArtifactError(f"{graph_path}: score graph inputs are {sorted(inputs)}, need {list(INPUT_NAMES)}")
        if OUTPUT_NAME not in outputs:
            raise ArtifactError(f"{graph_path}: score graph outputs are {sorted(outputs)}, need {OUTPUT_NAME!r}")
        k = outputs[OUTPUT_NAME].shape[-1]
        if isinstance(k, int) and k != self.num_labels:
            raise ArtifactError(
                f"{graph_path}: {OUTPUT_NAME} has {k} columns, the manifest lists {self.num_labels} labels"
            )

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def label_logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feed = {
            "input_ids": np.ascontiguousarray(input_ids, dtype=np.int64),
            "attention_mask": np.ascontiguousarray(attention_mask, dtype=np.int64),
        }
        (logits,) = self.session.run([OUTPUT_NAME], feed)
        return np.asarray(logits, dtype=np.float32)  # (B, K); fp16 graphs return float16

    def health(self) -> None:
        if self.session is None:
            raise RuntimeError("the onnxruntime session is closed")
