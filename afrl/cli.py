"""The `afrl` command line: wires training, export, serving and benchmarks.

    afrl serve [--model DIR] [--host 127.0.0.1] [--port 8000]
    afrl export CHECKPOINT --out DIR [--dtype fp32|fp16|int8]
    afrl train {data,sft,rl,distill,pipeline} ...
    afrl eval MODEL --data SPLIT [--out DIR] [--explain N]
    afrl bench {latency,load,compare} ...

Heavy imports happen inside each command so `afrl serve` never loads torch.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_serve(args: argparse.Namespace) -> int:
    from service.app import run
    from service.settings import ServiceSettings

    overrides = {k: v for k, v in {"host": args.host, "port": args.port, "model": args.model}.items() if v is not None}
    settings = ServiceSettings(**overrides)
    if settings.model is None:
        from afrl.default_model import ensure_default_model

        _progress("no --model given: using the embedded default model")
        settings = settings.model_copy(update={"model": ensure_default_model(progress=_progress)})
    run(settings)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from export.artifact import export_artifact

    guideline = Path(args.guideline_file).read_text() if args.guideline_file else None
    manifest = export_artifact(args.checkpoint, Path(args.out), dtype=args.dtype, guideline=guideline, progress=_progress)
    print(manifest.model_dump_json(indent=2, include={"model_name", "graphs", "parity", "labels"}))
    return 0


def cmd_train_data(args: argparse.Namespace) -> int:
    from training.world import build_world, save_jsonl

    world = build_world(seed=args.seed, n_queries=args.queries, docs_per_query=args.docs_per_query)
    out = Path(args.out)
    for split in ("train", "dev", "test"):
        save_jsonl(getattr(world, split), out / f"{split}.jsonl")
        _progress(f"{split}: {len(getattr(world, split))} examples -> {out / f'{split}.jsonl'}")
    return 0


def cmd_train_pipeline(args: argparse.Namespace) -> int:
    import json

    from training.pipeline import preset, run_pipeline

    overrides = {"world_seed": args.seed} if args.seed is not None else {}
    if args.threads is not None:
        overrides["threads"] = args.threads
    report = run_pipeline(preset(args.preset, **overrides), Path(args.out), progress=_progress)
    summary = {"test": {k: report["test"][k] for k in ("accuracy", "majority_baseline_accuracy", "macro_f1")},
               "timings": report["timings"]}
    if "comparison" in report:
        summary["comparison"] = {arm: {k: row[k] for k in ("head_accuracy", "long_tail_accuracy", "mean_label_entropy")}
                                 for arm, row in report["comparison"].items()}
        summary["distillation"] = {k: report["distillation"][k] for k in ("accuracy_gap_points", "sizes",
                                                                        "latency_ms_per_query_of_10_docs")}
        summary["report"] = str(Path(args.out) / "report.md")
    print(json.dumps(summary, indent=2))
    return 0


def cmd_train_sft(args: argparse.Namespace) -> int:
    import json

    from training.stages import sft_stage

    report = sft_stage(Path(args.out), args.preset, init=args.init, steps=args.steps, engine=args.engine,
                       progress=_progress)
    print(json.dumps(_stage_summary(report), indent=2))
    return 0


def cmd_train_rl(args: argparse.Namespace) -> int:
    import json

    from training.stages import rl_stage

    overrides = {k: v for k, v in {"steps": args.steps, "lam": args.lam, "lam_final": args.lam_final,
                                   "lam_schedule": args.lam_schedule}.items() if v is not None}
    report = rl_stage(args.model, Path(args.out), args.preset, overrides, engine=args.engine, use_vllm=args.use_vllm,
                      vllm_mode=args.vllm_mode, progress=_progress)
    print(json.dumps(_stage_summary(report), indent=2))
    return 0


def cmd_train_distill(args: argparse.Namespace) -> int:
    import json
    import os

    from training.stages import distill_stage

    report = distill_stage(Path(args.out), args.preset, teacher_dir=args.teacher, endpoint=args.teacher_endpoint,
                           endpoint_model=args.teacher_model, api_key=os.environ.get(args.api_key_env),
                           steps=args.steps, progress=_progress)
    print(json.dumps(_stage_summary(report), indent=2))
    return 0


def _stage_summary(report: dict) -> dict:
    test = report.get("test", {})
    keys = ("accuracy", "head_accuracy", "long_tail_accuracy", "macro_f1", "mean_label_entropy")
    return {"test": {k: test.get(k) for k in keys},
            "explanations": {k: v for k, v in test.get("explanations", {}).items() if k != "samples"}}


def cmd_eval(args: argparse.Namespace) -> int:
    from afrl.evaluation import evaluate

    report = evaluate(Path(args.model), args.data, Path(args.out) if args.out else None,
                      seed=args.seed, limit=args.limit, explain=args.explain, progress=_progress)
    import json

    hidden = ("confusion", "per_rule", "reliability")
    if "explanations" in report:
        report["explanations"] = {k: v for k, v in report["explanations"].items() if k != "samples"}
    print(json.dumps({k: v for k, v in report.items() if k not in hidden}, indent=2))
    return 0


def cmd_bench_latency(args: argparse.Namespace) -> int:
    from loadtest.bench_latency import main as bench_main

    return bench_main(model=args.model, documents=args.documents, requests=args.requests, warmup=args.warmup)


def cmd_bench_load(args: argparse.Namespace) -> int:
    from loadtest.load_report import LoadRow, format_table
    from loadtest.load_runner import run_load

    report = run_load(args.model, args.users, args.spawn_rate, args.duration, Path(args.out), progress=_progress)
    print(format_table([LoadRow(**row) for row in report["rows"]]))
    return 0


def cmd_bench_compare(args: argparse.Namespace) -> int:
    from loadtest.compare.report import format_table
    from loadtest.compare.runner import CompareConfig, run_compare

    config = CompareConfig(model=args.model, documents=args.documents, guideline_tokens=args.guideline_tokens,
                           repeats=args.repeats, warmup=args.warmup, threads=args.threads,
                           reason_tokens=args.reason_tokens)  # fmt: skip
    report = run_compare(config, Path(args.out), progress=_progress)
    request = report["request"]
    print(f"{report['model']['name']}: 1 query x {request['documents']} documents, guideline "
          f"{request['guideline_tokens']} tokens, prefix {request['prefix_tokens']}, documents "
          f"{request['document_tokens_mean']} tokens on average; torch {args.threads} threads, onnxruntime "
          f"{args.threads} intra-op threads; median of {args.repeats}")
    print(format_table(report["table"]))
    return 1 if any("error" in row for row in report["table"]) else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="afrl", description="Answer First, Reason Later relevance models")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="serve a model artifact over HTTP (default: the embedded default model)")
    s.add_argument("--model", help="artifact folder (default: AFRL_MODEL, else the embedded default model)")
    s.add_argument("--host", help="bind address (default 127.0.0.1, or AFRL_HOST)")
    s.add_argument("--port", type=int, help="port (default 8000, or AFRL_PORT)")
    s.set_defaults(func=cmd_serve)

    e = sub.add_parser("export", help="checkpoint (folder or hub id) -> model artifact")
    e.add_argument("checkpoint")
    e.add_argument("--out", required=True)
    e.add_argument("--dtype", choices=["fp32", "fp16", "int8"], default="fp32")
    e.add_argument("--guideline-file", help="guideline text when the checkpoint has no afrl.json")
    e.set_defaults(func=cmd_export)

    t = sub.add_parser("train", help="data generation and training stages")
    tsub = t.add_subparsers(dest="stage", required=True)
    d = tsub.add_parser("data", help="generate the relevance world as JSONL splits")
    d.add_argument("--out", required=True)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--queries", type=int, default=2000)
    d.add_argument("--docs-per-query", type=int, default=10)
    d.set_defaults(func=cmd_train_data)
    pl = tsub.add_parser("pipeline", help="the whole method (ci, tiny) or SFT only (default) -> export -> report")
    pl.add_argument("--preset", default="ci", choices=["ci", "tiny", "default"],
                    help="ci: full method, < 3 min; tiny: full method with the comparison, < 15 min; "
                         "default: the embedded default model (SFT)")
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
    rl.add_argument("--engine", choices=engines, default="plain",
                    help="plain loop (CPU) or TRL GRPOTrainer subclass (GPU; accelerate launch for several)")
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

    v = sub.add_parser("eval", help="evaluate a model artifact or a training checkpoint on a world split")
    v.add_argument("model", help="artifact folder (manifest.json) or checkpoint folder (afrl.json)")
    v.add_argument("--data", required=True, help="train | dev | test (generated world) or a JSONL file")
    v.add_argument("--out", help="folder for eval.json, confusion.png and eval.png")
    v.add_argument("--seed", type=int, default=0, help="world seed when --data names a split")
    v.add_argument("--limit", type=int, help="evaluate at most this many examples")
    v.add_argument("--explain", type=int, default=0,
                   help="generate explanations for this many examples (format validity, agreement); needs torch "
                        "and the checkpoint (an artifact's source checkpoint is used when on disk)")
    v.set_defaults(func=cmd_eval)

    b = sub.add_parser("bench", help="benchmarks")
    bsub = b.add_subparsers(dest="bench", required=True)
    bl = bsub.add_parser("latency", help="p50/p95/p99 of POST /v1/score at concurrency 1 against a live server")
    bl.add_argument("--model", help="artifact folder (default: the embedded default model)")
    bl.add_argument("--documents", type=int, default=10)
    bl.add_argument("--requests", type=int, default=200)
    bl.add_argument("--warmup", type=int, default=20)
    bl.set_defaults(func=cmd_bench_latency)
    bo = bsub.add_parser("load", help="locust load test (mixed sizes, some streamed with reasoning) against a live "
                                      "server -> load.csv, load.png")
    bo.add_argument("--model", help="artifact folder (default: the embedded default model)")
    bo.add_argument("--users", type=int, default=8, help="concurrent closed-loop users")
    bo.add_argument("--spawn-rate", type=float, default=8.0, help="users started per second")
    bo.add_argument("--duration", default="60s", help="how long locust runs (60s, 5m, ...)")
    bo.add_argument("--out", default="runs/bench-load", help="folder for the CSVs, plot and logs")
    bo.set_defaults(func=cmd_bench_load)
    bc = bsub.add_parser("compare", help="naive transformers, generate, optimum, reason-first and our engine "
                                         "(shared prefix or not, fp32 and int8) on the same weights and inputs")
    bc.add_argument("--model", default="default",
                    help="default (the embedded default model), 0.6b (the Qwen3-0.6B architecture, random weights), "
                         "or a checkpoint or artifact folder")
    bc.add_argument("--documents", type=int, default=16, help="documents of the one query")
    bc.add_argument("--guideline-tokens", type=int, default=150, help="cut the guideline to about this many tokens")
    bc.add_argument("--repeats", type=int, default=5, help="timed requests per path (median reported)")
    bc.add_argument("--warmup", type=int, default=1, help="untimed requests per path first")
    bc.add_argument("--threads", type=int, default=2, help="torch threads and onnxruntime intra-op threads, every path")
    bc.add_argument("--reason-tokens", type=int, default=64, help="explanation tokens decoded before the grade "
                                                                  "on the reason-first path")
    bc.add_argument("--out", default="runs/bench-compare", help="results, plot, and the cached exports")
    bc.set_defaults(func=cmd_bench_compare)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from afrl.manifest import ArtifactError

    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except (ArtifactError, FileNotFoundError, ValueError, RuntimeError) as e:
        # Expected failures (bad artifact, bad path, bad option value) read as one line, not a traceback.
        print(f"afrl {args.command}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
