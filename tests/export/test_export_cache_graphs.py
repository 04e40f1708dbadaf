"""The shared-prefix and decode graphs, driven the way serving chains them, against torch; FP16 graphs."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from export_testlib import (
    greedy_decode,
    prompt_groups,
    score,
    sessions,
    shared_prefix_score,
    torch_greedy,
    torch_label_logits,
)
from onnx import numpy_helper

from afrl.manifest import load_manifest
from export.float16 import convert_fp16
from export.validate import TOLERANCES, OutputNameError, ParityError
from export.validate_cache import validate_cache_graphs


def test_prefix_once_then_documents_equals_the_full_score_graph(fp32_artifact, qwen3_model):
    manifest = load_manifest(fp32_artifact)
    run = sessions(fp32_artifact, manifest)
    for prefix, documents in prompt_groups(fp32_artifact, manifest):
        logits, cache, own, _ = shared_prefix_score(run["prefix"], run["score_prefix"], prefix, documents)
        full = [prefix + doc for doc in documents]
        np.testing.assert_allclose(logits, score(run["score"], full), rtol=0, atol=1e-4)
        np.testing.assert_allclose(
            logits, torch_label_logits(qwen3_model, full, manifest.labels.token_ids), rtol=0, atol=1e-4
        )
        assert [c.shape for c in cache] == [(1, 1, len(prefix), 16)] * 4  # (1, Hkv, P, D)
        assert [o.shape for o in own] == [(len(documents), 1, max(map(len, documents)), 16)] * 4  # (B, Hkv, T, D)


def test_decode_continues_the_score_cache_like_torch_greedy(fp32_artifact, qwen3_model):
    manifest = load_manifest(fp32_artifact)
    run = sessions(fp32_artifact, manifest)
    prefix, documents = max(prompt_groups(fp32_artifact, manifest), key=lambda g: len(g[1]))
    assert len({len(d) for d in documents}) > 1  # the shorter document's cache has a hole of padding
    logits, cache, own, mask = shared_prefix_score(run["prefix"], run["score_prefix"], prefix, documents)
    grades = [manifest.labels.token_ids[int(i)] for i in logits.argmax(-1)]
    tokens = greedy_decode(run["decode"], cache, own, mask, grades, steps=6)  # (B, 6)
    for row, (doc, grade) in enumerate(zip(documents, grades, strict=True)):
        assert tokens[row].tolist() == torch_greedy(qwen3_model, prefix + doc + [grade], steps=6)


def test_cache_graph_errors_name_the_graph_and_figure(fp32_artifact, qwen3_model, tmp_path):
    manifest = load_manifest(fp32_artifact)
    paths = {name: fp32_artifact / spec.file for name, spec in manifest.graphs.items()}
    groups = prompt_groups(fp32_artifact, manifest)
    other = copy.deepcopy(qwen3_model)
    with torch.no_grad():
        other.model.layers[1].mlp.down_proj.weight.mul_(1.5)
    with pytest.raises(ParityError, match=r"score_prefix label_logits max abs diff .* > tolerance 0.0001"):
        validate_cache_graphs({k: paths[k] for k in ("prefix", "score_prefix")}, other, manifest.labels, groups)
    # A decode graph that is really the score_prefix graph: refused on names, before any value.
    with pytest.raises(OutputNameError, match="decode graph outputs"):
        validate_cache_graphs({**paths, "decode": paths["score_prefix"]}, qwen3_model, manifest.labels, groups)


def test_fp16_graphs_match_torch_and_keep_float32_logits(fp16_artifact, qwen3_model):
    manifest = load_manifest(fp16_artifact)
    assert {spec.dtype for spec in manifest.graphs.values()} == {"fp16"}
    for figure in (
        "max_abs_diff",
        "score_prefix.max_abs_diff",
        "score_prefix.vs_score_max_abs_diff",
        "decode.max_abs_diff",
    ):
        assert manifest.parity[figure] <= TOLERANCES["fp16"].max_abs_diff, figure
    run = sessions(fp16_artifact, manifest)
    prefix, documents = max(prompt_groups(fp16_artifact, manifest), key=lambda g: len(g[1]))
    logits, cache, own, _ = shared_prefix_score(run["prefix"], run["score_prefix"], prefix, documents)
    full = [prefix + doc for doc in documents]
    assert logits.dtype == np.float32 and cache[0].dtype == np.float16 and own[0].dtype == np.float16
    np.testing.assert_allclose(
        logits, torch_label_logits(qwen3_model, full, manifest.labels.token_ids), rtol=0, atol=2e-2
    )
    assert {o.type for o in run["decode"].get_outputs()[1:]} == {"tensor(float16)"}
    assert run["decode"].get_outputs()[0].type == "tensor(float)"


@pytest.mark.parametrize("graph", ["score", "score_prefix"])
def test_fp16_computes_the_label_head_in_float32(fp16_artifact, graph):
    """The final norm and the label rows run in float32: a float16 logit would sit on float16's grid
    (1.6e-2 apart at |l| = 16), the parity a trained model's FP16 graph missed (export/float16.py)."""
    model = onnx.load(fp16_artifact / f"{graph}.onnx", load_external_data=False)
    producer = {out: node for node in model.graph.node for out in node.output}
    initializers = {t.name: t.data_type for t in model.graph.initializer}

    def dtype(name: str) -> int:
        node = producer.get(name)
        if node is None:
            return initializers[name]
        return next(a.i for a in node.attribute if a.name == "to") if node.op_type == "Cast" else -1

    node, walked = producer["label_logits"], []
    while node.op_type != "SkipSimplifiedLayerNormalization":
        walked.append(node.op_type)
        if node.op_type == "MatMul":
            assert [dtype(i) for i in node.input] == [onnx.TensorProto.FLOAT] * 2, node.input
        node = producer[next(i for i in node.input if i in producer)]
    assert "MatMul" in walked
    assert {dtype(i) for i in node.input} == {onnx.TensorProto.FLOAT}  # the residual sum, cast up, and the weight


def test_fp16_keeps_norm_statistics_in_float32(fp32_plain_artifact, tmp_path):
    """Residual activations past 256 overflow float16 squares: mean(x^2) must be computed and kept in float32.

    (The CPU provider computes float16 ops without a float16 kernel in float32 anyway, so a plain
    conversion would pass the numeric check here; the structural check is what holds on a GPU,
    and bench/gpu_export_check.py repeats the numeric one on CUDA.) On an unfused graph
    (`fuse=False`): fused graphs compute the norm inside one contrib op, tests/export/test_export_fusion.py.
    """
    model = onnx.load(fp32_plain_artifact / "score.onnx")
    table = next(t for t in model.graph.initializer if t.dims[0] == 151936)
    table.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(table) * 30000.0, table.name))  # |x| ~ 600..2,400
    onnx.save(model, tmp_path / "loud.onnx")
    convert_fp16(tmp_path / "loud.onnx", tmp_path / "loud16.onnx")

    ids = np.array([[151644, 872, 198, 15, 16, 17, 18, 100, 101, 102]], dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}

    def run(name):
        return ort.InferenceSession(str(tmp_path / name), providers=["CPUExecutionProvider"]).run(None, feeds)[0]

    assert np.abs(run("loud16.onnx") - run("loud.onnx")).max() <= 2e-2

    converted = onnx.load(
        tmp_path / "loud16.onnx"
    )  # (the converter's value_info; onnx shape inference rejects its output)
    types = {v.name: v.type.tensor_type.elem_type for v in converted.graph.value_info}
    consumers = {}
    for node in converted.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    means = [n for n in converted.graph.node if n.op_type == "ReduceMean"]
    assert len(means) == 9  # 2 layers x (input, q, k, post-attention) + final norm
    for mean in means:
        node, chain = mean, []
        while node.op_type != "Reciprocal":
            assert types[node.output[0]] == onnx.TensorProto.FLOAT, (node.name, chain)
            node = next(c for c in consumers[node.output[0]] if c.op_type != "Cast" or c.attribute[0].i == 1)
            chain.append(node.op_type)
        assert [op for op in chain if op != "Cast"] == ["Add", "Sqrt", "Reciprocal"]  # Casts here are fp32 -> fp32
