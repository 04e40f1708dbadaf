"""The recipe of a built model: which preset, at which `RECIPE_VERSION`, fingerprinted.

The embedded default model is cached under `AFRL_HOME` and keyed by its
recipe: `recipe.json` inside the artifact folder records what built it, and
a start whose afrl builds another recipe rebuilds (afrl.default_model).

    {"preset": "default", "fingerprint": "3f9c0a1b2c4d", "recipe_version": 1, "config": {...}}

The fingerprint is the first 12 hex digits of the sha256 of the preset's
canonical JSON (its `PipelineConfig` as a dict, keys sorted) together with
the preset name and `training.presets.RECIPE_VERSION`. `recipe.json` sits
beside the files `manifest.json` lists, not among them: it says where the
artifact came from, not what serving loads, so the manifest format stays
as DESIGN section 3 has it.

Knowing the current recipe means importing training/ (and torch, seconds).
`current_recipe` remembers the last one it computed under `AFRL_HOME`,
keyed by a hash of the training/ and afrl/ sources, so a start with
unchanged code reads it back in milliseconds; changed code recomputes it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from afrl.paths import afrl_home

log = logging.getLogger(__name__)

RECIPE_NAME = "recipe.json"
FINGERPRINT_HEX = 12
MEMO_NAME = "current_recipe.json"
SOURCE_PACKAGES = ("training", "afrl")  # every config value of a preset is defined in these


class Recipe(BaseModel):
    preset: str
    fingerprint: str
    recipe_version: int
    config: dict[str, Any] = {}

    @property
    def label(self) -> str:
        """How messages name it: `default@3f9c0a1b2c4d`."""
        return f"{self.preset}@{self.fingerprint}"


def make_recipe(preset: str, config: dict[str, Any], recipe_version: int) -> Recipe:
    """The recipe of `preset` built from `config` (a JSON-able dict) by code at `recipe_version`."""
    canonical = json.dumps(
        {"preset": preset, "recipe_version": recipe_version, "config": config}, sort_keys=True, separators=(",", ":")
    )
    fingerprint = hashlib.sha256(canonical.encode()).hexdigest()[:FINGERPRINT_HEX]
    return Recipe(preset=preset, fingerprint=fingerprint, recipe_version=recipe_version, config=config)


def write_recipe(folder: Path, recipe: Recipe) -> Path:
    path = Path(folder) / RECIPE_NAME
    path.write_text(recipe.model_dump_json(indent=2))
    return path


def read_recipe(folder: Path) -> Recipe | None:
    """The recipe recorded in an artifact folder; None when it records none (or none that reads)."""
    path = Path(folder) / RECIPE_NAME
    if not path.is_file():
        return None
    try:
        return Recipe.model_validate_json(path.read_text())
    except (OSError, ValidationError) as e:
        log.warning("%s: unreadable recipe, treated as none recorded: %s", path, str(e).splitlines()[0])
        return None


def current_recipe(preset: str) -> Recipe | None:
    """The recipe this afrl's training code builds for `preset`; None without the training extras."""
    memo_path = afrl_home() / "models" / MEMO_NAME
    sources = _sources_digest()
    # Already imported (a training process, or a test that patched the presets): ask it directly.
    if "training.presets" not in sys.modules and sources is not None:
        memo = _read_memo(memo_path, sources, preset)
        if memo is not None:
            return memo
    try:
        from training.presets import recipe
    except ImportError as e:
        log.info("training extras missing (%s): the default model's recipe cannot be computed", e.name)
        return None
    computed = recipe(preset)
    if sources is not None:
        _write_memo(memo_path, sources, computed)
    return computed


def _sources_digest() -> str | None:
    """sha256 over the .py files of SOURCE_PACKAGES, found without importing them; None if one is missing."""
    digest = hashlib.sha256()
    for package in SOURCE_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            return None
        for location in spec.submodule_search_locations:
            root = Path(location)
            for path in sorted(root.rglob("*.py")):
                digest.update(f"{package}/{path.relative_to(root)}\0".encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


def _read_memo(path: Path, sources: str, preset: str) -> Recipe | None:
    try:
        raw = json.loads(path.read_text())
        if raw.get("sources") != sources:
            return None
        return Recipe.model_validate(raw["recipes"][preset])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # absent, stale or damaged: compute it again


def _write_memo(path: Path, sources: str, recipe: Recipe) -> None:
    """Remember `recipe` for these sources; a memo that cannot be written only costs time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            raw = json.loads(path.read_text())
            recipes = raw["recipes"] if raw.get("sources") == sources else {}
        except (OSError, ValueError, KeyError, AttributeError):
            recipes = {}
        recipes[recipe.preset] = recipe.model_dump()
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"sources": sources, "recipes": recipes}, indent=2))
        os.replace(tmp, path)  # two starts writing at once: each file whole, the last one wins
    except OSError as e:
        log.debug("could not remember the current recipe in %s: %s", path, e)
