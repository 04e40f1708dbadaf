"""Fused graphs (export/fusion.py): contrib ops there and counted, values as unfused, the service grades alike."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from export_testlib import GUIDELINE, PAIRS, VOCAB, load, score, torch_label_logits
from onnx import numpy_helper

from afrl.manifest import load_manifest
from afrl.padding import left_pad
from export.artifact import SAMPLE_PAIRS, export_artifact
from export.float16 import convert_fp16
from export.fusion import FUSED_OPS, FusionError, fuse_graph, fused_op_counts

LAYERS = 2  # conftest.TINY
# What fusion leaves nowhere in the graph: RMSNorm's Pow/ReduceMean, rotate-half's Neg, attention's Softmax.
UNFUSED_OPS = ("Pow", "ReduceMean", "Neg", "Softmax")


def op_counts(path: Path) -> collections.Counter:
    return collections.Counter(n.op_type for n in onnx.load(path, load_external_data=False).graph.node)


def expected_fusions(graph: str, qk_norm: bool) -> dict[str, int]:
    """Fused nodes of a 2-layer decoder: a skip norm per residual add, rotary on q and k, one attention per layer.

    The prefix graph returns only the caches: its last layer's attention output and MLP are dead,
    so it holds that layer's K/V projections (and k rotary, k norm) but no attention and one skip norm less.
    """
    layers = LAYERS - 1 if graph == "prefix" else LAYERS
    rotary = 2 * layers + (1 if graph == "prefix" else 0)
    norms = 1 + (rotary if qk_norm else 0)  # the first layer's input norm; Qwen3's q/k norms
    return {
        "SimplifiedLayerNormalization": norms,
        "SkipSimplifiedLayerNormalization": 2 * layers,
        "RotaryEmbedding": rotary,
        "GroupQueryAttention": layers,
    }


@pytest.fixture(scope="session")
def llama_fp32_artifact(llama_checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("artifacts") / "llama-fp32"
    export_artifact(llama_checkpoint, out, dtype="fp32", guideline=GUIDELINE)
    return out


@pytest.mark.parametrize(("name", "qk_norm"), [("fp32_artifact", True), ("llama_fp32_artifact", False)])
def test_fused_graphs_hold_the_contrib_ops_the_manifest_counts(name, qk_norm, request):
    artifact = request.getfixturevalue(name)
    manifest = load_manifest(artifact)
    assert set(manifest.fusions) == set(manifest.graphs) == {"score", "prefix", "score_prefix", "decode"}
    for graph, spec in manifest.graphs.items():
        ops = op_counts(artifact / spec.file)
        assert manifest.fusions[graph] == {op: ops[op] for op in FUSED_OPS}, graph
        assert manifest.fusions[graph] == expected_fusions(graph, qk_norm), graph
        assert not [op for op in UNFUSED_OPS if ops[op]], (graph, {op: ops[op] for op in UNFUSED_OPS})


def test_unfused_export_has_no_contrib_ops(fp32_plain_artifact):
    manifest = load_manifest(fp32_plain_artifact)
    assert manifest.fusions == {}
    for spec in manifest.graphs.values():
        ops = op_counts(fp32_plain_artifact / spec.file)
        assert sum(ops[op] for op in FUSED_OPS) == 0 and ops["Softmax"] == LAYERS - (spec.file == "prefix.onnx")


def test_fused_scores_like_unfused_and_torch(fp32_artifact, fp32_plain_artifact, qwen3_model):
    manifest, fused, sequences = load(fp32_artifact)
    _, plain, same = load(fp32_plain_artifact)
    assert same == sequences
    ours, theirs = score(fused, sequences), score(plain, sequences)  # left-padded batch
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)
    np.testing.assert_allclose(
        ours, torch_label_logits(qwen3_model, sequences, manifest.labels.token_ids), rtol=0, atol=1e-4
    )
    for figure in ("max_abs_diff", "batch_max_abs_diff", "score_prefix.max_abs_diff", "decode.max_abs_diff"):
        assert manifest.parity[figure] <= 1e-4, figure
    # Every row left-padded, as serving's length buckets pad them: no row reaches the last position id
    # (the rotary tables are constant, not sized by the largest position in the batch).
    ids, mask = left_pad(sequences, 151643, max(map(len, sequences)) + 7)
    feeds = {"input_ids": ids, "attention_mask": mask}
    padded = fused.run(["label_logits"], feeds)[0]
    np.testing.assert_allclose(padded, plain.run(["label_logits"], feeds)[0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(padded, ours, rtol=0, atol=1e-5)


def test_fp16_fuses_norms_and_rotary_within_1e_2_and_survives_loud_activations(fp16_artifact, fp32_artifact, tmp_path):
    manifest = load_manifest(fp16_artifact)
    # FP16 is for CUDA, whose GroupQueryAttention refuses the mask: norms and rotary fused, attention plain.
    for graph, spec in manifest.graphs.items():
        ops = op_counts(fp16_artifact / spec.file)
        assert manifest.fusions[graph] == {**expected_fusions(graph, qk_norm=True), "GroupQueryAttention": 0}
        assert ops["Softmax"] == expected_fusions(graph, qk_norm=True)["GroupQueryAttention"] > 0, graph
        assert ops["Pow"] == ops["ReduceMean"] == ops["Neg"] == 0, graph
    for figure in ("max_abs_diff", "score_prefix.max_abs_diff", "score_prefix.vs_score_max_abs_diff"):
        assert manifest.parity[figure] <= 1e-2, figure
    # Residual activations in the thousands: float16 squares overflow above 256. The fused norm
    # takes float16 in and out but accumulates mean(x^2) in float32 (stash_type=1).
    model = onnx.load(fp32_artifact / "score.onnx")
    table = next(t for t in model.graph.initializer if list(t.dims[:1]) == [VOCAB])
    table.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(table) * 30000.0, table.name))  # |x| ~ 600..2,400
    onnx.save(model, tmp_path / "loud.onnx")
    convert_fp16(tmp_path / "loud.onnx", tmp_path / "loud16.onnx")
    ops = op_counts(tmp_path / "loud16.onnx")
    assert ops["SimplifiedLayerNormalization"] == 5 and ops["Pow"] == ops["ReduceMean"] == 0
    ids = np.array([[151644, 872, 198, 15, 16, 17, 18, 100, 101, 102]], dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}

    def run(name):
        return ort.InferenceSession(str(tmp_path / name), providers=["CPUExecutionProvider"]).run(None, feeds)[0]

    assert np.abs(run("loud16.onnx") - run("loud.onnx")).max() <= 2e-2


def test_int8_fused_keeps_the_fusions(int8_artifact):
    manifest = load_manifest(int8_artifact)
    assert manifest.fusions["score_prefix"] == expected_fusions("score_prefix", qk_norm=True)
    assert op_counts(int8_artifact / "score_prefix.onnx")["MatMulInteger"] > 0


@pytest.mark.parametrize("shared_prefix", [True, False])
def test_service_grades_a_fused_artifact_like_an_unfused_one(fp32_artifact, fp32_plain_artifact, shared_prefix):
    from service.artifact_loader import load_artifact
    from service.blocking import BlockingScorer
    from service.engine import ScoringEngine
    from service.metrics import ServiceMetrics
    from service.settings import ServiceSettings

    queries: dict[str, list[str]] = {}
    for query, document in [*PAIRS, *SAMPLE_PAIRS]:
        queries.setdefault(query, []).append(document)
    results = []
    for artifact in (fp32_artifact, fp32_plain_artifact):
        settings = ServiceSettings(model=artifact, shared_prefix=shared_prefix, intra_op_threads=1)
        model = load_artifact(settings)
        scorer = BlockingScorer(ScoringEngine(model, settings.max_batch_tokens, ServiceMetrics(), settings))
        try:
            results.append([r for q, docs in queries.items() for r in scorer.score(q, docs).results])
        finally:
            scorer.close()
    fused, plain = results
    assert len(fused) == len(PAIRS) + len(SAMPLE_PAIRS)
    assert [r.grade for r in fused] == [r.grade for r in plain]
    np.testing.assert_allclose([r.probs for r in fused], [r.probs for r in plain], rtol=0, atol=1e-5)


def test_only_artifacts_with_fused_attention_are_kept_off_cuda(fp32_artifact, fp32_plain_artifact, fp16_artifact):
    """What export writes in `manifest.fusions` is what serving's CUDA check reads (service/providers.py)."""
    from service.providers import cuda_blocker

    assert "GroupQueryAttention" in (cuda_blocker(load_manifest(fp32_artifact)) or "")
    assert cuda_blocker(load_manifest(fp32_plain_artifact)) is None  # afrl export --no-fuse
    assert cuda_blocker(load_manifest(fp16_artifact)) is None  # fused norms and rotary, plain attention


def test_fusion_refuses_a_graph_whose_contract_it_would_change(fp32_plain_artifact, tmp_path, monkeypatch):
    import export.fusion as fusion

    def rename_output(model, *_):
        model.graph.outputs[0].name = "renamed"
        return {}

    monkeypatch.setattr(fusion, "fuse_model", rename_output)
    with pytest.raises(FusionError, match="changed its inputs/outputs"):
        fuse_graph(fp32_plain_artifact / "score.onnx", tmp_path / "score.onnx", max_positions=2048)
    assert not (tmp_path / "score.onnx").exists()


def test_fused_op_counts_reads_both_model_kinds(fp32_artifact):
    import onnx_ir as ir

    path = fp32_artifact / "score.onnx"
    assert fused_op_counts(onnx.load(path, load_external_data=False)) == fused_op_counts(ir.load(path))
