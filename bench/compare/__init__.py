"""`afrl bench compare`: our engine against what users would otherwise run, same weights, same inputs.

    afrl bench compare [--model default|0.6b|DIR] [--documents 16] [--repeats 5] [--out runs/bench-compare]
                       [--llama-cpp PATH/convert_hf_to_gguf.py]

Modules, one job each: `models` (which checkpoint and artifacts, built and
cached in OUT), `inputs` (the request and its prompts), `torch_paths`,
`optimum_path`, `engine_path` and `llama_cpp_path` (the compared paths), `timing`, `report`,
and `runner`, which runs them in order (its docstring lists the paths).
The checkpoint builder (bench.qwen3_0p6b) and the FP32 export cache
(bench.fp32_exports) are shared with the export benchmarks. This module is
the command: its arguments, then the runner, imported only when it runs
(numpy, torch, transformers and optimum load with it, inside the paths).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default="default",
        help="default (the embedded default model), 0.6b (the Qwen3-0.6B architecture, random weights), "
        "or a checkpoint or artifact folder",
    )
    p.add_argument("--documents", type=int, default=16, help="documents of the one query")
    p.add_argument("--guideline-tokens", type=int, default=150, help="cut the guideline to about this many tokens")
    p.add_argument("--repeats", type=int, default=5, help="timed requests per path (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed requests per path first")
    p.add_argument("--threads", type=int, default=2, help="torch threads and onnxruntime intra-op threads, every path")
    p.add_argument(
        "--reason-tokens",
        type=int,
        default=64,
        help="explanation tokens decoded before the grade on the reason-first path",
    )
    p.add_argument(
        "--llama-cpp",
        default="",
        metavar="CONVERTER",
        help="add the llama.cpp row: the path of llama.cpp's convert_hf_to_gguf.py (needs llama-cpp-python "
        "installed); the checkpoint is converted to a Q8_0 GGUF once and cached in OUT",
    )
    p.add_argument("--out", default="runs/bench-compare", help="results, plot, and the cached exports")


def run(a: argparse.Namespace) -> int:
    from afrl.cli.output import progress
    from bench.compare.report import format_table
    from bench.compare.runner import CompareConfig, run_compare

    config = CompareConfig(
        model=a.model,
        documents=a.documents,
        guideline_tokens=a.guideline_tokens,
        repeats=a.repeats,
        warmup=a.warmup,
        threads=a.threads,
        reason_tokens=a.reason_tokens,
        llama_cpp=a.llama_cpp,
    )
    report = run_compare(config, Path(a.out), progress=progress)
    request = report["request"]
    print(
        f"{report['model']['name']}: 1 query x {request['documents']} documents, guideline "
        f"{request['guideline_tokens']} tokens, prefix {request['prefix_tokens']}, documents "
        f"{request['document_tokens_mean']} tokens on average; torch {a.threads} threads, onnxruntime "
        f"{a.threads} intra-op threads; median of {a.repeats}"
    )
    print(format_table(report["table"]))
    return 1 if any("error" in row for row in report["table"]) else 0
