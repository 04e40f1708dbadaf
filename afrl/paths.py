"""Where afrl keeps what it builds: `AFRL_HOME` (default ~/.cache/afrl)."""

from __future__ import annotations

import os
from pathlib import Path


def afrl_home() -> Path:
    return Path(os.environ.get("AFRL_HOME") or Path.home() / ".cache" / "afrl").expanduser()


def default_model_dir() -> Path:
    """The embedded default model's artifact, built on first use."""
    return afrl_home() / "models" / "default"
