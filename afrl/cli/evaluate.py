"""`afrl eval`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from afrl.cli.output import progress as _progress


def cmd_eval(args: argparse.Namespace) -> int:
    from afrl.evaluation import evaluate

    report = evaluate(
        Path(args.model),
        args.data,
        Path(args.out) if args.out else None,
        seed=args.seed,
        limit=args.limit,
        explain=args.explain,
        progress=_progress,
        split=args.split,
    )
    import json

    hidden = ("confusion", "per_rule", "reliability", "dataset")
    if "explanations" in report:
        report["explanations"] = {k: v for k, v in report["explanations"].items() if k != "samples"}
    print(json.dumps({k: v for k, v in report.items() if k not in hidden}, indent=2))
    return 0


def register(sub: Any) -> None:
    v = sub.add_parser("eval", help="evaluate a model artifact or a training checkpoint on a world split or a dataset")
    v.add_argument("model", help="artifact folder (manifest.json) or checkpoint folder (afrl.json)")
    v.add_argument(
        "--data",
        required=True,
        help="train | dev | test (a split of the generated world), a dataset folder (train.jsonl [dev.jsonl "
        "test.jsonl] guideline.md [labels.json]; see --split) or a .jsonl file (every row is evaluated); "
        "a folder named like a split is ./test",
    )
    v.add_argument(
        "--split",
        choices=["train", "dev", "test"],
        default="test",
        help="which split of a dataset folder to evaluate (a missing one is split off train by query)",
    )
    v.add_argument("--out", help="folder for eval.json, confusion.png and eval.png")
    v.add_argument("--seed", type=int, default=0, help="world seed when --data names a split")
    v.add_argument("--limit", type=int, help="evaluate at most this many examples")
    v.add_argument(
        "--explain",
        type=int,
        default=0,
        help="generate explanations for this many examples (format validity, agreement); needs torch "
        "and the checkpoint (an artifact's source checkpoint is used when on disk)",
    )
    v.set_defaults(func=cmd_eval)
