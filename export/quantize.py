"""INT8 dynamic quantization of the graphs for CPU serving.

`onnxruntime.quantization.quantize_dynamic` with QInt8 weights: MatMul (and
Gather) weights are stored as int8, activations are quantized on the fly per
tensor. On the Qwen3-0.6B architecture this is about 2.8x faster than FP32 on
2 CPU threads (STACK.md).

The label head MatMul, (H, K) with K ~ 5, stays in FP32: it costs nothing, and
it is the layer that decides the grade. The decode graph's full LM head,
(H, V), is quantized like the body: at batch 1 it is a quarter of a 0.6B
model's work per token. Its tied embedding then exists twice (int8 for the
Gather, transposed uint8 for MatMulInteger), still half the FP32 bytes.

Caveat for serving: dynamic quantization computes each activation's scale
over the whole batch tensor, so INT8 label logits depend slightly on what
else is in the batch (validation reports `batch_max_abs_diff`). FP32 graphs
have no such dependence.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic

from export.logs import quiet_exporters
from export.onnx_export import EXTERNAL_DATA_THRESHOLD_BYTES, OUTPUT_NAMES, graph_bytes

logger = logging.getLogger(__name__)


def quantize_int8(
    fp32_path: str | Path,
    int8_path: str | Path,
    per_channel: bool = False,
    external_data: bool | None = None,
) -> Path:
    """Quantize an FP32 graph to INT8 weights (label head kept FP32); returns `int8_path`.

    `external_data=None` keeps the weights inline unless the FP32 graph's
    weights exceed `EXTERNAL_DATA_THRESHOLD_BYTES`.
    """
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    if external_data is None:
        external_data = graph_bytes(fp32_path) > EXTERNAL_DATA_THRESHOLD_BYTES
    head = label_head_nodes(onnx.load(fp32_path, load_external_data=False))
    start = time.perf_counter()
    with quiet_exporters():
        quantize_dynamic(
            fp32_path,
            int8_path,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            nodes_to_exclude=head,
            use_external_data_format=external_data,
        )
    logger.info("quantized %s -> %s (int8, head kept fp32: %s) in %.1f s",
                fp32_path.name, int8_path, head, time.perf_counter() - start)
    return int8_path


def label_head_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the MatMul/Gemm nodes that produce `label_logits`, walking back through cheap ops."""
    producer = {out: node for node in model.graph.node for out in node.output}
    found, frontier = [], list(OUTPUT_NAMES)
    while frontier:
        node = producer.get(frontier.pop())
        if node is None:
            continue
        if node.op_type in ("MatMul", "Gemm"):
            found.append(node.name)
        elif node.op_type in ("Cast", "Add", "Mul", "Div", "Tanh", "Identity"):
            frontier.extend(node.input)
    return found
