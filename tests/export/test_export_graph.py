"""The score graph itself: label rows only, and validation's typed errors."""

from __future__ import annotations

import copy

import onnx
import pytest
import torch
from export_testlib import VOCAB, load
from onnx import TensorProto, helper

from export.validate import (
    TOLERANCES,
    OutputNameError,
    OutputShapeError,
    ParityError,
    Tolerance,
    validate_score_graph,
)


def _matmul_output_widths(model: onnx.ModelProto) -> list[int]:
    """Static last dims of every MatMul output (attention scores, with a symbolic width, are skipped)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: v.type.tensor_type.shape for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    widths = []
    for node in inferred.graph.node:
        if node.op_type in ("MatMul", "Gemm", "MatMulInteger"):
            last = shapes[node.output[0]].dim[-1]
            if last.HasField("dim_value"):
                widths.append(last.dim_value)
    return widths


@pytest.mark.parametrize("name", ["fp32_artifact", "int8_artifact"])
def test_graph_projects_onto_label_rows_only(name, request):
    artifact = request.getfixturevalue(name)
    model = onnx.load(artifact / "score.onnx")
    widths = _matmul_output_widths(model)
    assert 5 in widths and max(widths) < VOCAB  # the label head is (H, K=5)
    # The (V, H) embedding is only ever gathered from, never multiplied with.
    consumers = {}
    for node in model.graph.node:
        for x in node.input:
            consumers.setdefault(x, set()).add(node.op_type)
    vocab_sized = [i.name for i in model.graph.initializer if VOCAB in i.dims]
    assert vocab_sized, "expected the embedding table in the graph"
    for name_ in vocab_sized:
        assert consumers.get(name_, set()) <= {"Gather", "DequantizeLinear"}, (name_, consumers.get(name_))


def test_parity_error_names_the_figure(fp32_artifact, qwen3_model):
    manifest, _, sequences = load(fp32_artifact)
    other = copy.deepcopy(qwen3_model)
    with torch.no_grad():
        other.model.norm.weight.mul_(1.5)
    with pytest.raises(ParityError, match=r"label_logits max abs diff .* > tolerance 0.0001"):
        validate_score_graph(fp32_artifact / "score.onnx", other, manifest.labels, sequences)
    # Same figures, but gated only on grades: a real INT8-style tolerance can pass or fail on grades alone.
    figures = validate_score_graph(
        fp32_artifact / "score.onnx", qwen3_model, manifest.labels, sequences, tolerance=TOLERANCES["int8"]
    )
    assert figures["grade_agreement"] == 1.0 and figures["max_abs_diff"] <= 1e-4
    with pytest.raises(ParityError, match="grade agreement"):
        validate_score_graph(
            fp32_artifact / "score.onnx",
            qwen3_model,
            manifest.labels,
            sequences,
            tolerance=Tolerance(min_grade_agreement=1.01),
        )


def _identity_graph(tmp_path, output_name: str, width: int):
    """A stand-in graph with the right inputs: label_logits = float(input_ids[:, :width])."""
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])
    mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"])
    out = helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", width])
    nodes = [
        helper.make_node("Constant", [], ["starts"], value=helper.make_tensor("s", TensorProto.INT64, [1], [0])),
        helper.make_node("Constant", [], ["ends"], value=helper.make_tensor("e", TensorProto.INT64, [1], [width])),
        helper.make_node("Constant", [], ["axes"], value=helper.make_tensor("a", TensorProto.INT64, [1], [1])),
        helper.make_node("Slice", ["input_ids", "starts", "ends", "axes"], ["sliced"]),
        helper.make_node("Cast", ["sliced"], [output_name], to=TensorProto.FLOAT),
    ]
    graph = helper.make_graph(nodes, "stand_in", [ids, mask], [out])
    path = tmp_path / f"{output_name}-{width}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    return path


def test_names_and_shapes_are_checked_before_values(fp32_artifact, qwen3_model, tmp_path):
    manifest, _, sequences = load(fp32_artifact)
    with pytest.raises(OutputNameError, match="logits"):
        validate_score_graph(_identity_graph(tmp_path, "logits", 5), qwen3_model, manifest.labels, sequences)
    with pytest.raises(OutputShapeError, match=r"\[batch, 5\]"):
        validate_score_graph(_identity_graph(tmp_path, "label_logits", 7), qwen3_model, manifest.labels, sequences)
    # Right names and shape, wrong values: only now does parity fail.
    with pytest.raises(ParityError):
        validate_score_graph(_identity_graph(tmp_path, "label_logits", 5), qwen3_model, manifest.labels, sequences)
