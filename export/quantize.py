"""INT8 dynamic quantization of the graphs for CPU serving.

`onnxruntime.quantization.quantize_dynamic` with QInt8 weights, per output
channel: MatMul weights are stored as int8, activations are quantized on the
fly per tensor. On the Qwen3-0.6B architecture this is about
2.8x faster than FP32 on 2 CPU threads (STACK.md).

Kept in FP32:

- the label head MatMul, (H, K) with K ~ 5: it costs nothing, and it is the
  layer that decides the grade;
- as few MLP down projections as the measured agreement with FP32 needs
  (`fp32_nodes`, chosen by export/int8_outliers.py's ladder on the
  calibration prompts; export_artifact's default: on the trained default
  model one of its two, the widest input range). Their input, act(gate) *
  up, carries the outlier activations that a per-tensor int8 scale crushes,
  but not in every layer alike. Recipes measured on the previous default
  model (hidden 128, 4 layers), 400 dev pairs, grade agreement with torch /
  expected-grade MAE (score graph; the first rows unfused, the last three
  fused graphs, bench/int8_recipes.py):

      MatMuls + Gather int8, per tensor (the first version)   0.965 / 0.020
      per channel                                             0.968 / 0.019
      per channel, MatMuls only                               0.975 / 0.019
      per channel, MatMuls only, down projections FP32        0.998 / 0.007
      per channel, + Gather, down projections FP32            0.988 / 0.007
      per channel, attention projections FP32 instead         0.965 / 0.017
      fused, down projections MatMulNBits (`down="nbits8"`)   0.995 / 0.007
      fused, layer 0's down projection FP32 (1 of 4)          0.993 / 0.010
      fused, all down projections FP32 (`down="fp32"`)        0.998 / 0.007

  (What the ladder picks on this model and on today's default, with their dev
  figures: export/int8_outliers.py; today's recipes: bench/results/int8_recipes.json.)
  Keeping all of them FP32 (an earlier default)
  costs a fifth of a 0.6B body's weights (+264 MB) and speed: INT8 score_prefix at
  the 0.6B width (4 layers, 10 documents x 60 tokens after 170, 2 threads,
  bench/results/int8_recipes.json, load 3.5) 303 ms with all down projections FP32,
  276 ms with 1 of 4 (what the ladder keeps on today's default model: 1 of 2),
  263 ms with none, 282 ms with MatMulNBits (no AVX-VNNI on this CPU); the FP32
  graph 500 ms (an earlier run at load 1.6: 158, 137, 130, 154 and 258 ms);
- the embedding table (`Gather`, not quantized: `MatMul` only): an int8
  embedding cost 1% of grade agreement above (+466 MB at 0.6B). The decode graph's full LM head,
(H, V), is quantized like the body: at batch 1 it is a quarter of a 0.6B
model's work per token. Its tied embedding then exists twice (FP32 for the
Gather, transposed uint8 for MatMulInteger).

Caveat for serving: dynamic quantization computes each activation's scale
over the whole batch tensor, so INT8 label logits depend slightly on what
else is in the batch (validation reports `batch_max_abs_diff`). FP32 graphs
have no such dependence.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic

from export.logs import quiet_exporters
from export.onnx_export import EXTERNAL_DATA_THRESHOLD_BYTES, OUTPUT_NAMES, graph_bytes

logger = logging.getLogger(__name__)

# What the MLP down projections become: FP32, dynamic int8 like the other MatMuls (those in `fp32_nodes`
# excepted: export_artifact's choice), or MatMulNBits with 8-bit weights whose activations are quantized
# per block of NBITS_BLOCK, not per tensor.
DOWN_PROJECTIONS = ("fp32", "int8", "nbits8")
NBITS_BLOCK = 32


def quantize_int8(
    fp32_path: str | Path,
    int8_path: str | Path,
    per_channel: bool = True,
    external_data: bool | None = None,
    down: str = "fp32",
    fp32_nodes: Sequence[str] = (),
) -> Path:
    """Quantize an FP32 graph to INT8 weights (label head kept FP32); returns `int8_path`.

    `down`: what the MLP down projections become (`DOWN_PROJECTIONS`); `fp32_nodes`: MatMuls
    kept FP32 besides (export/int8_outliers.py picks down projections by measured agreement). `external_data=None`
    keeps the weights inline unless the FP32 graph's weights exceed `EXTERNAL_DATA_THRESHOLD_BYTES`.
    """
    if down not in DOWN_PROJECTIONS:
        raise ValueError(f"down={down!r}: choose one of {', '.join(DOWN_PROJECTIONS)}")
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    if external_data is None:
        external_data = graph_bytes(fp32_path) > EXTERNAL_DATA_THRESHOLD_BYTES
    graph = onnx.load(fp32_path, load_external_data=False)
    head, projections = label_head_nodes(graph), mlp_down_nodes(graph)
    start = time.perf_counter()
    with quiet_exporters(), tempfile.TemporaryDirectory(dir=int8_path.parent) as scratch:
        source = fp32_path
        if down == "nbits8":
            source = Path(scratch) / fp32_path.name
            _down_projections_to_nbits(fp32_path, source, projections, external_data)
        quantize_dynamic(
            source,
            int8_path,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            nodes_to_exclude=head + (projections if down == "fp32" else []) + list(fp32_nodes),
            op_types_to_quantize=["MatMul"],
            use_external_data_format=external_data,
        )
    logger.info(
        "quantized %s -> %s (int8; head %s fp32, %d down projections %s, fp32 besides: %s) in %.1f s",
        fp32_path.name,
        int8_path,
        head,
        len(projections),
        down,
        list(fp32_nodes),
        time.perf_counter() - start,
    )
    return int8_path


def _down_projections_to_nbits(src: Path, dst: Path, nodes: list[str], external_data: bool) -> None:
    """The MatMuls `nodes` as MatMulNBits (8-bit symmetric weights per block, int8 compute per block)."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    model = onnx.load(src)
    keep = set(nodes)
    others = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.name not in keep]
    quantizer = MatMulNBitsQuantizer(
        model,
        bits=8,
        block_size=NBITS_BLOCK,
        is_symmetric=True,
        accuracy_level=4,  # int8 activations, quantized per block of NBITS_BLOCK along K
        nodes_to_exclude=others,  # (nodes_to_include would add to, not replace, the MatMul op type)
    )
    quantizer.process()
    quantizer.model.save_model_to_file(str(dst), use_external_data_format=external_data)


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


def mlp_down_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the gated-MLP down projections: weight MatMuls whose input is Mul(act(gate), up).

    Recognised by structure, not by name (the dynamo exporter folds weight
    names away): the Mul has an operand produced directly by another weight
    MatMul (the up projection). Attention's output projection reads a
    reshaped attention output instead, so it is not matched; neither is a
    non-gated MLP, which then stays fully int8.
    """
    weights = {t.name for t in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}

    def weight_matmul(name: str) -> bool:
        node = producer.get(name)
        return node is not None and node.op_type == "MatMul" and node.input[1] in weights

    found = []
    for node in model.graph.node:
        if node.op_type != "MatMul" or node.input[1] not in weights:
            continue
        gate = producer.get(node.input[0])
        if gate is not None and gate.op_type == "Mul" and any(weight_matmul(x) for x in gate.input):
            found.append(node.name)
    return found
