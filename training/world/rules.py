"""The expert rulebook: what decides a grade, with ids the explanations cite.

Grades: 4 exact, 3 relevant with a minor mismatch, 2 partial/substitute,
1 complement/accessory, 0 irrelevant.

How rules interact (implemented in `judge.py`):
- A rule *fires* when it applies to the (query, product) pair; its verdict is
  `satisfied` or `violated`. A violated rule caps the grade at `grade_effect`;
  a satisfied rule caps nothing (rules that only ever say "this matches"
  carry `grade_effect=4`).
- Each rule judges one `scope` (category, brand, quantity, ...). Within a
  scope the fired rule with the highest `priority` wins and the others are
  overridden: "compatible with Samsung" (R15) beats the literal brand check
  (R5), an exact model number (R18) beats a title that hides the brand.
- The grade is the lowest cap among the winners (4 when none is violated);
  the winners that set it are the *decisive* rules.

Head rules fire on many examples; long-tail rules (`long_tail=True`) fire
rarely but decide the cases that fool surface matching.
"""

from __future__ import annotations

from dataclasses import dataclass

GRADE_MEANINGS: dict[int, str] = {
    4: "exact",
    3: "minor mismatch",
    2: "substitute",
    1: "accessory",
    0: "irrelevant",
}


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    grade_effect: int  # the cap a violation sets (4: the rule only ever confirms a match)
    priority: int  # higher wins within a scope
    long_tail: bool
    scope: str  # the aspect it judges
    gist: str  # a few words for the guideline
    rationale: str


RULEBOOK: tuple[Rule, ...] = (
    Rule(
        "R1",
        "same product type",
        4,
        20,
        long_tail=False,
        scope="category",
        gist="same type",
        rationale="The document is the kind of product asked for.",
    ),
    Rule(
        "R2",
        "unrelated product type",
        0,
        20,
        long_tail=False,
        scope="category",
        gist="other type",
        rationale="Another kind of product does not serve the need.",
    ),
    Rule(
        "R3",
        "sibling type",
        2,
        20,
        long_tail=False,
        scope="category",
        gist="sibling type",
        rationale="A neighbouring type (earbuds for headphones) is a substitute.",
    ),
    Rule(
        "R4",
        "complement",
        1,
        20,
        long_tail=False,
        scope="category",
        gist="accessory or host",
        rationale="An accessory of the queried product, or the product a queried accessory fits, is a complement.",
    ),
    Rule(
        "R5",
        "brand",
        2,
        40,
        long_tail=False,
        scope="brand",
        gist="other brand",
        rationale="A named brand must be the document's visible brand; another or none is a substitute.",
    ),
    Rule(
        "R6",
        "model number",
        2,
        50,
        long_tail=False,
        scope="model",
        gist="model",
        rationale="A named model must match; another model of the type is a substitute.",
    ),
    Rule(
        "R7",
        "capacity or amount",
        2,
        40,
        long_tail=False,
        scope="quantity",
        gist="amount",
        rationale="Capacity, weight, storage or power asked for must match.",
    ),
    Rule(
        "R8",
        "size",
        2,
        40,
        long_tail=False,
        scope="size",
        gist="size",
        rationale="A requested clothing or shoe size must match.",
    ),
    Rule(
        "R9",
        "colour",
        3,
        30,
        long_tail=False,
        scope="colour",
        gist="colour",
        rationale="Another colour is the right product with a minor mismatch.",
    ),
    Rule(
        "R10",
        "material",
        3,
        30,
        long_tail=False,
        scope="material",
        gist="material",
        rationale="Another material is a minor mismatch.",
    ),
    Rule(
        "R11",
        "fits named device",
        1,
        50,
        long_tail=False,
        scope="fit",
        gist="fits other model",
        rationale="An accessory for another device than the one named is of little use.",
    ),
    Rule(
        "R12",
        "complement fits",
        0,
        50,
        long_tail=False,
        scope="fit",
        gist="fits other device",
        rationale="An accessory (or host) for a different device is no complement.",
    ),
    Rule(
        "R13",
        "brand-only query",
        0,
        45,
        long_tail=False,
        scope="brand",
        gist="brand-only query",
        rationale="A query that is only a brand wants that brand's own products.",
    ),
    Rule(
        "R14",
        "accessory is not the product",
        1,
        80,
        long_tail=True,
        scope="category",
        gist="accessory naming it",
        rationale="A case for the Galaxy S21 names the product but only complements it.",
    ),
    Rule(
        "R15",
        "compatible-with maker",
        2,
        75,
        long_tail=True,
        scope="brand",
        gist="'compatible with'",
        rationale="'Compatible with Samsung' is made by someone else: not Samsung.",
    ),
    Rule(
        "R16",
        "look-alike brand",
        2,
        70,
        long_tail=True,
        scope="brand",
        gist="look-alike",
        rationale="A knock-off (Samsong for Samsung) is not the brand.",
    ),
    Rule(
        "R17",
        "misspelled brand",
        4,
        60,
        long_tail=True,
        scope="brand",
        gist="misspelled brand",
        rationale="A misspelled brand in the query (samsng) still means the brand.",
    ),
    Rule(
        "R18",
        "model beats weak title",
        4,
        90,
        long_tail=True,
        scope="brand",
        gist="model over weak title",
        rationale="An exact model number match outweighs a title that omits the brand.",
    ),
    Rule(
        "R19",
        "equivalent units",
        4,
        60,
        long_tail=True,
        scope="quantity",
        gist="0.5 l = 500 ml",
        rationale="0.5 l and 500 ml are the same amount.",
    ),
    Rule(
        "R20",
        "excluded feature present",
        0,
        100,
        long_tail=True,
        scope="exclusion",
        gist="excluded feature",
        rationale="A product with a feature the query excludes (without sulfates) is irrelevant.",
    ),
    Rule(
        "R21",
        "pack size",
        3,
        30,
        long_tail=True,
        scope="pack",
        gist="pack",
        rationale="Another pack count is the right product in the wrong quantity.",
    ),
    Rule(
        "R22",
        "condition",
        3,
        30,
        long_tail=True,
        scope="condition",
        gist="refurbished",
        rationale="Refurbished is not new, and new is not what a refurbished query asked for.",
    ),
    Rule(
        "R23",
        "target group",
        2,
        40,
        long_tail=True,
        scope="target",
        gist="gender/age",
        rationale="Men's, women's, kids' (or puppy, adult) must match the query.",
    ),
    Rule(
        "R24",
        "price limit",
        3,
        30,
        long_tail=True,
        scope="price",
        gist="over budget",
        rationale="Over the stated budget is relevant but a minor mismatch.",
    ),
)

RULES: dict[str, Rule] = {r.id: r for r in RULEBOOK}


def guideline_text() -> str:
    """The rulebook as the system prompt's guideline, kept short: it precedes every example."""
    lines = [
        "Relevance 0-4: " + ", ".join(f"{g} {m}" for g, m in GRADE_MEANINGS.items()) + ". "
        "Lowest cap wins; higher priority overrides."
    ]
    for grade in (0, 1, 2, 3, 4):
        rules = sorted((r for r in RULEBOOK if r.grade_effect == grade), key=lambda r: -r.priority)
        head = "Match" if grade == 4 else str(grade)
        lines.append(f"{head}: " + "; ".join(f"{r.gist} {r.id}" for r in rules) + ".")
    return "\n".join(lines)
