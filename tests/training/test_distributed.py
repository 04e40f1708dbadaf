"""`afrl train sft|rl --engine trl` in two processes (DDP over gloo), and what keeps such runs to one writer.

The slow tests run the installed `afrl` console script (the one beside this interpreter: in CI's
fresh virtualenv it runs the checked-out code) under `accelerate launch --multi_gpu
--num_processes 2` with no GPU visible. accelerate's `--cpu` flag would start ONE process
whatever `--num_processes` says (its multi-CPU launcher is mpirun); `--multi_gpu` goes through
torchrun, and without a GPU the trainers run on CPU over gloo (configs/accelerate/README.md).
The model is a tiny Qwen3 saved as a base checkpoint, the data `tests/data/bookstore` with a
one-line guideline, so that a step's sequences stay short.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from afrl.cli import build_parser
from afrl.cli.output import rank_zero_unless
from afrl.cli.train import _sft_flags
from training.configs import resolve
from training.context import TrainingContext, save_checkpoint
from training.model_factory import build_tiny_qwen3
from training.presets import preset

BOOKSTORE = Path(__file__).resolve().parents[1] / "data" / "bookstore"
BIN = Path(sys.executable).parent  # the virtualenv's scripts: afrl, accelerate
GUIDELINE = "Grade how well the book matches the query: 4 exact, 3 minor mismatch, 2 related, 1 weak, 0 irrelevant.\n"
TIMEOUT_S = 420  # per launch; each takes well under a minute on 2 idle cores


# what reaches TRL's arguments, and who runs a command (fast) -------------------------------------


def test_gradient_checkpointing_flag_reaches_trl_arguments(tmp_path):
    from training.trl_grpo import grpo_args
    from training.trl_sft import sft_args

    ctx = TrainingContext.create(guideline=GUIDELINE)
    ci = preset("ci")
    for flag, expected in (("--gradient-checkpointing", True), ("--no-gradient-checkpointing", False), (None, True)):
        argv = ["train", "sft", "--engine", "trl", "--out", str(tmp_path)] + ([flag] if flag else [])
        curriculum = resolve(ci.sft_stage_config(), None, {"sft": _sft_flags(build_parser().parse_args(argv))})
        args = sft_args(curriculum.sft, ctx, tmp_path, steps=1)
        assert args.gradient_checkpointing is expected, flag
        assert args.gradient_checkpointing_kwargs == {"use_reentrant": False}  # DDP-safe recomputation
        rl = resolve(ci.rl_stage_config(), None, {"gradient_checkpointing": expected if flag else None})
        assert grpo_args(rl, tmp_path).gradient_checkpointing is expected, flag
    assert sft_args(curriculum.sft, ctx, tmp_path, steps=1).output_dir == str(tmp_path)  # nothing beside the folder


def test_trl_arguments_come_before_the_weights(monkeypatch, tmp_path):
    """Creating TRL's arguments starts the process group that `from_pretrained` checks: with FSDP's
    cpu-RAM-efficient loading only rank 0 then reads the weights, under ZeRO-3 each rank its partition."""
    import training.stages as stages
    import training.trl_grpo as trl_grpo
    import training.trl_sft as trl_sft

    calls: list[str] = []

    class Loaded(Exception):
        pass

    def load(*args, **kwargs):
        calls.append("weights")
        raise Loaded

    monkeypatch.setattr(trl_sft, "sft_args", lambda *a, **k: calls.append("args"))
    monkeypatch.setattr(trl_grpo, "grpo_args", lambda *a, **k: calls.append("args"))
    monkeypatch.setattr(stages, "starting_model", load)
    ci = preset("ci")
    run = stages.StageRun(tmp_path, ci, str(BOOKSTORE))
    with pytest.raises(Loaded):
        stages.sft_stage(run, ci.sft_stage_config(), engine="trl")
    with pytest.raises(Loaded):
        stages.rl_stage(run, ci.rl_stage_config(), model=str(tmp_path), engine="trl")
    assert calls == ["args", "weights", "args", "weights"]


def test_commands_that_do_not_distribute_run_on_rank_zero_only(monkeypatch):
    ran: list[str] = []

    def command(args):
        ran.append(args.engine)
        return 0

    def trl(args):
        return args.engine == "trl"

    parse = build_parser().parse_args
    monkeypatch.setenv("RANK", "1")  # another process of `accelerate launch`
    assert rank_zero_unless(trl, command)(parse(["train", "sft", "--out", "x"])) == 0
    assert ran == []  # the plain loop would write the same folder twice
    rank_zero_unless(trl, command)(parse(["train", "sft", "--out", "x", "--engine", "trl"]))
    assert ran == ["trl"]
    monkeypatch.setenv("RANK", "0")
    rank_zero_unless(trl, command)(parse(["train", "sft", "--out", "x"]))
    assert ran == ["trl", "plain"]


def test_a_cpu_launch_that_starts_one_process_is_named(monkeypatch, caplog):
    from training.stages import _check_engine

    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    monkeypatch.setenv("MASTER_PORT", "29500")  # what accelerate's simple launcher sets for --num_processes 2
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with caplog.at_level("WARNING", logger="training.stages"):
        _check_engine("trl")
    assert "--multi_gpu --num_processes N" in caplog.text
    caplog.clear()
    monkeypatch.setenv("WORLD_SIZE", "2")  # torchrun's processes
    with caplog.at_level("WARNING", logger="training.stages"):
        _check_engine("trl")
    assert caplog.text == ""


def test_deepspeed_and_vllm_are_extras_outside_all():
    import tomllib

    extras = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
    extras = extras["optional-dependencies"]
    assert any(r.startswith("trl[deepspeed]") for r in extras["deepspeed"])
    assert any(r.startswith("trl[vllm]") for r in extras["vllm"])
    assert not {"deepspeed", "vllm"} & set(extras["all"][0].split("[", 1)[1].rstrip("]").split(","))  # CUDA builds


# two processes (slow) ---------------------------------------------------------------------------


@dataclass
class Launch:
    out: Path
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def summary(self) -> dict:
        return json.loads(self.stdout)  # one JSON document: printed by one process

    @property
    def report(self) -> dict:
        return json.loads((self.out / "stage_report.json").read_text())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(out: Path, *argv: str) -> Launch:
    for script in ("afrl", "accelerate"):
        if not (BIN / script).is_file():
            pytest.skip(f"no {script} script beside {sys.executable} (install the package: pip install -e .[train])")
    launcher = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    launcher += ["--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port())]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    started = time.perf_counter()
    done = subprocess.run(
        [*launcher, str(BIN / "afrl"), "train", *argv, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=env,
    )
    return Launch(out, done.returncode, done.stdout, done.stderr, time.perf_counter() - started)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def _assert_one_checkpoint(run: Launch, start: Path) -> None:
    from transformers import AutoModelForCausalLM

    assert run.returncode == 0, run.stderr[-3000:]
    assert run.summary["processes"] == 2 and run.report["processes"] == 2  # the trainer's world size
    assert run.summary["test"] is not None  # the main process evaluated the trained model
    assert sorted(p.relative_to(run.out) for p in run.out.rglob("*.safetensors")) == [Path("model.safetensors")]
    assert [p for p in run.out.iterdir() if p.is_dir()] == []  # no checkpoint-N or trainer folders
    assert AutoModelForCausalLM.from_pretrained(run.out) is not None
    trained, before = _weights(run.out), _weights(start)
    assert trained.keys() == before.keys()
    assert any(not torch.equal(trained[k], before[k]) for k in trained), "no weight moved"
    # progress lines come from one process
    assert run.stderr.count("rows have no rule_ids") == 1, run.stderr[-3000:]


@pytest.fixture(scope="module")
def distributed_runs(tmp_path_factory, small_spec):
    """A base checkpoint, SFT from it in two processes, then RL from the SFT checkpoint in two processes."""
    root = tmp_path_factory.mktemp("distributed")
    (root / "guideline.md").write_text(GUIDELINE)
    base = save_checkpoint(
        build_tiny_qwen3(small_spec, seed=0), root / "base", TrainingContext.create(guideline=GUIDELINE), {}
    )
    sft = _launch(
        root / "sft",
        *("sft", "--engine", "trl", "--data", str(BOOKSTORE), "--base", str(base), "--preset", "ci"),
        *("--guideline-file", str(root / "guideline.md"), "--steps", "3", "--batch-size", "1", "--lr", "1e-3"),
    )
    if sft.returncode != 0:
        return base, sft, None
    (root / "rl.json").write_text(json.dumps({"expert_batch_size": 1}))
    rl = _launch(
        root / "rl",
        *("rl", "--engine", "trl", "--data", str(BOOKSTORE), "--model", str(sft.out), "--preset", "ci"),
        *("--config", str(root / "rl.json"), "--steps", "2", "--batch-size", "1", "--group-size", "2"),
        *("--max-new-tokens", "8", "--lr", "1e-3"),
    )
    return base, sft, rl


@pytest.mark.slow
def test_sft_in_two_processes_writes_one_trained_checkpoint(distributed_runs):
    base, sft, _ = distributed_runs
    _assert_one_checkpoint(sft, base)
    assert json.loads((sft.out / "afrl.json").read_text())["guideline"].strip() == GUIDELINE.strip()


@pytest.mark.slow
def test_rl_in_two_processes_writes_one_trained_checkpoint(distributed_runs):
    _, sft, rl = distributed_runs
    assert rl is not None, "the SFT launch failed"
    _assert_one_checkpoint(rl, sft.out)
    history = [row for row in rl.report["history"] if "expert_nll" in row]
    assert len(history) == 2  # both steps logged once, from the main process
