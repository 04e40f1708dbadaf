"""The embedded default model: built by the project's own pipeline on first use.

Nothing is downloaded: the first `afrl serve` without a model trains the
default preset (deterministic, a few minutes on 2 CPU cores), exports it and
caches the artifact under `AFRL_HOME`; later starts load it from the cache.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Callable
from pathlib import Path

from afrl.manifest import MANIFEST_NAME
from afrl.paths import afrl_home, default_model_dir

log = logging.getLogger(__name__)


def ensure_default_model(progress: Callable[[str], None] | None = None) -> Path:
    """Path of the cached default artifact, building it first if needed."""
    target = default_model_dir()
    if (target / MANIFEST_NAME).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".default.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two first starts must not build twice
        if (target / MANIFEST_NAME).is_file():
            return target
        try:
            from training.pipeline import build_default_model
        except ImportError as e:
            raise RuntimeError(
                f"no cached default model in {target}, and building it needs the training extras "
                f"({e.name} is missing): pip install 'afrl[train,export]', or pass --model DIR"
            ) from e
        build_default_model(target, work_dir=afrl_home() / "builds" / "default", progress=progress)
    return target
