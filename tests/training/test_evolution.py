"""Instruction evolution: operators aim at rules, the rulebook labels, the filter and the loop record."""

import json
import random

import pytest

from training.evolution import (
    OPERATORS,
    EvolutionConfig,
    LLMMutator,
    ProgrammaticMutator,
    VariantFilter,
    apply_edit,
    generate_variants,
    pick_targets,
    rule_errors,
    run_evolution,
)
from training.world import RULES, judge
from training.world.catalog import sample_product
from training.world.queries import QueryMix, compose_query

LONG_TAIL = [r for r, rule in RULES.items() if rule.long_tail]


def _filter(heldout=frozenset()):
    return VariantFilter(heldout, max_completion_tokens=400, count_tokens=lambda text: len(text.split()))


def test_every_rule_gets_variants_it_decides():
    rng = random.Random(0)
    vfilter = _filter()
    for rule in RULES:
        variants, per_op, _ = generate_variants(rng, rule, 3, ProgrammaticMutator(), tuple(OPERATORS), vfilter, 60, "t")
        assert len(variants) == 3, rule
        assert all(rule in v.decisive_rule_ids for v in variants), rule
        if rule in LONG_TAIL:
            assert "resample" not in per_op, f"{rule} should have an aimed operator"


def test_filter_rejects_heldout_queries_duplicates_and_misses():
    rng = random.Random(1)
    variants, _, _ = generate_variants(rng, "R20", 4, ProgrammaticMutator(), ("negation",), _filter(), 60, "t")
    blocked = _filter(frozenset(v.query for v in variants))
    assert blocked.check(variants[0], "R20") == "dev/test query"
    vf = _filter()
    assert vf.check(variants[0], "R20") is None
    assert vf.check(variants[0], "R20") == "duplicate"
    assert _filter().check(variants[1], "R14") == "target rule not decisive"


def test_targets_are_the_worst_supported_rules():
    errors = {"R1": (0.1, 50), "R15": (0.9, 2), "R20": (0.6, 10), "R14": (0.6, 20), "R5": (0.0, 99)}
    assert pick_targets(errors, k=2, min_support=5) == ["R20", "R14"]  # ties: rarer first; R15 lacks support


def test_loop_records_targeted_error_per_round(small_world):
    probe = small_world.dev + small_world.train
    trained: list[int] = []
    # a fake model: right on every example except those a long-tail rule decided, until it has trained
    score = lambda exs: [e.grade if (not e.long_tail or trained) else (e.grade + 1) % 5 for e in exs]  # noqa: E731
    config = EvolutionConfig(rounds=2, target_rules=2, variants_per_rule=10, min_support=1, seed=0)
    result = run_evolution(
        config, probe, frozenset(), score, lambda pool: trained.append(len(pool)), lambda text: len(text.split())
    )
    first = result.rounds[0]
    assert set(first.targets) <= set(LONG_TAIL) and first.targets
    for row in first.targets.values():
        assert row.probe_error_before == 1.0 and row.probe_error_after == 0.0
        assert row.variant_error_before == 1.0 and row.variant_error_after == 0.0
    assert trained[0] == len([e for e in result.train if e.query_id.startswith("evo1")])
    assert sum(first.accepted_per_operator.values()) == 10 * len(first.targets)
    assert result.rounds[-1].note or len(result.rounds) == 2  # round 2 finds nothing left to fix
    assert all(e.query_id.startswith("evo") for e in result.train + result.holdout)


def _seed_shampoo(rng):
    product = sample_product(rng, "shampoo", "Pantene", has_feature=False)
    return compose_query(rng, product, QueryMix(p_brand_only=0.0, p_exclude=0.0)), product


def test_llm_edit_is_validated_then_labelled_by_the_rulebook():
    rng = random.Random(2)
    query, product = _seed_shampoo(rng)
    edited = apply_edit(
        rng, query, product, {"query": {"excluded_feature": "sulfates"}, "document": {"has_feature": True}}
    )
    assert edited is not None
    q, p = edited
    assert q.excluded_feature == "sulfates" and any(w in q.text for w in ("sulfate", "sulfates"))
    assert judge(q, p).decisive == ("R20",) and judge(q, p).grade == 0
    assert apply_edit(rng, query, product, {"query": {"colour": "plaid"}}) is None  # not in the vocabulary
    assert apply_edit(rng, query, product, {"document": {"grade": 4}}) is None  # not an editable field


def test_llm_mutator_over_an_openai_compatible_endpoint(chat_endpoint):
    edit = {"query": {}, "document": {"brand_in_title": False}}
    url, seen = chat_endpoint(lambda body: "```json\n" + json.dumps(edit) + "\n```")
    mutator = LLMMutator(url, "teacher-32b", api_key="k")
    pair = mutator.propose(random.Random(3), "R18", "brand_trap")
    path, body, auth = seen[0]
    assert path == "/v1/chat/completions" and body["model"] == "teacher-32b" and auth == "Bearer k"
    assert "R18" in body["messages"][0]["content"]
    assert pair is not None and pair[1].brand_in_title is False


def test_config_picks_the_llm_mutator_only_when_configured():
    assert isinstance(EvolutionConfig().mutator(), ProgrammaticMutator)
    assert isinstance(EvolutionConfig(llm_base_url="http://x/v1", llm_model="m").mutator(), LLMMutator)
    with pytest.raises(ValueError, match="both"):
        EvolutionConfig(llm_base_url="http://x/v1")
    with pytest.raises(ValueError, match="unknown operators"):
        EvolutionConfig(operators=("paraphrase",))


def test_rule_errors_hand_computed(small_world):
    exs = small_world.train[:6]
    pred = [e.grade for e in exs[:3]] + [(e.grade + 1) % 5 for e in exs[3:]]
    errors = rule_errors(exs, pred)
    for rule, (err, n) in errors.items():
        deciding = [i for i, e in enumerate(exs) if rule in e.decisive_rule_ids]
        assert n == len(deciding) and err == pytest.approx(sum(i >= 3 for i in deciding) / n)
