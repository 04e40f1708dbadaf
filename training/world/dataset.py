"""The generated relevance data set: examples, splits by query, JSONL, statistics.

`build_world(seed)` is deterministic: one `random.Random(seed)` drives every
choice, and nothing depends on set or dict iteration order beyond the
insertion order of constant tables. Splits are by query (a query and all its
documents land in one split), and query texts are unique, so no query is
shared across splits.

    world = build_world(seed=0)
    save_world(world, "data/")      # train/dev/test.jsonl, guideline.md, labels.json (DESIGN section 10)
    rows = long_tail_eval_set(seed=0, per_rule=100, world=world)   # eval only: >= 100 per long-tail rule
    save_jsonl(rows, "data/" + LONG_TAIL_EVAL_FILE)                 # what `afrl eval --data FILE` reads

The row type `Example` and the JSONL reader and writer are `afrl.dataset`'s,
the same every training and eval command reads any dataset with;
`save_jsonl` / `load_jsonl` are thin wrappers kept for existing callers.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from afrl.dataset import SPLITS, DatasetLabels, Example, Splits, read_jsonl, write_dataset, write_jsonl
from training.metrics import majority_baseline_accuracy as _majority_baseline_accuracy
from training.world.candidates import candidate_documents
from training.world.catalog import Product, sample_product
from training.world.explanation import render_explanation
from training.world.judge import judge
from training.world.queries import Query, QueryMix, compose_query
from training.world.rules import GRADE_MEANINGS, RULEBOOK, guideline_text
from training.world.vocabulary import PRODUCT_TYPES

log = logging.getLogger(__name__)

LONG_TAIL_EVAL_FILE = "long_tail_eval.jsonl"  # beside a saved world's splits; no loader reads it as a split
_TYPE_KEYS = tuple(PRODUCT_TYPES)
_TYPE_WEIGHTS = tuple(0.5 if PRODUCT_TYPES[k].is_accessory else 1.0 for k in _TYPE_KEYS)


@dataclass(frozen=True)
class WorldSplits(Splits):
    """The world's examples split by query; `split(name)`, `long_tail(split)`, `all_rows()` as for any dataset."""

    train: list[Example]
    dev: list[Example]
    test: list[Example]


def make_example(query_id: str, query: Query, product: Product) -> Example:
    j = judge(query, product)
    return Example(
        query_id,
        query.text,
        product.document,
        j.grade,
        j.fired,
        j.decisive,
        render_explanation(query, product, j),
        j.long_tail,
    )


def build_world(
    seed: int = 0,
    n_queries: int = 2000,
    docs_per_query: int = 10,
    dev_fraction: float = 0.1,
    test_fraction: float = 0.1,
    mix: QueryMix | None = None,
) -> WorldSplits:
    """`n_queries` queries with `docs_per_query` judged documents each, split by query."""
    mix = mix or QueryMix()
    if n_queries < 3 or docs_per_query < 1:
        raise ValueError(f"need n_queries >= 3 and docs_per_query >= 1, got {n_queries}, {docs_per_query}")
    if not 0 < dev_fraction + test_fraction < 1:
        raise ValueError(f"dev_fraction + test_fraction must lie in (0, 1), got {dev_fraction + test_fraction}")
    rng = random.Random(seed)
    seen: set[str] = set()
    groups = [_query_group(rng, mix, seen, f"s{seed}-q{i:05d}", docs_per_query) for i in range(n_queries)]
    order = list(range(n_queries))
    rng.shuffle(order)
    n_test = max(1, round(n_queries * test_fraction))
    n_dev = max(1, round(n_queries * dev_fraction))
    parts = {"test": order[:n_test], "dev": order[n_test : n_test + n_dev], "train": order[n_test + n_dev :]}
    splits = {name: [ex for g in sorted(idx) for ex in groups[g]] for name, idx in parts.items()}
    log.info("world seed=%d: %s examples", seed, {k: len(v) for k, v in splits.items()})
    return WorldSplits(**splits)


def long_tail_eval_set(
    seed: int = 0,
    per_rule: int = 100,
    world: Splits | None = None,
    docs_per_query: int = 10,
    mix: QueryMix | None = None,
    max_queries: int = 200_000,
) -> list[Example]:
    """An evaluation-only set with at least `per_rule` examples decided by each long-tail rule.

    The world's test split holds only a handful of examples per long-tail rule
    (4-39 of 2,000 in the seed-0 world), too few to tell one model from
    another on a rule. This set draws fresh queries from the same generator
    (same query mix, same candidate documents) with a random stream of its
    own, keeps the examples a long-tail rule decided while that rule still
    has fewer than `per_rule`, and stops when every rule has enough. Its
    queries share no text with any split of `world` (default `build_world(seed)`:
    pass the world you train on when it is not the default size) and their
    ids start with `lt{seed}-`, never the world's `s{seed}-`. Deterministic
    from `seed`. Rows are marked long_tail; an example two rules decided
    counts for both.
    """
    if per_rule < 1:
        raise ValueError(f"per_rule must be at least 1, got {per_rule}")
    world = world if world is not None else build_world(seed)
    mix = mix or QueryMix()
    rng = random.Random(f"long-tail-eval-{seed}")  # a str seed hashes the same in every process
    seen = {e.query for e in world.all_rows()}
    counts = Counter({r.id: 0 for r in RULEBOOK if r.long_tail})
    rows: list[Example] = []
    for i in range(max_queries):
        if min(counts.values()) >= per_rule:
            break
        for ex in _query_group(rng, mix, seen, f"lt{seed}-q{i:05d}", docs_per_query):
            decided = [r for r in ex.decisive_rule_ids if r in counts]
            if any(counts[r] < per_rule for r in decided):
                rows.append(ex)
                counts.update(decided)
    else:
        short = ", ".join(f"{r} {n}" for r, n in counts.items() if n < per_rule)
        raise RuntimeError(f"{max_queries} queries gave fewer than {per_rule} examples for {short}")
    log.info("long-tail eval set seed=%d: %d examples, %d queries, per rule %s", seed, len(rows), i, dict(counts))
    return rows


def _query_group(
    rng: random.Random, mix: QueryMix, seen: set[str], query_id: str, docs_per_query: int
) -> list[Example]:
    """A new query (its text joins `seen`) and its judged candidate documents."""
    query, target = _new_query(rng, mix, seen)
    seen.add(query.text)
    return [make_example(query_id, query, doc) for doc in candidate_documents(rng, query, target, docs_per_query)]


def _new_query(rng: random.Random, mix: QueryMix, seen: set[str]) -> tuple[Query, Product]:
    """A target product and a query for it whose text no earlier query used."""
    for _ in range(100):
        type_key = rng.choices(_TYPE_KEYS, _TYPE_WEIGHTS)[0]
        target = sample_product(rng, type_key)
        query = compose_query(rng, target, mix)
        if query.text not in seen:
            return query, target
    raise RuntimeError("could not compose a new query text; the vocabulary is too small for n_queries")


def save_world(world: WorldSplits, out_dir: str | Path) -> dict[str, Path]:
    """The world as a dataset folder (DESIGN section 10), written by the writer every dataset goes through."""
    labels = DatasetLabels(values=sorted(GRADE_MEANINGS), meanings=GRADE_MEANINGS)
    splits = {name: world.split(name) for name in SPLITS}
    return write_dataset(out_dir, splits, guideline_text(), labels)


def save_jsonl(examples: Iterable[Example], path: str | Path) -> None:
    write_jsonl(list(examples), path)


def load_jsonl(path: str | Path) -> list[Example]:
    return read_jsonl(path)


def grade_distribution(examples: Sequence[Example]) -> dict[int, float]:
    """Share of each grade 0..4 (zeros included)."""
    counts = Counter(e.grade for e in examples)
    return {g: counts[g] / len(examples) if examples else 0.0 for g in range(5)}


def majority_baseline_accuracy(train: Sequence[Example], test: Sequence[Example]) -> float:
    """Accuracy on `test` of always answering the most frequent grade of `train`."""
    return _majority_baseline_accuracy([e.grade for e in train], [e.grade for e in test])


def rule_firing_rates(examples: Sequence[Example]) -> dict[str, float]:
    """Share of examples on which each rule fired (rules that never fired are absent)."""
    counts = Counter(r for e in examples for r in e.rule_ids)
    return {r: counts[r] / len(examples) for r in sorted(counts, key=lambda r: int(r[1:]))}
