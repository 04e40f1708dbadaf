"""What every command prints besides its result: progress lines on stderr."""

from __future__ import annotations

import sys


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
