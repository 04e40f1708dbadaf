"""`afrl train sft --base DIR --lora-rank R` on a plain Hugging Face folder (no afrl.json), then export and score.

The folder is a tiny random Qwen3 saved the way any HF checkpoint is (weights,
config, tokenizer). The command runs in-process as a user types it; what it
writes must be a plain checkpoint (adapters merged) with its afrl.json, which
`afrl export` turns into an artifact that `afrl eval` scores.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from afrl.cli import main
from afrl.sidecar import read_sidecar
from afrl.tokenizer_files import qwen3_tokenizer_dir
from training.model_factory import build_tiny_qwen3

BOOKSTORE = "tests/data/bookstore"


@pytest.fixture
def plain_qwen3(tmp_path, small_spec) -> Path:
    folder = tmp_path / "plain-qwen3"
    build_tiny_qwen3(small_spec, seed=0).save_pretrained(folder)
    AutoTokenizer.from_pretrained(qwen3_tokenizer_dir()).save_pretrained(folder)
    assert read_sidecar(folder) is None
    return folder


@pytest.mark.slow
def test_lora_sft_from_a_plain_checkpoint_exports_and_scores(plain_qwen3, tmp_path, capsys):
    ckpt, art = tmp_path / "ckpt", tmp_path / "art"
    args = ["train", "sft", "--data", BOOKSTORE, "--base", str(plain_qwen3), "--lora-rank", "4", "--steps", "2"]
    assert main([*args, "--out", str(ckpt)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["checkpoint"] == str(ckpt) and 0 <= out["test"]["accuracy"] <= 1

    sidecar = read_sidecar(ckpt)
    assert sidecar is not None and sidecar.guideline.startswith("Bookstore search relevance")  # the data's
    assert sidecar.label_values == [0, 1, 2, 3, 4]
    assert (ckpt / "model.safetensors").is_file() and not list(ckpt.glob("adapter_*"))  # merged, not an adapter
    curriculum = json.loads((ckpt / "curriculum_config.json").read_text())
    saved = curriculum["sft"]
    assert saved["lora_rank"] == 4 and saved["learning_rate"] == 2e-4  # the pretrained default, not 4e-3
    report = json.loads((ckpt / "stage_report.json").read_text())
    assert report["start"] == str(plain_qwen3)
    assert len(report["losses"]) == sum(s["steps"] for s in curriculum["stages"])  # each stage at least 1 step

    assert main(["export", str(ckpt), "--out", str(art)]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["parity"]["max_abs_diff"] <= 1e-3 and manifest["labels"]["values"] == [0, 1, 2, 3, 4]

    assert main(["eval", str(art), "--data", BOOKSTORE]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["examples"] == 40 and 0 <= scored["accuracy"] <= 1
