"""Fused vs plain graphs on CPU, side by side: prefix, score_prefix and score latency, FP32 and INT8.

    afrl bench fused-graphs-cpu [--work /tmp/afrl-fused-bench] [--repeats 15] [--int8-down int8]

Model: the random Qwen3-0.6B architecture of bench/qwen3_0p6b.py
(hidden 1024, 16 heads, 8 KV heads, head_dim 128, intermediate 3072,
151,936-row tied embedding, seed 0) but `--layers` layers (4): the per-layer
work of the 0.6B at a seventh of its export time and memory (the full 0.6B
export needs ~12 GB).

Graphs: each exported once (`export/onnx_export.py`), then fused
(`export/fusion.py`), and both quantized (`export/quantize.py`, down
projections `--int8-down`: `int8`, none kept FP32; how many export keeps
is measured per model, export/int8_outliers.py, and bench/int8_recipes.py
measures the recipes on a trained one), so the four variants of a graph differ only in fusion and
dtype. Work files are kept in `--work/layers<L>-<int8-down>` and reused by
later runs.

Shapes, as serving runs a request of 10 documents: the prefix graph on a
`--prefix`-token prefix (170: guideline + query); score_prefix on
`--documents` documents of 40..`--tokens` tokens left-padded to `--tokens`
(60) with that prefix cache; the score graph on the same 10 prompts in full
(prefix + document, 230 tokens). Every variant of a graph sees the same
inputs. Runs round-robin over the variants, `--repeats` rounds after a
warm-up, 2 intra-op threads; figures are the median and the minimum, with
the 1-minute load average (`os.getloadavg`, as `uptime` prints it) sampled
after each variant's runs: on a shared box, compare within a round, not
across runs.

Parity at the bench shape: fused vs plain outputs (label logits; the first
layer's key cache for the prefix graph): FP32 max abs diff, INT8 max abs
diff and argmax agreement over the 10 rows, and each INT8 variant against
its FP32 graph for scale (random weights: near-uniform label logits, so
INT8 argmaxes flip on noise; grades on a trained model are
bench/int8_recipes.py's).

Writes `--out` (bench/results/fused_graphs_cpu.json) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

GRAPHS = ("prefix", "score_prefix", "score")
VARIANTS = ("fp32", "fp32 fused", "int8", "int8 fused")
LABEL_IDS = [15, 16, 17, 18, 19]  # "0".."4" in the Qwen3 tokenizer


def build_graphs(work: Path, layers: int, int8_down: str) -> dict[str, dict[str, Path]]:
    """{graph: {variant: path}}, exporting only what `work` does not hold yet."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from bench.qwen3_0p6b import QWEN3_0P6B
    from export.fusion import fuse_graph
    from export.onnx_export import export_graph
    from export.quantize import quantize_int8

    paths = {
        g: {v: work / v.replace(" ", "_") / g / f"{g}.onnx" for v in VARIANTS} for g in GRAPHS
    }  # fp32/prefix/prefix.onnx, ...
    model = None
    for graph, files in paths.items():
        if not files["fp32"].is_file():
            if model is None:
                torch.manual_seed(0)
                model = Qwen3ForCausalLM(Qwen3Config(**{**QWEN3_0P6B, "num_hidden_layers": layers})).eval()
            export_graph(graph, model, LABEL_IDS, files["fp32"])
        if not files["fp32 fused"].is_file():
            fuse_graph(files["fp32"], files["fp32 fused"], max_positions=QWEN3_0P6B["max_position_embeddings"])
        for plain, int8 in (("fp32", "int8"), ("fp32 fused", "int8 fused")):
            if not files[int8].is_file():
                quantize_int8(files[plain], files[int8], down=int8_down)
    return paths


def session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # as service/onnx_session.py
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def inputs(args: argparse.Namespace, layers: int, prefix_session) -> dict[str, dict[str, np.ndarray]]:
    """The feeds of each graph: one request of `documents` documents after a `prefix`-token prefix."""
    import numpy as np

    rng = np.random.default_rng(0)
    b, t, p = args.documents, args.tokens, args.prefix
    prefix_ids = rng.integers(0, 150000, (1, p))
    lengths = rng.integers(min(40, t), t + 1, b)
    docs = rng.integers(0, 150000, (b, t))
    doc_mask = (np.arange(t)[None, :] >= (t - lengths)[:, None]).astype(np.int64)  # (B, T), left-padded
    cache = prefix_session.run(None, {"input_ids": prefix_ids})
    past = {f"past.{i // 2}.{'key' if i % 2 == 0 else 'value'}": c for i, c in enumerate(cache)}
    assert len(past) == 2 * layers
    return {
        "prefix": {"input_ids": prefix_ids},
        "score_prefix": {
            "input_ids": docs,
            "attention_mask": np.concatenate([np.ones((b, p), np.int64), doc_mask], axis=1),
            **past,
        },
        "score": {
            "input_ids": np.concatenate([np.repeat(prefix_ids, b, axis=0), docs], axis=1),
            "attention_mask": np.concatenate([np.ones((b, p), np.int64), doc_mask], axis=1),
        },
    }


def measure(graph: str, files: dict[str, Path], feeds: dict[str, np.ndarray], args: argparse.Namespace) -> dict:
    import numpy as np

    sessions = {v: session(files[v], args.threads) for v in VARIANTS}
    first = "present.0.key" if graph == "prefix" else "label_logits"
    outputs = {v: s.run([first], feeds)[0] for v, s in sessions.items()}  # warm-up, and the parity figures
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    loads: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(args.repeats):
        for variant, s in sessions.items():
            start = time.perf_counter()
            s.run([first], feeds)
            times[variant].append(time.perf_counter() - start)
            loads[variant].append(os.getloadavg()[0])
    result: dict = {"variants": {}}
    for variant in VARIANTS:
        result["variants"][variant] = {
            "median_ms": round(1e3 * float(np.median(times[variant])), 1),
            "min_ms": round(1e3 * min(times[variant]), 1),
            "load_1min": round(float(np.median(loads[variant])), 2),
        }
    parity = {"fp32_fused_vs_fp32_max_abs_diff": float(np.abs(outputs["fp32 fused"] - outputs["fp32"]).max())}
    parity["int8_fused_vs_int8_max_abs_diff"] = float(np.abs(outputs["int8 fused"] - outputs["int8"]).max())
    for variant in ("int8", "int8 fused"):  # the INT8 noise itself, for scale
        fp32 = outputs["fp32 fused" if "fused" in variant else "fp32"]
        parity[f"{variant.replace(' ', '_')}_vs_fp32_max_abs_diff"] = float(np.abs(outputs[variant] - fp32).max())
    if graph != "prefix":
        agree = outputs["int8 fused"].argmax(-1) == outputs["int8"].argmax(-1)
        parity["int8_fused_vs_int8_argmax_agreement"] = float(agree.mean())
    result["parity"] = parity
    for plain, fused in (("fp32", "fp32 fused"), ("int8", "int8 fused")):
        result[f"{fused} speedup (median)"] = round(float(np.median(times[plain]) / np.median(times[fused])), 2)
    del sessions
    return result


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--work", type=Path, default=Path("/tmp/afrl-fused-bench"))
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "fused_graphs_cpu.json")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--documents", type=int, default=10)
    p.add_argument("--tokens", type=int, default=60)
    p.add_argument("--prefix", type=int, default=170)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--int8-down", default="int8", choices=["fp32", "int8", "nbits8"])


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    import onnxruntime

    from bench.qwen3_0p6b import QWEN3_0P6B

    paths = build_graphs(args.work / f"layers{args.layers}-{args.int8_down}", args.layers, args.int8_down)
    feeds = inputs(args, args.layers, session(paths["prefix"]["fp32"], args.threads))
    results = {
        "model": {**QWEN3_0P6B, "num_hidden_layers": args.layers, "weights": "random, seed 0"},
        "shape": {"documents": args.documents, "tokens": args.tokens, "prefix": args.prefix},
        "repeats": args.repeats,
        "threads": args.threads,
        "int8_down_projections": args.int8_down,
        "onnxruntime": onnxruntime.__version__,
        "cpu_count": os.cpu_count(),
        "graphs": {},
    }
    for graph in GRAPHS:
        results["graphs"][graph] = measure(graph, paths[graph], feeds[graph], args)
        logging.info("%s: %s", graph, json.dumps(results["graphs"][graph]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")

    print(f"\n{'graph':<14}{'variant':<12}{'median ms':>10}{'min ms':>9}{'load':>7}")
    for graph, r in results["graphs"].items():
        for variant, v in r["variants"].items():
            print(f"{graph:<14}{variant:<12}{v['median_ms']:>10.1f}{v['min_ms']:>9.1f}{v['load_1min']:>7.2f}")
        print(f"{'':<14}parity {r['parity']}")
    print(f"wrote {args.out}")
    return 0
