"""One training stage at a time, checkpoint in, checkpoint out: what `afrl train {sft,rl,distill}` runs.

    afrl train sft     [--data DIR] [--base CKPT] --out CKPT [--preset tiny] [--steps N] [--engine plain|trl]
    afrl train rl      [--data DIR] --model CKPT --out CKPT [--lam 0.5] [--beta 0] [--engine plain|trl] [--use-vllm]
    afrl train distill [--data DIR] --teacher CKPT | --teacher-endpoint URL --teacher-model NAME --out CKPT
                       [--student CKPT]

Each stage has one config (`CurriculumConfig` for SFT, `RLConfig`, `DistillConfig`): the preset's
(`training.presets`), then `--config FILE`, then flags (`training.configs`); the engine is an
argument, not a second config. The data, tokenizer, prompt, labels, vocabulary and teacher come
from the setup every command shares (`training.setup`). Each stage writes a checkpoint folder
(weights, tokenizer, afrl.json, the effective `<stage>_config.json`) and `stage_report.json`
(`training.report.StageReport`) with its test figures.

Engines: `plain` is the CPU-fast loop of each stage's module; `trl` runs the same objective on
TRL's trainers (SFTTrainer with completion-only loss, `training.trl_grpo.StepwiseGRPOTrainer`)
for GPUs, launched through accelerate for several (configs/accelerate/README.md). Distillation
has the plain engine only.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from afrl.progress import Progress, say
from training.curriculum import CurriculumConfig, run_stage
from training.distill import DistillConfig, run_distillation
from training.model_factory import build_tiny_qwen3
from training.presets import PipelineConfig
from training.report import Figures, StageReport
from training.rl import RLConfig, train_rl
from training.setup import TrainingData, TrainingSetup, load_training_data, merged, starting_context, starting_model

log = logging.getLogger(__name__)

ENGINES = ("plain", "trl")


@dataclass
class StageRun:
    """What every stage command gets besides its config: where to write, the preset, the data."""

    out: Path  # the checkpoint folder to write
    preset: PipelineConfig  # the world's size, the starting architecture, threads, evaluation size
    data: str | None = None  # a dataset folder (None: the preset's generated world)
    guideline_file: str | None = None  # replaces the data's guideline
    progress: Progress | None = None
    started: float = field(default_factory=time.perf_counter)

    def load_data(self) -> TrainingData:
        torch.set_num_threads(self.preset.threads)
        return load_training_data(self.preset, self.data, self.guideline_file, self.progress)


def sft_stage(
    run: StageRun, config: CurriculumConfig, *, base: str | None = None, steps: int | None = None, engine: str = "plain"
) -> StageReport:
    """The curriculum's stages (no evolution) from `base`, or from the preset's architecture at random init.

    steps: the total over the stages (they keep their proportions); `config.sft.epochs` does the same
    in passes over the training data.
    """
    _check_engine(engine)
    preset, data = run.preset, run.load_data()
    curriculum = (config.scaled(steps) if steps else config).resolved(len(data.train))
    configs = {"curriculum": curriculum}
    if engine == "trl":
        from training.trl_sft import trl_sft

        if curriculum.sft.lora_rank:
            raise ValueError("--lora-rank needs --engine plain (the trl engine trains all weights)")
        ctx = starting_context(base, data)
        setup = TrainingSetup.build(data, ctx, preset.eval_examples)
        # a checkpoint goes to TRL as a path: every process loads its own copy, as TRL expects
        model = base or build_tiny_qwen3(preset.start_spec(), seed=curriculum.sft.seed)
        trainer = trl_sft(model, data.train, ctx, run.out, curriculum.sft, curriculum.total_steps)
        return _finish(run, "sft", engine, setup, configs, base or "random init", trainer=trainer)
    start = starting_model(base, preset.start_spec(), curriculum.sft.seed, data, lora_rank=curriculum.sft.lora_rank)
    setup = TrainingSetup.build(data, start.ctx, preset.eval_examples)
    labels, pad = setup.ctx.labels, setup.ctx.pad_id
    losses: list[float] = []
    for i, stage in enumerate(curriculum.stages):
        losses += run_stage(
            start.model, stage, setup.pools, curriculum, labels, pad, setup.vocab, run.progress, i
        ).losses
    say(run.progress, log, f"sft: {len(losses)} steps, loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    return _finish(run, "sft", engine, setup, configs, start.source, model=start.model, losses=losses)


def rl_stage(
    run: StageRun,
    config: RLConfig,
    *,
    model: str,
    engine: str = "plain",
    use_vllm: bool = False,
    vllm_mode: str = "colocate",
) -> StageReport:
    """Stepwise-GRPO + lambda x SFT (lambda = 0: GRPO alone; beta > 0: KL to `model`) from the checkpoint `model`.

    The prompt keeps the checkpoint's own guideline (`run.guideline_file` is not read).
    """
    _check_engine(engine)
    preset, data = run.preset, replace(run, guideline_file=None).load_data()
    start = starting_model(
        model, preset.start_spec(), config.seed, data, keep_guideline=True, lora_rank=config.lora_rank
    )
    setup = TrainingSetup.build(data, start.ctx, preset.eval_examples)
    configs = {"rl": config}
    if engine == "trl":
        from training.trl_grpo import StepwiseGRPOTrainer, expert_pairs, grpo_args, trl_dataset

        template = setup.ctx.encoder.template
        trainer = StepwiseGRPOTrainer(
            model=start.model,
            args=grpo_args(config, run.out, use_vllm, vllm_mode),
            train_dataset=trl_dataset(data.train, template),
            processing_class=setup.ctx.hf_tokenizer,
            rl=config,
            expert=expert_pairs([e for e in data.train if e.long_tail], template, setup.ctx.labels),
        )
        trainer.train()
        return _finish(run, "rl", engine, setup, configs, model, trainer=trainer, history=trainer.state.log_history)
    if use_vllm:
        raise ValueError("--use-vllm needs --engine trl (the plain loop samples with its own decoder)")
    result = train_rl(start.model, setup.rl_prompts(), setup.expert(), setup.ctx, config, setup.vocab, run.progress)
    return _finish(run, "rl", engine, setup, configs, model, model=start.model, history=result.history)


def distill_stage(
    run: StageRun,
    config: DistillConfig,
    *,
    teacher: str | None = None,
    student: str | None = None,
    steps: int | None = None,
) -> StageReport:
    """A student (the config's architecture at random init, or `student`) trained on a teacher's outputs.

    The teacher: the checkpoint `teacher`, or the endpoint of `config.teacher_base_url`. steps: the
    student's optimizer steps (the warmup kept below them).
    """
    if steps is not None:
        config = replace(config, sft=config.sft.with_steps(steps))
    if (teacher is None) == (config.teacher_base_url is None):
        raise ValueError(
            "give exactly one teacher: a checkpoint folder (--teacher) or an endpoint (--teacher-endpoint)"
        )
    preset, data = run.preset, run.load_data()
    start = starting_model(student, config.student, config.sft.seed, data, lora_rank=config.sft.lora_rank)
    setup = TrainingSetup.build(data, start.ctx, preset.eval_examples)
    if teacher is not None:
        loaded = starting_model(teacher, preset.start_spec(), 0, data, keep_guideline=True)
        source = setup.checkpoint_teacher(loaded, config)
    else:
        source = setup.teacher(config)
    pairs = setup.distill_prompts(config)
    result = run_distillation(source, start.model, pairs, setup.ctx, config, setup.vocab, run.progress)
    return _finish(
        run,
        "distill",
        "plain",
        setup,
        {"distill": config},
        start.source,
        model=start.model,
        losses=result.losses,
        teacher=source.name,
        sequences=result.sequences,
        dropped=result.dropped,
    )


def _check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}: choose from {', '.join(ENGINES)}")


def _finish(
    run: StageRun,
    stage: str,
    engine: str,
    setup: TrainingSetup,
    configs: dict[str, Any],
    start: str,
    model: torch.nn.Module | None = None,
    trainer: Any = None,
    **fields: Any,
) -> StageReport:
    """Save the checkpoint (through the TRL trainer when there is one: it gathers sharded weights), then test it."""
    report = StageReport(stage, engine, str(run.out), setup.data.source, start, test=None, **fields)
    if trainer is not None:
        trainer.save_model(str(run.out))
        if not trainer.accelerator.is_main_process:
            return report
        setup.save(None, run.out, configs)
        if trainer.accelerator.num_processes > 1:  # a sharded model: evaluate the saved folder with `afrl eval`
            report.seconds = time.perf_counter() - run.started
            report.write(run.out / "stage_report.json")
            return report
        model = trainer.model
    elif model is not None:
        model = merged(model)  # LoRA adapters folded in: what is saved and tested is a plain checkpoint
        setup.save(model, run.out, configs)
    if model is None:
        raise TypeError("_finish needs the trained model or the TRL trainer that holds it")
    evaluation = setup.evaluate(model.float().eval(), run.preset.explain_examples)
    report.test, report.evaluation = Figures.of(evaluation), evaluation
    report.seconds = time.perf_counter() - run.started
    report.write(run.out / "stage_report.json")
    log.info("%s: test accuracy %.3f -> %s", stage, report.test.accuracy, run.out)
    return report
