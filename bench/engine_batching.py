"""Work shared across requests in the engine: passes of concurrent requests, and explanation streams decoded together.

In one process, on one artifact, engines with different settings run side
by side, their rounds alternating so a busy machine slows them alike:

    scoring    rounds of `--concurrent` requests of `--documents` documents (distinct world queries)
               at once, through ScoringEngine.score: both AFRL_GUIDELINE_CACHE and
               AFRL_CROSS_REQUEST_BATCHING off (main's way), the guideline cache alone, both on:
               pairs/s (and its median ratio to the first engine's over paired rounds), mean rows
               per score pass (afrl_batch_size), passes, share of the wall time inside the model,
               prefix tokens saved
    streams    `--users` closed-loop users for `--seconds` per engine turn: half send explained
               requests (top_k 1; 1 and 10 documents in turn), half plain ones (1, 10, 50 documents):
               median and p90 time to the end of the explanation ("done") per size, "before" (both
               AFRL_CROSS_REQUEST_BATCHING and AFRL_GUIDELINE_CACHE off: main's scheduling, one
               request's streams per decode pass, every prefix whole) and "after" (both on)

Without `--model`, a model of the embedded default model's size (training.model_factory.TinyQwen3Spec,
hidden 128, 4 layers; its 196-token guideline) with random weights is exported once into `--out`.
Random weights rarely say eos, so every explanation runs to `--max-new-tokens`. Prints figures and
asserts nothing.

    afrl bench engine-batching [--model DIR] [--rounds 10] [--seconds 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

from bench.service_common import percentile, print_table


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="artifact with all four graphs (default: the default-size one, built in --out)")
    p.add_argument("--out", default="/tmp/afrl-bench-engine", help="where the default-size artifact is built")
    p.add_argument("--concurrent", type=int, default=16, help="requests at once in a scoring round")
    p.add_argument("--documents", type=int, default=10, help="documents per scoring request")
    p.add_argument("--rounds", type=int, default=10, help="timed scoring rounds per engine (after one warm-up)")
    p.add_argument("--users", type=int, default=8, help="closed-loop users of the streams part (half explain)")
    p.add_argument("--seconds", type=float, default=20.0, help="streams part: seconds per engine, in 4 turns")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    p.add_argument("--max-batch-tokens", type=int, nargs="+", default=[8192], help="AFRL_MAX_BATCH_TOKENS (each)")
    p.add_argument("--parts", nargs="+", choices=("scoring", "streams"), default=["scoring", "streams"])


def default_size_artifact(out: Path) -> Path:
    """The embedded default model's architecture (training.model_factory.TinyQwen3Spec: hidden 128, 4 layers)
    and guideline (196 tokens), random weights, exported in FP32 with every graph; built once, then reused."""
    artifact = out / "artifact"
    if (artifact / "manifest.json").is_file():
        return artifact
    from bench.qwen3_0p6b import make_checkpoint
    from export.artifact import export_artifact
    from training.model_factory import TinyQwen3Spec
    from training.world import guideline_text

    spec = TinyQwen3Spec()
    dims = {k: getattr(spec, k) for k in spec.__dataclass_fields__}
    dims["head_dim"] = spec.hidden_size // spec.num_attention_heads
    print(f"exporting the default-size model into {artifact} ...", flush=True)
    export_artifact(make_checkpoint(out / "checkpoint", dims, guideline=guideline_text()), artifact, dtype="fp32")
    return artifact


async def make_engine(model: Path, threads: int, max_new_tokens: int, **settings: Any):
    from service.artifact_loader import load_artifact
    from service.engine import ScoringEngine
    from service.metrics import ServiceMetrics
    from service.settings import ServiceSettings

    s = ServiceSettings(
        model=model,
        intra_op_threads=threads,
        providers="CPUExecutionProvider",
        max_new_tokens=max_new_tokens,
        max_queue_delay_ms=0,
        max_queue=4096,
        max_queue_tokens=1 << 22,
        **settings,
    )
    engine = ScoringEngine(load_artifact(s), s.max_batch_tokens, ServiceMetrics(), s)
    engine.start_background()
    await asyncio.to_thread(engine.warmup)
    return engine


def sample(engine: Any, name: str) -> float:
    return engine.metrics.registry.get_sample_value(name) or 0.0


async def scoring(engines: dict[str, Any], requests: list[tuple[str, list[str]]], rounds: int) -> dict:
    """Alternating rounds of all requests at once on each engine (the order flips every round): the figures
    of the timed rounds, and each engine's speed relative to the first one's in the same round (the median
    of those ratios: a busy machine slows both rounds of a pair alike)."""
    seconds: dict[str, list[float]] = {name: [] for name in engines}
    before: dict[str, dict[str, float]] = {}
    names = (
        "afrl_batch_size_sum",
        "afrl_batch_size_count",
        "afrl_inference_duration_seconds_count",
        "afrl_prefix_tokens_saved_total",
        "afrl_inference_duration_seconds_sum",
        "afrl_batch_tokens_sum",
    )
    for r in range(rounds + 1):
        if r == 1:  # the first round warms up
            before = {n: {k: sample(e, k) for k in names} for n, e in engines.items()}
        for name, engine in list(engines.items())[:: 1 if r % 2 else -1]:
            start = time.perf_counter()
            await asyncio.gather(*(engine.score(q, docs) for q, docs in requests))
            if r:
                seconds[name].append(time.perf_counter() - start)
    pairs = sum(len(docs) for _, docs in requests)
    first = next(iter(engines))
    out = {}
    for name, engine in engines.items():
        delta = {k: sample(engine, k) - v for k, v in before[name].items()}
        passes = delta["afrl_batch_size_count"]
        ratios = [a / b for a, b in zip(seconds[first], seconds[name], strict=True)]
        out[name] = {
            "pairs/s": rounds * pairs / sum(seconds[name]),
            f"x {first.split(',')[0]}": statistics.median(ratios),
            "rows/score pass": delta["afrl_batch_size_sum"] / passes,
            "score passes": int(passes),
            "all passes": int(delta["afrl_inference_duration_seconds_count"]),
            "in passes %": 100 * delta["afrl_inference_duration_seconds_sum"] / sum(seconds[name]),
            "padded tokens/pair": delta["afrl_batch_tokens_sum"] / (rounds * pairs),
            "prefix tokens saved/pair": delta["afrl_prefix_tokens_saved_total"] / (rounds * pairs),
        }
    return out


async def streams(engines: dict[str, Any], requests: list[tuple[str, list[str]]], users: int, seconds: float) -> dict:
    """Closed-loop users in turns of seconds/4 per engine: time to done of the explained requests."""
    done: dict[str, dict[int, list[float]]] = {name: {1: [], 10: []} for name in engines}
    rows: dict[str, list[float]] = {name: [0.0, 0.0] for name in engines}

    async def user(engine: Any, name: str, u: int, until: float) -> None:
        explains, i = u % 2 == 0, 0
        sizes = (1, 10) if explains else (1, 10, 50)
        while time.monotonic() < until:
            size = sizes[(u // 2 + i) % len(sizes)]
            query, docs = requests[(u * 7 + i) % len(requests)]
            start = time.perf_counter()
            await engine.score(query, docs[:size], explain=1 if explains else None)
            if explains:
                done[name][size].append((time.perf_counter() - start) * 1000)
            i += 1

    for turn in range(4):
        for name, engine in engines.items():
            if turn == 0:
                await asyncio.gather(*(engine.score(q, d[:10], explain=1) for q, d in requests[:2]))  # warm-up
            s0, c0 = sample(engine, "afrl_decode_batch_size_sum"), sample(engine, "afrl_decode_batch_size_count")
            until = time.monotonic() + seconds / 4
            await asyncio.gather(*(user(engine, name, u, until) for u in range(users)))
            rows[name][0] += sample(engine, "afrl_decode_batch_size_sum") - s0
            rows[name][1] += sample(engine, "afrl_decode_batch_size_count") - c0
    out = {}
    for name in engines:
        figures: dict[str, float | int] = {}
        for size, ms in done[name].items():
            figures[f"{size}-doc done p50 ms"] = statistics.median(ms) if ms else float("nan")
            figures[f"{size}-doc p90"] = percentile(ms, 90) if ms else float("nan")
            figures[f"{size}-doc n"] = len(ms)
        figures["rows/decode pass"] = rows[name][0] / max(1.0, rows[name][1])
        out[name] = figures
    return out


async def measure(args: argparse.Namespace, model: Path) -> None:
    from bench.world_requests import world_requests

    requests = world_requests(args.concurrent, max(args.documents, 50))
    scored = [(q, docs[: args.documents]) for q, docs in requests]
    kw = dict(threads=args.threads, max_new_tokens=args.max_new_tokens)
    for budget in args.max_batch_tokens if "scoring" in args.parts else []:
        engines = {
            f"both off, {budget}": await make_engine(
                model, **kw, cross_request_batching=False, guideline_cache=False, max_batch_tokens=budget
            ),
            f"guideline cache, {budget}": await make_engine(
                model, **kw, cross_request_batching=False, max_batch_tokens=budget
            ),
            f"+ cross-request, {budget}": await make_engine(
                model, **kw, cross_request_batching=True, max_batch_tokens=budget
            ),
        }
        try:
            title = (
                f"scoring: {args.rounds} rounds of {args.concurrent} concurrent requests x {args.documents} "
                f"documents, AFRL_MAX_BATCH_TOKENS={budget}"
            )
            print_table(title, await scoring(engines, scored, args.rounds))
        finally:
            for engine in engines.values():
                engine.close()
    if "streams" not in args.parts:
        return
    budget = args.max_batch_tokens[0]
    engines = {
        "before: both off": await make_engine(
            model, **kw, cross_request_batching=False, guideline_cache=False, max_batch_tokens=budget
        ),
        "after: both on": await make_engine(model, **kw, cross_request_batching=True, max_batch_tokens=budget),
    }
    try:
        title = (
            f"explained streams: {args.users} users ({args.users // 2} explaining, top_k 1, "
            f"{args.max_new_tokens} tokens), {args.seconds:g} s per engine, AFRL_MAX_BATCH_TOKENS={budget}"
        )
        print_table(title, await streams(engines, requests, args.users, args.seconds))
    finally:
        for engine in engines.values():
            engine.close()


def run(args: argparse.Namespace) -> int:
    import os

    model = Path(args.model) if args.model else default_size_artifact(Path(args.out))
    print(f"model {model}; load before: {os.getloadavg()[0]:.2f} (1-min average, {os.cpu_count()} cores)")
    asyncio.run(measure(args, model))
    print(f"load after: {os.getloadavg()[0]:.2f}")
    return 0
