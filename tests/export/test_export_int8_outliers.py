"""INT8's default: the MLP down projections with an outlier input range stay FP32, the others go int8."""

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
from export.int8_outliers import OutlierChoice, down_input_ranges, outlier_projections
from export.quantize import mlp_down_nodes
from export.validate import Tolerance

SCALE = 40.0  # layer 0's up projection x SCALE, its down projection / SCALE: the same function, a loud input


@pytest.fixture(scope="module")
def outlier_checkpoint(qwen3_checkpoint, tmp_path_factory) -> Path:
    """The tests' tiny Qwen3 (tokenizer, afrl.json and all) with layer 0's MLP input made loud."""
    folder = tmp_path_factory.mktemp("qwen3") / "outlier"
    shutil.copytree(qwen3_checkpoint, folder)
    model = Qwen3ForCausalLM.from_pretrained(qwen3_checkpoint).eval()
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight.mul_(SCALE)
        model.model.layers[0].mlp.down_proj.weight.div_(SCALE)
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


def test_outlier_rule():
    assert outlier_projections({"a": 10.0, "b": 1.0, "c": 1.2, "d": 0.9}) == {"a"}
    assert outlier_projections({"a": 1.4, "b": 1.0, "c": 1.0}) == frozenset()  # 1.4 x the median: not an outlier
    assert outlier_projections({"a": 2.0, "b": 2.0}) == frozenset() and outlier_projections({}) == frozenset()


def test_the_loud_layer_alone_stays_fp32_in_every_graph(outlier_artifact, outlier_checkpoint):
    manifest = load_manifest(outlier_artifact)
    assert manifest.parity["int8.fp32_down_projections"] == 1 and manifest.parity["int8.down_projections"] == 2
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
    choice = OutlierChoice(sequences, 151643)
    with pytest.raises(ValueError, match="calibrate on the score graph"):
        choice.fp32_nodes(fp32_artifact / "score_prefix.onnx", "score_prefix")
    assert choice.fp32_nodes(fp32_artifact / "score.onnx", "score") == []  # a random model: no outlier
    assert choice.figures() == {"int8.fp32_down_projections": 0.0, "int8.down_projections": 2.0}
    assert not [p.name for p in fp32_artifact.iterdir() if p.name.startswith(".")]  # no probe graph left behind
