"""The eval-only long-tail set: enough examples per long-tail rule, fresh queries, deterministic."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from afrl.dataset import load_dataset, read_jsonl
from training.world import LONG_TAIL_EVAL_FILE, RULEBOOK, build_world, long_tail_eval_set

ROOT = Path(__file__).resolve().parents[2]
LONG_TAIL_RULES = {r.id for r in RULEBOOK if r.long_tail}


def _per_rule(rows) -> Counter:
    return Counter(r for e in rows for r in e.decisive_rule_ids if r in LONG_TAIL_RULES)


@pytest.fixture(scope="module")
def eval_set(world):
    return long_tail_eval_set(seed=0, per_rule=100, world=world)


def test_every_long_tail_rule_decides_at_least_n_examples(eval_set, world):
    counts = _per_rule(eval_set)
    assert set(counts) == LONG_TAIL_RULES
    assert min(counts.values()) >= 100
    assert min(_per_rule(world.test).values()) < 100  # what the set is for: the test split has far fewer
    assert all(e.long_tail for e in eval_set)


def test_queries_are_disjoint_from_every_split(eval_set, world):
    world_texts = {e.query for e in world.all_rows()}
    world_ids = {e.query_id for e in world.all_rows()}
    assert not {e.query for e in eval_set} & world_texts
    assert not {e.query_id for e in eval_set} & world_ids
    assert all(e.query_id.startswith("lt0-") for e in eval_set)
    assert len({(e.query_id, e.query) for e in eval_set}) == len({e.query_id for e in eval_set})


def test_deterministic_from_the_seed(eval_set, world):
    assert long_tail_eval_set(seed=0, per_rule=100, world=world) == eval_set
    other = long_tail_eval_set(seed=1, per_rule=20, world=world)
    assert [e.query for e in other[:20]] != [e.query for e in eval_set[:20]]


def test_default_world_is_the_seeds_default_world():
    rows = long_tail_eval_set(seed=3, per_rule=5)
    texts = {e.query for e in build_world(seed=3).all_rows()}
    assert min(_per_rule(rows).values()) >= 5 and not {e.query for e in rows} & texts


def test_a_rule_that_cannot_fire_is_a_clear_error(world):
    with pytest.raises(RuntimeError, match="fewer than 5 examples for"):
        long_tail_eval_set(seed=0, per_rule=5, world=world, max_queries=20)
    with pytest.raises(ValueError, match="per_rule"):
        long_tail_eval_set(seed=0, per_rule=0, world=world)


def test_train_data_cli_writes_the_long_tail_eval_file(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "afrl.cli", "train", "data", "--out", str(tmp_path), "--queries", "40"]
        + ["--seed", "2", "--long-tail-eval", "10"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    rows = read_jsonl(tmp_path / LONG_TAIL_EVAL_FILE)
    world = build_world(seed=2, n_queries=40)
    assert rows == long_tail_eval_set(seed=2, per_rule=10, world=world)
    assert min(_per_rule(rows).values()) >= 10
    ds = load_dataset(tmp_path)  # the extra file is no split: the folder reads back as the world
    assert (ds.train, ds.dev, ds.test) == (world.train, world.dev, world.test)
    assert load_dataset(tmp_path / LONG_TAIL_EVAL_FILE, split_missing=False).train == rows  # what afrl eval reads
