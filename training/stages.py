"""One training stage at a time, checkpoint in, checkpoint out: what `afrl train {sft,rl,distill}` runs.

    afrl train sft     --out CKPT [--init CKPT] [--preset tiny] [--steps N] [--engine plain|trl]
    afrl train rl      --model CKPT --out CKPT [--lam 0.5] [--steps N] [--engine plain|trl] [--use-vllm]
    afrl train distill --teacher CKPT | --teacher-endpoint URL --teacher-model NAME --out CKPT

The preset (`training.pipeline.PRESETS`) supplies the world and every stage's
config; flags override a few fields. Each stage writes a checkpoint folder
(`training.context.save_checkpoint`: weights, tokenizer, afrl.json, the
stage's `*_config.json`) and `stage_report.json` with test figures.

Engines: `plain` is the CPU-fast loop of each stage's module; `trl` runs the
same objective on TRL's trainers (SFTTrainer with completion-only loss,
`training.trl_grpo.StepwiseGRPOTrainer`) for GPUs, launched through
accelerate for several GPUs (configs/accelerate/README.md).
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import replace
from pathlib import Path

import torch

from afrl.progress import Progress, say
from training.context import TrainingContext, load_checkpoint, save_checkpoint
from training.curriculum import run_stage
from training.distill import CheckpointTeacher, EndpointTeacher, run_distillation
from training.model_eval import evaluate_model
from training.model_factory import build_tiny_qwen3
from training.rl import RLConfig, rl_examples, train_rl
from training.world import build_world

log = logging.getLogger(__name__)


def _setup(preset_name: str):
    from training.pipeline import preset

    config = preset(preset_name)
    if config.method is None:
        raise ValueError(f"preset {preset_name!r} has no method config; use ci or tiny")
    torch.set_num_threads(config.threads)
    world = build_world(seed=config.world_seed, n_queries=config.n_queries, docs_per_query=config.docs_per_query)
    return config, world


def _finish(
    model, ctx: TrainingContext, out: Path, world, configs: dict, extra: dict, explain: int, trainer=None
) -> dict:
    """Save the checkpoint (through the TRL trainer when there is one: it gathers sharded weights), then test it."""
    if trainer is not None:
        trainer.save_model(str(out))
        if not trainer.accelerator.is_main_process:
            return {}
        save_checkpoint(None, out, ctx, configs)
        if trainer.accelerator.num_processes > 1:  # a sharded model: evaluate the saved folder with `afrl eval`
            return extra
        model = trainer.model
    else:
        save_checkpoint(model, out, ctx, configs)
    report = {
        "test": evaluate_model(model.float().eval(), ctx, world.test, [e.grade for e in world.train], explain),
        **extra,
    }
    (out / "stage_report.json").write_text(json.dumps(report, indent=2, default=str))
    return report


def sft_stage(
    out: Path,
    preset_name: str = "tiny",
    init: str | None = None,
    steps: int | None = None,
    engine: str = "plain",
    progress: Progress | None = None,
) -> dict:
    """The preset's curriculum stages that need no evolution (head, long tail), from scratch or from `init`."""
    config, world = _setup(preset_name)
    method = config.method
    ctx = TrainingContext.create()
    stages = [s for s in method.curriculum.stages if "evolved" not in s.mix]
    if steps is not None:
        total = sum(s.steps for s in stages)
        stages = [replace(s, steps=max(1, round(s.steps * steps / total))) for s in stages]
    if engine == "trl":
        from training.trl_sft import trl_sft

        model = init or build_tiny_qwen3(method.teacher, seed=0)
        trainer = trl_sft(model, world.train, ctx, out, method.curriculum.sft, sum(s.steps for s in stages))
        return _finish(
            None, ctx, out, world, {"sft": method.curriculum.sft}, {"engine": "trl"}, method.explain_examples, trainer
        )
    model = load_checkpoint(init)[0] if init else build_tiny_qwen3(method.teacher, seed=0)
    seqs = ctx.encode(world.train)
    pools = {
        "all": seqs,
        "head": [s for s, e in zip(seqs, world.train, strict=True) if not e.long_tail],
        "long_tail": [s for s, e in zip(seqs, world.train, strict=True) if e.long_tail],
        "evolved": [],
    }
    vocab = ctx.vocab(seqs)
    losses = []
    for i, stage in enumerate(stages):
        losses += run_stage(model, stage, pools, method.curriculum, ctx.labels, ctx.pad_id, vocab, progress, i).losses
    say(progress, log, f"sft: {len(losses)} steps, loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    return _finish(
        model,
        ctx,
        out,
        world,
        {"curriculum": replace(method.curriculum, stages=stages)},
        {"engine": "plain", "losses": losses},
        method.explain_examples,
    )


def rl_stage(
    model_dir: str,
    out: Path,
    preset_name: str = "tiny",
    overrides: dict | None = None,
    engine: str = "plain",
    use_vllm: bool = False,
    vllm_mode: str = "colocate",
    progress: Progress | None = None,
) -> dict:
    """Stepwise-GRPO + lambda x SFT (lambda = 0: GRPO alone) from the checkpoint `model_dir`."""
    config, world = _setup(preset_name)
    rl: RLConfig = replace(config.method.rl, **(overrides or {}))
    model, ctx = load_checkpoint(model_dir)
    seqs = ctx.encode(world.train)
    expert = [s for s, e in zip(seqs, world.train, strict=True) if e.long_tail]
    if engine == "trl":
        from training.trl_grpo import StepwiseGRPOConfig, StepwiseGRPOTrainer, expert_pairs, trl_dataset

        args = StepwiseGRPOConfig(
            output_dir=str(out / "trl"),
            max_steps=rl.steps,
            per_device_train_batch_size=rl.prompts_per_step * rl.group_size,
            num_generations=rl.group_size,
            max_completion_length=rl.max_new_tokens,
            learning_rate=rl.learning_rate,
            temperature=rl.temperature,
            epsilon=rl.clip_eps,
            lam=rl.lam,
            lam_final=rl.lam_final,
            lam_schedule=rl.lam_schedule,
            expert_batch_size=rl.expert_batch_size,
            step_weights=list(rl.step_weights),
            use_vllm=use_vllm,
            vllm_mode=vllm_mode,
            bf16=torch.cuda.is_available(),
            use_cpu=not torch.cuda.is_available(),
            report_to="none",
            save_strategy="no",
            logging_steps=max(1, rl.log_every),
            seed=rl.seed,
        )
        trainer = StepwiseGRPOTrainer(
            model=model,
            args=args,
            train_dataset=trl_dataset(world.train, ctx.encoder.template),
            processing_class=ctx.hf_tokenizer,
            expert=expert_pairs([e for e in world.train if e.long_tail], ctx.encoder.template, ctx.labels),
        )
        trainer.train()
        return _finish(
            None,
            ctx,
            out,
            world,
            {"rl": rl},
            {"engine": engine, "history": trainer.state.log_history},
            config.method.explain_examples,
            trainer,
        )
    history = train_rl(model, rl_examples(world.train, seqs), expert, ctx, rl, ctx.vocab(seqs), progress).history
    return _finish(
        model, ctx, out, world, {"rl": rl}, {"engine": engine, "history": history}, config.method.explain_examples
    )


def distill_stage(
    out: Path,
    preset_name: str = "tiny",
    teacher_dir: str | None = None,
    endpoint: str | None = None,
    endpoint_model: str | None = None,
    api_key: str | None = None,
    steps: int | None = None,
    progress: Progress | None = None,
) -> dict:
    """The preset's student, trained on a checkpoint teacher's or an endpoint teacher's outputs."""
    config, world = _setup(preset_name)
    dc = config.method.distill
    if steps is not None:
        dc = replace(dc, sft=replace(dc.sft, steps=steps, warmup_steps=min(dc.sft.warmup_steps, steps - 1)))
    if (teacher_dir is None) == (endpoint is None):
        raise ValueError("give exactly one teacher: a checkpoint folder or an OpenAI-compatible endpoint")
    ctx = TrainingContext.create()
    vocab = ctx.vocab(ctx.encode(world.train))
    if teacher_dir:
        teacher_model, _ = load_checkpoint(teacher_dir)
        teacher = CheckpointTeacher(teacher_model, ctx, vocab, dc.max_new_tokens, name=str(teacher_dir))
    else:
        if not endpoint_model:
            raise ValueError("--teacher-model is required with --teacher-endpoint")
        teacher = EndpointTeacher(endpoint, endpoint_model, ctx, api_key, dc.max_new_tokens)
    chosen = (
        world.train
        if dc.train_prompts is None or dc.train_prompts >= len(world.train)
        else random.Random(dc.sft.seed).sample(world.train, dc.train_prompts)
    )
    pairs = [(e.query, e.document) for e in chosen]
    student = build_tiny_qwen3(dc.student, seed=dc.sft.seed)
    result = run_distillation(teacher, student, pairs, ctx, dc, vocab, progress)
    return _finish(
        student,
        ctx,
        out,
        world,
        {"distill": dc},
        {"teacher": teacher.name, "sequences": result.sequences, "dropped": result.dropped, "losses": result.losses},
        config.method.explain_examples,
    )
