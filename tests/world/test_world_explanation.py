"""Reference explanations follow the format; the parser reads them and flags anything else."""

from __future__ import annotations

from training.world import RULES, parse_explanation

GOOD = (
    "[Query] kettle, Breville, 1.7 l\n"
    "[Document] kettle, Breville BKE820, 1.5 l\n"
    "[Rules] R7 violated: 1.5 l, not 1.7 l; R5 satisfied: Breville\n"
    "[Conclusion] grade=2 because substitute: capacity or amount"
)


def test_every_reference_explanation_parses_and_agrees(all_examples):
    for e in all_examples:
        lines = e.explanation.split("\n")
        assert [line.split("]")[0] + "]" for line in lines] == ["[Query]", "[Document]", "[Rules]", "[Conclusion]"]
        parsed = parse_explanation(e.explanation)
        assert parsed is not None and parsed.valid, (e.explanation, parsed and parsed.problems)
        assert parsed.grade == e.grade
        assert 1 <= len(parsed.cited_rule_ids) <= 3
        assert set(parsed.cited_rule_ids) <= set(e.rule_ids)
        assert parsed.cited_rule_ids[0] in e.decisive_rule_ids


def test_cited_verdicts_match_the_rules(all_examples):
    for e in all_examples[:500]:
        for c in parse_explanation(e.explanation).citations:
            if RULES[c.rule_id].grade_effect == e.grade and e.grade < 4 and c.rule_id in e.decisive_rule_ids:
                assert c.verdict == "violated"


def test_explanations_are_short(all_examples):
    words = [len(e.explanation.split()) for e in all_examples]
    assert sum(words) / len(words) < 45
    assert max(words) < 80


def test_parse_good_text():
    p = parse_explanation(GOOD)
    assert p.valid and p.problems == ()
    assert p.query == "kettle, Breville, 1.7 l"
    assert p.cited_rule_ids == ("R7", "R5")
    assert p.citations[0].verdict == "violated" and p.citations[0].note == "1.5 l, not 1.7 l"
    assert p.grade == 2 and p.reason == "substitute: capacity or amount"


def test_parse_tolerates_surrounding_whitespace():
    p = parse_explanation("\n\n  " + GOOD.replace("\n", "\n  ") + "  \n")
    assert p.valid


def test_parse_returns_none_for_text_without_sections():
    assert parse_explanation("") is None
    assert parse_explanation("the product is fine, grade 4") is None
    assert parse_explanation(None) is None  # type: ignore[arg-type]


def test_parse_flags_broken_formats():
    lines = GOOD.split("\n")
    cases = {
        "missing": "\n".join(lines[:3]),
        "order": "\n".join([lines[1], lines[0], lines[2], lines[3]]),
        "stray": GOOD + "\nthanks!",
        "repeated": GOOD + "\n" + lines[0],
        "bad citation": GOOD.replace("R7 violated:", "R7 broken:"),
        "unknown rule": GOOD.replace("R7", "R99"),
        "twice": GOOD.replace("R5 satisfied", "R7 satisfied"),
        "too many": GOOD.replace("R5 satisfied: Breville", "R5 satisfied: a; R1 satisfied: b; R9 satisfied: c"),
        "grade range": GOOD.replace("grade=2", "grade=7"),
        "no grade": GOOD.replace("grade=2 because", "probably 2 because"),
        "empty": GOOD.replace("[Document] kettle, Breville BKE820, 1.5 l", "[Document]"),
    }
    for name, text in cases.items():
        p = parse_explanation(text)
        assert p is not None and not p.valid, name
    assert parse_explanation(cases["grade range"]).grade is None
    assert parse_explanation(cases["missing"]).grade is None
    assert parse_explanation(cases["stray"]).grade == 2  # still read what is there
