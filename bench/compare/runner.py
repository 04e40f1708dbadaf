"""`afrl bench compare`: the alternatives a user would pick and our engine, side by side in one run.

1. the request: 1 query x `documents` documents from the world; the model: one checkpoint and
   its FP32 and INT8 artifacts (bench.compare.models; missing ones exported and cached in OUT);
2. the prompts: the artifact's template, guideline cut to ~`guideline_tokens` (compare.inputs);
3. each path, one after the other (one model in memory at a time), `warmup` untimed and
   `repeats` timed requests, torch with `threads` threads and onnxruntime with `threads`
   intra-op threads:
       naive_fp32            transformers forward, full logits at every position   (the reference)
       generate_fp32         transformers generate(max_new_tokens=1)
       optimum_fp32          optimum ORTModelForCausalLM (its own export, cached)
       reason_first_fp32     explanation of `reason_tokens` tokens, then the grade
       engine_prefix_<dt>    ScoringEngine, shared prefix        dt = fp32, int8
       engine_plain_<dt>     ScoringEngine, no shared prefix
       llama_cpp_q8_0        llama.cpp on a Q8_0 GGUF, pairs in order reusing the prefix (only with
                             `llama_cpp`, the path of llama.cpp's converter: compare.llama_cpp_path)
4. answers checked against the reference (grade agreement, largest probability difference);
   OUT/compare.json, OUT/compare.png; the CLI prints the table.

A path that fails is reported with its error and the others still run.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from afrl.progress import Progress, say
from bench.compare.engine_path import engine_call
from bench.compare.inputs import build_inputs
from bench.compare.models import resolve_model
from bench.compare.report import plot, rows, versions
from bench.compare.timing import PathResult, agreement, time_path
from bench.world_requests import world_requests

logger = logging.getLogger(__name__)

REFERENCE = "naive_fp32"
VALIDATION_DOCUMENTS = 4  # of the request, to validate exported artifacts on (cheap for a 0.6B model)


@dataclass
class CompareConfig:
    model: str = "default"  # default | 0.6b | DIR (compare.models)
    documents: int = 16
    guideline_tokens: int = 150
    repeats: int = 5
    warmup: int = 1
    threads: int = 2  # torch intra-op threads and onnxruntime intra-op threads, every path
    reason_tokens: int = 64
    seed: int = 0
    llama_cpp: str = ""  # llama.cpp's convert_hf_to_gguf.py: adds the llama.cpp row ("" = no row)

    def __post_init__(self) -> None:
        for name in ("documents", "guideline_tokens", "repeats", "threads", "reason_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be at least 0, got {self.warmup}")


Factory = Callable[[], tuple[Callable[[], np.ndarray], Callable[[], None]]]  # -> (call, close)


class PathRunner:
    """Times the paths one by one, keeping every result (or its error) in order."""

    def __init__(self, config: CompareConfig, documents: int, progress: Progress | None):
        self.config = config
        self.documents = documents
        self.progress = progress
        self.results: list[PathResult] = []

    def run(
        self, key: str, label: str, dtype: str, factory: Factory, probabilities: bool = False, note: str = ""
    ) -> None:
        c = self.config
        say(self.progress, logger, f"{label} ({dtype}): {c.warmup} warm-up + {c.repeats} timed requests")
        result = PathResult(key, label, dtype, self.documents, note=note)
        try:
            call, close = factory()
            try:
                result.seconds, result.probs = time_path(call, c.warmup, c.repeats, probabilities)
            finally:
                close()
        except Exception as e:  # one broken path must not hide the others' figures
            logger.exception("%s failed", key)
            result.error = f"{type(e).__name__}: {e}"
        gc.collect()
        self.results.append(result)
        if result.seconds:
            say(self.progress, logger, f"  p50 {result.p50_ms:.1f} ms per request, {result.pairs_per_s:.2f} pairs/s")

    def check(self, reference: str) -> None:
        ref = next((r.probs for r in self.results if r.key == reference and r.probs is not None), None)
        for r in self.results:
            if ref is not None and r.probs is not None:
                r.checks = agreement(r.probs, ref)


def _no_close() -> None:
    return None


def run_compare(config: CompareConfig, out: Path, progress: Progress | None = None) -> dict:
    """Runs every path; returns what OUT/compare.json holds (`table` is what the CLI prints)."""
    from bench.compare.optimum_path import export_optimum, optimum_call
    from bench.compare.torch_paths import generate, load_model, naive, reason_first

    out.mkdir(parents=True, exist_ok=True)
    query, documents = world_requests(1, config.documents, config.seed)[0]
    model = resolve_model(config.model, out, progress, [(query, d) for d in documents[:VALIDATION_DOCUMENTS]])
    inputs = build_inputs(model.artifacts["fp32"], query, documents, config.guideline_tokens)
    tokens = inputs.token_counts()
    say(progress, logger, f"request: 1 query x {len(documents)} documents, {tokens}")
    build_s = {
        **model.build_s,
        "export_optimum": export_optimum(model.checkpoint, model.sha256, out / model.name / "optimum", progress),
    }
    runner = PathRunner(config, len(documents), progress)
    threads = config.threads

    torch_model = None

    def llama_cpp_factory(converter: str):
        from bench.compare.llama_cpp_path import convert_gguf, llama_cpp_call

        gguf, seconds = convert_gguf(
            model.checkpoint, model.sha256, Path(converter).expanduser(), out / model.name / "gguf", progress
        )
        build_s["convert_gguf"] = seconds
        return llama_cpp_call(gguf, inputs, threads)

    def torch_path(make: Callable) -> Factory:
        def factory():
            nonlocal torch_model
            if torch_model is None:
                torch_model = load_model(model.checkpoint, threads)
            return make(torch_model), _no_close

        return factory

    runner.run(REFERENCE, "transformers forward, full logits (naive)", "fp32", torch_path(lambda m: naive(m, inputs)))
    runner.run(
        "generate_fp32", "transformers generate(max_new_tokens=1)", "fp32", torch_path(lambda m: generate(m, inputs))
    )
    runner.run(
        "reason_first_fp32",
        f"reason first: {config.reason_tokens} tokens, then the grade",
        "fp32",
        torch_path(lambda m: reason_first(m, inputs, config.reason_tokens)),
        note=f"torch generate with a KV cache, exactly {config.reason_tokens} explanation tokens (greedy) "
        "before the grade; its grade is a different prediction, so agreement is not expected",
    )
    torch_model = None
    gc.collect()
    runner.run(
        "optimum_fp32",
        "optimum ORTModelForCausalLM",
        "fp32",
        lambda: (optimum_call(out / model.name / "optimum", inputs, threads), _no_close),
    )
    for dtype in ("fp32", "int8"):
        artifact = model.artifacts[dtype]
        runner.run(
            f"engine_prefix_{dtype}",
            "afrl engine, shared prefix",
            dtype,
            lambda a=artifact: engine_call(a, inputs, threads, shared_prefix=True),
            probabilities=True,
        )
        runner.run(
            f"engine_plain_{dtype}",
            "afrl engine, no shared prefix",
            dtype,
            lambda a=artifact: engine_call(a, inputs, threads, shared_prefix=False),
            probabilities=True,
        )
    if config.llama_cpp:
        runner.run(
            "llama_cpp_q8_0",
            "llama.cpp (llama-cpp-python), prefix reuse",
            "q8_0",
            lambda: llama_cpp_factory(config.llama_cpp),
            note="llama-cpp-python on a Q8_0 GGUF of the same checkpoint (llama.cpp's converter), one context, "
            "pairs in order, each reusing the longest token prefix the context holds; across requests only "
            "the guideline",
        )
    runner.check(REFERENCE)

    table = rows(runner.results, REFERENCE)
    report = {
        "config": asdict(config),
        "model": {
            "name": model.name,
            "checkpoint": str(model.checkpoint),
            "sha256": model.sha256,
            "artifacts": {k: str(v) for k, v in model.artifacts.items()},
        },
        "threads": {"torch_intra_op": threads, "onnxruntime_intra_op": threads},
        "request": {"query": query, "documents": len(documents), **tokens},
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "versions": versions(),
        "build_s": build_s,
        "table": table,
    }
    (out / "compare.json").write_text(json.dumps(report, indent=2))
    plot(report, out / "compare.png")
    say(progress, logger, f"wrote {out / 'compare.json'} and {out / 'compare.png'}")
    return report
