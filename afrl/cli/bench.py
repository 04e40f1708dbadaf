"""`afrl bench {latency,load,compare}`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from afrl.cli.output import progress as _progress


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

    config = CompareConfig(
        model=args.model,
        documents=args.documents,
        guideline_tokens=args.guideline_tokens,
        repeats=args.repeats,
        warmup=args.warmup,
        threads=args.threads,
        reason_tokens=args.reason_tokens,
    )
    report = run_compare(config, Path(args.out), progress=_progress)
    request = report["request"]
    print(
        f"{report['model']['name']}: 1 query x {request['documents']} documents, guideline "
        f"{request['guideline_tokens']} tokens, prefix {request['prefix_tokens']}, documents "
        f"{request['document_tokens_mean']} tokens on average; torch {args.threads} threads, onnxruntime "
        f"{args.threads} intra-op threads; median of {args.repeats}"
    )
    print(format_table(report["table"]))
    return 1 if any("error" in row for row in report["table"]) else 0


def register(sub: Any) -> None:
    b = sub.add_parser("bench", help="benchmarks")
    bsub = b.add_subparsers(dest="bench", required=True)
    bl = bsub.add_parser("latency", help="p50/p95/p99 of POST /v1/score at concurrency 1 against a live server")
    bl.add_argument("--model", help="artifact folder (default: the embedded default model)")
    bl.add_argument("--documents", type=int, default=10)
    bl.add_argument("--requests", type=int, default=200)
    bl.add_argument("--warmup", type=int, default=20)
    bl.set_defaults(func=cmd_bench_latency)
    bo = bsub.add_parser(
        "load",
        help="locust load test (mixed sizes, some streamed with reasoning) against a live server -> load.csv, load.png",
    )
    bo.add_argument("--model", help="artifact folder (default: the embedded default model)")
    bo.add_argument("--users", type=int, default=8, help="concurrent closed-loop users")
    bo.add_argument("--spawn-rate", type=float, default=8.0, help="users started per second")
    bo.add_argument("--duration", default="60s", help="how long locust runs (60s, 5m, ...)")
    bo.add_argument("--out", default="runs/bench-load", help="folder for the CSVs, plot and logs")
    bo.set_defaults(func=cmd_bench_load)
    bc = bsub.add_parser(
        "compare",
        help="naive transformers, generate, optimum, reason-first and our engine "
        "(shared prefix or not, fp32 and int8) on the same weights and inputs",
    )
    bc.add_argument(
        "--model",
        default="default",
        help="default (the embedded default model), 0.6b (the Qwen3-0.6B architecture, random weights), "
        "or a checkpoint or artifact folder",
    )
    bc.add_argument("--documents", type=int, default=16, help="documents of the one query")
    bc.add_argument("--guideline-tokens", type=int, default=150, help="cut the guideline to about this many tokens")
    bc.add_argument("--repeats", type=int, default=5, help="timed requests per path (median reported)")
    bc.add_argument("--warmup", type=int, default=1, help="untimed requests per path first")
    bc.add_argument("--threads", type=int, default=2, help="torch threads and onnxruntime intra-op threads, every path")
    bc.add_argument(
        "--reason-tokens",
        type=int,
        default=64,
        help="explanation tokens decoded before the grade on the reason-first path",
    )
    bc.add_argument("--out", default="runs/bench-compare", help="results, plot, and the cached exports")
    bc.set_defaults(func=cmd_bench_compare)
