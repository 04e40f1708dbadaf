"""`afrl train {data,pipeline,sft,rl,distill}`: flags -> configs -> `training.pipeline` / `training.stages`.

Each stage's config starts from `--preset`, then `--config FILE` (YAML or JSON of that config),
then the flags below (`training.configs.resolve`); the effective config is saved beside the
checkpoint. Nothing from `training/` is imported until a command runs.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from afrl.cli.output import is_main_process, rank_zero_unless
from afrl.cli.output import progress as _progress

PRESET_NAMES = ("ci", "tiny", "default")  # training.presets.PRESETS, named here so --help needs no torch
ENGINES = ("plain", "trl")  # training.stages.ENGINES


def cmd_train_data(args: argparse.Namespace) -> int:
    from training.world import LONG_TAIL_EVAL_FILE, build_world, long_tail_eval_set, save_jsonl, save_world

    if args.long_tail_eval < 0:
        raise ValueError(
            f"--long-tail-eval must be 0 (none) or a number of examples per rule, got {args.long_tail_eval}"
        )
    world = build_world(seed=args.seed, n_queries=args.queries, docs_per_query=args.docs_per_query)
    written = save_world(world, Path(args.out))
    for split in ("train", "dev", "test"):
        _progress(f"{split}: {len(world.split(split))} examples -> {written[split]}")
    _progress(f"guideline -> {written['guideline']}, label set -> {written['labels']}")
    if args.long_tail_eval:
        rows = long_tail_eval_set(args.seed, args.long_tail_eval, world, docs_per_query=args.docs_per_query)
        path = Path(args.out) / LONG_TAIL_EVAL_FILE
        save_jsonl(rows, path)
        _progress(f"long-tail eval: {len(rows)} examples, >= {args.long_tail_eval} per long-tail rule -> {path}")
    return 0


def cmd_train_pipeline(args: argparse.Namespace) -> int:
    from training.pipeline import run_pipeline
    from training.presets import preset

    overrides: dict[str, Any] = {"world_seed": args.seed} if args.seed is not None else {}
    if args.threads is not None:
        overrides["threads"] = args.threads
    report = run_pipeline(
        preset(args.preset, **overrides),
        Path(args.out),
        progress=_progress,
        data=args.data,
        base=args.base,
        guideline_file=args.guideline_file,
    )
    test = report.test
    summary: dict[str, Any] = {
        "test": {
            "accuracy": test.accuracy,
            "majority_baseline_accuracy": test.majority_baseline_accuracy,
            "macro_f1": test.macro_f1,
        },
        "timings": report.timings,
    }
    if report.comparison:
        summary["comparison"] = {
            arm: {
                "head_accuracy": row.figures.head_accuracy,
                "long_tail_accuracy": row.figures.long_tail_accuracy,
                "mean_label_entropy": row.figures.mean_label_entropy,
            }
            for arm, row in report.comparison.items()
        }
    if report.distillation is not None:
        d = report.distillation
        summary["distillation"] = {
            "accuracy_gap_points": d.accuracy_gap_points,
            "sizes": {name: asdict(size) for name, size in d.sizes.items()},
            "latency_ms_per_query_of_10_docs": d.latency_ms_per_query_of_10_docs,
        }
        summary["report"] = str(Path(args.out) / "report.md")
    print(json.dumps(summary, indent=2))
    return 0


def cmd_train_sft(args: argparse.Namespace) -> int:
    from training.configs import resolve
    from training.setup import check_lora, pretrained_sft
    from training.stages import sft_stage

    run = _stage_run(args)
    default = run.preset.sft_stage_config()
    config = resolve(default, args.config, {"sft": _sft_flags(args)})
    check_lora(args.base, config.sft.lora_rank)
    config = replace(config, sft=pretrained_sft(config.sft, default.sft, args.base))
    report = sft_stage(run, config, base=args.base, steps=args.steps, engine=args.engine)
    _print_summary(report)
    return 0


def cmd_train_rl(args: argparse.Namespace) -> int:
    from training.configs import resolve
    from training.stages import rl_stage

    run = _stage_run(args)
    config = resolve(
        run.preset.rl_stage_config(),
        args.config,
        {
            "steps": args.steps,
            "learning_rate": args.lr,
            "prompts_per_step": args.batch_size,
            "group_size": args.group_size,
            "lam": args.lam,
            "lam_final": args.lam_final,
            "lam_schedule": args.lam_schedule,
            "beta": args.beta,
            "max_new_tokens": args.max_new_tokens,
            "temperature": args.temperature,
            "grade_weight": args.grade_weight,
            "lora_rank": args.lora_rank,
            "gradient_checkpointing": args.gradient_checkpointing,
        },
    )
    report = rl_stage(
        run, config, model=args.model, engine=args.engine, use_vllm=args.use_vllm, vllm_mode=args.vllm_mode
    )
    _print_summary(report)
    return 0


def cmd_train_distill(args: argparse.Namespace) -> int:
    from training.configs import resolve
    from training.setup import check_lora, pretrained_sft
    from training.stages import distill_stage

    run = _stage_run(args)
    if args.teacher_endpoint and not args.teacher_model:
        raise ValueError("--teacher-model is required with --teacher-endpoint")
    default = run.preset.distill_stage_config()
    config = resolve(
        default,
        args.config,
        {
            "sft": _sft_flags(args),
            "max_new_tokens": args.max_new_tokens,
            "teacher_base_url": args.teacher_endpoint,
            "teacher_model": args.teacher_model,
            "teacher_api_key_env": args.api_key_env,
        },
    )
    check_lora(args.student, config.sft.lora_rank, "--student")
    config = replace(config, sft=pretrained_sft(config.sft, default.sft, args.student))
    report = distill_stage(run, config, teacher=args.teacher, student=args.student, steps=args.steps)
    _print_summary(report)
    return 0


def _stage_run(args: argparse.Namespace) -> Any:
    from training.presets import preset
    from training.stages import StageRun

    return StageRun(Path(args.out), preset(args.preset), args.data, getattr(args, "guideline_file", None), _progress)


def _sft_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The SFTConfig fields the sft and distill flags set (None: not given)."""
    return {
        "epochs": args.epochs,
        "learning_rate": args.lr,
        "batch_size": args.batch_size,
        "grade_weight": args.grade_weight,
        "lora_rank": args.lora_rank,
        "gradient_checkpointing": args.gradient_checkpointing,
        "share_prefix": False if args.gradient_checkpointing else None,  # checkpointed layers keep no prefix cache
    }


def _trl_engine(args: argparse.Namespace) -> bool:
    return bool(args.engine == "trl")  # TRL's trainers distribute under accelerate launch; the plain loops do not


def _never(args: argparse.Namespace) -> bool:
    return False


def _print_summary(report: Any) -> None:
    if is_main_process():  # the other processes of `accelerate launch` report nothing
        print(json.dumps(_stage_summary(report), indent=2))


def _stage_summary(report: Any) -> dict[str, Any]:
    """What a stage command prints: the test figures (None for a sharded run) and where it saved."""
    test = report.test
    keys = ("accuracy", "head_accuracy", "long_tail_accuracy", "macro_f1", "mean_label_entropy")
    explanation_keys = ("format_validity", "first_token_conclusion_agreement", "decisive_rule_recall")
    return {
        "checkpoint": report.checkpoint,
        "engine": report.engine,
        "test": None if test is None else {k: getattr(test, k) for k in keys},
        "explanations": None if test is None else {k: getattr(test, k) for k in explanation_keys},
        "seconds": report.seconds,
        "processes": report.processes,
    }


def _data_flags(p: argparse.ArgumentParser, preset_default: str) -> None:
    p.add_argument(
        "--data", help="dataset folder or .jsonl file (DESIGN section 10; default: the preset's generated world)"
    )
    p.add_argument(
        "--preset",
        default=preset_default,
        choices=PRESET_NAMES,
        help="source of the defaults: the world's size and this stage's config",
    )
    p.add_argument("--config", help="YAML or JSON of this stage's config (any subset of its fields); flags override it")


def _optimizer_flags(p: argparse.ArgumentParser, batch_help: str) -> None:
    p.add_argument("--steps", type=int, help="optimizer steps")
    p.add_argument("--lr", type=float, help="peak learning rate (pretrained models want ~1e-5, not the presets' 4e-3)")
    p.add_argument("--batch-size", type=int, help=batch_help)
    p.add_argument("--grade-weight", type=float, help="loss weight of the grade token (1 = like any other token)")
    p.add_argument("--lora-rank", type=int, help="LoRA adapters of this rank instead of full fine-tuning")
    p.add_argument(
        "--gradient-checkpointing",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="recompute activations in the backward pass (default: trl on, plain off)",
    )


def register(sub: Any) -> None:
    t = sub.add_parser("train", help="data generation and training stages")
    tsub = t.add_subparsers(dest="stage", required=True)
    d = tsub.add_parser(
        "data",
        help="generate the relevance world as a dataset folder (train/dev/test.jsonl, guideline.md, labels.json)",
    )
    d.add_argument("--out", required=True, help="dataset folder to write (what --data of every command reads)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--queries", type=int, default=2000)
    d.add_argument("--docs-per-query", type=int, default=10)
    d.add_argument(
        "--long-tail-eval",
        type=int,
        default=0,
        metavar="N",
        help="also write long_tail_eval.jsonl: an eval-only set with >= N examples per long-tail rule, "
        "from queries no split holds (afrl eval --data FOLDER/long_tail_eval.jsonl); 0 = none",
    )
    d.set_defaults(func=rank_zero_unless(_never, cmd_train_data))
    pl = tsub.add_parser("pipeline", help="the whole method (ci, tiny) or SFT only (default) -> export -> report")
    pl.add_argument(
        "--preset",
        default="ci",
        choices=PRESET_NAMES,
        help="ci: full method, < 3 min; tiny: full method with the comparison, < 15 min; "
        "default: the embedded default model (SFT)",
    )
    pl.add_argument("--out", required=True)
    pl.add_argument("--data", help="dataset folder or .jsonl file (default: the preset's generated world)")
    pl.add_argument("--base", help="checkpoint to start from (default: the preset's architecture at random init)")
    pl.add_argument("--guideline-file", help="the guideline text (default: the data's guideline)")
    pl.add_argument("--seed", type=int, help="world seed override")
    pl.add_argument("--threads", type=int, help="torch intra-op threads (default: the preset's)")
    pl.set_defaults(func=rank_zero_unless(_never, cmd_train_pipeline))

    sf = tsub.add_parser("sft", help="curriculum SFT (head rules, then long tail) -> checkpoint")
    _data_flags(sf, "tiny")
    sf.add_argument(
        "--base",
        "--init",
        help="folder or hub id of any Hugging Face causal LM, with or without afrl.json "
        "(default: the preset's architecture at random init)",
    )
    sf.add_argument("--out", required=True, help="checkpoint folder to write")
    sf.add_argument("--guideline-file", help="the guideline text the model learns with (default: the data's)")
    _optimizer_flags(sf, "sequences per step")
    sf.add_argument("--epochs", type=float, help="passes over the training data instead of --steps")
    sf.add_argument("--engine", choices=ENGINES, default="plain", help="plain loop (CPU) or TRL SFTTrainer (GPU)")
    sf.set_defaults(func=rank_zero_unless(_trl_engine, cmd_train_sft))

    rl = tsub.add_parser("rl", help="Stepwise-GRPO + lambda x SFT (mode-balanced) from a checkpoint")
    _data_flags(rl, "tiny")
    rl.add_argument("--model", required=True, help="checkpoint (folder or hub id) to start from, and the KL reference")
    rl.add_argument("--out", required=True, help="checkpoint folder to write")
    _optimizer_flags(rl, "prompts per step (each sampled --group-size times)")
    rl.add_argument("--group-size", type=int, help="completions sampled per prompt (the GRPO group, >= 2)")
    rl.add_argument("--lam", type=float, help="lambda: weight of the expert SFT NLL (0 = GRPO alone)")
    rl.add_argument("--lam-final", type=float, help="lambda at the last step")
    rl.add_argument("--lam-schedule", choices=["constant", "linear", "cosine"])
    rl.add_argument("--beta", type=float, help="weight of the KL to the starting checkpoint (0 = none)")
    rl.add_argument("--max-new-tokens", type=int, help="rollout length cap")
    rl.add_argument("--temperature", type=float, help="rollout sampling temperature")
    rl.add_argument(
        "--engine",
        choices=ENGINES,
        default="plain",
        help="plain loop (CPU) or TRL GRPOTrainer subclass (GPU; accelerate launch for several)",
    )
    rl.add_argument("--use-vllm", action="store_true", help="trl engine: rollouts from vLLM")
    rl.add_argument("--vllm-mode", choices=["colocate", "server"], default="colocate")
    rl.set_defaults(func=rank_zero_unless(_trl_engine, cmd_train_rl))

    ds = tsub.add_parser("distill", help="teacher (checkpoint or OpenAI-compatible endpoint) -> smaller student")
    _data_flags(ds, "tiny")
    ds.add_argument("--teacher", help="teacher checkpoint (folder or hub id)")
    ds.add_argument("--teacher-endpoint", help="OpenAI-compatible base URL (e.g. http://host:8000/v1)")
    ds.add_argument("--teacher-model", help="model name at the endpoint")
    ds.add_argument("--api-key-env", help="environment variable holding the endpoint key (default OPENAI_API_KEY)")
    ds.add_argument(
        "--student", help="student checkpoint (folder or hub id; default: the preset's student, random init)"
    )
    ds.add_argument("--out", required=True, help="student checkpoint folder to write")
    ds.add_argument("--guideline-file", help="the guideline text the student learns with (default: the data's)")
    _optimizer_flags(ds, "student sequences per step")
    ds.add_argument("--epochs", type=float, help="passes over the teacher's outputs instead of --steps")
    ds.add_argument("--max-new-tokens", type=int, help="teacher completion cap")
    ds.set_defaults(func=rank_zero_unless(_never, cmd_train_distill))
