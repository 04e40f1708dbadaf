"""Shipped weights: a round trip that ships only what training changed, and the default's that fit its recipe."""

from __future__ import annotations

import logging

import pytest
import torch

from afrl.recipe import make_recipe
from training.model_factory import TinyQwen3Spec, build_tiny_qwen3
from training.presets import PRESETS, recipe
from training.shipped_weights import (
    WEIGHTS_NAME,
    load_shipped,
    read_shipped,
    shipped_for,
    write_shipped,
)

SMALL = TinyQwen3Spec(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1
)


def _trained_small(seed: int = 3) -> torch.nn.Module:
    model = build_tiny_qwen3(SMALL, seed=seed)
    with torch.no_grad():
        for p in model.model.layers.parameters():
            p.add_(0.01)
        model.get_input_embeddings().weight[[5, 77, 151_000]] += 1.0
    return model


def test_round_trip_ships_only_the_changed_rows_and_restores_every_weight(tmp_path):
    model = _trained_small()
    small = make_recipe("small", {"x": 1}, 1)
    write_shipped(model, SMALL, 3, small, tmp_path / "small", {"sft_seconds": 1.5, "sft_losses": [2.0, 1.0]})
    shipped = read_shipped("small", root=tmp_path)
    assert shipped is not None and shipped.fingerprint == small.fingerprint
    assert shipped.info["embedding_rows_shipped"] == 3 and shipped.losses == [2.0, 1.0]
    assert (tmp_path / "small" / WEIGHTS_NAME).stat().st_size < 1_000_000  # not the 151,936-row table
    loaded = load_shipped(shipped, SMALL, 3)
    want, got = model.state_dict(), loaded.state_dict()
    assert set(want) == set(got)
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=0, msg=key)
    assert loaded.lm_head.weight is loaded.get_input_embeddings().weight  # still tied


def test_weights_of_another_recipe_are_not_used(tmp_path, caplog):
    write_shipped(_trained_small(), SMALL, 3, make_recipe("small", {"x": 1}, 1), tmp_path / "small")
    assert shipped_for(make_recipe("small", {"x": 1}, 1), root=tmp_path) is not None
    with caplog.at_level(logging.WARNING):
        assert shipped_for(make_recipe("small", {"x": 2}, 1), root=tmp_path) is None
    assert "training from scratch" in caplog.text
    assert shipped_for(make_recipe("other", {"x": 1}, 1), root=tmp_path) is None  # nothing shipped for it


def test_loading_into_another_architecture_is_refused(tmp_path):
    write_shipped(_trained_small(), SMALL, 3, make_recipe("small", {}, 1), tmp_path / "small")
    shipped = read_shipped("small", root=tmp_path)
    wider = TinyQwen3Spec(
        hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1
    )
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_shipped(shipped, wider, 3)


def test_the_default_presets_shipped_weights_were_trained_by_its_recipe():
    """Changing the default preset without retraining its weights would make every first start train
    from scratch for half an hour: retrain (`afrl train pipeline --preset default --out RUN`) and ship
    (`python -m training.shipped_weights RUN`)."""
    shipped = read_shipped("default")
    assert shipped is not None, "no weights shipped for the default preset"
    assert shipped.fingerprint == recipe("default").fingerprint, (
        f"shipped weights were trained by default@{shipped.fingerprint}, the preset is now {recipe('default').label}"
    )
    assert shipped.info["spec"] == PRESETS["default"].model.__dict__
