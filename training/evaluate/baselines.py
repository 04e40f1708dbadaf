"""The trivial baselines a trained model is reported beside.

    majority        the train split's most frequent grade (`reports.majority_baseline_accuracy`)
    category        the one-cue heuristic: the query's product type against the document's printed
                    `Category:` line, reduced to their relation (same type, sibling, complement,
                    unrelated, or a brand-only query), each relation answered with its most frequent
                    train grade
    pair table      the same cue without the relation: the most frequent train grade of each
                    (query type, document category) pair, the relation's where the pair is unseen

The category cues read the generated world's product vocabulary, so they apply to data written like
that world (every document has a `Category: department > type.` line); for other data
`category_baselines` returns None and only the majority baseline is reported.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence
from functools import cache

_CATEGORY = re.compile(r"Category: [^>]+> ([^.]+)\.")


@cache
def _query_nouns() -> tuple[tuple[re.Pattern[str], str], ...]:
    from training.world.vocabulary import PRODUCT_TYPES

    nouns = sorted(((n, k) for k, t in PRODUCT_TYPES.items() for n in t.query_nouns), key=lambda x: -len(x[0]))
    return tuple((re.compile(rf"\b{re.escape(n)}\b"), k) for n, k in nouns)


@cache
def _host_models() -> tuple[tuple[re.Pattern[str], str], ...]:
    from training.world.vocabulary import BRAND_MODELS, PRODUCT_TYPES, model_brand

    models = {
        m
        for k, makers in BRAND_MODELS.items()
        if not PRODUCT_TYPES[k].is_accessory
        for ms in makers.values()
        for m in ms
    }
    return tuple(
        (re.compile(rf"\b{re.escape(m.lower())}\b"), model_brand(m)[1]) for m in sorted(models, key=len, reverse=True)
    )


def query_type(query: str) -> str | None:
    """The product type a query asks for: its longest query noun, else the main product whose model it names."""
    for pattern, key in (*_query_nouns(), *_host_models()):
        if pattern.search(query):
            return key
    return None


def category_of(document: str) -> str | None:
    found = _CATEGORY.search(document)
    return None if found is None else found.group(1)


def _majority(counts: Counter) -> int:
    return counts.most_common(1)[0][0]


def category_baselines(train: Sequence, test: Sequence) -> dict | None:
    """Accuracy on `test` of the category and pair-table heuristics fitted on `train`; None when they do not apply."""
    from training.world.vocabulary import PRODUCT_TYPES, relation

    def cues(e) -> tuple[Hashable, Hashable] | None:
        category = category_of(e.document)
        if category is None or category not in PRODUCT_TYPES:
            return None
        q = query_type(e.query)
        return ("brand-only" if q is None else relation(q, category)), (q, category)

    train_cues = [cues(e) for e in train]
    test_cues = [cues(e) for e in test]
    if not test or any(c is None for c in test_cues) or not train:
        return None
    by_relation: dict = defaultdict(Counter)
    by_pair: dict = defaultdict(Counter)
    for e, c in zip(train, train_cues, strict=True):
        if c is not None:
            by_relation[c[0]][e.grade] += 1
            by_pair[c[1]][e.grade] += 1
    fallback = Counter(e.grade for e in train)

    def relation_guess(c) -> int:
        return _majority(by_relation.get(c[0]) or fallback)

    def pair_guess(c) -> int:
        return _majority(by_pair[c[1]]) if c[1] in by_pair else relation_guess(c)

    n = len(test)
    return {
        "category_heuristic_accuracy": sum(relation_guess(c) == e.grade for e, c in zip(test, test_cues, strict=True))
        / n,
        "pair_table_heuristic_accuracy": sum(pair_guess(c) == e.grade for e, c in zip(test, test_cues, strict=True))
        / n,
    }
