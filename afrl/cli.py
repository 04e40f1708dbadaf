"""The `afrl` command line: wires training, export, serving and benchmarks.

    afrl serve [--model DIR] [--host 127.0.0.1] [--port 8000]
    afrl export CHECKPOINT --out DIR [--dtype fp32|fp16|int8]
    afrl train {data,sft,rl,distill,pipeline} ...
    afrl eval MODEL --data SPLIT [--out DIR]
    afrl bench latency ...

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
    report = run_pipeline(preset(args.preset, **overrides), Path(args.out), progress=_progress)
    print(json.dumps({"test": {k: report["test"][k] for k in ("accuracy", "majority_baseline_accuracy", "macro_f1")},
                      "timings": report["timings"]}, indent=2))
    return 0


def cmd_train_pending(args: argparse.Namespace) -> int:
    _progress(f"afrl train {args.stage}: not available in this build yet; "
              "`afrl train pipeline --preset ci --out DIR` runs data, SFT and export")
    return 2


def cmd_eval(args: argparse.Namespace) -> int:
    from afrl.evaluation import evaluate_artifact

    report = evaluate_artifact(Path(args.model), args.data, Path(args.out) if args.out else None,
                               seed=args.seed, limit=args.limit, progress=_progress)
    import json

    print(json.dumps({k: v for k, v in report.items() if k != "confusion"}, indent=2))
    return 0


def cmd_bench_latency(args: argparse.Namespace) -> int:
    from loadtest.bench_latency import main as bench_main

    return bench_main(model=args.model, documents=args.documents, requests=args.requests, warmup=args.warmup)


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
    pl = tsub.add_parser("pipeline", help="data -> SFT -> export -> report")
    pl.add_argument("--preset", default="ci", help="ci | default")
    pl.add_argument("--out", required=True)
    pl.add_argument("--seed", type=int, help="world seed override")
    pl.set_defaults(func=cmd_train_pipeline)
    for stage in ("sft", "rl", "distill"):
        x = tsub.add_parser(stage, help=f"{stage} stage (not in this build yet)")
        x.set_defaults(func=cmd_train_pending)

    v = sub.add_parser("eval", help="evaluate a model artifact on a world split")
    v.add_argument("model", help="artifact folder")
    v.add_argument("--data", required=True, help="train | dev | test (generated world) or a JSONL file")
    v.add_argument("--out", help="folder for eval.json and the confusion plot")
    v.add_argument("--seed", type=int, default=0, help="world seed when --data names a split")
    v.add_argument("--limit", type=int, help="evaluate at most this many examples")
    v.set_defaults(func=cmd_eval)

    b = sub.add_parser("bench", help="benchmarks")
    bsub = b.add_subparsers(dest="bench", required=True)
    bl = bsub.add_parser("latency", help="p50/p95/p99 of POST /v1/score at concurrency 1 against a live server")
    bl.add_argument("--model", help="artifact folder (default: the embedded default model)")
    bl.add_argument("--documents", type=int, default=10)
    bl.add_argument("--requests", type=int, default=200)
    bl.add_argument("--warmup", type=int, default=20)
    bl.set_defaults(func=cmd_bench_latency)
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
