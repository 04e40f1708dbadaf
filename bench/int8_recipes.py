"""Which MLP down projections stay FP32 in INT8 graphs: grade agreement on a trained model, speed at 0.6B width.

    afrl bench int8-recipes CHECKPOINT [--pairs 400] [--speed-graph PATH] [--skip-speed]

CHECKPOINT: a trained checkpoint (`afrl train pipeline --preset default
--out DIR` writes DIR/afrl-default-tiny-qwen3). Its fused FP32 score,
prefix and score_prefix graphs are exported once; each recipe quantizes
them (label head always FP32; the other MatMuls dynamic int8, per-channel
weights):

    fp32      down projections FP32 (the previous default)
    int8      down projections int8 too
    nbits8    down projections MatMulNBits, 8-bit weights, activations int8 per block of 32
    outliers  export's default: as few down projections FP32 as the agreement with FP32 on
              export.artifact.SAMPLE_PAIRS needs, widest input range first (export/int8_outliers.py's
              ladder, gated as export gates INT8), the rest int8

Agreement: on the first `--pairs` (query, document) pairs of the world's dev
split (seed `--world-seed`, the pipeline's world), grade agreement and
expected-grade MAE against torch FP32, for the score graph and for the
shared-prefix path serving uses (prefix + score_prefix), from
`export.validate` / `export.validate_cache` (figures only, no gate).

Speed: each recipe applied to `--speed-graph` (default: the fused FP32
score_prefix graph of `afrl bench fused-graphs-cpu`'s work folder, the 0.6B
width with 4 layers, random weights, hence no outlier layer of its own:
`outliers` keeps as many down projections FP32 as it kept on the trained
model, the first ones), timed round-robin at 10 documents x 60 tokens
after a 170-token prefix, 2 threads, with the 1-minute load average.

Writes `--out` (bench/results/int8_recipes.json) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

DEFAULT_SPEED_GRAPH = Path("/tmp/afrl-fused-bench/layers4-int8/fp32_fused/score_prefix/score_prefix.onnx")


def agreement(args: argparse.Namespace, recipes: list[str]) -> dict:
    from tokenizers import Tokenizer

    from afrl.prompt import PromptEncoder
    from export.artifact import SAMPLE_PAIRS, _pad_token_id, load_checkpoint, query_groups
    from export.fusion import fuse_graph
    from export.int8_outliers import OutlierChoice
    from export.onnx_export import export_graph
    from export.quantize import quantize_int8
    from export.validate import TOLERANCES, Tolerance, reference_label_logits, validate_score_graph
    from export.validate_cache import validate_cache_graphs
    from training.world import build_world

    ckpt = load_checkpoint(args.checkpoint)
    tokenizer_json = Path(args.checkpoint) / "tokenizer.json"
    encoder = PromptEncoder(ckpt.template, Tokenizer.from_file(str(tokenizer_json)))
    dev = build_world(seed=args.world_seed).dev[: args.pairs]
    groups = query_groups(encoder, [(e.query, e.document) for e in dev])
    full = [prefix + doc for prefix, docs in groups for doc in docs]
    reference = reference_label_logits(ckpt.model, ckpt.labels.token_ids, full)
    pad = _pad_token_id(ckpt.tokenizer)
    work = args.work / "trained"
    fused = {}
    for name in ("score", "prefix", "score_prefix"):
        fused[name] = work / "fused_fp32" / f"{name}.onnx"
        if not fused[name].is_file():
            plain = export_graph(name, ckpt.model, ckpt.labels.token_ids, work / "plain" / f"{name}.onnx")
            fuse_graph(plain, fused[name], max_positions=int(ckpt.model.config.max_position_embeddings))
    calibration = [prefix + doc for prefix, docs in query_groups(encoder, SAMPLE_PAIRS) for doc in docs]
    gate = TOLERANCES["int8"].min_grade_agreement or 1.0
    results = {}
    for recipe in ["fp32 graph", *recipes]:
        if recipe == "fp32 graph":
            paths = fused
        elif recipe == "outliers":
            choice = OutlierChoice(calibration, pad, gate, ckpt.labels.values)
            paths = {
                n: choice.quantize(p, work / "int8_outliers" / p.name, n)
                for n, p in fused.items()  # score first: the choice is calibrated on it
            }
        else:
            paths = {n: quantize_int8(p, work / f"int8_down_{recipe}" / p.name, down=recipe) for n, p in fused.items()}
        figures = validate_score_graph(
            paths["score"], ckpt.model, ckpt.labels, full, Tolerance(), pad_token_id=pad, reference=reference
        )
        figures.update(
            validate_cache_graphs(
                paths, ckpt.model, ckpt.labels, groups, Tolerance(), pad_token_id=pad, reference=reference
            )
        )
        if recipe == "outliers":
            figures.update(choice.figures())
        results[recipe] = figures
        logging.info("%s: %s", recipe, figures)
    return results


def speed(args: argparse.Namespace, recipes: list[str], kept: int) -> dict:
    """Median ms per recipe; `outliers` keeps the first `kept` down projections FP32 (as on the trained model)."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    from export.quantize import mlp_down_nodes, quantize_int8

    graph = args.speed_graph
    paths = {"fp32 graph": graph}
    for recipe in recipes:
        paths[recipe] = args.work / "speed" / f"int8_down_{recipe}" / graph.name
        if recipe == "outliers":
            paths[recipe] = paths[recipe].parent.with_name(f"int8_down_outliers_first{kept}") / graph.name
        if paths[recipe].is_file():
            continue
        if recipe == "outliers":
            keep = mlp_down_nodes(onnx.load(graph, load_external_data=False))[:kept]
            quantize_int8(graph, paths[recipe], down="int8", fp32_nodes=keep)
        else:
            quantize_int8(graph, paths[recipe], down=recipe)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    sessions = {r: ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"]) for r, p in paths.items()}
    first = sessions["fp32 graph"]
    layers = (len(first.get_inputs()) - 2) // 2
    kv = first.get_inputs()[2].shape[1]
    head_dim = first.get_inputs()[2].shape[3]
    rng = np.random.default_rng(0)
    b, t, p = 10, 60, 170
    lengths = rng.integers(40, t + 1, b)
    mask = np.concatenate(
        [np.ones((b, p), np.int64), (np.arange(t)[None, :] >= (t - lengths)[:, None]).astype(np.int64)], axis=1
    )
    feeds = {"input_ids": rng.integers(0, 150000, (b, t)), "attention_mask": mask}
    for i in range(2 * layers):
        feeds[f"past.{i // 2}.{'key' if i % 2 == 0 else 'value'}"] = rng.standard_normal((1, kv, p, head_dim)).astype(
            np.float32
        )
    outputs = {r: s.run(["label_logits"], feeds)[0] for r, s in sessions.items()}
    times: dict[str, list[float]] = {r: [] for r in sessions}
    loads: dict[str, list[float]] = {r: [] for r in sessions}
    for _ in range(args.repeats):
        for recipe, s in sessions.items():
            start = time.perf_counter()
            s.run(["label_logits"], feeds)
            times[recipe].append(time.perf_counter() - start)
            loads[recipe].append(os.getloadavg()[0])
    return {
        recipe: {
            "median_ms": round(1e3 * float(np.median(times[recipe])), 1),
            "min_ms": round(1e3 * min(times[recipe]), 1),
            "load_1min": round(float(np.median(loads[recipe])), 2),
            "max_abs_diff_vs_fp32": float(np.abs(outputs[recipe] - outputs["fp32 graph"]).max()),
        }
        for recipe in sessions
    }


RECIPES = ("fp32", "int8", "nbits8", "outliers")  # export.quantize.DOWN_PROJECTIONS and export's default


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a trained checkpoint folder")
    p.add_argument("--pairs", type=int, default=400)
    p.add_argument("--world-seed", type=int, default=0)
    p.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=RECIPES)
    p.add_argument("--speed-graph", type=Path, default=DEFAULT_SPEED_GRAPH)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", type=Path, default=Path("/tmp/afrl-int8-recipes"))
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "int8_recipes.json")
    p.add_argument("--skip-speed", action="store_true", help="grade agreement only")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if not args.skip_speed and not args.speed_graph.is_file():
        raise SystemExit(f"{args.speed_graph}: no such graph; run `afrl bench fused-graphs-cpu` first, or --skip-speed")

    results = {"checkpoint": str(args.checkpoint), "pairs": args.pairs, "agreement": agreement(args, args.recipes)}
    if not args.skip_speed:
        kept = int(results["agreement"].get("outliers", {}).get("int8.fp32_down_projections", 0))
        results["speed"] = {
            "graph": str(args.speed_graph),
            "threads": args.threads,
            "outliers_fp32_down_projections": kept,
            **speed(args, args.recipes, kept),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    keys = ("grade_agreement", "expected_grade_mae", "score_prefix.grade_agreement", "score_prefix.expected_grade_mae")
    print(f"\n{'recipe':<12}" + "".join(f"{k:>34}" for k in keys) + f"{'median ms':>11}{'load':>7}")
    for recipe, figures in results["agreement"].items():
        timing = results.get("speed", {}).get(recipe, {})
        print(
            f"{recipe:<12}"
            + "".join(f"{figures[k]:>34.4f}" for k in keys)
            + f"{timing.get('median_ms', float('nan')):>11.1f}{timing.get('load_1min', float('nan')):>7.2f}"
        )
    print(f"wrote {args.out}")
    return 0
