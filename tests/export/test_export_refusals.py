"""A corrupt or mismatched artifact is refused before anything runs it, with a message naming what broke."""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from afrl import graphs
from afrl.manifest import ArtifactError, load_manifest, write_manifest
from export.verify import verify_artifact


@pytest.fixture
def artifact(fp32_artifact, tmp_path) -> Path:
    return Path(shutil.copytree(fp32_artifact, tmp_path / "artifact"))


def rewrite_manifest(folder: Path, **changes) -> None:
    """Change manifest fields and re-hash, as a careless tool would: only the deeper checks can catch it."""
    manifest = load_manifest(folder, verify_hashes=False)
    write_manifest(folder, manifest.model_copy(update=changes))


def test_the_exported_artifact_passes(fp32_artifact, fp16_artifact, int8_artifact):
    for folder in (fp32_artifact, fp16_artifact, int8_artifact):
        assert set(verify_artifact(folder).graphs) == set(graphs.GRAPHS)


def test_hash_mismatch_names_the_file(artifact):
    data = bytearray((artifact / "decode.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (artifact / "decode.onnx").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"'decode.onnx' is corrupt or was changed"):
        verify_artifact(artifact)


def test_missing_graph_file(artifact):
    (artifact / "score_prefix.onnx").unlink()
    with pytest.raises(ArtifactError, match=r"'score_prefix.onnx' listed in the manifest is missing"):
        verify_artifact(artifact)


def test_graph_whose_outputs_break_the_contract(artifact):
    """decode.onnx replaced by a graph that returns logits but no cache, manifest re-hashed."""
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "sequence"])
    graph = helper.make_graph(
        [helper.make_node("Cast", ["input_ids"], ["logits"], to=TensorProto.FLOAT)], "g", [ids], [out]
    )
    onnx.save(helper.make_model(graph), artifact / "decode.onnx")
    rewrite_manifest(artifact)
    with pytest.raises(ArtifactError, match=r"decode.onnx: the decode graph has inputs \['input_ids'\]"):
        verify_artifact(artifact)


def test_manifest_io_that_is_not_the_contract(artifact):
    manifest = load_manifest(artifact)
    spec = manifest.graphs["score_prefix"]
    wrong = spec.model_copy(update={"outputs": ["logits", *spec.outputs[1:]]})
    rewrite_manifest(artifact, graphs={**manifest.graphs, "score_prefix": wrong})
    with pytest.raises(
        ArtifactError, match=r"score_prefix graph outputs are .*'logits'.* the contract says .*'label_logits'"
    ):
        verify_artifact(artifact)


def test_layer_counts_must_agree(artifact):
    manifest = load_manifest(artifact)
    three = graphs.graph_io("decode", 3)
    rewrite_manifest(
        artifact,
        graphs={
            **manifest.graphs,
            "decode": manifest.graphs["decode"].model_copy(update={"inputs": three[0], "outputs": three[1]}),
        },
    )
    with pytest.raises(ArtifactError, match="decode graph inputs"):
        verify_artifact(artifact)


def test_label_mismatch(artifact):
    manifest = load_manifest(artifact)
    labels = manifest.labels.model_copy(update={"token_ids": [15, 16, 17, 18, 20]})
    rewrite_manifest(artifact, labels=labels)
    with pytest.raises(ArtifactError, match=r"label 4 token '4' encodes to \[19\].*manifest says \[20\]"):
        verify_artifact(artifact)


def test_label_count_must_match_the_graph(artifact):
    manifest = load_manifest(artifact)
    labels = manifest.labels.model_copy(
        update={"values": [0, 1, 2, 3], "tokens": list("0123"), "token_ids": [15, 16, 17, 18]}
    )
    rewrite_manifest(artifact, labels=labels)
    with pytest.raises(ArtifactError, match="label_logits is 5 wide, the manifest lists 4 labels"):
        verify_artifact(artifact)


def test_cache_dtype_must_match_the_manifest(artifact):
    manifest = load_manifest(artifact)
    rewrite_manifest(artifact, graphs={k: v.model_copy(update={"dtype": "fp16"}) for k, v in manifest.graphs.items()})
    with pytest.raises(ArtifactError, match="present.0.key is FLOAT, a fp16 artifact's cache is FLOAT16"):
        verify_artifact(artifact)


def test_contract_checker_on_plain_names():
    inputs, outputs = graphs.graph_io("score_prefix", 2)
    assert graphs.check_graph_io("score_prefix", inputs, outputs) == 2
    assert graphs.check_graph_io("score", ["input_ids", "attention_mask"], ["label_logits"], layers=28) == 0
    with pytest.raises(ValueError, match="no past/present"):
        graphs.check_graph_io("prefix", ["input_ids"], [])
    with pytest.raises(ValueError, match="unknown graph"):
        graphs.graph_io("generate", 2)
