"""The embedded default model: built by the project's own pipeline on first use.

Nothing is downloaded: the first `afrl serve` without a model trains the
default preset (deterministic, a few minutes on 2 CPU cores), exports it and
caches the artifact under `AFRL_HOME`; later starts load it from the cache.

The cache is keyed by the recipe (afrl.recipe): a cached model built by
another recipe (an older afrl, or one from before recipes were recorded) is
rebuilt into a fresh folder and swapped in by rename once it is complete, so
a failed or interrupted build leaves the old model in place and usable. A
failed rebuild serves the old model, with an error saying so. Without the
training extras the recipe cannot be computed, and a cached model is served
as it is.

The running server does not swap models while it serves, so a rebuild
happens before `afrl serve` starts listening.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from afrl.manifest import MANIFEST_NAME
from afrl.paths import afrl_home, default_model_dir
from afrl.recipe import Recipe, current_recipe, read_recipe, write_recipe

log = logging.getLogger(__name__)

PRESET = "default"
UNRECORDED = "none recorded (built before afrl recorded recipes)"


def ensure_default_model(progress: Callable[[str], None] | None = None) -> Path:
    """Path of the cached default artifact, built (or rebuilt for this afrl's recipe) first if needed."""
    target = default_model_dir()
    wanted = current_recipe(PRESET)
    if _is_current(target, wanted):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".default.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two first starts must not build twice
        _finish_interrupted_swap(target)
        if _is_current(target, wanted):  # another start built it while this one waited
            return target
        cached = _is_built(target)
        try:
            from training.pipeline import build_default_model
            from training.presets import recipe
        except ImportError as e:
            if cached:
                log.warning(
                    "cached default model was built by recipe %s and cannot be rebuilt without the training "
                    "extras (%s is missing): serving it as it is",
                    _label(read_recipe(target)),
                    e.name,
                )
                return target
            raise RuntimeError(
                f"no cached default model in {target}, and building it needs the training extras "
                f"({e.name} is missing): pip install 'afrl[train,export]', or pass --model DIR"
            ) from e
        wanted = recipe(PRESET)  # the config this very build reads
        if _is_current(target, wanted):
            return target
        if cached:
            log.warning(
                "cached default model was built by recipe %s; this afrl builds recipe %s: rebuilding "
                "(a few minutes), the old one stays until the new one is ready",
                _label(read_recipe(target)),
                wanted.label,
            )
        fresh = target.with_name(f".{target.name}.building")
        try:
            build_default_model(fresh, work_dir=afrl_home() / "builds" / PRESET, progress=progress)
            write_recipe(fresh, wanted)
            _swap_in(fresh, target)
        except Exception as e:
            if not cached:
                raise
            _finish_interrupted_swap(target)
            log.error(
                "rebuilding the default model (recipe %s) failed: %s; serving the cached one (recipe %s)",
                wanted.label,
                e,
                _label(read_recipe(target)),
            )
            log.debug("the failed rebuild", exc_info=True)
            return target
        finally:
            shutil.rmtree(fresh, ignore_errors=True)
    log.info("built the default model, recipe %s, in %s", wanted.label, target)
    return target


def _is_built(folder: Path) -> bool:
    return (folder / MANIFEST_NAME).is_file()


def _is_current(target: Path, wanted: Recipe | None) -> bool:
    """A cached model there that this afrl need not rebuild (logged: which recipe it is)."""
    if not _is_built(target):
        return False
    cached = read_recipe(target)
    if wanted is None:
        log.warning(
            "cached default model, recipe %s: the training extras are missing, so it is not checked "
            "against this afrl's recipe",
            _label(cached),
        )
        return True
    if cached is None or cached.fingerprint != wanted.fingerprint:
        return False
    log.info("cached default model, recipe %s, in %s", cached.label, target)
    return True


def _label(recipe: Recipe | None) -> str:
    return recipe.label if recipe is not None else UNRECORDED


def _old(target: Path) -> Path:
    return target.with_name(f".{target.name}.old")


def _swap_in(fresh: Path, target: Path) -> None:
    """Replace `target` by `fresh`: two renames, so no partly written model is ever at `target`."""
    old = _old(target)
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.rename(target, old)
    os.rename(fresh, target)
    shutil.rmtree(old, ignore_errors=True)


def _finish_interrupted_swap(target: Path) -> None:
    """A start stopped between `_swap_in`'s two renames left the old model aside: put it back."""
    old = _old(target)
    if not _is_built(target) and _is_built(old):
        shutil.rmtree(target, ignore_errors=True)
        os.rename(old, target)
