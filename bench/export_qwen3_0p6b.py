"""Export the full-size Qwen3-0.6B architecture (random init) in fp32, fp16 and int8: time, size, parity.

    afrl bench export-0p6b --out /tmp/afrl-0p6b      # ~30 minutes on 2 cores, ~12 GB disk

The checkpoint is bench.qwen3_0p6b's (the real 0.6B dims,
random seeded weights, 2.4 GB in fp32) with its 188-token guideline
(`GUIDELINE`; the prefix bench cuts it to ~150). Each graph is exported to FP32 once; the fp16 and
int8 artifacts convert those same FP32 graphs (export_artifact would export
them again: add the FP32 export times to theirs). Every artifact is
validated by export_artifact against the torch model; on a random model the
INT8 grade figures mean little (near-uniform grades flip on noise), so the
figures are gated after the fact against `TOLERANCES` and the verdict is
recorded rather than raised. Writes `--out`/results_<dtypes>.json and keeps the
artifacts (`--out`/{fp32,fp16,int8}) for `afrl bench export-prefix-speedup`.
Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

from bench.fp32_exports import reuse_fp32_exports
from bench.qwen3_0p6b import GUIDELINE, make_checkpoint


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="/tmp/afrl-0p6b")
    p.add_argument("--dtypes", nargs="+", default=["fp32", "fp16", "int8"])


def run(args: argparse.Namespace) -> int:
    from transformers import AutoTokenizer

    from export.artifact import export_artifact
    from export.validate import TOLERANCES, ParityError, Tolerance, check_figures

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    checkpoint = out / "checkpoint"
    if not (checkpoint / "config.json").is_file():  # seeded: a rerun would write the same weights
        make_checkpoint(checkpoint)
    guideline_tokens = len(AutoTokenizer.from_pretrained(checkpoint, fix_mistral_regex=False).encode(GUIDELINE))
    results = {
        "checkpoint_s": round(time.perf_counter() - start, 1),
        "guideline_tokens": guideline_tokens,
        "fp32_export_s": {},
        "artifacts": {},
    }
    with reuse_fp32_exports(out / "fp32-graphs", results["fp32_export_s"]):
        for dtype in args.dtypes:
            start = time.perf_counter()
            manifest = export_artifact(checkpoint, out / dtype, dtype=dtype, tolerance=Tolerance(), progress=print)
            seconds = time.perf_counter() - start
            try:
                check_figures(manifest.parity, TOLERANCES[dtype])
                verdict = "within the default tolerances"
            except ParityError as e:
                verdict = f"outside: {e}"
            sizes = {f: (out / dtype / f).stat().st_size for f in manifest.files if f.endswith((".onnx", ".data"))}
            results["artifacts"][dtype] = {
                "seconds": round(seconds, 1),
                "bytes": sizes,
                "total_mb": round(sum(sizes.values()) / 1e6, 1),
                "parity": manifest.parity,
                "verdict": verdict,
                "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 1),
            }
            print(json.dumps({dtype: results["artifacts"][dtype]}, indent=2), flush=True)
            (out / f"results_{'_'.join(args.dtypes)}.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results["fp32_export_s"]))
    return 0
