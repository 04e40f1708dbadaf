"""Shared worlds for the world tests: built once per session, small enough to stay fast."""

from __future__ import annotations

import pytest

from training.world import WorldSplits, build_world


@pytest.fixture(scope="session")
def world() -> WorldSplits:
    """A moderately sized world: 500 queries x 10 documents = 5,000 examples."""
    return build_world(seed=0, n_queries=500, docs_per_query=10)


@pytest.fixture(scope="session")
def all_examples(world: WorldSplits) -> list:
    return world.train + world.dev + world.test
