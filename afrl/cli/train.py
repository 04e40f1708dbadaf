"""`afrl train {data,pipeline,sft,rl,distill}`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from afrl.cli.output import progress as _progress


def cmd_train_data(args: argparse.Namespace) -> int:
    from training.world import build_world, save_world

    world = build_world(seed=args.seed, n_queries=args.queries, docs_per_query=args.docs_per_query)
    written = save_world(world, Path(args.out))
    for split in ("train", "dev", "test"):
        _progress(f"{split}: {len(world.split(split))} examples -> {written[split]}")
    _progress(f"guideline -> {written['guideline']}, label set -> {written['labels']}")
    return 0


def cmd_train_pipeline(args: argparse.Namespace) -> int:
    import json

    from training.pipeline import preset, run_pipeline

    overrides = {"world_seed": args.seed} if args.seed is not None else {}
    if args.threads is not None:
        overrides["threads"] = args.threads
    report = run_pipeline(preset(args.preset, **overrides), Path(args.out), progress=_progress)
    summary = {
        "test": {k: report["test"][k] for k in ("accuracy", "majority_baseline_accuracy", "macro_f1")},
        "timings": report["timings"],
    }
    if "comparison" in report:
        summary["comparison"] = {
            arm: {k: row[k] for k in ("head_accuracy", "long_tail_accuracy", "mean_label_entropy")}
            for arm, row in report["comparison"].items()
        }
        summary["distillation"] = {
            k: report["distillation"][k] for k in ("accuracy_gap_points", "sizes", "latency_ms_per_query_of_10_docs")
        }
        summary["report"] = str(Path(args.out) / "report.md")
    print(json.dumps(summary, indent=2))
    return 0


def cmd_train_sft(args: argparse.Namespace) -> int:
    import json

    from training.stages import sft_stage

    report = sft_stage(
        Path(args.out), args.preset, init=args.init, steps=args.steps, engine=args.engine, progress=_progress
    )
    print(json.dumps(_stage_summary(report), indent=2))
    return 0


def cmd_train_rl(args: argparse.Namespace) -> int:
    import json

    from training.stages import rl_stage

    overrides = {
        k: v
        for k, v in {
            "steps": args.steps,
            "lam": args.lam,
            "lam_final": args.lam_final,
            "lam_schedule": args.lam_schedule,
        }.items()
        if v is not None
    }
    report = rl_stage(
        args.model,
        Path(args.out),
        args.preset,
        overrides,
        engine=args.engine,
        use_vllm=args.use_vllm,
        vllm_mode=args.vllm_mode,
        progress=_progress,
    )
    print(json.dumps(_stage_summary(report), indent=2))
    return 0


def cmd_train_distill(args: argparse.Namespace) -> int:
    import json
    import os

    from training.stages import distill_stage

    report = distill_stage(
        Path(args.out),
        args.preset,
        teacher_dir=args.teacher,
        endpoint=args.teacher_endpoint,
        endpoint_model=args.teacher_model,
        api_key=os.environ.get(args.api_key_env),
        steps=args.steps,
        progress=_progress,
    )
    print(json.dumps(_stage_summary(report), indent=2))
    return 0


def _stage_summary(report: dict) -> dict:
    test = report.get("test", {})
    keys = ("accuracy", "head_accuracy", "long_tail_accuracy", "macro_f1", "mean_label_entropy")
    return {
        "test": {k: test.get(k) for k in keys},
        "explanations": {k: v for k, v in test.get("explanations", {}).items() if k != "samples"},
    }


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
    d.set_defaults(func=cmd_train_data)
    pl = tsub.add_parser("pipeline", help="the whole method (ci, tiny) or SFT only (default) -> export -> report")
    pl.add_argument(
        "--preset",
        default="ci",
        choices=["ci", "tiny", "default"],
        help="ci: full method, < 3 min; tiny: full method with the comparison, < 15 min; "
        "default: the embedded default model (SFT)",
    )
    pl.add_argument("--out", required=True)
    pl.add_argument("--seed", type=int, help="world seed override")
    pl.add_argument("--threads", type=int, help="torch intra-op threads (default: the preset's)")
    pl.set_defaults(func=cmd_train_pipeline)
    engines = ["plain", "trl"]
    sf = tsub.add_parser("sft", help="curriculum SFT (head rules, then long tail) -> checkpoint")
    sf.add_argument("--out", required=True, help="checkpoint folder to write")
    sf.add_argument("--init", help="start from this checkpoint (default: random init of the preset's teacher)")
    sf.add_argument("--preset", default="tiny", choices=["ci", "tiny"], help="world and stage configs")
    sf.add_argument("--steps", type=int, help="total steps (stages keep their proportions)")
    sf.add_argument("--engine", choices=engines, default="plain", help="plain loop (CPU) or TRL SFTTrainer (GPU)")
    sf.set_defaults(func=cmd_train_sft)
    rl = tsub.add_parser("rl", help="Stepwise-GRPO + lambda x SFT (mode-balanced) from a checkpoint")
    rl.add_argument("--model", required=True, help="checkpoint folder (afrl.json) to start from")
    rl.add_argument("--out", required=True, help="checkpoint folder to write")
    rl.add_argument("--preset", default="tiny", choices=["ci", "tiny"], help="world and RL config")
    rl.add_argument("--steps", type=int)
    rl.add_argument("--lam", type=float, help="lambda: weight of the expert SFT NLL (0 = GRPO alone)")
    rl.add_argument("--lam-final", type=float, help="lambda at the last step")
    rl.add_argument("--lam-schedule", choices=["constant", "linear", "cosine"])
    rl.add_argument(
        "--engine",
        choices=engines,
        default="plain",
        help="plain loop (CPU) or TRL GRPOTrainer subclass (GPU; accelerate launch for several)",
    )
    rl.add_argument("--use-vllm", action="store_true", help="trl engine: rollouts from vLLM")
    rl.add_argument("--vllm-mode", choices=["colocate", "server"], default="colocate")
    rl.set_defaults(func=cmd_train_rl)
    ds = tsub.add_parser("distill", help="teacher (checkpoint or OpenAI-compatible endpoint) -> smaller student")
    ds.add_argument("--out", required=True, help="student checkpoint folder to write")
    ds.add_argument("--teacher", help="teacher checkpoint folder")
    ds.add_argument("--teacher-endpoint", help="OpenAI-compatible base URL (e.g. http://host:8000/v1)")
    ds.add_argument("--teacher-model", help="model name at the endpoint")
    ds.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the endpoint key")
    ds.add_argument("--preset", default="tiny", choices=["ci", "tiny"], help="world, student and distill config")
    ds.add_argument("--steps", type=int, help="student steps")
    ds.set_defaults(func=cmd_train_distill)
