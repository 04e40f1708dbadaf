"""The contract checks export, verification and serving share: one graph check, one label check, one file hash."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, save
from tokenizers import Tokenizer

from afrl import graphs
from afrl.labels import LabelSet
from afrl.manifest import ArtifactError, digest_file, load_tokenizer, sha256_file
from afrl.tokenizer_files import qwen3_tokenizer_dir


def score_graph(path: Path, output: str = graphs.LABEL_LOGITS, width: int = 5) -> Path:
    """A runnable stand-in score graph: `output` = float(input_ids[:, :width]) + attention_mask[:, :width]."""
    ids = helper.make_tensor_value_info(graphs.INPUT_IDS, TensorProto.INT64, ["batch", "sequence"])
    mask = helper.make_tensor_value_info(graphs.ATTENTION_MASK, TensorProto.INT64, ["batch", "sequence"])
    out = helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", width])
    ints = {"starts": 0, "ends": width, "axes": 1}
    nodes = [
        helper.make_node("Constant", [], [k], value=helper.make_tensor(k, TensorProto.INT64, [1], [v]))
        for k, v in ints.items()
    ] + [
        helper.make_node("Add", [graphs.INPUT_IDS, graphs.ATTENTION_MASK], ["sum"]),
        helper.make_node("Slice", ["sum", "starts", "ends", "axes"], ["sliced"]),
        helper.make_node("Cast", ["sliced"], [output], to=TensorProto.FLOAT),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "score", [ids, mask], [out]), opset_imports=[helper.make_opsetid("", 18)]
    )
    save(model, path)
    return path


def prefix_graph(path: Path, cache_type: int) -> Path:
    """A declared-only prefix graph of one layer whose cache is `cache_type` (never run)."""
    ids = helper.make_tensor_value_info(graphs.INPUT_IDS, TensorProto.INT64, [1, "prefix"])
    outs = [helper.make_tensor_value_info(n, cache_type, [1, 1, "prefix", 4]) for n in graphs.present_names(1)]
    nodes = [helper.make_node("Cast", [graphs.INPUT_IDS], [o.name], to=cache_type) for o in outs]
    save(helper.make_model(helper.make_graph(nodes, "prefix", [ids], outs)), path)
    return path


def both_views(path: Path) -> list[object]:
    """The same graph as serving sees it (an onnxruntime session) and as verification does (the onnx model)."""
    import onnx

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [session, onnx.load(str(path), load_external_data=False)]


def test_a_graph_of_the_contract_passes_as_a_session_and_as_a_model(tmp_path):
    for view in both_views(score_graph(tmp_path / "score.onnx")):
        assert graphs.check_graph(graphs.SCORE, view, num_labels=5, dtype="fp32") == 0


@pytest.mark.parametrize(
    ("output", "width", "error", "message"),
    [
        ("logits", 5, graphs.OutputNameError, r"score graph outputs are \['logits'\], the contract says"),
        (graphs.LABEL_LOGITS, 7, graphs.OutputShapeError, "label_logits is 7 wide, the manifest lists 5 labels"),
    ],
)
def test_a_broken_graph_gets_the_same_error_from_either_view(tmp_path, output, width, error, message):
    messages = set()
    for view in both_views(score_graph(tmp_path / "score.onnx", output, width)):
        with pytest.raises(error, match=message) as caught:
            graphs.check_graph(graphs.SCORE, view, num_labels=5)
        messages.add(str(caught.value))
    assert len(messages) == 1, messages


def test_the_cache_type_follows_the_artifact_dtype(tmp_path):
    import onnx

    half = onnx.load(str(prefix_graph(tmp_path / "prefix.onnx", TensorProto.FLOAT16)))
    assert graphs.check_graph(graphs.PREFIX, half, dtype="fp16") == 1
    assert graphs.check_graph(graphs.PREFIX, half) == 1  # no dtype: the cache's type is not checked
    with pytest.raises(graphs.OutputTypeError, match="present.0.key is FLOAT16, a fp32 artifact's cache is FLOAT"):
        graphs.check_graph(graphs.PREFIX, half, dtype="fp32")
    with pytest.raises(graphs.OutputNameError, match=r"prefix graph outputs are .*the contract says .*'present.1.key'"):
        graphs.check_graph(graphs.PREFIX, half, layers=2)  # the artifact's other graphs have 2 layers


def test_label_tokens_are_checked_against_the_tokenizer():
    tokenizer = Tokenizer.from_file(str(qwen3_tokenizer_dir() / "tokenizer.json"))
    labels = LabelSet.from_tokenizer(tokenizer)
    labels.check_tokens(tokenizer)
    wrong = labels.model_copy(update={"token_ids": [15, 16, 17, 19, 18]})
    with pytest.raises(ValueError, match=r"label 3 token '3' encodes to \[18\].*manifest says \[19\]"):
        wrong.check_tokens(tokenizer)


def test_the_artifact_tokenizer_is_loaded_and_checked_once_for_everyone(tmp_path):
    with pytest.raises(ArtifactError, match="no tokenizer.json"):
        load_tokenizer(tmp_path)
    shutil.copyfile(qwen3_tokenizer_dir() / "tokenizer.json", tmp_path / "tokenizer.json")
    labels = LabelSet.from_tokenizer(load_tokenizer(tmp_path))
    assert load_tokenizer(tmp_path, labels).token_to_id("<|endoftext|>") == 151643
    with pytest.raises(ArtifactError, match=r"label 0 token '0' encodes to \[15\]"):
        load_tokenizer(tmp_path, labels.model_copy(update={"token_ids": [14, 16, 17, 18, 19]}))
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="unreadable tokenizer"):
        load_tokenizer(tmp_path)


def test_one_file_hash_for_one_file_and_for_a_running_digest(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"x" * 3_000_000)  # more than one read block
    b.write_bytes(b"y")
    assert sha256_file(a) == hashlib.sha256(a.read_bytes()).hexdigest()
    running = hashlib.sha256(b"name\0")
    digest_file(a, running)
    digest_file(b, running)
    assert running.hexdigest() == hashlib.sha256(b"name\0" + a.read_bytes() + b.read_bytes()).hexdigest()
