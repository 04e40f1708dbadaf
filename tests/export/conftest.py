"""Tiny random checkpoints with the real Qwen3 tokenizer, and artifacts exported from them once per session.

The torch -> ONNX export is the slow step (~5 s a graph, whatever the size),
so each FP32 graph of a checkpoint is exported once per session
(`_reuse_fp32_exports`): the fp16 and int8 artifacts convert those same FP32
graphs, as export_artifact would after exporting them again. Fusing a graph
(export/fusion.py, ~2 s) is likewise done once per distinct plain graph.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from export_testlib import GUIDELINE, VOCAB
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

from afrl.tokenizer_files import qwen3_tokenizer_dir
from export import artifact as artifact_module
from export.artifact import export_artifact

TINY = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=16,
)


def save_tiny_checkpoint(folder: Path, model: torch.nn.Module, afrl: dict | None) -> Path:
    """A training-shaped checkpoint folder: weights, config, tokenizer, afrl.json."""
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(qwen3_tokenizer_dir()).save_pretrained(folder)
    if afrl is not None:
        (folder / "afrl.json").write_text(json.dumps(afrl))
    return folder


@pytest.fixture(scope="session", autouse=True)
def _reuse_fp32_exports(tmp_path_factory):
    """Export each (checkpoint, graph) to FP32 once per session; later calls copy the file."""
    cache_dir = tmp_path_factory.mktemp("fp32-exports")
    real = artifact_module.export_graph
    done: dict[tuple, Path] = {}

    def cached(name, model, label_token_ids, path, **kw):
        key = (model.config._name_or_path, name, tuple(label_token_ids), tuple(sorted(kw.items())))
        if key not in done:
            done[key] = real(name, model, label_token_ids, cache_dir / str(len(done)) / Path(path).name, **kw)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        for file in done[key].parent.iterdir():
            shutil.copyfile(file, Path(path).parent / file.name)
        return Path(path)

    real_fuse = artifact_module.fuse_graph
    fused: dict[str, tuple[Path, dict[str, int]]] = {}

    def cached_fuse(src, dst, **kw):
        key = hashlib.sha256(Path(src).read_bytes()).hexdigest() + repr(sorted(kw.items()))
        if key not in fused:
            out = cache_dir / f"fused{len(fused)}" / Path(dst).name
            fused[key] = (out, real_fuse(src, out, **kw))
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        for file in fused[key][0].parent.iterdir():
            shutil.copyfile(file, Path(dst).parent / file.name)
        return dict(fused[key][1])

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(artifact_module, "export_graph", cached)
        mp.setattr(artifact_module, "fuse_graph", cached_fuse)
        yield


@pytest.fixture(scope="session")
def qwen3_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(Qwen3Config(**TINY, tie_word_embeddings=True)).eval()
    folder = tmp_path_factory.mktemp("qwen3-tiny")
    return save_tiny_checkpoint(folder, model, {"guideline": GUIDELINE, "label_values": [0, 1, 2, 3, 4]})


@pytest.fixture(scope="session")
def llama_checkpoint(tmp_path_factory) -> Path:
    """Untied LM head, and no afrl.json: the guideline has to be passed."""
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**TINY, tie_word_embeddings=False)).eval()
    return save_tiny_checkpoint(tmp_path_factory.mktemp("llama-tiny"), model, afrl=None)


@pytest.fixture(scope="session")
def fp32_artifact(qwen3_checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("artifacts") / "qwen3-fp32"
    export_artifact(qwen3_checkpoint, out, dtype="fp32")
    return out


@pytest.fixture(scope="session")
def fp32_plain_artifact(qwen3_checkpoint, fp32_artifact, tmp_path_factory) -> Path:
    """The same export without fusion (afrl export --no-fuse)."""
    out = tmp_path_factory.mktemp("artifacts") / "qwen3-fp32-plain"
    export_artifact(qwen3_checkpoint, out, dtype="fp32", fuse=False)
    return out


@pytest.fixture(scope="session")
def fp16_artifact(qwen3_checkpoint, fp32_artifact, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("artifacts") / "qwen3-fp16"
    export_artifact(qwen3_checkpoint, out, dtype="fp16")
    return out


@pytest.fixture(scope="session")
def int8_artifact(qwen3_checkpoint, fp32_artifact, tmp_path_factory) -> Path:
    """Every MLP down projection FP32 (`int8_down="fp32"`): a random model has no outlier layer for
    export's default to find, and its near-uniform grades need that recipe to pass the INT8 gate.
    The default (outliers) is tested on a checkpoint with one, tests/export/test_export_int8_outliers.py."""
    out = tmp_path_factory.mktemp("artifacts") / "qwen3-int8"
    export_artifact(qwen3_checkpoint, out, dtype="int8", int8_down="fp32")
    return out


@pytest.fixture(scope="session")
def qwen3_model(qwen3_checkpoint) -> torch.nn.Module:
    return Qwen3ForCausalLM.from_pretrained(qwen3_checkpoint).eval()
