"""The expert judge: applies the rulebook to a (query, product) pair.

Each rule has one check, `(query, product, relation) -> (verdict, note) | None`
(None: the rule does not apply). Checks read only what the texts show: the
query's fields are all in its text, and a product's brand counts only when
its title names it. How fired rules combine into a grade is described in
`rules.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from training.world.catalog import Product
from training.world.queries import Query
from training.world.rules import RULEBOOK, RULES
from training.world.vocabulary import FEATURE_PHRASES, LOOKALIKES, PRODUCT_TYPES, THIRD_PARTY, model_brand, relation

SATISFIED, VIOLATED = "satisfied", "violated"

Outcome = tuple[str, str]  # (verdict, note)
Check = Callable[[Query, Product, "str | None"], "Outcome | None"]


@dataclass(frozen=True)
class RuleOutcome:
    rule_id: str
    verdict: str  # "satisfied" | "violated"
    note: str  # a few words for the explanation


@dataclass(frozen=True)
class Judgement:
    grade: int
    outcomes: tuple[RuleOutcome, ...]  # every rule that fired, in rulebook order
    winners: tuple[RuleOutcome, ...]  # the winner of each scope, highest priority first
    decisive: tuple[str, ...]  # ids of the winners that set the grade, highest priority first

    @property
    def fired(self) -> tuple[str, ...]:
        return tuple(o.rule_id for o in self.outcomes)

    @property
    def verdicts(self) -> dict[str, str]:
        return {o.rule_id: o.verdict for o in self.outcomes}

    @property
    def long_tail(self) -> bool:
        return any(RULES[r].long_tail for r in self.decisive)


CHECKS: dict[str, Check] = {}


def _check(rule_id: str) -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        CHECKS[rule_id] = fn
        return fn

    return register


def judge(query: Query, product: Product) -> Judgement:
    """Grade `product` for `query` by the rulebook."""
    rel = None if query.type_key is None else relation(query.type_key, product.type_key)
    outcomes = []
    for rule in RULEBOOK:
        result = CHECKS[rule.id](query, product, rel)
        if result is not None:
            outcomes.append(RuleOutcome(rule.id, *result))
    best: dict[str, list[RuleOutcome]] = {}
    for o in outcomes:
        scope, priority = RULES[o.rule_id].scope, RULES[o.rule_id].priority
        current = best.get(scope)
        if current is None or priority > RULES[current[0].rule_id].priority:
            best[scope] = [o]
        elif priority == RULES[current[0].rule_id].priority:
            current.append(o)
    winners = sorted(
        (o for group in best.values() for o in group), key=lambda o: (-RULES[o.rule_id].priority, int(o.rule_id[1:]))
    )
    grade = min((RULES[o.rule_id].grade_effect for o in winners if o.verdict == VIOLATED), default=4)
    if grade < 4:
        decisive = [o for o in winners if o.verdict == VIOLATED and RULES[o.rule_id].grade_effect == grade]
    else:
        decisive = [o for o in winners if o.verdict == SATISFIED]
    if not decisive:
        raise AssertionError(f"no rule decided {query.text!r} vs {product.title!r}")
    return Judgement(grade, tuple(outcomes), tuple(winners), tuple(o.rule_id for o in decisive))


def _about_product(rel: str | None) -> bool:
    """Product-level rules (brand, attributes) apply to the product asked for and its substitutes."""
    return rel in ("same", "sibling")


def _verdict(ok: bool, satisfied_note: str, violated_note: str) -> Outcome:
    return (SATISFIED, satisfied_note) if ok else (VIOLATED, violated_note)


# category ------------------------------------------------------------------


@_check("R1")
def _same_type(q: Query, p: Product, rel: str | None) -> Outcome | None:
    return (SATISFIED, f"{p.type_key} as asked") if rel == "same" else None


@_check("R2")
def _unrelated_type(q: Query, p: Product, rel: str | None) -> Outcome | None:
    return (VIOLATED, f"{p.type_key}, not {q.type_key}") if rel == "unrelated" else None


@_check("R3")
def _sibling_type(q: Query, p: Product, rel: str | None) -> Outcome | None:
    return (VIOLATED, f"{p.type_key} instead of {q.type_key}") if rel == "sibling" else None


@_check("R4")
def _complement(q: Query, p: Product, rel: str | None) -> Outcome | None:
    return (VIOLATED, f"{p.type_key} goes with {q.type_key}") if rel == "complement" else None


@_check("R14")
def _accessory_names_product(q: Query, p: Product, rel: str | None) -> Outcome | None:
    if rel != "complement":
        return None
    shared_models = {q.model, q.fits_model} & {p.model, p.fits_model} - {None}
    shared_brands = {q.brand, q.fits_brand} & p.visible_brands
    named = sorted(shared_models) or sorted(shared_brands)
    if not named:
        return None
    if p.ptype.is_accessory:
        return VIOLATED, f"{p.type_key} for {named[0]}, not the {q.type_key}"
    return VIOLATED, f"{named[0]} {p.type_key}, not the {q.type_key}"


# brand ---------------------------------------------------------------------


@_check("R5")
def _brand(q: Query, p: Product, rel: str | None) -> Outcome | None:
    if not (q.brand and _about_product(rel)):
        return None
    if not p.brand_in_title:
        return VIOLATED, "brand not stated"
    return _verdict(p.brand == q.brand, p.brand, f"{p.brand}, not {q.brand}")


@_check("R13")
def _brand_only(q: Query, p: Product, rel: str | None) -> Outcome | None:
    if not q.brand_only:
        return None
    shown = p.brand if p.brand_in_title else "no brand"
    return _verdict(shown == q.brand, f"{p.brand} product", f"{shown}, not {q.brand}")


@_check("R15")
def _compatible_with(q: Query, p: Product, rel: str | None) -> Outcome | None:
    if q.brand and rel == "same" and p.is_third_party and p.fits_brand == q.brand:
        return VIOLATED, f"{p.brand}, only compatible with {q.brand}"
    return None


@_check("R16")
def _lookalike(q: Query, p: Product, rel: str | None) -> Outcome | None:
    if q.brand and _about_product(rel) and LOOKALIKES.get(p.brand) == q.brand:
        return VIOLATED, f"{p.brand} imitates {q.brand}"
    return None


@_check("R17")
def _misspelled_brand(q: Query, p: Product, rel: str | None) -> Outcome | None:
    if q.misspelled and (q.brand_only or _about_product(rel)) and p.brand_in_title and p.brand == q.brand:
        return SATISFIED, f"{q.brand_typed} means {q.brand}"
    return None


@_check("R18")
def _model_over_weak_title(q: Query, p: Product, rel: str | None) -> Outcome | None:
    if rel == "same" and q.brand and q.model and p.model == q.model and not p.brand_in_title:
        return SATISFIED, f"model {p.model} despite no brand"
    return None


# product attributes --------------------------------------------------------


@_check("R6")
def _model(q: Query, p: Product, rel: str | None) -> Outcome | None:
    if not (q.model and _about_product(rel)):
        return None
    return _verdict(p.model == q.model, f"model {p.model}", f"{p.model or 'no model'}, not {q.model}")


@_check("R7")
def _quantity(q: Query, p: Product, rel: str | None) -> Outcome | None:
    if not (q.quantity and p.quantity and _about_product(rel) and q.quantity.dimension == p.quantity.dimension):
        return None
    return _verdict(q.quantity.same_amount(p.quantity), p.quantity.text, f"{p.quantity.text}, not {q.quantity.text}")


@_check("R19")
def _equivalent_units(q: Query, p: Product, rel: str | None) -> Outcome | None:
    if (
        q.quantity
        and p.quantity
        and _about_product(rel)
        and q.quantity.same_amount(p.quantity)
        and q.quantity.unit != p.quantity.unit
    ):
        return SATISFIED, f"{p.quantity.text} equals {q.quantity.text}"
    return None


def _attribute(field: str, q: Query, p: Product, rel: str | None, show=str) -> Outcome | None:
    wanted, has = getattr(q, field), getattr(p, field)
    if wanted is None or has is None or not _about_product(rel):
        return None
    return _verdict(has == wanted, show(has), f"{show(has)}, not {show(wanted)}")


@_check("R8")
def _size(q: Query, p: Product, rel: str | None) -> Outcome | None:
    return _attribute("size", q, p, rel, show=lambda s: f"size {s}")


@_check("R9")
def _colour(q: Query, p: Product, rel: str | None) -> Outcome | None:
    return _attribute("colour", q, p, rel)


@_check("R10")
def _material(q: Query, p: Product, rel: str | None) -> Outcome | None:
    return _attribute("material", q, p, rel)


@_check("R23")
def _target(q: Query, p: Product, rel: str | None) -> Outcome | None:
    return _attribute("target", q, p, rel, show=lambda t: f"for {t}")


@_check("R21")
def _pack(q: Query, p: Product, rel: str | None) -> Outcome | None:
    if q.pack is None or not _about_product(rel) or len(p.ptype.packs) < 2:
        return None
    return _verdict(p.pack == q.pack, f"pack of {p.pack}", f"pack of {p.pack}, not {q.pack}")


@_check("R22")
def _condition(q: Query, p: Product, rel: str | None) -> Outcome | None:
    if not (_about_product(rel) and p.ptype.has_condition and (q.condition or p.condition == "refurbished")):
        return None
    wanted = q.condition or "new"
    return _verdict(p.condition == wanted, p.condition, f"{p.condition}, not {wanted}")


@_check("R24")
def _price(q: Query, p: Product, rel: str | None) -> Outcome | None:
    if q.price_max is None or not _about_product(rel):
        return None
    return _verdict(
        p.price <= q.price_max, f"${p.price:.2f} within ${q.price_max:.0f}", f"${p.price:.2f} over ${q.price_max:.0f}"
    )


@_check("R20")
def _excluded_feature(q: Query, p: Product, rel: str | None) -> Outcome | None:
    feature = q.excluded_feature
    if feature is None or not _about_product(rel) or p.ptype.feature != feature:
        return None
    present, absent = FEATURE_PHRASES.get(feature, (feature, f"no {feature}"))
    return _verdict(not p.has_feature(feature), absent.lower(), f"{present.lower()}")


# fit -----------------------------------------------------------------------


@_check("R11")
def _fits_named_device(q: Query, p: Product, rel: str | None) -> Outcome | None:
    if rel != "same" or not p.ptype.fit or not (q.fits_model or q.fits_brand):
        return None
    wanted, has = (q.fits_model, p.fits_model) if q.fits_model else (q.fits_brand, p.fits_brand)
    return _verdict(has == wanted, f"fits {wanted}", f"fits {has}, not {wanted}")


def _owner(model: str | None) -> str | None:
    return model_brand(model)[0] if model else None


def _official_fit(q: Query) -> str | None:
    """The device brand an accessory query names by its maker: a Google charger is for Google devices.

    A fitted accessory made by a device maker (not a third-party maker) fits
    that maker's devices, as the catalog builds it; its titles say only the
    brand ("Google 20W Charger"), so the query's brand is what it fits.
    """
    t = PRODUCT_TYPES[q.type_key] if q.type_key else None
    if t is None or not t.fit or q.brand is None or q.brand in THIRD_PARTY:
        return None
    return q.brand


@_check("R12")
def _complement_fits(q: Query, p: Product, rel: str | None) -> Outcome | None:
    if rel != "complement":
        return None
    if p.ptype.is_accessory:  # the query names a host device, the document fits one
        q_model, q_brand = q.model, q.brand or _owner(q.model)
        d_model, d_brand = p.fits_model, p.fits_brand
    else:  # the query names an accessory's device, the document is a device
        q_model, q_brand = q.fits_model, q.fits_brand or _owner(q.fits_model) or _official_fit(q)
        d_model, d_brand = p.model, (p.brand if p.brand_in_title else None)
    if q_model and d_model:
        return _verdict(q_model == d_model, f"fits {q_model}", f"{d_model}, not {q_model}")
    if q_brand and d_brand:
        return _verdict(q_brand == d_brand, f"fits {q_brand}", f"{d_brand}, not {q_brand}")
    return None
