"""The rulebook: its shape, its coverage on a generated world, and the guideline."""

from __future__ import annotations

import re
from collections import Counter

from training.world import RULEBOOK, RULES, guideline_text, rule_firing_rates
from training.world.judge import CHECKS


def test_rulebook_shape():
    assert len(RULEBOOK) >= 20
    assert sum(r.long_tail for r in RULEBOOK) >= 8
    assert [r.id for r in RULEBOOK] == [f"R{i}" for i in range(1, len(RULEBOOK) + 1)]
    for r in RULEBOOK:
        assert r.grade_effect in range(5) and r.name and r.rationale and r.gist
        assert "\n" not in r.rationale
    assert set(CHECKS) == set(RULES)


def test_overriding_rules_outrank_what_they_override():
    for winner, loser in (("R15", "R5"), ("R16", "R5"), ("R17", "R5"), ("R18", "R5"), ("R19", "R7"), ("R14", "R4")):
        assert RULES[winner].scope == RULES[loser].scope
        assert RULES[winner].priority > RULES[loser].priority
    assert RULES["R20"].priority == max(r.priority for r in RULEBOOK)


def test_every_rule_fires_and_long_tail_rules_are_rare(all_examples):
    rates = rule_firing_rates(all_examples)
    assert set(rates) == set(RULES), f"never fired: {set(RULES) - set(rates)}"
    for r in RULEBOOK:
        if r.long_tail:
            assert 0 < rates[r.id] < 0.03, (r.id, rates[r.id])
    head = [rates[r.id] for r in RULEBOOK if not r.long_tail]
    assert max(head) > 0.2


def test_every_rule_decides_somewhere(all_examples):
    decided = Counter(r for e in all_examples for r in e.decisive_rule_ids)
    assert set(decided) == set(RULES)


def test_recorded_rules_are_consistent(all_examples):
    for e in all_examples:
        assert e.decisive_rule_ids and set(e.decisive_rule_ids) <= set(e.rule_ids)
        assert e.long_tail == any(RULES[r].long_tail for r in e.decisive_rule_ids)
        if e.grade < 4:
            assert all(RULES[r].grade_effect == e.grade for r in e.decisive_rule_ids)


def test_guideline_is_short_and_names_every_rule():
    text = guideline_text()
    assert 80 <= len(text.split()) <= 130
    assert set(re.findall(r"\bR\d+\b", text)) == set(RULES)
    for grade in "01234":
        assert grade in text
