"""Which MLP down projections stay FP32 in an INT8 export: as few as the measured agreement with FP32 allows.

    choice = OutlierChoice(calibration, pad_id, min_grade_agreement=0.99, values=[0, 1, 2, 3, 4])
    choice.quantize(fp32_score_graph, int8_score_graph, "score")   # climbs the ladder, once
    choice.quantize(fp32_graph, int8_graph, "score_prefix")        # the same projections FP32
    choice.figures()                                               # what the manifest records

A down projection's input, act(gate) * up, is where trained decoders carry
their outlier activations, and dynamic int8 quantizes it with one scale per
tensor, so keeping some of them FP32 buys back agreement (at a cost: all of
them FP32 is a fifth of a 0.6B body's weights, export/quantize.py). How many
are needed differs between models, so export measures it:

1. one run of the FP32 score graph on the calibration prompts gives the
   reference label logits and each down projection's input range (max
   |input| over real tokens, `down_input_ranges`); the projections are ranked
   widest first;
2. a ladder of candidates, fewest FP32 first (`ladder_counts`: none, the
   widest one, the widest quarter (at least 2), all; at most 4 rungs whatever
   the depth, each one quantization and one run of the score graph): the
   first candidate that passes is the artifact's score graph, the other
   graphs keep the same projections FP32. A candidate passes when, against
   the FP32 graph on the calibration prompts,
   - its grade agreement is at least `min_grade_agreement` (export passes
     its gate, validate.Tolerance's `min_grade_agreement`, 0.99 for INT8;
     1.0 when the tolerance has none), and
   - its expected-grade MAE is within `MAX_MAE_RATIO` (1.25) of the all-FP32
     candidate's, measured first as the yardstick (`max_mae_ratio=None`
     drops this condition);
   when even all of them FP32 stays below `min_grade_agreement`, the down
   projections are not what disagrees (measured: the Qwen3-0.6B architecture
   at random weights, whose grades sit on near-ties, agrees 0.667 on the
   calibration prompts with none, one, seven or all 28 FP32), so the first
   rung that agrees as well as all of them (and meets the MAE condition)
   passes instead of the slowest; validation then gates as ever.

Why the MAE condition: a dozen calibration prompts resolve agreement in
steps of 1/12, and an INT8 graph that flips 1 grade in 200 agrees 12/12
there. Measured (fused graphs; calibration: export.artifact.SAMPLE_PAIRS, 12
prompts, agreement / expected-grade MAE vs the FP32 graph; dev: 200 pairs of
the world's dev split, each rung's score graph vs the FP32 graph, and the
exported artifact vs torch, score graph and shared-prefix path):

    today's default model (hidden 256, 2 layers; widest: layer 0, 434 vs 238)
        FP32 down projections   0              1 (layer 0)    2
        calibration             1.000 / 0.034  1.000 / 0.022  1.000 / 0.020
        dev, score graph        0.995          1.000          1.000
        chosen: 1; its artifact on dev 1.000 / 0.0071, shared prefix 1.000 / 0.0052
        (400 dev pairs, bench/results/int8_recipes.json, score / shared prefix: none
        0.9875 / 0.9925, the ladder's 0.9975 / 0.9975, all 0.9975 / 1.000)
    the previous default model (hidden 128, 4 layers; widest: layer 0, 80 vs 20-33)
        FP32 down projections   0              1 (layer 0)    4
        calibration             1.000 / 0.037  1.000 / 0.018  1.000 / 0.016
        chosen: 1; its artifact on dev 0.990 / 0.0093, shared prefix 0.995 / 0.0079
        (400 dev pairs, score graph, bench/int8_recipes.py then: none 0.975, layer 0 0.993, all 0.998)

Grade agreement alone would have kept none FP32 on both. The 1.25 is a
judgement from these two models (one FP32 layer: 1.08 and 1.16 times the
all-FP32 MAE; none: 1.68 and 2.31 times), not a law.

The calibration prompts are the built-in sample pairs, also export's
default validation pairs; a run with `validation_pairs=` (a dev split, as
INT8 wants) keeps those out of the choice, so its validation figures stay
honest. The manifest's parity figures record the choice:
`int8.down_projections`, `int8.fp32_down_projections`,
`int8.fp32_down_projection.layer<i>` (the input range of each kept layer),
`int8.calibration_prompts`, `int8.calibration_agreement` and
`int8.calibration_expected_grade_mae` for the chosen candidate, and the same
two with `.fp32_<k>` for every rung measured.

The projections are named by a digest of their weights, not by node name,
because the dynamo exporter names initializers per graph: every graph of an
artifact then keeps the same projections FP32, and `weights.share_weights`
still stores each tensor once.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx.external_data_helper import load_external_data_for_tensor, uses_external_data

from afrl import graphs
from afrl.padding import left_pad
from export.quantize import mlp_down_nodes, quantize_int8
from export.validate import grade_figures, run_score

logger = logging.getLogger(__name__)

MAX_MAE_RATIO = 1.25  # a rung's calibration expected-grade MAE vs FP32 within this factor of all FP32's


def down_projection_weights(model: onnx.ModelProto, folder: Path) -> dict[str, str]:
    """Node name -> weight digest of every MLP down projection of `model` (weights in `folder`), in layer order."""
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


def calibrate(
    score_graph: str | Path, sequences: Sequence[Sequence[int]], pad_id: int
) -> tuple[dict[str, float], np.ndarray]:
    """One run of the FP32 score graph: each down projection's max |input| over real tokens (by weight
    digest, in layer order) and the label logits (N, K), the ladder's reference."""
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
        logits, *values = session.run(
            [graphs.LABEL_LOGITS, *inputs], {graphs.INPUT_IDS: ids, graphs.ATTENTION_MASK: mask}
        )
    finally:
        probe.unlink(missing_ok=True)
    real = mask.astype(bool)
    ranges = {digest: float(np.abs(value[real]).max()) for digest, value in zip(digests.values(), values, strict=True)}
    return ranges, logits


def down_input_ranges(score_graph: str | Path, sequences: Sequence[Sequence[int]], pad_id: int) -> dict[str, float]:
    """Max |input| of each down projection of the FP32 score graph over `sequences`' real tokens, by weight digest."""
    return calibrate(score_graph, sequences, pad_id)[0]


def ladder_counts(projections: int) -> list[int]:
    """How many down projections each rung keeps FP32, fewest first: none, 1, a quarter (at least 2), all."""
    rungs = {0, 1, max(2, -(-projections // 4)), projections}
    return sorted(k for k in rungs if k <= projections)


class OutlierChoice:
    """The down projections an INT8 artifact keeps FP32: chosen once on its score graph by measured
    agreement (the module docstring's ladder), then named in every graph."""

    def __init__(
        self,
        sequences: Sequence[Sequence[int]],
        pad_id: int,
        min_grade_agreement: float = 1.0,
        values: Sequence[int] = (0, 1, 2, 3, 4),
        max_mae_ratio: float | None = MAX_MAE_RATIO,
    ):
        self.sequences, self.pad_id, self.values = sequences, pad_id, values
        self.min_grade_agreement, self.max_mae_ratio = min_grade_agreement, max_mae_ratio
        self.keep: frozenset[str] | None = None
        self.ranges: dict[str, float] = {}  # digest -> input range, layer order
        self.measured: dict[int, tuple[float, float]] = {}  # FP32 projections of a rung -> (agreement, MAE)

    def quantize(self, fp32_graph: Path, int8_graph: Path, graph: str) -> Path:
        """`fp32_graph` quantized into `int8_graph`; the first call (the score graph) chooses the projections."""
        if self.keep is None:
            if graph != graphs.SCORE:
                raise ValueError(f"calibrate on the score graph, not {graph!r}: it is exported first")
            return self._climb(fp32_graph, int8_graph)
        return quantize_int8(fp32_graph, int8_graph, down="int8", fp32_nodes=self._nodes(fp32_graph, self.keep))

    def _climb(self, fp32_graph: Path, int8_graph: Path) -> Path:
        import onnxruntime as ort

        self.ranges, reference = calibrate(fp32_graph, self.sequences, self.pad_id)  # (N, K)
        widest = sorted(self.ranges, key=self.ranges.__getitem__, reverse=True)
        rungs = ladder_counts(len(widest))
        ids, mask = left_pad(self.sequences, self.pad_id)  # (N, T)
        int8_graph.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".int8-ladder.", dir=int8_graph.parent) as scratch:

            def measure(k: int) -> tuple[float, float]:
                if k not in self.measured:
                    nodes = self._nodes(fp32_graph, frozenset(widest[:k]))
                    path = quantize_int8(
                        fp32_graph, Path(scratch) / str(k) / int8_graph.name, down="int8", fp32_nodes=nodes
                    )
                    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
                    logits = run_score(session, ids, mask)  # (N, K)
                    self.measured[k] = grade_figures(logits, reference, self.values)
                    logger.info(
                        "INT8 with %d of %d down projections FP32: calibration agreement %.4f, expected-grade MAE %.4f",
                        k,
                        len(widest),
                        *self.measured[k],
                    )
                return self.measured[k]

            # The most the ladder can do, measured first when the MAE condition needs it as its yardstick.
            floor = measure(rungs[-1])[1] if self.max_mae_ratio is not None else 0.0

            def passes(k: int) -> bool:
                agreement, mae = measure(k)
                if self.max_mae_ratio is not None and mae > self.max_mae_ratio * floor:
                    return False
                # Below the gate, FP32 down projections help only as far as all of them FP32 agrees: what
                # disagrees then is the rest of the INT8 graph (a random-weight model's near-ties), so a
                # rung that agrees as well as the top one costs no grade the top one would keep.
                return agreement >= self.min_grade_agreement or agreement >= measure(rungs[-1])[0]

            chosen = next((k for k in rungs if passes(k)), rungs[-1])
            if measure(chosen)[0] < self.min_grade_agreement:
                logger.warning(
                    "no INT8 candidate reached calibration agreement %.4g (all %d down projections FP32: %.4g); "
                    "keeping %d FP32, the fewest that agree as well as all of them",
                    self.min_grade_agreement,
                    len(widest),
                    measure(rungs[-1])[0],
                    chosen,
                )
            self.keep = frozenset(widest[:chosen])
            for file in (Path(scratch) / str(chosen)).iterdir():  # the graph and its external data, if any
                shutil.move(file, int8_graph.parent / file.name)
        return int8_graph

    def _nodes(self, fp32_graph: Path, keep: frozenset[str]) -> list[str]:
        model = onnx.load(fp32_graph, load_external_data=False)
        return [name for name, d in down_projection_weights(model, fp32_graph.parent).items() if d in keep]

    def figures(self) -> dict[str, float]:
        """What the manifest records: the projections kept FP32 (by layer) and the figures measured."""
        if self.keep is None:
            return {}
        agreement, mae = self.measured[len(self.keep)]
        figures = {
            "int8.down_projections": float(len(self.ranges)),
            "int8.fp32_down_projections": float(len(self.keep)),
            "int8.calibration_prompts": float(len(self.sequences)),
            "int8.calibration_agreement": agreement,
            "int8.calibration_expected_grade_mae": mae,
        }
        for k, (agreement, mae) in sorted(self.measured.items()):
            figures[f"int8.calibration_agreement.fp32_{k}"] = agreement
            figures[f"int8.calibration_expected_grade_mae.fp32_{k}"] = mae
        for layer, (digest, value) in enumerate(self.ranges.items()):
            if digest in self.keep:
                figures[f"int8.fp32_down_projection.layer{layer}"] = value
        return figures
