"""The `afrl` command line: wires training, export, serving and benchmarks.

    afrl serve [--model DIR] [--host 127.0.0.1] [--port 8000]
    afrl export CHECKPOINT --out DIR [--dtype fp32|fp16|int8] [--guideline-file FILE]
    afrl train {data,sft,rl,distill,pipeline} ...
    afrl eval MODEL --data SPLIT|DIR|FILE [--out DIR] [--explain N]
    afrl bench NAME ...                 (afrl bench --help lists the benchmarks)

One module per command group (`serve_export`, `train`, `evaluate`, `bench`), each with a
`register(subparsers)`; heavy imports happen inside each command so `afrl serve` never loads torch.
"""

from __future__ import annotations

import argparse
import logging
import sys

from afrl.cli import bench, evaluate, serve_export, train


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="afrl", description="Answer First, Reason Later relevance models")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)
    for group in (serve_export, train, evaluate, bench):
        group.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from afrl.cli.output import is_main_process

    logging.basicConfig(  # the other processes of `accelerate launch` log warnings only
        level=logging.DEBUG if args.verbose else logging.INFO if is_main_process() else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from afrl.manifest import ArtifactError

    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except (ArtifactError, FileNotFoundError, ValueError, RuntimeError) as e:
        # Expected failures (bad artifact, bad path, bad option value) read as one line, not a traceback.
        print(f"afrl {args.command}: {e}", file=sys.stderr)
        return 1
