"""`afrl serve` and `afrl export`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from afrl.cli.output import progress


def cmd_serve(args: argparse.Namespace) -> int:
    from service.app import run
    from service.settings import ServiceSettings

    given = {"host": args.host, "port": args.port, "model": args.model}
    settings = ServiceSettings(**{k: v for k, v in given.items() if v is not None})
    if settings.model is None:
        from afrl.default_model import ensure_default_model

        progress("no --model given: using the embedded default model")
        settings = settings.model_copy(update={"model": ensure_default_model(progress=progress)})
    run(settings)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from export.artifact import export_artifact

    guideline = Path(args.guideline_file).read_text() if args.guideline_file else None
    manifest = export_artifact(
        args.checkpoint, Path(args.out), dtype=args.dtype, guideline=guideline, progress=progress, fuse=args.fuse
    )
    print(manifest.model_dump_json(indent=2, include={"model_name", "graphs", "parity", "labels"}))
    return 0


def register(sub: Any) -> None:
    s = sub.add_parser("serve", help="serve a model artifact over HTTP (default: the embedded default model)")
    s.add_argument("--model", help="artifact folder (default: AFRL_MODEL, else the embedded default model)")
    s.add_argument("--host", help="bind address (default 127.0.0.1, or AFRL_HOST)")
    s.add_argument("--port", type=int, help="port (default 8000, or AFRL_PORT)")
    s.set_defaults(func=cmd_serve)

    e = sub.add_parser("export", help="checkpoint (folder or hub id) -> model artifact")
    e.add_argument("checkpoint")
    e.add_argument("--out", required=True)
    e.add_argument("--dtype", choices=["fp32", "fp16", "int8"], default="fp32")
    e.add_argument("--guideline-file", help="guideline text when the checkpoint has no afrl.json")
    e.add_argument(
        "--no-fuse",
        dest="fuse",
        action="store_false",
        help="plain graphs: no fused norm / rotary / attention contrib ops (export/fusion.py)",
    )
    e.set_defaults(func=cmd_export)
