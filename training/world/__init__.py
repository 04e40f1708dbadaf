"""The generated relevance world (DESIGN section 9): catalog, queries, rulebook, judge, data set.

Pure standard library and deterministic from a seed:

    from training.world import build_world, guideline_text
    world = build_world(seed=0)              # WorldSplits(train, dev, test), split by query
    world.long_tail("test")                  # examples a long-tail rule decided
    long_tail_eval_set(seed=0, world=world)  # eval only: >= 100 examples per long-tail rule, fresh queries
    guideline_text()                         # the rulebook as the system prompt's guideline
    save_world(world, "data/")               # a dataset folder afrl.dataset.load_dataset reads

Modules: `vocabulary` (static tables), `units`, `catalog` (products and their
text), `queries`, `rules` (the rulebook), `judge` (applies it), `candidates`
(documents per query), `explanation` (render and parse), `dataset`. The row type
`Example` is `afrl.dataset.Example`, re-exported here.
"""

from training.world.catalog import Product, accessory_for, build_product, sample_product
from training.world.dataset import (
    LONG_TAIL_EVAL_FILE,
    Example,
    WorldSplits,
    build_world,
    grade_distribution,
    load_jsonl,
    long_tail_eval_set,
    majority_baseline_accuracy,
    make_example,
    rule_firing_rates,
    save_jsonl,
    save_world,
)
from training.world.explanation import Citation, ParsedExplanation, parse_explanation, render_explanation
from training.world.judge import Judgement, RuleOutcome, judge
from training.world.queries import Query, QueryMix, compose_query
from training.world.rules import GRADE_MEANINGS, RULEBOOK, RULES, Rule, guideline_text
from training.world.units import Quantity, write

__all__ = [
    "GRADE_MEANINGS",
    "LONG_TAIL_EVAL_FILE",
    "RULEBOOK",
    "RULES",
    "Citation",
    "Example",
    "Judgement",
    "ParsedExplanation",
    "Product",
    "Quantity",
    "Query",
    "QueryMix",
    "Rule",
    "RuleOutcome",
    "WorldSplits",
    "accessory_for",
    "build_product",
    "build_world",
    "compose_query",
    "grade_distribution",
    "guideline_text",
    "judge",
    "load_jsonl",
    "long_tail_eval_set",
    "majority_baseline_accuracy",
    "make_example",
    "parse_explanation",
    "render_explanation",
    "rule_firing_rates",
    "sample_product",
    "save_jsonl",
    "save_world",
    "write",
]
