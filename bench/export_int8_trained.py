"""INT8 export of a trained checkpoint, validated on the world's dev split: the tolerance that matters.

    afrl bench export-int8-trained CHECKPOINT --out /tmp/afrl-int8-trained [--pairs 400]

CHECKPOINT is a training checkpoint (e.g. `afrl train pipeline --preset
default` writes OUT/afrl-default-tiny-qwen3). The first `--pairs` (query,
document) pairs of the dev split of the world with `--world-seed` (the
pipeline's default world) are the validation set; export_artifact(dtype=
"int8") gates on grade agreement >= 0.99 and expected-grade MAE <= 0.05
(export.validate.TOLERANCES). Prints the parity figures and whether they
pass; the FP32 export of the same checkpoint is measured alongside for
reference. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a training checkpoint folder")
    p.add_argument("--out", default="/tmp/afrl-int8-trained")
    p.add_argument("--pairs", type=int, default=400)
    p.add_argument("--world-seed", type=int, default=0)
    p.add_argument("--dtypes", nargs="+", default=["int8"])


def run(args: argparse.Namespace) -> int:

    from export.artifact import export_artifact
    from export.validate import TOLERANCES, ParityError, Tolerance, check_figures
    from training.world import build_world

    dev = build_world(seed=args.world_seed).dev[: args.pairs]
    pairs = [(e.query, e.document) for e in dev]
    results = {}
    for dtype in args.dtypes:
        start = time.perf_counter()
        manifest = export_artifact(
            args.checkpoint,
            Path(args.out) / dtype,
            dtype=dtype,
            validation_pairs=pairs,
            tolerance=Tolerance(),
            progress=print,
        )
        try:
            check_figures(manifest.parity, TOLERANCES[dtype])
            verdict = "within the default tolerances"
        except ParityError as e:
            verdict = f"outside: {e}"
        results[dtype] = {
            "seconds": round(time.perf_counter() - start, 1),
            "parity": manifest.parity,
            "verdict": verdict,
        }
        print(json.dumps({dtype: results[dtype]}, indent=2), flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(results, indent=2))
    return 0
