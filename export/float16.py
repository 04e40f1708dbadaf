"""FP16 graphs for GPU serving: an exported FP32 graph converted with onnxruntime's float16 converter.

    convert_fp16(fp32_path, fp16_path)

`onnxruntime.transformers.float16.convert_float_to_float16` rewrites every
float tensor to float16, except:

- `label_logits` and `logits` stay float32 at the graph's edge
  (`keep_io_types`, a Cast before the output), as `afrl/graphs.py` promises;
  past/present become float16: the cache only travels between graphs of one
  artifact, and casting it at every decode step would cost more than the step;
- the RMSNorm statistics (Pow -> ReduceMean -> Add eps -> Sqrt -> Reciprocal,
  as the dynamo exporter writes `x * rsqrt(mean(x^2) + eps)`) stay float32.
  The Hugging Face modules compute them in float32 on purpose, but the FP32
  export has no Cast left to say so, and float16 squares overflow above
  |x| = 256: trained Qwen-style models carry residual activations in the
  thousands, where an all-fp16 norm returns zeros. Tests check it with
  activations scaled past that point;
- the label head: the final norm and the K label rows of the LM head, from the
  last residual sum to `label_logits` (`label_head_nodes`). A float16 logit
  is rounded to float16's grid, one step of which is 1.6e-2 at |l| = 16, what
  a trained model's logits reach (the default model's fused FP16 graph was
  1.56e-2 from torch). On a trained 2-layer model (200 dev pairs, CPU) the
  label logits moved from 1.03e-2 to 9.5e-3 of torch: most of the gap is the
  body's float16 arithmetic, not the head. The head is a norm and a
  (B, H) x (H, K) product: nothing a GPU notices.

Above `disable_shape_infer_bytes` the converter skips onnx shape inference,
which fails to serialise protos over 2 GB (`EncodeError`, STACK.md); the
dynamo exporter's own value_info carries the types it needs.

Runs on the CPU execution provider too (onnxruntime 1.32 has float16 kernels
for every op of these graphs; slower than FP32 there), so export validates
FP16 on CPU; `afrl bench gpu-export-check` measures it on CUDA.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import onnx

from afrl import graphs
from export.onnx_export import EXTERNAL_DATA_THRESHOLD_BYTES, graph_bytes

logger = logging.getLogger(__name__)

FLOAT32_OUTPUTS = (graphs.LABEL_LOGITS, graphs.LOGITS)
NORM_CHAIN = ("Add", "Sqrt", "Reciprocal", "Div", "Rsqrt")  # what may follow ReduceMean inside an RMSNorm
FUSED_NORMS = ("SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization")
RESIDUAL = "Add"  # of two computed tensors: where the walk back from the label logits stops (stays float16)


def convert_fp16(
    fp32_path: str | Path,
    fp16_path: str | Path,
    external_data: bool | None = None,
    disable_shape_infer_bytes: int = EXTERNAL_DATA_THRESHOLD_BYTES,
) -> Path:
    """Convert an FP32 graph to FP16 weights and activations (FP32 logits and norm statistics); returns `fp16_path`."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    fp32_path, fp16_path = Path(fp32_path), Path(fp16_path)
    fp16_path.parent.mkdir(parents=True, exist_ok=True)
    size = graph_bytes(fp32_path)
    start = time.perf_counter()
    model = onnx.load(fp32_path)
    keep = [o.name for o in model.graph.output if o.name in FLOAT32_OUTPUTS]
    blocked = norm_statistics_nodes(model)
    blocked += [name for name in label_head_nodes(model) if name not in blocked]
    model = convert_float_to_float16(
        model,
        keep_io_types=keep,
        node_block_list=blocked,
        disable_shape_infer=size > disable_shape_infer_bytes,
    )
    skip_fp16_round_trips(model)
    if external_data is None:
        external_data = size // 2 > EXTERNAL_DATA_THRESHOLD_BYTES
    save_graph(model, fp16_path, external_data)
    logger.info(
        "converted %s -> %s (fp16, %d norm and label-head nodes kept fp32) in %.1f s",
        fp32_path.name,
        fp16_path,
        len(blocked),
        time.perf_counter() - start,
    )
    return fp16_path


def norm_statistics_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes computing RMSNorm's 1 / sqrt(mean(x^2) + eps): Pow, ReduceMean and the chain after it."""
    producer = {out: node for node in model.graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    blocked = []
    for node in model.graph.node:
        if node.op_type != "ReduceMean":
            continue
        square = producer.get(node.input[0])
        if square is None or square.op_type != "Pow":
            continue
        blocked += [square.name, node.name]
        current = node
        while len(nxt := consumers.get(current.output[0], [])) == 1 and nxt[0].op_type in NORM_CHAIN:
            current = nxt[0]
            blocked.append(current.name)
    return blocked


def label_head_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes from the last residual sum to `label_logits`: the final norm and the label rows.

    Walks back from the output through every node's computed inputs and stops at a fused norm
    (included: it takes the residual sum itself) or at a residual Add of two computed tensors
    (excluded), so in a plain graph the walk covers the norm's multiplications, the last-position
    slice and the label MatMul; an LM-head bias (an Add with a weight) is part of the head.
    """
    producer = {out: node for node in model.graph.node for out in node.output}
    pending = [o.name for o in model.graph.output if o.name == graphs.LABEL_LOGITS]
    seen: set[str] = set()
    names: list[str] = []
    while pending:
        node = producer.get(pending.pop())
        if node is None or node.name in seen:
            continue
        if node.op_type == RESIDUAL and all(name in producer for name in node.input):
            continue
        seen.add(node.name)
        names.append(node.name)
        if node.op_type not in FUSED_NORMS:
            pending += [name for name in node.input if name]
    return names


def skip_fp16_round_trips(model: onnx.ModelProto) -> int:
    """Let float32 nodes feed float32 nodes directly: Cast(to fp16) -> Cast(to fp32) pairs are bypassed.

    The converter casts every blocked node's output to float16 and back
    before the next blocked node, which would round mean(x^2) to float16
    between ReduceMean and Add, the overflow the block list is there to
    avoid. Returns how many pairs were bypassed.
    """
    producer = {out: node for node in model.graph.node for out in node.output}
    uses: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    graph_outputs = {o.name for o in model.graph.output}
    dead, bypassed = set(), 0
    for node in model.graph.node:
        if not _is_cast(node, onnx.TensorProto.FLOAT):
            continue
        down = producer.get(node.input[0])
        if down is None or not _is_cast(down, onnx.TensorProto.FLOAT16):
            continue
        node.input[0] = down.input[0]  # now a float32 -> float32 Cast: onnxruntime drops it
        bypassed += 1
        uses[down.output[0]] -= 1
        if uses[down.output[0]] == 0 and down.output[0] not in graph_outputs:
            dead.add(id(down))
    kept = [n for n in model.graph.node if id(n) not in dead]
    del model.graph.node[:]
    model.graph.node.extend(kept)
    return bypassed


def _is_cast(node: onnx.NodeProto, to: int) -> bool:
    return node.op_type == "Cast" and any(a.name == "to" and a.i == to for a in node.attribute)


def save_graph(model: onnx.ModelProto, path: Path, external_data: bool) -> None:
    """Save with weights inline, or as one `<name>.data` file beside the graph."""
    if path.with_name(path.name + ".data").exists():
        path.with_name(path.name + ".data").unlink()
    if external_data:
        onnx.save_model(
            model,
            path,
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=path.name + ".data",
            size_threshold=1024,
        )
    else:
        onnx.save_model(model, path)
