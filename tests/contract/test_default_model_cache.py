"""The default model's cache is keyed by its recipe: reused when it matches, rebuilt when it does not.

The build is faked (a manifest and a marker file, written the way build_default_model writes its
artifact): these tests check the cache's decisions, tests/e2e/test_default_build.py the real build.
"""

from __future__ import annotations

import json
import logging
import sys
import types
from dataclasses import replace
from pathlib import Path

import pytest

from afrl import recipe as recipe_module
from afrl.default_model import ensure_default_model
from afrl.manifest import MANIFEST_NAME
from afrl.recipe import RECIPE_NAME, Recipe, current_recipe, make_recipe, read_recipe, write_recipe
from training import presets
from training.sft import SFTConfig

OTHER = make_recipe("default", {"sft": {"steps": 1}}, recipe_version=0)


def write_model(folder: Path, tag: str, recipe: Recipe | None) -> Path:
    folder.mkdir(parents=True)
    (folder / MANIFEST_NAME).write_text(json.dumps({"tag": tag}))
    (folder / "score.onnx").write_text(tag)
    if recipe is not None:
        write_recipe(folder, recipe)
    return folder


def tag_of(folder: Path) -> str:
    return json.loads((folder / MANIFEST_NAME).read_text())["tag"]


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("AFRL_HOME", str(tmp_path))
    return tmp_path


def fake_pipeline(monkeypatch, build_default_model) -> None:
    """training.pipeline replaced by a module whose build_default_model is the one given."""
    fake = types.ModuleType("training.pipeline")
    fake.build_default_model = build_default_model
    monkeypatch.setitem(sys.modules, "training.pipeline", fake)


@pytest.fixture
def builds(monkeypatch) -> list[Path]:
    """A fast fake build (a manifest, no recipe: ensure_default_model records it); the targets it built."""
    calls: list[Path] = []

    def build_default_model(target: Path, work_dir: Path, progress=None) -> Path:
        calls.append(target)
        write_model(target, f"built-{len(calls)}", recipe=None)
        return target

    fake_pipeline(monkeypatch, build_default_model)
    return calls


def test_first_start_builds_and_records_the_recipe(home, builds):
    target = ensure_default_model()
    assert target == home / "models" / "default"
    assert len(builds) == 1 and builds[0] != target  # built aside, then renamed into place
    assert tag_of(target) == "built-1"
    assert read_recipe(target) == presets.recipe("default")
    assert sorted(p.name for p in target.parent.iterdir()) == [".default.lock", "current_recipe.json", "default"]


def test_a_cached_model_of_this_recipe_is_reused_without_building(home, builds, caplog):
    current = presets.recipe("default")
    target = write_model(home / "models" / "default", "cached", current)
    with caplog.at_level(logging.INFO, logger="afrl.default_model"):
        assert ensure_default_model() == target
    assert builds == [] and tag_of(target) == "cached"
    assert f"recipe {current.label}" in caplog.text and current.label.startswith("default@")


def test_a_cached_model_of_another_recipe_is_rebuilt_and_the_message_names_both(home, builds, caplog):
    target = write_model(home / "models" / "default", "old", OTHER)
    with caplog.at_level(logging.INFO, logger="afrl.default_model"):
        assert ensure_default_model() == target
    assert len(builds) == 1 and tag_of(target) == "built-1"
    assert read_recipe(target) == presets.recipe("default")
    (message,) = [r.getMessage() for r in caplog.records if "rebuilding" in r.getMessage()]
    assert f"built by recipe {OTHER.label}" in message
    assert f"this afrl builds recipe {presets.recipe('default').label}" in message
    assert "the old one stays until the new one is ready" in message
    assert not (target.parent / ".default.old").exists() and not (target.parent / ".default.building").exists()
    # Rebuilt once: the next start reuses it.
    assert ensure_default_model() == target and len(builds) == 1


def test_a_cache_from_before_recipes_were_recorded_is_rebuilt(home, builds, caplog):
    target = write_model(home / "models" / "default", "unrecorded", recipe=None)
    with caplog.at_level(logging.WARNING, logger="afrl.default_model"):
        ensure_default_model()
    assert len(builds) == 1 and tag_of(target) == "built-1"
    assert "built by recipe none recorded" in caplog.text


def test_a_failing_rebuild_keeps_the_old_model_and_serves_it(home, monkeypatch, caplog):
    target = write_model(home / "models" / "default", "old", OTHER)

    def half_build(target: Path, work_dir: Path, progress=None) -> Path:
        target.mkdir(parents=True)
        (target / "score.onnx").write_text("half")
        raise RuntimeError("disk full")

    fake_pipeline(monkeypatch, half_build)
    with caplog.at_level(logging.ERROR, logger="afrl.default_model"):
        assert ensure_default_model() == target
    assert tag_of(target) == "old" and (target / "score.onnx").read_text() == "old"
    assert read_recipe(target) == OTHER
    assert "disk full" in caplog.text and OTHER.label in caplog.text
    assert sorted(p.name for p in target.parent.iterdir() if p.name.startswith(".default.")) == [".default.lock"]


def test_a_failing_first_build_raises(home, monkeypatch):
    def failing(target: Path, work_dir: Path, progress=None) -> Path:
        raise RuntimeError("disk full")

    fake_pipeline(monkeypatch, failing)
    with pytest.raises(RuntimeError, match="disk full"):
        ensure_default_model()
    assert not (home / "models" / "default").exists()


def test_a_changed_preset_or_recipe_version_is_another_recipe(home, builds, monkeypatch):
    target = ensure_default_model()
    first = read_recipe(target)
    assert first is not None
    monkeypatch.setitem(presets.PRESETS, "default", replace(presets.PRESETS["default"], sft=SFTConfig(steps=801)))
    ensure_default_model()
    second = read_recipe(target)
    assert len(builds) == 2 and second is not None and second.fingerprint != first.fingerprint
    monkeypatch.setattr(presets, "RECIPE_VERSION", presets.RECIPE_VERSION + 1)
    ensure_default_model()
    third = read_recipe(target)
    assert len(builds) == 3 and third is not None and third.fingerprint not in (first.fingerprint, second.fingerprint)
    assert third.recipe_version == presets.RECIPE_VERSION


def test_the_fingerprint_is_stable_and_short():
    a = presets.recipe("default")
    assert a == presets.recipe("default") and len(a.fingerprint) == 12
    assert make_recipe("p", {"a": 1, "b": [2]}, 1).fingerprint == make_recipe("p", {"b": [2], "a": 1}, 1).fingerprint
    assert len({presets.recipe(name).fingerprint for name in presets.PRESETS}) == len(presets.PRESETS)


def test_a_swap_interrupted_between_its_renames_is_undone(home, builds):
    aside = write_model(home / "models" / ".default.old", "cached", presets.recipe("default"))
    target = ensure_default_model()
    assert builds == [] and tag_of(target) == "cached" and not aside.exists()


def test_without_the_training_extras_a_cached_model_is_served_as_it_is(home, monkeypatch, caplog):
    target = write_model(home / "models" / "default", "old", OTHER)
    for name in ("training.presets", "training.pipeline"):
        monkeypatch.setitem(sys.modules, name, None)  # importing it fails, as if it were not installed
    with caplog.at_level(logging.WARNING, logger="afrl.default_model"):
        assert ensure_default_model() == target
    assert tag_of(target) == "old" and OTHER.label in caplog.text


def test_without_the_training_extras_and_no_cache_the_error_says_what_to_install(home, monkeypatch):
    for name in ("training.presets", "training.pipeline"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(RuntimeError, match=r"pip install 'afrl\[train,export\]', or pass --model DIR"):
        ensure_default_model()


def test_the_current_recipe_is_remembered_for_unchanged_sources(home, monkeypatch):
    computed = current_recipe("default")
    assert computed == presets.recipe("default")
    assert (home / "models" / "current_recipe.json").is_file()
    # A fresh process (training not imported) reads it back without importing training.presets.
    monkeypatch.setattr(sys.modules["training"], "presets", presets)  # restored after a re-import below
    monkeypatch.delitem(sys.modules, "training.presets")
    assert current_recipe("default") == computed
    assert "training.presets" not in sys.modules
    # Changed sources: computed again (by importing training.presets).
    monkeypatch.setattr(recipe_module, "_sources_digest", lambda: "changed")
    assert current_recipe("default") == computed
    assert "training.presets" in sys.modules
    assert json.loads((home / "models" / "current_recipe.json").read_text())["sources"] == "changed"


def test_an_unreadable_recipe_counts_as_none_recorded(tmp_path):
    (tmp_path / RECIPE_NAME).write_text("{not json")
    assert read_recipe(tmp_path) is None
