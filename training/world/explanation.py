"""The reference explanation (DESIGN section 2) and its parser.

Exactly four lines, short enough for a tiny model to learn:

    [Query] kettle, Breville, 1.7 l
    [Document] kettle, Breville BKE820, 1.5 l
    [Rules] R7 violated: 1.5 l, not 1.7 l; R5 satisfied: Breville
    [Conclusion] grade=2 because substitute: capacity or amount

The decisive rules are cited first. The format allows three citations;
reference explanations use two, to stay short (about 55 Qwen tokens).
`parse_explanation` reads any text back, never raises, and lists what is
wrong with it; format-validity metrics and RL rewards use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from training.world.catalog import Product
from training.world.judge import VIOLATED, Judgement, RuleOutcome
from training.world.queries import Query
from training.world.rules import GRADE_MEANINGS, RULES
from training.world.vocabulary import TARGET_TITLE

SECTIONS = ("Query", "Document", "Rules", "Conclusion")
MAX_CITED = 3  # the format's limit
RENDERED_CITATIONS = 2  # what reference explanations cite: short enough for a tiny model


def _target(t: str) -> str:
    return TARGET_TITLE[t].lower()


def describe_query(q: Query) -> str:
    parts = [q.type_key or "any product"]
    parts += [x for x in (q.brand, q.model) if x]
    if q.fits_model or q.fits_brand:
        parts.append(f"for {q.fits_model or q.fits_brand}")
    if q.quantity:
        parts.append(q.quantity.text)
    parts += [f"size {q.size}"] if q.size else []
    parts += [x for x in (q.colour, q.material) if x]
    parts += [f"pack of {q.pack}"] if q.pack else []
    parts += [_target(q.target)] if q.target else []
    parts += [q.condition] if q.condition else []
    parts += [f"without {q.excluded_feature}"] if q.excluded_feature else []
    parts += [f"under ${q.price_max:.0f}"] if q.price_max is not None else []
    return ", ".join(parts)


def describe_document(p: Product, q: Query) -> str:
    """The product, restated with the details the query cares about."""
    maker = p.brand if p.brand_in_title else None
    parts = [p.type_key, " ".join(x for x in (maker, p.model) if x) + ("" if maker else " (no brand)")]
    if p.says_compatible_with:
        parts.append(" ".join(x for x in ("compatible with", p.fits_brand, p.fits_model) if x))
    elif p.fits_model:
        parts.append(f"for {p.fits_model}")
    if p.quantity and q.quantity:
        parts.append(p.quantity.text)
    for wanted, shown in (
        (q.size, p.size and f"size {p.size}"),
        (q.colour, p.colour),
        (q.material, p.material),
        (q.pack, f"pack of {p.pack}"),
        (q.target, p.target and _target(p.target)),
    ):
        if wanted is not None and shown:
            parts.append(shown)
    if p.ptype.has_condition and (p.condition == "refurbished" or q.condition):
        parts.append(p.condition)
    if q.excluded_feature and p.ptype.feature == q.excluded_feature:
        parts.append(f"with {q.excluded_feature}" if p.has_feature(q.excluded_feature) else f"no {q.excluded_feature}")
    if q.price_max is not None:
        parts.append(f"${p.price:.2f}")
    return ", ".join(parts)


def _citation_order(rule_ids: tuple[str, ...]) -> list[str]:
    """Long-tail rules are the news in a decision, so they lead; then the product type; then priority."""
    return sorted(rule_ids, key=lambda r: (not RULES[r].long_tail, RULES[r].scope != "category"))


def cited_outcomes(j: Judgement) -> list[RuleOutcome]:
    """Decisive rules first; with room left, another scope winner (a violation before a match)."""
    by_id = {o.rule_id: o for o in j.winners}
    cited = [by_id[r] for r in _citation_order(j.decisive)][:RENDERED_CITATIONS]
    rest = [o for o in j.winners if o.rule_id not in j.decisive]
    rest.sort(key=lambda o: o.verdict != VIOLATED)
    return cited + rest[: RENDERED_CITATIONS - len(cited)]


def render_explanation(q: Query, p: Product, j: Judgement) -> str:
    rules = "; ".join(f"{o.rule_id} {o.verdict}: {o.note}" for o in cited_outcomes(j))
    return (
        f"[Query] {describe_query(q)}\n"
        f"[Document] {describe_document(p, q)}\n"
        f"[Rules] {rules}\n"
        f"[Conclusion] grade={j.grade} because {conclusion_reason(j)}"
    )


def conclusion_reason(j: Judgement) -> str:
    """The grade's meaning and the rule behind it; an exact match names a long-tail rule only if one decided."""
    lead = RULES[_citation_order(j.decisive)[0]]
    if j.grade == 4 and not lead.long_tail:
        return "exact match"
    return f"{GRADE_MEANINGS[j.grade]}: {lead.name}"


# parsing -------------------------------------------------------------------


@dataclass(frozen=True)
class Citation:
    rule_id: str
    verdict: str
    note: str


@dataclass(frozen=True)
class ParsedExplanation:
    query: str | None
    document: str | None
    citations: tuple[Citation, ...]
    grade: int | None
    reason: str | None
    problems: tuple[str, ...]  # empty when the format is valid

    @property
    def valid(self) -> bool:
        return not self.problems

    @property
    def cited_rule_ids(self) -> tuple[str, ...]:
        return tuple(c.rule_id for c in self.citations)


_LINE = re.compile(r"^\s*\[(Query|Document|Rules|Conclusion)\]\s?(.*?)\s*$")
_CITATION = re.compile(r"^(R\d+)\s+(satisfied|violated)\s*:\s*(.+)$")
_CONCLUSION = re.compile(r"^grade\s*=\s*(-?\d+)\s+because\s+(.+)$")


def parse_explanation(text: str) -> ParsedExplanation | None:
    """Read an explanation; None when no section tag appears at all."""
    if not isinstance(text, str):
        return None
    problems: list[str] = []
    found: dict[str, str] = {}
    order: list[str] = []
    for line in text.strip().splitlines():
        m = _LINE.match(line)
        if not m:
            if line.strip():
                problems.append(f"stray line: {line.strip()[:40]!r}")
            continue
        name, body = m.groups()
        if name in found:
            problems.append(f"repeated [{name}]")
            continue
        found[name] = body
        order.append(name)
    if not found:
        return None
    missing = [s for s in SECTIONS if s not in found]
    problems += [f"missing [{s}]" for s in missing]
    if not missing and order != list(SECTIONS):
        problems.append("sections out of order")
    problems += [f"empty [{s}]" for s, body in found.items() if not body]
    citations = _parse_citations(found.get("Rules", ""), problems) if "Rules" in found else ()
    grade, reason = _parse_conclusion(found.get("Conclusion"), problems)
    return ParsedExplanation(found.get("Query"), found.get("Document"), citations, grade, reason, tuple(problems))


def _parse_citations(body: str, problems: list[str]) -> tuple[Citation, ...]:
    citations = []
    for chunk in (c.strip() for c in body.split(";")):
        if not chunk:
            continue
        m = _CITATION.match(chunk)
        if not m:
            problems.append(f"malformed citation: {chunk[:40]!r}")
            continue
        rule_id, verdict, note = m.groups()
        if rule_id not in RULES:
            problems.append(f"unknown rule {rule_id}")
        if any(c.rule_id == rule_id for c in citations):
            problems.append(f"{rule_id} cited twice")
        citations.append(Citation(rule_id, verdict, note.strip()))
    if body and not citations:
        problems.append("no rule cited")
    if len(citations) > MAX_CITED:
        problems.append(f"{len(citations)} rules cited, at most {MAX_CITED}")
    return tuple(citations)


def _parse_conclusion(body: str | None, problems: list[str]) -> tuple[int | None, str | None]:
    if not body:
        return None, None
    m = _CONCLUSION.match(body)
    if not m:
        problems.append("conclusion is not 'grade=N because ...'")
        return None, None
    grade = int(m.group(1))
    if grade not in GRADE_MEANINGS:
        problems.append(f"grade {grade} out of range")
        return None, m.group(2).strip()
    return grade, m.group(2).strip()
