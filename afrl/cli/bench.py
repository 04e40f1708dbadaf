"""`afrl bench NAME`: every benchmark of the `bench` package, one subcommand each.

A benchmark module brings its own arguments (`add_arguments(parser)`) and
its run (`run(args) -> int`); its docstring is the subcommand's --help
text. Building the parser imports every module listed here, so they import
only the standard library (and each other) at the top: no numpy, torch,
httpx or service code until a benchmark runs (tests/bench/test_cli.py).
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

# name -> (module, one line for `afrl bench --help`)
BENCHMARKS = {
    "latency": ("bench.latency", "p50/p95/p99 of POST /v1/score at concurrency 1 against a live server"),
    "load": (
        "bench.load_runner",
        "locust load test (mixed sizes, some streamed with reasoning) against a live server -> load.csv, load.png",
    ),
    "compare": (
        "bench.compare",
        "naive transformers, generate, optimum, reason-first and our engine "
        "(shared prefix or not, fp32 and int8) on the same weights and inputs",
    ),
    "overhead": ("bench.service_overhead", "p50 of POST /v1/score against the raw engine call and engine.score"),
    "stream": ("bench.service_stream", "time to the first score event of a stream against the non-stream answer"),
    "train-compact-vocab": (
        "bench.train_compact_vocab",
        "SFT steps/min with the compact training vocabulary against the full table; the default recipe with it",
    ),
    "default-recipe": (
        "bench.default_recipe",
        "learning curves of candidate default recipes (shape, learning rate, objective) at equal CPU minutes",
    ),
    "engine-batching": (
        "bench.engine_batching",
        "concurrent requests' shared passes and explanation streams decoded together, batching on vs off",
    ),
    "overload": ("bench.service_overload", "latency of accepted requests and speed of 429s at a multiple of capacity"),
    "soak": (
        "bench.service_soak",
        "a long open-loop run at a fraction of capacity, then overload -> soak.json, soak.png",
    ),
    "export-0p6b": ("bench.export_qwen3_0p6b", "export the Qwen3-0.6B architecture in fp32, fp16, int8: time, size"),
    "export-prefix-speedup": (
        "bench.export_prefix_speedup",
        "shared-prefix scoring against full prompts, one artifact",
    ),
    "export-int8-trained": (
        "bench.export_int8_trained",
        "INT8 export of a trained checkpoint, parity on the dev split",
    ),
    "fused-graphs-cpu": (
        "bench.fused_graphs_cpu",
        "fused graphs (norm, rotary, attention contrib ops) against plain ones on CPU, FP32 and INT8, 0.6B width",
    ),
    "int8-recipes": (
        "bench.int8_recipes",
        "which MLP down projections stay FP32 in INT8: grade agreement on a trained model, speed at 0.6B width",
    ),
    "export-decode-choice": (
        "bench.export_decode_choice",
        "decode graph by our wrapper, optimum-onnx and onnxruntime-genai: export time, size, step time",
    ),
    "gpu": ("bench.gpu_bench", "GPU host: torch eager FP16 against onnxruntime CUDA FP16, Qwen3-0.6B architecture"),
    "gpu-export-check": ("bench.gpu_export_check", "GPU host: FP16 graphs on CUDA, parity with torch and latency"),
    "gpu-train-smoke": ("bench.gpu_train_smoke", "GPU host: a few SFT, RL and TRL GRPO steps at Qwen3-0.6B size"),
}


def register(sub: Any) -> None:
    b = sub.add_parser("bench", help="benchmarks (the bench package; kept results in bench/results/)")
    bsub = b.add_subparsers(dest="bench", required=True, metavar="NAME")
    for name, (module_name, summary) in BENCHMARKS.items():
        module = importlib.import_module(module_name)
        p = bsub.add_parser(
            name, help=summary, description=module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        module.add_arguments(p)
        p.set_defaults(func=module.run)
