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

Distributed: `accelerate launch --num_processes N [--config_file ...] $(which afrl) train sft|rl
--engine trl ...` runs the command in every process (DDP, or FSDP / ZeRO-3 from an accelerate
config; on CPU `--multi_gpu` with no GPU visible, since accelerate's `--cpu` starts one process).
TRL's arguments are built before the weights load: creating them starts the process group (and,
under DeepSpeed, registers the ZeRO-3 config) that `from_pretrained` consults, so with FSDP's
`fsdp_cpu_ram_efficient_loading` only local rank 0 reads the weights (FSDP broadcasts them as it
shards) and with `zero3_init_flag` each rank materialises only its partition. A fresh model (no
`--base`) is built on every rank from the same seed. At the end every process calls the
trainer's `save_model` (FSDP and ZeRO-3 gather the shards there), the main process writes the
rest of the folder, all wait until it is whole, and the main process alone evaluates and writes
`stage_report.json` (`processes` says how many trained; a sharded run has no test figures:
`afrl eval` the folder).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from afrl.progress import Progress, say
from training.curriculum import CurriculumConfig, curriculum_trainer, train_stage
from training.distill import DistillConfig, run_distillation
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
        from training.trl_sft import sft_args, trl_sft

        if preset.method is None and (preset.long_tail_repeats > 1 or preset.fresh_examples):
            log.warning(
                "--engine trl trains on the data's rows once each: the preset's long_tail_repeats and "
                "fresh_examples apply to the plain engine only"
            )
        args = sft_args(curriculum.sft, starting_context(base, data), run.out, curriculum.total_steps)
        start = starting_model(base, preset.start_spec(), curriculum.sft.seed, data, lora_rank=curriculum.sft.lora_rank)
        setup = TrainingSetup.build(data, start.ctx, preset.eval_examples)
        trainer = trl_sft(start.model, args, data.train, start.ctx, curriculum.sft)
        return _finish(
            run, "sft", engine, setup, configs, start.source, trainer=trainer, history=trainer.state.log_history
        )
    start = starting_model(base, preset.start_spec(), curriculum.sft.seed, data, lora_rank=curriculum.sft.lora_rank)
    setup = TrainingSetup.build(data, start.ctx, preset.eval_examples)
    if preset.method is None:  # an SFT-only preset's one stage draws from its rows, as `afrl train pipeline` trains
        from training.pipeline import sft_only_rows

        setup.pools["all"], setup.vocab, _ = sft_only_rows(preset, setup, run.progress)
    trainer = curriculum_trainer(start.model, curriculum, setup.ctx.labels, setup.ctx.pad_id)  # one AdamW, one schedule
    losses: list[float] = []
    for i, stage in enumerate(curriculum.stages):
        losses += train_stage(trainer, stage, setup.pools, setup.vocab, run.progress, i).losses
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
    if use_vllm and engine != "trl":
        raise ValueError("--use-vllm needs --engine trl (the plain loop samples with its own decoder)")
    args = None
    if engine == "trl":
        from training.trl_grpo import grpo_args

        args = grpo_args(config, run.out, use_vllm, vllm_mode)  # before the weights load (module docstring)
    start = starting_model(
        model, preset.start_spec(), config.seed, data, keep_guideline=True, lora_rank=config.lora_rank
    )
    setup = TrainingSetup.build(data, start.ctx, preset.eval_examples)
    configs = {"rl": config}
    if args is not None:
        from training.trl_grpo import StepwiseGRPOTrainer, expert_pairs, trl_dataset
        from training.trl_sft import run_trainer

        template = setup.ctx.encoder.template
        trainer = StepwiseGRPOTrainer(
            model=start.model,
            args=args,
            train_dataset=trl_dataset(data.train, template),
            processing_class=setup.ctx.hf_tokenizer,
            rl=config,
            expert=expert_pairs([e for e in data.train if e.long_tail], template, setup.ctx.labels),
        )
        run_trainer(trainer)
        return _finish(run, "rl", engine, setup, configs, model, trainer=trainer, history=trainer.state.log_history)
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
    examples = setup.distill_examples(config)
    pairs, gold = [(e.query, e.document) for e in examples], [e.grade for e in examples]
    result = run_distillation(source, start.model, pairs, setup.ctx, config, setup.vocab, run.progress, gold)
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
    if engine == "trl" and _one_of_many_cpu_processes():
        log.warning(
            "accelerate launch --cpu starts ONE process whatever --num_processes says (accelerate runs several "
            "CPU processes only through mpirun); for N CPU processes over gloo: "
            "CUDA_VISIBLE_DEVICES= accelerate launch --multi_gpu --num_processes N $(which afrl) train ..."
        )


def _one_of_many_cpu_processes() -> bool:
    """Started by `accelerate launch --cpu --num_processes N` (N > 1): its simple launcher sets the
    rendezvous address for N processes, then starts one, without torchrun's WORLD_SIZE."""
    env = os.environ
    cpu = env.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true")
    return cpu and "MASTER_PORT" in env and "WORLD_SIZE" not in env and "OMPI_COMM_WORLD_SIZE" not in env


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
    """Save the checkpoint (through the TRL trainer when there is one: it gathers sharded weights), then test it.

    In a multi-process run every process saves and waits; the main process alone tests and reports.
    """
    report = StageReport(stage, engine, str(run.out), setup.data.source, start, test=None, **fields)
    if trainer is not None:
        report.processes = trainer.accelerator.num_processes
        model = _save_trained(trainer, setup, run.out, configs)
        if not trainer.accelerator.is_main_process:
            return report
        if model is None:
            log.info("%s: sharded weights; measure %s with `afrl eval`", stage, run.out)
            report.seconds = time.perf_counter() - run.started
            report.write(run.out / "stage_report.json")
            return report
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


def _save_trained(trainer: Any, setup: TrainingSetup, out: Path, configs: dict[str, Any]) -> torch.nn.Module | None:
    """Write the trainer's model as one checkpoint folder, from every process; the model to test, on the main one.

    None: not the main process, or the weights are sharded (FSDP, ZeRO-3) and no process holds them whole.
    """
    from accelerate.utils import DistributedType

    accelerator = trainer.accelerator
    sharded = accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    model = accelerator.unwrap_model(trainer.model)
    if hasattr(model, "merge_and_unload"):  # LoRA: the trainer would save the adapters alone
        if sharded:
            raise ValueError("--lora-rank under FSDP or DeepSpeed: merging sharded adapters; use DDP")
        if accelerator.is_main_process:
            model = model.merge_and_unload()
            setup.save(model, out, configs)
    else:
        trainer.save_model(str(out))  # every process: the sharded engines gather here; the main process writes
        if accelerator.is_main_process:
            setup.save(None, out, configs)  # tokenizer, afrl.json, the stage's config
    accelerator.wait_for_everyone()  # no process is done before the folder is whole
    if not accelerator.is_main_process:
        return None
    if not any((out / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json")):
        raise RuntimeError(
            f"{out}: the trainer saved no full weights; in the accelerate config set fsdp_state_dict_type: "
            "FULL_STATE_DICT (FSDP) or zero3_save_16bit_model: true (DeepSpeed)"
        )
    return None if sharded else model
