"""The data set: determinism, splits by query, balance, persistence, speed."""

from __future__ import annotations

import time

import pytest

from afrl.dataset import Example as DatasetExample
from afrl.dataset import load_dataset
from training.world import (
    Example,
    build_world,
    grade_distribution,
    guideline_text,
    load_jsonl,
    majority_baseline_accuracy,
    save_jsonl,
    save_world,
)


def test_same_seed_same_world_different_seed_different_world():
    a = build_world(seed=7, n_queries=60, docs_per_query=6)
    b = build_world(seed=7, n_queries=60, docs_per_query=6)
    c = build_world(seed=8, n_queries=60, docs_per_query=6)
    assert (a.train, a.dev, a.test) == (b.train, b.dev, b.test)
    assert [e.query for e in a.train] != [e.query for e in c.train]


def test_sizes_and_docs_per_query(world):
    assert len(world.train) + len(world.dev) + len(world.test) == 5000
    assert len(world.test) == len(world.dev) == 500
    per_query = {}
    for e in world.train:
        per_query[e.query_id] = per_query.get(e.query_id, 0) + 1
    assert set(per_query.values()) == {10}


def test_splits_share_no_query(world):
    ids = {name: {e.query_id for e in world.split(name)} for name in ("train", "dev", "test")}
    texts = {name: {e.query for e in world.split(name)} for name in ("train", "dev", "test")}
    for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
        assert not ids[a] & ids[b]
        assert not texts[a] & texts[b]
    # one text per query id, one id per text
    pairs = {(e.query_id, e.query) for e in world.train}
    assert len(pairs) == len(ids["train"]) == len(texts["train"])


def test_documents_are_distinct_within_a_query(world):
    seen = {}
    for e in world.train:
        seen.setdefault(e.query_id, []).append(e.document)
    assert all(len(docs) == len(set(docs)) for docs in seen.values())


def test_grade_distribution_is_balanced(all_examples):
    dist = grade_distribution(all_examples)
    assert set(dist) == {0, 1, 2, 3, 4}
    assert abs(sum(dist.values()) - 1) < 1e-9
    assert max(dist.values()) < 0.40
    assert min(dist.values()) > 0.08


def test_majority_baseline_is_the_most_frequent_train_grade(world):
    acc = majority_baseline_accuracy(world.train, world.test)
    assert 0.15 < acc < 0.40
    best = max(grade_distribution(world.test).values())
    assert acc <= best + 1e-9


def test_long_tail_slice(world):
    tail = world.long_tail("test")
    assert tail and all(e.long_tail for e in tail)
    assert len(tail) < len(world.test) / 2
    with pytest.raises(ValueError):
        world.long_tail("validation")


def test_jsonl_round_trip(world, tmp_path):
    path = tmp_path / "sub" / "dev.jsonl"
    save_jsonl(world.dev, path)
    assert load_jsonl(path) == world.dev


def test_save_world_writes_a_dataset_folder_that_load_dataset_reads_back(world, tmp_path):
    written = save_world(world, tmp_path)
    assert set(written) == {"train", "dev", "test", "guideline", "labels"}
    ds = load_dataset(tmp_path)
    assert (ds.train, ds.dev, ds.test) == (world.train, world.dev, world.test)
    assert ds.guideline == guideline_text() and not ds.report.split_off
    assert ds.report.rows_without_explanation == ds.report.rows_without_rule_ids == 0
    assert ds.report.long_tail_rows == sum(e.long_tail for e in world.train + world.dev + world.test)


def test_world_examples_are_the_dataset_rows():
    assert Example is DatasetExample  # one row type for the world, training and eval


def test_documents_are_short(all_examples):
    words = [len(e.document.split()) for e in all_examples]
    assert min(words) >= 10 and max(words) <= 40


def test_build_is_fast():
    started = time.perf_counter()
    build_world(seed=3, n_queries=500, docs_per_query=10)
    assert time.perf_counter() - started < 5.0  # 20,000 examples take about 1.5 s on one core


def test_invalid_arguments_are_refused():
    with pytest.raises(ValueError):
        build_world(n_queries=2)
    with pytest.raises(ValueError):
        build_world(n_queries=10, dev_fraction=0.5, test_fraction=0.5)
