"""The embedded default model's path (SFT only -> all graphs), shrunk: what the first `afrl serve` runs."""

from __future__ import annotations

from afrl.default_model import ensure_default_model
from afrl.manifest import load_manifest
from afrl.recipe import read_recipe
from training import presets
from training.model_factory import TinyQwen3Spec
from training.sft import SFTConfig

SMALL = TinyQwen3Spec(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1
)


def test_first_start_builds_caches_and_reuses_the_default_model(tmp_path, monkeypatch):
    monkeypatch.setenv("AFRL_HOME", str(tmp_path))
    small = presets.preset(
        "default",
        n_queries=40,
        docs_per_query=4,
        fresh_examples=12,
        model=SMALL,
        sft=SFTConfig(steps=3, batch_size=4, warmup_steps=1),
    )
    monkeypatch.setitem(presets.PRESETS, "default", small)
    messages: list[str] = []
    target = ensure_default_model(progress=messages.append)
    manifest = load_manifest(target)
    assert set(manifest.graphs) == {"score", "prefix", "score_prefix", "decode"}
    assert manifest.model_name == "afrl-default-tiny-qwen3"
    assert any("sft step" in m for m in messages) and any("export" in m for m in messages)
    assert any("12 of them fresh" in m for m in messages)
    assert (tmp_path / "models" / "default_report.json").is_file()
    assert read_recipe(target) == presets.recipe("default")  # the small preset's, which built it
    # Second start: served from the cache, nothing rebuilt.
    mtime = (target / "manifest.json").stat().st_mtime
    assert ensure_default_model() == target
    assert (target / "manifest.json").stat().st_mtime == mtime
