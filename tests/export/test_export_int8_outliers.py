"""INT8's default: as few MLP down projections FP32 as the measured agreement with FP32 needs, widest input first."""

from __future__ import annotations

import collections
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from export_testlib import load, score, torch_label_logits
from onnx import numpy_helper
from transformers import Qwen3ForCausalLM

from afrl.manifest import load_manifest
from export.artifact import export_artifact
from export.int8_outliers import MAX_MAE_RATIO, OutlierChoice, down_input_ranges, ladder_counts
from export.quantize import mlp_down_nodes
from export.validate import Tolerance

# Layer 0's first MLP channel: up projection x SCALE, down projection / SCALE. The same function, but
# one outlier channel sets the per-tensor int8 scale of the down projection's input and crushes the rest.
# (Scaling every channel alike would not: the scale, and so the error, would scale with them.)
SCALE = 100.0


@pytest.fixture(scope="module")
def outlier_checkpoint(qwen3_checkpoint, tmp_path_factory) -> Path:
    """The tests' tiny Qwen3 (tokenizer, afrl.json and all) with an outlier channel in layer 0's MLP."""
    folder = tmp_path_factory.mktemp("qwen3") / "outlier"
    shutil.copytree(qwen3_checkpoint, folder)
    model = Qwen3ForCausalLM.from_pretrained(qwen3_checkpoint).eval()
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight[0].mul_(SCALE)
        model.model.layers[0].mlp.down_proj.weight[:, 0].div_(SCALE)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def outlier_artifact(outlier_checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("artifacts") / "qwen3-outlier-int8"
    # A random model's grades are near-uniform: gate loosely here (the trained default model's figures
    # are export/int8_outliers.py's).
    export_artifact(
        outlier_checkpoint,
        out,
        dtype="int8",
        graphs=("score", "prefix", "score_prefix"),
        tolerance=Tolerance(min_grade_agreement=0.5),
    )
    return out


def op_counts(path: Path) -> collections.Counter:
    return collections.Counter(n.op_type for n in onnx.load(path, load_external_data=False).graph.node)


def test_ladder_rungs_are_few_whatever_the_depth():
    assert ladder_counts(0) == [0] and ladder_counts(1) == [0, 1] and ladder_counts(2) == [0, 1, 2]
    assert ladder_counts(4) == [0, 1, 2, 4] and ladder_counts(28) == [0, 1, 7, 28]
    assert all(len(ladder_counts(n)) <= 4 for n in range(100))


def test_the_loud_layer_alone_stays_fp32_in_every_graph(outlier_artifact, outlier_checkpoint):
    manifest = load_manifest(outlier_artifact)
    assert manifest.parity["int8.fp32_down_projections"] == 1 and manifest.parity["int8.down_projections"] == 2
    # Measured, not ruled: all int8 is further from FP32 than MAX_MAE_RATIO x all-FP32, layer 0 alone is not.
    mae = {k: manifest.parity[f"int8.calibration_expected_grade_mae.fp32_{k}"] for k in (0, 1, 2)}
    assert mae[0] > MAX_MAE_RATIO * mae[2] >= mae[1], mae
    assert manifest.parity["int8.calibration_expected_grade_mae"] == mae[1]
    assert manifest.parity["int8.calibration_agreement"] >= 0.5  # the fixture's gate
    assert "int8.fp32_down_projection.layer0" in manifest.parity
    assert "int8.fp32_down_projection.layer1" not in manifest.parity
    want = Qwen3ForCausalLM.from_pretrained(outlier_checkpoint).model.layers[0].mlp.down_proj.weight.detach()
    for graph, integer in (("score", 2 * 7 - 1), ("score_prefix", 2 * 7 - 1), ("prefix", 7 - 1 + 2)):
        path = outlier_artifact / manifest.graphs[graph].file
        assert op_counts(path)["MatMulInteger"] == integer, graph  # q k v o gate up (down) per layer
        model = onnx.load(path)
        weights = {t.name: t for t in model.graph.initializer}
        fp32 = [
            numpy_helper.to_array(weights[n.input[1]])
            for n in model.graph.node
            if n.op_type == "MatMul" and n.input[1] in weights and weights[n.input[1]].dims[-1] != 5  # not the head
        ]
        assert len(fp32) == 1, graph
        np.testing.assert_array_equal(fp32[0], want.numpy().T)  # (I, H): layer 0's down projection


def test_outlier_int8_grades_like_torch(outlier_artifact, outlier_checkpoint):
    manifest, session, sequences = load(outlier_artifact)
    model = Qwen3ForCausalLM.from_pretrained(outlier_checkpoint).eval()
    got = score(session, sequences).argmax(-1)
    want = torch_label_logits(model, sequences, manifest.labels.token_ids).argmax(-1)
    assert np.mean(got == want) >= 0.75  # 4 prompts: at most one flip


def test_calibration_ranges_name_each_layer_by_its_weights(fp32_artifact):
    _, _, sequences = load(fp32_artifact)
    ranges = down_input_ranges(fp32_artifact / "score.onnx", sequences, 151643)
    model = onnx.load(fp32_artifact / "score.onnx", load_external_data=False)
    assert len(ranges) == len(mlp_down_nodes(model)) == 2 and all(r > 0 for r in ranges.values())
    assert not [p.name for p in fp32_artifact.iterdir() if p.name.startswith(".")]  # no probe graph left behind


@pytest.mark.parametrize(
    ("gate", "mae_ratio", "measured", "kept"),
    [
        (1.01, None, [0, 2], 0),  # unreachable even with all FP32: the first rung that agrees as well as all
        (1.0, 1e-9, [2, 0, 1], 2),  # no rung but the top is close enough in MAE: every rung, then all FP32
        (0.0, None, [0], 0),  # the first rung passes: one quantization
        (0.0, 1e9, [2, 0], 0),  # all FP32 measured first, the MAE condition's yardstick
    ],
)
def test_the_ladder_climbs_until_a_candidate_passes(fp32_artifact, tmp_path, caplog, gate, mae_ratio, measured, kept):
    _, _, sequences = load(fp32_artifact)
    choice = OutlierChoice(sequences, 151643, min_grade_agreement=gate, max_mae_ratio=mae_ratio)
    with pytest.raises(ValueError, match="calibrate on the score graph"):
        choice.quantize(fp32_artifact / "score_prefix.onnx", tmp_path / "score_prefix.onnx", "score_prefix")
    score = choice.quantize(fp32_artifact / "score.onnx", tmp_path / "score.onnx", "score")
    assert list(choice.measured) == measured and len(choice.keep or ()) == kept
    assert ("no INT8 candidate reached" in caplog.text) == (gate > 1)  # on this model every rung agrees 1.0
    assert op_counts(score)["MatMulInteger"] == 2 * 7 - kept  # q k v o gate up down per layer (head FP32)
    assert [p.name for p in tmp_path.iterdir()] == ["score.onnx"]  # the chosen candidate moved, the ladder gone
    figures = choice.figures()
    assert figures["int8.fp32_down_projections"] == kept and figures["int8.calibration_prompts"] == len(sequences)
    assert sorted(k for k in figures if k.startswith("int8.calibration_agreement.")) == [
        f"int8.calibration_agreement.fp32_{k}" for k in sorted(measured)
    ]
    assert len([k for k in figures if k.startswith("int8.fp32_down_projection.layer")]) == kept
    prefix = choice.quantize(fp32_artifact / "score_prefix.onnx", tmp_path / "sp" / "score_prefix.onnx", "score_prefix")
    assert op_counts(prefix)["MatMulInteger"] == 2 * 7 - kept  # the same projections FP32
