"""The one-cue baselines every trained model is reported beside."""

from __future__ import annotations

from afrl.dataset import Example
from training.evaluate.baselines import category_baselines, category_of, query_type
from training.world import build_world


def _row(query: str, document: str, grade: int) -> Example:
    return Example(query_id="q", query=query, document=document, grade=grade)


def test_query_type_and_category_cues():
    assert query_type("felix cat food") == "cat food"
    assert query_type("white samsung galaxy buds2 earbuds") == "earbuds"
    assert category_of("Purina Dry Dog Food, 12kg. Price $17.99. Category: pet > dog food.") == "dog food"
    assert category_of("A novel about whales.") is None


def test_heuristics_fit_on_train_and_beat_chance_on_the_world():
    world = build_world(seed=3, n_queries=200, docs_per_query=6)
    found = category_baselines(world.train, world.test)
    assert found is not None
    majority = max(sum(e.grade == g for e in world.test) for g in range(5)) / len(world.test)
    # the printed category decides much of the grade: the heuristic is far above the majority class
    assert found["category_heuristic_accuracy"] > majority + 0.2
    assert found["pair_table_heuristic_accuracy"] > majority + 0.2


def test_data_not_written_like_the_world_has_no_category_baseline():
    rows = [_row("moby dick", "A novel about a whale, by Herman Melville.", 4)]
    assert category_baselines(rows, rows) is None
