"""Progress lines for long work: to the caller's callback (the CLI prints them), else to the log."""

from __future__ import annotations

import logging
from collections.abc import Callable

Progress = Callable[[str], None]


def say(progress: Progress | None, logger: logging.Logger, message: str) -> None:
    if progress is not None:
        progress(message)
    else:
        logger.info(message)
