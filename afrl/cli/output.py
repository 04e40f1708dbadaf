"""What every command prints besides its result: progress lines on stderr, from one process.

Under `accelerate launch` (torchrun) every process runs the command; `RANK` tells them apart,
and only rank 0 prints, so a multi-process run reads like a single one.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable

Command = Callable[[argparse.Namespace], int]


def is_main_process() -> bool:
    """True unless this is one of the other processes of a multi-process launch."""
    return os.environ.get("RANK", "0") == "0"


def progress(message: str) -> None:
    if is_main_process():
        print(message, file=sys.stderr, flush=True)


def rank_zero_unless(distributes: Callable[[argparse.Namespace], bool], command: Command) -> Command:
    """`command`, run by every process when `distributes(args)`, else by rank 0 alone (one writer per output).

    Under `accelerate launch` a command that does not distribute its work would otherwise run N
    times over and write the same files N times; the other ranks say so and exit 0.
    """

    def run(args: argparse.Namespace) -> int:
        if is_main_process() or distributes(args):
            return command(args)
        logging.getLogger(__name__).warning(
            "rank %s: this command runs in one process (rank 0); this one exits", os.environ.get("RANK")
        )
        return 0

    return run
