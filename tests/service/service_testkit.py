"""Test helpers for the service tests: prompt layout, tiny ONNX graph, fake backend, sample documents.

Named uniquely (not `helpers.py`) because tests/ folders share one import namespace.
"""

from __future__ import annotations

import itertools
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


CHAIN_TEXT = "\n[Conclusion] exact match because brand and size agree.<|im_end|>"


def chain_ids(tokenizer) -> list[int]:
    """Token ids of the tiny decode graph's one explanation, eos last; all distinct (a bigram chain)."""
    ids = tokenizer.encode(CHAIN_TEXT, add_special_tokens=False).ids
    assert len(set(ids)) == len(ids), ids
    return ids


def write_tiny_prefix_graphs(
    folder: Path, num_labels: int, vocab_size: int, chain: list[int], grade_ids: list[int], layers: int = 2
) -> None:
    """prefix, score_prefix and decode graphs satisfying afrl/graphs.py over the tiny score graph's table.

    KV: every layer's key and value at a position is table[id % TABLE_ROWS] (Hkv=1, D=K).
    score_prefix: label_logits = mask[:, :P] @ past.0.key + sum of the document's own rows,
    which is exactly the score graph's sum over the whole prompt. decode: present = past ++ new
    rows, logits = one-hot of a bigram chain: grade token -> chain[0] -> ... -> eos (= chain[-1]);
    any other token -> eos.
    """
    from onnx import TensorProto, checker, helper, numpy_helper, save

    from afrl import graphs

    k = num_labels
    nxt = np.full(vocab_size, chain[-1], dtype=np.int64)
    for g in grade_ids:
        nxt[g] = chain[0]
    for a, b in itertools.pairwise(chain):
        nxt[a] = b
    table = [
        numpy_helper.from_array(onnx_table(k), "table"),
        numpy_helper.from_array(np.array(TABLE_ROWS, dtype=np.int64), "rows"),
    ]
    f = TensorProto.FLOAT

    def kv_info(name: str, batch: str, length: str):
        return helper.make_tensor_value_info(name, f, [batch, 1, length, k])

    def embed(ids: str, out: str) -> list:
        return [
            helper.make_node("Mod", [ids, "rows"], [f"{out}_mod"]),
            helper.make_node("Gather", ["table", f"{out}_mod"], [out], axis=0),  # (B, T, K)
        ]

    def save_graph(name: str, nodes: list, inputs: list, outputs: list, inits: list) -> None:
        graph = helper.make_graph(nodes, f"afrl_tiny_{name}", inputs, outputs, initializer=table + inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 10
        checker.check_model(model)
        save(model, str(folder / f"{name}.onnx"))

    ids_info = helper.make_tensor_value_info(graphs.INPUT_IDS, TensorProto.INT64, ["batch", "sequence"])
    one = numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1")
    present, past = graphs.present_names(layers), graphs.past_names(layers)

    # prefix: (1, P) -> present (1, 1, P, K)
    nodes = embed(graphs.INPUT_IDS, "emb") + [helper.make_node("Unsqueeze", ["emb", "axis1"], ["kv"])]
    nodes += [helper.make_node("Identity", ["kv"], [name]) for name in present]
    save_graph(
        graphs.PREFIX,
        nodes,
        [helper.make_tensor_value_info(graphs.INPUT_IDS, TensorProto.INT64, [1, "prefix"])],
        [kv_info(n, 1, "prefix") for n in present],
        [one],
    )

    # score_prefix
    inits = [
        one,
        numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "zero"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "two"),
        numpy_helper.from_array(np.array([3], dtype=np.int64), "three"),
        numpy_helper.from_array(np.array([1 << 40], dtype=np.int64), "end"),
        numpy_helper.from_array(np.array([0, 1], dtype=np.int64), "axes01"),
    ]
    nodes = embed(graphs.INPUT_IDS, "emb") + [
        helper.make_node("Shape", [past[0]], ["past_shape"]),
        helper.make_node("Slice", ["past_shape", "two", "three"], ["plen"]),  # (1,) = P
        helper.make_node("Cast", [graphs.ATTENTION_MASK], ["mask_f"], to=f),
        helper.make_node("Slice", ["mask_f", "zero", "plen", "axis1"], ["mask_prefix"]),  # (B, P)
        helper.make_node("Slice", ["mask_f", "plen", "end", "axis1"], ["mask_doc"]),  # (B, T)
        helper.make_node("Squeeze", [past[0], "axes01"], ["prefix_rows"]),  # (P, K)
        helper.make_node("MatMul", ["mask_prefix", "prefix_rows"], ["from_prefix"]),  # (B, K)
        helper.make_node("Unsqueeze", ["mask_doc", "axis2"], ["mask_doc3"]),
        helper.make_node("Mul", ["emb", "mask_doc3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["from_doc"], keepdims=0),  # (B, K)
        helper.make_node("Add", ["from_prefix", "from_doc"], [graphs.LABEL_LOGITS]),
        helper.make_node("Unsqueeze", ["emb", "axis1"], ["kv"]),  # (B, 1, T, K)
    ]
    nodes += [helper.make_node("Identity", ["kv"], [name]) for name in present]
    save_graph(
        graphs.SCORE_PREFIX,
        nodes,
        [ids_info, helper.make_tensor_value_info(graphs.ATTENTION_MASK, TensorProto.INT64, ["batch", "total"])]
        + [kv_info(n, 1, "prefix") for n in past],
        [helper.make_tensor_value_info(graphs.LABEL_LOGITS, f, ["batch", k])]
        + [kv_info(n, "batch", "sequence") for n in present],
        inits,
    )

    # decode
    inits = [
        one,
        numpy_helper.from_array(nxt, "next_token"),
        numpy_helper.from_array(np.array(-1, dtype=np.int64), "last"),
        numpy_helper.from_array(np.array(vocab_size, dtype=np.int64), "depth"),
        numpy_helper.from_array(np.array([0.0, 10.0], dtype=np.float32), "onehot_values"),
    ]
    nodes = embed(graphs.INPUT_IDS, "emb") + [
        helper.make_node("Unsqueeze", ["emb", "axis1"], ["kv"]),  # (B, 1, T, K)
        helper.make_node("Gather", [graphs.INPUT_IDS, "last"], ["last_ids"], axis=1),  # (B,)
        helper.make_node("Gather", ["next_token", "last_ids"], ["next_ids"], axis=0),  # (B,)
        helper.make_node("OneHot", ["next_ids", "depth", "onehot_values"], [graphs.LOGITS], axis=-1),  # (B, V)
    ]
    nodes += [helper.make_node("Concat", [p, "kv"], [n], axis=2) for p, n in zip(past, present, strict=True)]
    save_graph(
        graphs.DECODE,
        nodes,
        [ids_info, helper.make_tensor_value_info(graphs.ATTENTION_MASK, TensorProto.INT64, ["batch", "total"])]
        + [kv_info(n, "batch", "past") for n in past],
        [helper.make_tensor_value_info(graphs.LOGITS, f, ["batch", vocab_size])]
        + [kv_info(n, "batch", "total") for n in present],
        inits,
    )


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
            self.rows_seen.extend(tuple(row[m == 1]) for row, m in zip(input_ids, attention_mask, strict=True))
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        if self.delay:
            time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("simulated backend failure with a secret traceback")
        return np.stack([self.logits_for(row[m == 1]) for row, m in zip(input_ids, attention_mask, strict=True)])

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


class GatedBackend:
    """Wraps a real backend (the tiny ONNX graphs): records every call, and can block or slow them.

    `calls` holds (method, shapes) per call; `gate` blocks every call until set, `delay` and
    `decode_delay` slow calls down, so tests can act while work is queued or decoding.
    """

    def __init__(self, inner):
        self.inner = inner
        self.num_labels = inner.num_labels
        self.calls: list[tuple[str, tuple]] = []
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.delay = 0.0
        self.decode_delay = 0.0
        self._lock = threading.Lock()

    @property
    def supports_prefix(self) -> bool:
        return getattr(self.inner, "supports_prefix", False)

    @property
    def supports_decode(self) -> bool:
        return getattr(self.inner, "supports_decode", False)

    @property
    def cuda_graphs(self):
        return None

    def _enter(self, method: str, shapes: tuple) -> None:
        with self._lock:
            self.calls.append((method, shapes))
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        if self.delay:
            time.sleep(self.delay)

    def methods(self) -> list[str]:
        with self._lock:
            return [m for m, _ in self.calls]

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
        self.entered.clear()

    def label_logits(self, input_ids, attention_mask):
        self._enter("score", (input_ids.shape,))
        return self.inner.label_logits(input_ids, attention_mask)

    def prefix_cache(self, input_ids):
        self._enter("prefix", (input_ids.shape,))
        return self.inner.prefix_cache(input_ids)

    def score_with_prefix(self, prefix, input_ids, attention_mask, keep_cache=False):
        self._enter("score_prefix", (input_ids.shape, prefix.length, keep_cache))
        return self.inner.score_with_prefix(prefix, input_ids, attention_mask, keep_cache)

    def decode(self, input_ids, past):
        self._enter("decode", (input_ids.shape, past.length, tuple(input_ids[:, -1].tolist())))
        if self.decode_delay:
            time.sleep(self.decode_delay)
        return self.inner.decode(input_ids, past)

    def health(self) -> None:
        self.inner.health()


class ExtendingBackend(GatedBackend):
    """A GatedBackend with the production backend's `extend_cache` (the guideline cache's capability)."""

    def extend_cache(self, past, input_ids, attention_mask):
        self._enter("extend", (input_ids.shape, past.length))
        return self.inner.extend_cache(past, input_ids, attention_mask)


def parse_sse(text: str) -> list[tuple[str, dict]]:
    """'event: X\\ndata: {...}\\n\\n' blocks -> [(X, parsed data)]."""
    import json

    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """The app under uvicorn on 127.0.0.1 in a thread: real sockets, for clients that need them."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        import httpx

        self.thread.start()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
        raise AssertionError("live server not ready")

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def metric_value(text: str, sample: str) -> float:
    """The value of one sample line of Prometheus text, 0.0 when absent."""
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
