"""`afrl train pipeline --data DIR --base CHECKPOINT`: a dataset folder and a starting checkpoint, through export."""

from __future__ import annotations

import json

from afrl.cli import main
from afrl.dataset import load_dataset
from afrl.manifest import load_manifest
from training import presets
from training.context import save_checkpoint
from training.model_factory import TinyQwen3Spec
from training.setup import load_training_data, starting_model
from training.sft import SFTConfig

BOOKSTORE = "tests/data/bookstore"
SMALL = TinyQwen3Spec(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1
)


def test_pipeline_trains_a_base_checkpoint_on_a_dataset_folder(tmp_path, monkeypatch, capsys):
    small = presets.preset("default", model=SMALL, sft=SFTConfig(steps=3, batch_size=4, warmup_steps=1))
    monkeypatch.setitem(presets.PRESETS, "default", small)
    data = load_training_data(small, BOOKSTORE)
    start = starting_model(None, SMALL, 7, data)
    base = save_checkpoint(start.model, tmp_path / "base", start.ctx, {})
    out = tmp_path / "run"
    args = ["train", "pipeline", "--preset", "default", "--out", str(out), "--data", BOOKSTORE, "--base", str(base)]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert 0 <= summary["test"]["accuracy"] <= 1
    report = json.loads((out / "report.json").read_text())
    assert report["data"] == BOOKSTORE and report["test"]["examples"] == len(data.test)
    manifest = load_manifest(out / "artifact")
    assert manifest.prompt.guideline == data.guideline  # the dataset's guideline.md, not the world's
    assert manifest.model_name == small.name
    written = load_dataset(out / "data")  # what the run trained on, as a dataset folder
    assert [len(written.train), len(written.dev), len(written.test)] == [len(data.train), len(data.dev), len(data.test)]
