"""export_artifact end to end: parity, batch invariance, manifest, the graphs= choice, refusals."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from export_testlib import GUIDELINE, VOCAB, load, score, torch_label_logits

from afrl.manifest import ArtifactError, load_manifest
from afrl.scoring import grade_results
from export import artifact as artifact_module
from export.artifact import CheckpointError, export_artifact
from export.quantize import mlp_down_nodes


def test_fp32_matches_torch_on_left_padded_batch(fp32_artifact, qwen3_model):
    manifest, session, sequences = load(fp32_artifact)
    got = score(session, sequences)  # (B, K)
    want = torch_label_logits(qwen3_model, sequences, manifest.labels.token_ids)
    assert got.shape == (len(sequences), 5) and got.dtype == np.float32
    assert np.abs(got - want).max() <= 1e-4
    assert manifest.parity["max_abs_diff"] <= 1e-4
    assert manifest.parity["prompts"] >= 8


def test_batched_equals_single(fp32_artifact):
    _, session, sequences = load(fp32_artifact)
    batch = score(session, sequences)
    for row, seq in enumerate(sequences):
        np.testing.assert_allclose(score(session, [seq])[0], batch[row], rtol=0, atol=1e-5)


def test_manifest_records_what_serving_needs(fp32_artifact, qwen3_checkpoint):
    manifest = load_manifest(fp32_artifact)
    assert manifest.graphs["score"].model_dump() == {
        "file": "score.onnx",
        "dtype": "fp32",
        "inputs": ["input_ids", "attention_mask"],
        "outputs": ["label_logits"],
    }
    cache = ["past.0.key", "past.0.value", "past.1.key", "past.1.value"]
    present = [n.replace("past", "present") for n in cache]
    assert manifest.graphs["prefix"].inputs == ["input_ids"] and manifest.graphs["prefix"].outputs == present
    assert manifest.graphs["score_prefix"].inputs == ["input_ids", "attention_mask", *cache]
    assert manifest.graphs["score_prefix"].outputs == ["label_logits", *present]
    assert manifest.graphs["decode"].outputs == ["logits", *present]
    assert {spec.file for spec in manifest.graphs.values()} == {
        "score.onnx",
        "prefix.onnx",
        "score_prefix.onnx",
        "decode.onnx",
    }
    for figure in ("score_prefix.max_abs_diff", "score_prefix.vs_score_max_abs_diff", "decode.max_abs_diff"):
        assert manifest.parity[figure] <= 1e-4, figure
    assert manifest.parity["decode.token_agreement"] == 1.0 and manifest.parity["decode.steps"] >= 4
    assert manifest.labels.values == [0, 1, 2, 3, 4] and manifest.labels.token_ids == [15, 16, 17, 18, 19]
    assert manifest.prompt.guideline == GUIDELINE
    assert manifest.providers_validated == ["CPUExecutionProvider"]
    assert manifest.source.checkpoint == str(qwen3_checkpoint.resolve())
    assert len(manifest.source.sha256) == 64
    assert {"score.onnx", "weights.data", "tokenizer.json", "tokenizer_config.json"} <= set(manifest.files)
    # The four graphs hold their weights once, in weights.data: about one embedding table (V x H fp32), not four.
    assert (fp32_artifact / "weights.data").stat().st_size < 1.2 * VOCAB * 32 * 4
    assert all((fp32_artifact / spec.file).stat().st_size < 1_000_000 for spec in manifest.graphs.values())
    # Tokenizer files are copied byte for byte.
    assert (fp32_artifact / "tokenizer.json").read_bytes() == (qwen3_checkpoint / "tokenizer.json").read_bytes()


def test_corrupt_score_graph_is_refused(fp32_artifact, tmp_path):
    copy = Path(shutil.copytree(fp32_artifact, tmp_path / "artifact"))
    graph = copy / "score.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="score.onnx"):
        load_manifest(copy)


def test_llama_with_untied_head_exports_every_graph_when_guideline_given(llama_checkpoint, tmp_path):
    with pytest.raises(CheckpointError, match="guideline"):
        export_artifact(llama_checkpoint, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()

    manifest = export_artifact(llama_checkpoint, tmp_path / "llama", guideline=GUIDELINE)
    assert set(manifest.graphs) == {"score", "prefix", "score_prefix", "decode"}
    for figure in (
        "max_abs_diff",
        "score_prefix.max_abs_diff",
        "score_prefix.vs_score_max_abs_diff",
        "decode.max_abs_diff",
    ):
        assert manifest.parity[figure] <= 1e-4, figure
    assert manifest.parity["decode.token_agreement"] == 1.0
    assert load_manifest(tmp_path / "llama").prompt.guideline == GUIDELINE
    # The weights live in weights.data beside the graphs, hashed like any file.
    (tmp_path / "llama" / "weights.data").write_bytes(b"\0" * 16)
    with pytest.raises(ArtifactError, match="weights.data"):
        load_manifest(tmp_path / "llama")


def test_score_graph_alone_keeps_the_single_file_layout(qwen3_checkpoint, tmp_path):
    manifest = export_artifact(qwen3_checkpoint, tmp_path / "score-only", graphs=("score",))
    assert set(manifest.graphs) == {"score"}
    assert not any(name.endswith(".data") for name in manifest.files)
    assert not any(key.startswith(("score_prefix.", "decode.")) for key in manifest.parity)


@pytest.mark.parametrize(
    "graphs, message",
    [
        (("prefix", "score_prefix"), "score graph is required"),
        (("score", "score_prefix"), "export 'prefix' too"),
        (("score", "prefix", "decode"), "decode continues from score_prefix"),
        (("score", "logits"), "unknown graphs"),
    ],
)
def test_graph_choice_is_checked_before_any_work(qwen3_checkpoint, tmp_path, graphs, message):
    with pytest.raises(ValueError, match=message):
        export_artifact(qwen3_checkpoint, tmp_path / "out", graphs=graphs)
    assert not (tmp_path / "out").exists()


def test_int8_loads_and_agrees_on_grades(int8_artifact, fp32_artifact, qwen3_model):
    manifest, session, sequences = load(int8_artifact)
    assert manifest.graphs["score"].dtype == "int8"
    got = grade_results(score(session, sequences), manifest.labels.values)
    want = grade_results(torch_label_logits(qwen3_model, sequences, manifest.labels.token_ids), manifest.labels.values)
    assert np.mean([a.grade == b.grade for a, b in zip(got, want, strict=True)]) >= 0.75  # 4 prompts: at most one flip
    assert manifest.parity["grade_agreement"] >= 0.99 and manifest.parity["score_prefix.grade_agreement"] >= 0.99
    assert manifest.parity["expected_grade_mae"] <= 0.05 and manifest.parity["score_prefix.expected_grade_mae"] <= 0.05
    assert {spec.dtype for spec in manifest.graphs.values()} == {"int8"}
    # Body MatMuls run on int8 weights; the MLP down projections and the label head stay FP32.
    graph = onnx.load(int8_artifact / "score.onnx", load_external_data=False).graph
    ops = [node.op_type for node in graph.node]
    assert ops.count("MatMulInteger") == 2 * 6  # 2 layers x q, k, v, o, gate, up
    assert len(mlp_down_nodes(onnx.load(fp32_artifact / "score.onnx", load_external_data=False))) == 2
    assert not any(name.endswith(".onnx.data") for name in manifest.files)  # the fp32 scratch graphs stayed out


def test_failed_export_leaves_nothing(qwen3_checkpoint, tmp_path, monkeypatch):
    def broken_export(name, model, label_token_ids, path, **kw):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(b"not an onnx graph")
        return Path(path)

    monkeypatch.setattr(artifact_module, "export_graph", broken_export)
    with pytest.raises(Exception):  # noqa: B017 - whatever the broken graph raises
        export_artifact(qwen3_checkpoint, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_replace_a_folder_that_is_not_an_artifact(qwen3_checkpoint, tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        export_artifact(qwen3_checkpoint, tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"
