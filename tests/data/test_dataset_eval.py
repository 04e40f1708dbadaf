"""`afrl eval` on your own data: a folder or a file, rows without rule ids or long-tail marks, the baseline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from afrl.cli import main
from afrl.dataset import read_guideline

ROOT = Path(__file__).resolve().parents[2]
BOOKSTORE = Path(__file__).parent / "bookstore"


def test_afrl_imports_neither_training_nor_torch():
    code = (
        "import sys, afrl.cli, afrl.evaluation, afrl.dataset; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'training', 'torch', 'transformers'}))"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny random Qwen3 saved the way training saves it, with the bookstore's guideline."""
    from training.context import TrainingContext, save_checkpoint
    from training.model_factory import TinyQwen3Spec, build_tiny_qwen3

    spec = TinyQwen3Spec(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1
    )
    ctx = TrainingContext.create(guideline=read_guideline(BOOKSTORE / "guideline.md"))
    return save_checkpoint(build_tiny_qwen3(spec, seed=0).eval(), tmp_path_factory.mktemp("ckpt"), ctx, {})


def run_eval(capsys, *args: str) -> dict:
    assert main(["eval", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_eval_on_a_dataset_folder_uses_its_test_split_and_train_baseline(checkpoint, tmp_path, capsys):
    out = tmp_path / "eval"
    printed = run_eval(capsys, str(checkpoint), "--data", str(BOOKSTORE), "--out", str(out))
    report = json.loads((out / "eval.json").read_text())
    assert report["examples"] == printed["examples"] == 40 and report["split"] == "test"
    assert report["majority_baseline_from"].startswith(f"train split of {BOOKSTORE} (")
    # train's most frequent grade is 2: its share of the test rows
    assert report["majority_baseline_accuracy"] == pytest.approx(13 / 40)
    assert report["rows_with_rule_ids"] == 33 and report["rows_with_explanation"] == 16
    assert report["long_tail_examples"] == 8 and 0 <= report["long_tail_accuracy"] <= 1
    assert set(report["long_tail_rules"]) == {"R8", "R9", "R13", "R15"}
    assert report["dataset"]["split_off"] == {"dev": "split off train.jsonl by query"}
    assert (out / "confusion.png").stat().st_size > 1000 and (out / "eval.png").stat().st_size > 1000


def test_eval_on_dev_reports_that_it_was_split_off(checkpoint, capsys):
    report = run_eval(capsys, str(checkpoint), "--data", str(BOOKSTORE), "--split", "dev")
    assert report["split"] == "dev" and "dev was split off train.jsonl by query" in report["majority_baseline_from"]


def test_eval_on_a_file_without_rule_ids_or_long_tail_says_na(checkpoint, tmp_path, capsys):
    file = tmp_path / "pairs.jsonl"
    rows = [{"query": "dune paperback", "document": f"Dune, edition {i}", "grade": i % 3} for i in range(7)]
    file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "eval"
    run_eval(capsys, str(checkpoint), "--data", str(file), "--out", str(out))
    report = json.loads((out / "eval.json").read_text())
    assert report["examples"] == 7 and report["split"] == "all rows"
    assert report["majority_baseline_from"].startswith("the evaluated rows")
    assert report["majority_baseline_accuracy"] == pytest.approx(3 / 7)  # grade 0 on rows 0, 3, 6
    assert report["per_rule"] == {} and report["per_rule_accuracy"].startswith("n/a")
    assert report["long_tail_examples"] == 0 and report["long_tail_accuracy"] == "n/a"
    assert report["head_examples"] == 7 and report["rows_with_rule_ids"] == 0
    assert (out / "eval.png").stat().st_size > 1000
