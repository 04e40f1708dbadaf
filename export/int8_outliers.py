"""Which MLP down projections stay FP32 in an INT8 export: those whose input range is an outlier, measured.

    ranges = down_input_ranges(score_graph, sequences, pad_id)   # weight digest -> max |input| over real tokens
    keep = outlier_projections(ranges)                            # the digests above OUTLIER_RATIO x the median

A down projection's input, act(gate) * up, is where trained decoders carry
their outlier activations, and dynamic int8 quantizes it with one scale per
tensor. Not every layer suffers alike. Measured on the trained default
model (hidden 128, 4 layers; grade agreement with torch FP32 / expected-grade
MAE over 400 dev pairs, score graph and shared-prefix path, fused graphs,
bench/int8_recipes.py and the per-layer runs behind it):

    max |input| per layer, calibration on export.artifact.SAMPLE_PAIRS   80.5  19.5  32.5  22.7
                          on 100 dev / 100 test prompts                 61 26 32 26 / 62 20 32 30
    down projections all int8                         0.975 / 0.019   0.985 / 0.017
    only layer 0's FP32 (the outlier)                 0.993 / 0.010   0.998 / 0.008
    only layer 1's, 2's or 3's FP32                   0.975-0.978 / 0.019   0.983-0.988 / 0.015-0.016
    all four FP32 (the previous recipe)               0.998 / 0.007   0.998 / 0.005

so the layer with the outlier range is the one that matters, and the rule
finds it from a dozen prompts: a range above `OUTLIER_RATIO` (1.5) times the
median range of the layers (layer 0 is 2.1-2.9x on all three prompt sets,
the next 1.0-1.2x). The rest of the down projections go int8 with the
other MatMuls. The calibration prompts are the built-in sample pairs, never
the validation pairs, so the validation figures stay honest.

The projections are named by a digest of their weights, not by node name,
because the dynamo exporter names initializers per graph: every graph of an
artifact then keeps the same projections FP32, and `weights.share_weights`
still stores each tensor once.
"""

from __future__ import annotations

import hashlib
import logging
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx.external_data_helper import load_external_data_for_tensor, uses_external_data

from afrl import graphs
from afrl.padding import left_pad
from export.quantize import mlp_down_nodes

logger = logging.getLogger(__name__)

OUTLIER_RATIO = 1.5


def down_projection_weights(model: onnx.ModelProto, folder: Path) -> dict[str, str]:
    """Node name -> digest of its weight, for every MLP down projection of `model` (read from `folder`)."""
    tensors = {t.name: t for t in model.graph.initializer}
    nodes = {n.name: n for n in model.graph.node}
    digests = {}
    for name in mlp_down_nodes(model):
        tensor = onnx.TensorProto()
        tensor.CopyFrom(tensors[nodes[name].input[1]])
        if uses_external_data(tensor):
            load_external_data_for_tensor(tensor, str(folder))
        digests[name] = weight_digest(tensor)
    return digests


def weight_digest(tensor: onnx.TensorProto) -> str:
    """sha256 over a weight's type, shape and bytes (as weights.share_weights tells tensors apart)."""
    array = onnx.numpy_helper.to_array(tensor)
    return hashlib.sha256(f"{array.dtype}:{list(array.shape)}:".encode() + array.tobytes()).hexdigest()


def down_input_ranges(score_graph: str | Path, sequences: Sequence[Sequence[int]], pad_id: int) -> dict[str, float]:
    """Max |input| of each down projection of the FP32 score graph over `sequences`' real tokens, by weight digest."""
    import onnxruntime as ort

    score_graph = Path(score_graph)
    model = onnx.load(score_graph, load_external_data=False)
    digests = down_projection_weights(model, score_graph.parent)
    nodes = {n.name: n for n in model.graph.node}
    inputs = [nodes[name].input[0] for name in digests]  # act(gate) * up, (B, T, I)
    for name in inputs:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    probe = score_graph.with_name(f".{score_graph.stem}.calibration.onnx")  # beside it: same external data
    onnx.save(model, probe)
    try:
        session = ort.InferenceSession(str(probe), providers=["CPUExecutionProvider"])
        ids, mask = left_pad(sequences, pad_id)  # (N, T)
        values = session.run(inputs, {graphs.INPUT_IDS: ids, graphs.ATTENTION_MASK: mask})
    finally:
        probe.unlink(missing_ok=True)
    real = mask.astype(bool)
    return {digest: float(np.abs(value[real]).max()) for digest, value in zip(digests.values(), values, strict=True)}


def outlier_projections(ranges: Mapping[str, float], ratio: float = OUTLIER_RATIO) -> frozenset[str]:
    """The digests whose range exceeds `ratio` times the median range."""
    if not ranges:
        return frozenset()
    median = statistics.median(ranges.values())
    keep = frozenset(d for d, r in ranges.items() if r > ratio * median)
    logger.info(
        "down projection input ranges %s (median %.3g): %d of %d stay FP32",
        [round(r, 3) for r in ranges.values()],
        median,
        len(keep),
        len(ranges),
    )
    return keep


class OutlierChoice:
    """The down projections an INT8 artifact keeps FP32: measured once on its score graph, named in every graph."""

    def __init__(self, sequences: Sequence[Sequence[int]], pad_id: int, ratio: float = OUTLIER_RATIO):
        self.sequences, self.pad_id, self.ratio = sequences, pad_id, ratio
        self.keep: frozenset[str] | None = None
        self.layers = 0

    def fp32_nodes(self, fp32_graph: Path, graph: str) -> list[str]:
        """Names of `fp32_graph`'s down projections to keep FP32; calibrates on the first call (the score graph)."""
        if self.keep is None:
            if graph != graphs.SCORE:
                raise ValueError(f"calibrate on the score graph, not {graph!r}: it is exported first")
            ranges = down_input_ranges(fp32_graph, self.sequences, self.pad_id)
            self.keep, self.layers = outlier_projections(ranges, self.ratio), len(ranges)
        model = onnx.load(fp32_graph, load_external_data=False)
        return [name for name, d in down_projection_weights(model, fp32_graph.parent).items() if d in self.keep]

    def figures(self) -> dict[str, float]:
        """What the manifest records: how many of the score graph's down projections stayed FP32."""
        if self.keep is None:
            return {}
        return {"int8.fp32_down_projections": float(len(self.keep)), "int8.down_projections": float(self.layers)}
