"""Test helpers for the service tests: prompt layout, tiny ONNX graph, fake backend, sample documents.

Named uniquely (not `helpers.py`) because tests/ folders share one import namespace.
"""

from __future__ import annotations

import threading
import time
import zlib
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from afrl.prompt import PromptTemplate, sha256_text

GUIDELINE = (
    "You grade how relevant a product is to a shopping query. Answer with one grade first: "
    "4 exact, 3 relevant with a minor mismatch, 2 partial or substitute, 1 complement or accessory, "
    "0 irrelevant. Then explain."
)
PAD_ID = 151643  # <|endoftext|> in Qwen3
TABLE_ROWS = 997  # tiny ONNX graph: logits = sum over real tokens of table[id % TABLE_ROWS]
TABLE_SEED = 1234


def qwen3_template(guideline: str = GUIDELINE) -> PromptTemplate:
    return PromptTemplate(
        guideline=guideline,
        guideline_sha256=sha256_text(guideline),
        prefix=f"<|im_start|>system\n{guideline}<|im_end|>\n<|im_start|>user\nQuery: {{query}}\n",
        document="Document: {document}",
        suffix="<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
        completion_end="<|im_end|>",
    )


def onnx_table(num_labels: int) -> np.ndarray:
    return (np.random.default_rng(TABLE_SEED).normal(size=(TABLE_ROWS, num_labels)) * 0.5).astype(np.float32)


def write_tiny_score_graph(path: Path, num_labels: int) -> None:
    """label_logits = ReduceSum(Gather(table, input_ids % V) * mask[..., None], axis=1): (B, K)."""
    from onnx import TensorProto, checker, helper, numpy_helper, save

    nodes = [
        helper.make_node("Mod", ["input_ids", "rows"], ["ids_mod"]),
        helper.make_node("Gather", ["table", "ids_mod"], ["emb"], axis=0),  # (B, T, K)
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "axis2"], ["mask_3d"]),  # (B, T, 1)
        helper.make_node("Mul", ["emb", "mask_3d"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["label_logits"], keepdims=0),  # (B, K)
    ]
    inits = [
        numpy_helper.from_array(onnx_table(num_labels), "table"),
        numpy_helper.from_array(np.array(TABLE_ROWS, dtype=np.int64), "rows"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
    ]
    graph = helper.make_graph(
        nodes,
        "afrl_tiny_score",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
        ],
        [helper.make_tensor_value_info("label_logits", TensorProto.FLOAT, ["batch", num_labels])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    checker.check_model(model)
    save(model, str(path))


def reference_onnx_logits(input_ids: list[int], num_labels: int) -> np.ndarray:
    """What the tiny graph computes for one unpadded row."""
    return onnx_table(num_labels)[np.asarray(input_ids) % TABLE_ROWS].sum(axis=0)


class FakeBackend:
    """Label logits that depend only on a row's real tokens (so batching cannot change them).

    Checks every batch is left-padded with the pad id, records batch shapes,
    and can block (`gate`), slow down (`delay`) or fail (`fail`) on demand.
    """

    num_labels = 5

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []  # (B, T) per call
        self.rows_seen: list[tuple[int, ...]] = []
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.delay = 0.0
        self.fail = False
        self.healthy = True
        self._lock = threading.Lock()

    @staticmethod
    def logits_for(real_ids: list[int] | np.ndarray) -> np.ndarray:
        seed = zlib.crc32(np.asarray(real_ids, dtype=np.int64).tobytes())
        return np.random.default_rng(seed).normal(scale=2.0, size=5).astype(np.float32)

    def label_logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        assert input_ids.dtype == np.int64 and attention_mask.dtype == np.int64
        assert input_ids.shape == attention_mask.shape and input_ids.ndim == 2
        assert np.all(np.diff(attention_mask, axis=1) >= 0), "not left-padded"
        assert np.all(input_ids[attention_mask == 0] == PAD_ID), "pad positions must hold the pad id"
        with self._lock:
            self.calls.append(input_ids.shape)
            self.rows_seen.extend(tuple(row[m == 1]) for row, m in zip(input_ids, attention_mask))
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        if self.delay:
            time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("simulated backend failure with a secret traceback")
        return np.stack([self.logits_for(row[m == 1]) for row, m in zip(input_ids, attention_mask)])

    def health(self) -> None:
        if not self.healthy:
            raise RuntimeError("fake backend marked unhealthy")

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.rows_seen.clear()
        self.entered.clear()


def wait_ready(client: TestClient, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/health/ready").status_code == 200:
            return
        time.sleep(0.01)
    raise AssertionError(f"service not ready: {client.get('/health/ready').json()}")


DOCS = [
    "Stainless steel water bottle 500ml, vacuum insulated",
    "Water bottle cleaning brush set",
    "Insulated bottle 0.5 l by HydroPeak",
    "Plastic kids water bottle with straw",
    "Coffee mug 350 ml ceramic",
    "Bottle cage for road bikes, fits 500ml bottles",
    "HydroPeak-compatible replacement lid",
    "Glass water bottle 1 litre",
    "Running shoes men size 42",
    "Refurbished insulated bottle, 500 ml, scratched",
]
