"""Shared fixtures for the training tests: one tokenizer context, one small world, one warmed-up tiny model.

Everything is sized to keep tests/training fast on 2 shared CPU cores.
"""

from __future__ import annotations

import copy

import pytest
import torch

from training.context import TrainingContext
from training.model_factory import TinyQwen3Spec, build_tiny_qwen3
from training.sft import SFTConfig, train_sft
from training.world import build_world

SMALL = TinyQwen3Spec(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1
)


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """One intra-op thread: the box is shared, and tiny ops only pay for thread synchronisation."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def ctx() -> TrainingContext:
    return TrainingContext.create()


@pytest.fixture(scope="session")
def small_world():
    return build_world(seed=3, n_queries=40, docs_per_query=4)


@pytest.fixture(scope="session")
def sequences(ctx, small_world):
    return ctx.encode(small_world.train)


@pytest.fixture(scope="session")
def vocab(ctx, sequences):
    return ctx.vocab(sequences)


@pytest.fixture(scope="session")
def _warm(ctx, sequences, vocab):
    model = build_tiny_qwen3(SMALL, seed=0)
    train_sft(
        model,
        sequences,
        ctx.labels,
        SFTConfig(steps=40, batch_size=8, warmup_steps=3, learning_rate=1e-2),
        ctx.pad_id,
        vocab=vocab,
    )
    return model


@pytest.fixture
def warm_model(_warm):
    """A tiny model after 40 SFT steps: it answers with a grade first, so rollouts earn varied rewards."""
    return copy.deepcopy(_warm)


@pytest.fixture(scope="session")
def small_spec() -> TinyQwen3Spec:
    return SMALL
