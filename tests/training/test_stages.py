"""`afrl train sft|rl|distill` through the command line: preset < --config < flags, the effective config
saved beside the checkpoint, one setup for every stage, one-line refusals."""

import json
from dataclasses import replace

import pytest

from afrl.cli import main
from training import presets
from training.configs import config_dict, resolve
from training.rl import RLConfig


@pytest.fixture
def small_ci(monkeypatch, small_spec):
    """The ci preset on a 16-query world with the 32-wide model: stages take seconds."""
    ci = presets.PRESETS["ci"]
    small = replace(ci, n_queries=16, docs_per_query=3, eval_examples=12, method=replace(ci.method, teacher=small_spec))
    monkeypatch.setitem(presets.PRESETS, "ci", small)
    return small


def _run(capsys, *args: str) -> dict:
    assert main(["train", *args, "--preset", "ci"]) == 0
    return json.loads(capsys.readouterr().out)


def test_sft_then_rl_then_distill_with_flags_and_a_config_file(small_ci, tmp_path, capsys):
    sft, rl, student = tmp_path / "sft", tmp_path / "rl", tmp_path / "student"
    out = _run(capsys, "sft", "--out", str(sft), "--steps", "40", "--lr", "1e-2", "--grade-weight", "2")
    assert out["checkpoint"] == str(sft) and 0 <= out["test"]["accuracy"] <= 1
    curriculum = json.loads((sft / "curriculum_config.json").read_text())
    assert sum(s["steps"] for s in curriculum["stages"]) == 40 and [s["name"] for s in curriculum["stages"]] == [
        "head",
        "long_tail",
    ]
    assert curriculum["sft"]["learning_rate"] == 0.01 and curriculum["sft"]["grade_weight"] == 2.0
    report = json.loads((sft / "stage_report.json").read_text())
    assert report["stage"] == "sft" and len(report["losses"]) == 40 and report["losses"][-1] < report["losses"][0]
    assert (sft / "afrl.json").is_file() and report["start"].startswith("random init")

    config_file = tmp_path / "rl.yaml"
    config_file.write_text("lam: 0.2\nbeta: 0.3\nmax_new_tokens: 40\n")
    rl_args = ("--model", str(sft), "--out", str(rl), "--config", str(config_file), "--steps", "2")
    _run(capsys, "rl", *rl_args, "--batch-size", "2", "--group-size", "2", "--beta", "0.1")
    saved = json.loads((rl / "rl_config.json").read_text())
    assert (saved["lam"], saved["beta"], saved["max_new_tokens"]) == (0.2, 0.1, 40)  # file, flag over file, file
    assert (saved["steps"], saved["prompts_per_step"], saved["group_size"]) == (2, 2, 2)
    assert saved["clip_eps"] == small_ci.method.rl.clip_eps  # from the preset
    history = json.loads((rl / "stage_report.json").read_text())["history"]
    assert len(history) == 2 and history[-1]["kl"] >= 0
    again = resolve(RLConfig(), rl / "rl_config.json", {})  # the effective config is a valid --config
    assert config_dict(again) == saved

    out = _run(capsys, "distill", "--teacher", str(rl), "--out", str(student), "--steps", "2", "--max-new-tokens", "60")
    distilled = json.loads((student / "stage_report.json").read_text())
    assert distilled["teacher"] == str(rl) and distilled["sequences"] > 0 and len(distilled["losses"]) == 2
    assert json.loads((student / "distill_config.json").read_text())["sft"]["steps"] == 2


def test_distill_from_an_endpoint_teacher_sends_the_key(small_ci, tmp_path, capsys, monkeypatch):
    seen: list[dict] = []

    def post(url, payload, headers):
        seen.append(headers)
        return {"choices": [{"message": {"content": "2\n[Query] x"}, "finish_reason": "stop", "logprobs": None}]}

    monkeypatch.setattr("training.teachers.post_json", post)
    monkeypatch.setenv("TEACHER_KEY", "sk-1")
    args = ("--teacher-endpoint", "http://teacher:8000/v1", "--teacher-model", "big", "--api-key-env", "TEACHER_KEY")
    out = _run(capsys, "distill", *args, "--out", str(tmp_path / "student"), "--steps", "2")
    assert out["test"] is not None and seen and all(h == {"authorization": "Bearer sk-1"} for h in seen)
    assert json.loads((tmp_path / "student" / "stage_report.json").read_text())["teacher"] == "endpoint"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("rl", "--model", "x", "--group-size", "1"), "group_size must be >= 2"),
        (("sft", "--lora-rank", "8"), "--lora-rank 8 adapts a pretrained model: give --base"),
        (("sft", "--lr", "3"), "learning_rate 3.0 is outside"),
        (("sft", "--base", "tests/data/bookstore"), "the folder has no config.json"),
        (("sft", "--base", "tests/data/missing"), "neither a checkpoint folder nor a reachable hub id"),
        (("distill",), "give exactly one teacher"),
        (("sft", "--config", "missing.yaml"), "no such file"),
    ],
)
def test_bad_options_are_one_line_refusals(small_ci, tmp_path, capsys, args, message):
    assert main(["train", *args, "--preset", "ci", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_sft_with_an_sft_only_preset_trains_on_its_rows_as_the_pipeline_does(monkeypatch, small_spec, tmp_path, capsys):
    """`afrl train sft --preset default` draws from the long tail repeated and the fresh rows, like the pipeline."""
    from training import stages
    from training.setup import TrainingSetup, load_training_data, starting_model

    default = presets.PRESETS["default"]
    small = replace(
        default,
        n_queries=16,
        docs_per_query=3,
        eval_examples=12,
        model=small_spec,
        long_tail_repeats=3,
        fresh_examples=7,
        sft=replace(default.sft, warmup_steps=2, precision="fp32"),
    )
    monkeypatch.setitem(presets.PRESETS, "default", small)
    drawn = []
    real_train_stage = stages.train_stage

    def spy(trainer, stage, pools, vocab, progress=None, seed=0):
        drawn.append((len(pools["all"]), set(vocab.tolist())))
        return real_train_stage(trainer, stage, pools, vocab, progress, seed)

    monkeypatch.setattr(stages, "train_stage", spy)
    assert main(["train", "sft", "--preset", "default", "--out", str(tmp_path / "sft"), "--steps", "4"]) == 0
    capsys.readouterr()

    data = load_training_data(small)
    setup = TrainingSetup.build(data, starting_model(None, small_spec, 0, data).ctx, small.eval_examples)
    tail = len(setup.pools["long_tail"])
    [(rows, vocab)] = drawn
    assert rows >= len(setup.sequences) + 2 * tail + 7  # the long tail three times, and the fresh rows
    assert set(setup.vocab.tolist()) <= vocab
