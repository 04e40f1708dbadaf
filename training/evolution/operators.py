"""Mutation operators: each turns a fresh seed into a (query, product) pair that a target rule decides.

An operator is `(rng, rule_id) -> (Query, Product) | None` (None: it cannot
aim at that rule, or this attempt failed). `OPERATOR_RULES` lists the rules
each operator aims at; `resample` (fresh candidates from the world's own mix)
covers the rest.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import replace

from training.world.candidates import ROLES, compatible, lookalike, weak_title
from training.world.catalog import Product, accessory_for, alternatives, real_brands, sample_product, vary, with_changes
from training.world.queries import Query, QueryMix, compose_query
from training.world.rules import RULES
from training.world.vocabulary import FEATURE_QUERY_FORMS, MISSPELLINGS, PRODUCT_TYPES, ProductType

Pair = tuple[Query, Product]


def _types(rng: random.Random, ok: Callable[[ProductType], bool]) -> str | None:
    keys = [k for k, t in PRODUCT_TYPES.items() if ok(t)]
    return rng.choice(keys) if keys else None


def seed_pair(rng: random.Random, ok: Callable[[ProductType], bool], mix: dict, **fixed) -> Pair | None:
    """A target product of a type that passes `ok` and a query for it with the forced ingredients."""
    type_key = _types(rng, ok)
    if type_key is None:
        return None
    target = sample_product(rng, type_key, **fixed)
    return compose_query(rng, target, replace(QueryMix(), **{"p_brand_only": 0.0, **mix})), target


# rule -> (query ingredient forced, product field changed, which types allow it)
_FIELD_RULES: dict[str, tuple[dict, str, Callable[[ProductType], bool]]] = {
    "R6": ({"p_model": 1.0, "p_model_only": 0.0}, "model", lambda t: not t.is_accessory),
    "R7": ({"p_quantity": 1.0}, "quantity", lambda t: bool(t.dimension)),
    "R8": ({"p_size": 1.0}, "size", lambda t: bool(t.sizes)),
    "R9": ({"p_colour": 1.0}, "colour", lambda t: len(t.colours) > 1),
    "R10": ({"p_material": 1.0}, "material", lambda t: len(t.materials) > 1),
    "R21": ({"p_pack": 1.0}, "pack", lambda t: len(t.packs) > 1),
    "R22": ({"p_condition": 1.0}, "condition", lambda t: t.has_condition),
    "R23": ({"p_target": 1.0}, "target", lambda t: len(t.targets) > 1),
    "R24": ({"p_price": 1.0}, "price", lambda t: True),
}


def _field_pair(rng: random.Random, rule_id: str, violate: float) -> Pair | None:
    mix, name, ok = _FIELD_RULES[rule_id]
    seed = seed_pair(rng, ok, mix)
    if seed is None:
        return None
    query, target = seed
    if name == "pack" and target.pack == 1:
        target = with_changes(target, rng, pack=rng.choice(target.ptype.packs[1:]))
        query = compose_query(rng, target, replace(QueryMix(), **{"p_brand_only": 0.0, **mix}))
    if rng.random() >= violate:
        return query, target
    if name == "price":
        if query.price_max is None:
            return None
        return query, with_changes(target, rng, price=query.price_max + rng.randint(5, 60) + 0.99)
    doc = vary(target, name, rng)
    return (query, doc) if doc is not None else None


def added_constraint(rng: random.Random, rule_id: str) -> Pair | None:
    """The query gains a constraint (pack, condition, target, budget, size, material) the document breaks or keeps."""
    return _field_pair(rng, rule_id, violate=0.6) if rule_id in ("R8", "R10", "R21", "R22", "R23", "R24") else None


def attribute_swap(rng: random.Random, rule_id: str) -> Pair | None:
    """An attribute the query asks for is swapped in the document (model, amount, size, colour, material, target)."""
    return _field_pair(rng, rule_id, violate=1.0) if rule_id in ("R6", "R7", "R8", "R9", "R10", "R23") else None


def unit_or_pack_change(rng: random.Random, rule_id: str) -> Pair | None:
    """The same amount written in another unit (R19), another amount (R7), or another pack count (R21)."""
    if rule_id == "R19":
        seed = seed_pair(rng, lambda t: bool(t.dimension), {"p_quantity": 1.0})
        if seed is None or seed[0].quantity is None or not alternatives(seed[1], "unit"):
            return None
        return seed[0], vary(seed[1], "unit", rng)
    if rule_id in ("R7", "R21"):
        return _field_pair(rng, rule_id, violate=1.0)
    return None


def negation(rng: random.Random, rule_id: str) -> Pair | None:
    """The query excludes a feature ("without sulfates"); the document has it (or does not)."""
    if rule_id != "R20":
        return None
    seed = seed_pair(rng, lambda t: t.feature in FEATURE_QUERY_FORMS, {"p_exclude": 1.0})
    if seed is None or seed[0].excluded_feature is None:
        return None
    query, target = seed
    if rng.random() < 0.7:
        doc = vary(target, "feature", rng)
        return (query, doc) if doc is not None else None
    return query, target


def accessory_for_product(rng: random.Random, rule_id: str) -> Pair | None:
    """The document is an accessory of the queried product (R14, R4), of another device (R12), or fits another (R11)."""
    if rule_id in ("R14", "R4", "R12"):
        hosts = {h for t in PRODUCT_TYPES.values() for h in t.hosts}
        seed = seed_pair(rng, lambda t: t.key in hosts, {"p_model": 0.7, "p_model_only": 0.0, "p_brand": 1.0})
        if seed is None:
            return None
        query, target = seed
        acc_types = [k for k, t in PRODUCT_TYPES.items() if target.type_key in t.hosts]
        acc = rng.choice(acc_types)
        if rule_id == "R12":
            others = [b for b in real_brands(target.type_key) if b != target.brand]
            return query, accessory_for(rng, acc, host_brand=rng.choice(others)) if others else None
        return query, accessory_for(rng, acc, host_model=target.model, host_brand=target.brand)
    if rule_id == "R11":
        seed = seed_pair(rng, lambda t: t.fit is not None, {"p_fit": 1.0})
        if seed is None:
            return None
        query, target = seed
        field_name = "fits_model" if query.fits_model else None
        doc = vary(target, field_name, rng) if field_name else None
        return (query, doc) if doc is not None else None
    return None


def misspelling(rng: random.Random, rule_id: str) -> Pair | None:
    """The query misspells the brand ("samsng"); the document is that brand's product."""
    if rule_id != "R17":
        return None
    type_key = _types(rng, lambda t: not t.is_accessory and any(b in MISSPELLINGS for b in real_brands(t.key)))
    brand = rng.choice([b for b in real_brands(type_key) if b in MISSPELLINGS])
    target = sample_product(rng, type_key, brand)
    mix = replace(QueryMix(), p_brand_only=0.0, p_misspell=1.0, p_brand=1.0, p_model=0.3, p_model_only=0.0)
    query = compose_query(rng, target, mix)
    return (query, target) if query.misspelled else None


def brand_trap(rng: random.Random, rule_id: str) -> Pair | None:
    """A look-alike brand (R16), a "compatible with" maker (R15), a title that hides the brand (R18),
    or a brand-only query ("samsung") against another maker's product (R13)."""
    if rule_id == "R13":
        seed = seed_pair(rng, lambda t: not t.is_accessory and len(real_brands(t.key)) > 1, {"p_brand_only": 1.0})
        if seed is None or not seed[0].brand_only:
            return None
        query, target = seed
        others = [b for b in real_brands(target.type_key) if b != target.brand]
        return query, sample_product(rng, target.type_key, rng.choice(others))
    role = {"R15": compatible, "R16": lookalike, "R18": weak_title}.get(rule_id)
    if role is None:
        return None
    mix = {"p_brand": 1.0, "p_model": 1.0 if rule_id == "R18" else 0.4, "p_model_only": 0.0, "p_fit": 0.0}
    seed = seed_pair(rng, lambda t: True, mix)
    if seed is None:
        return None
    query, target = seed
    doc = role(rng, query, target)
    return (query, doc) if doc is not None else None


def resample(rng: random.Random, rule_id: str) -> Pair | None:
    """A fresh query and one candidate from the world's own mix (the fallback for head rules)."""
    seed = seed_pair(rng, lambda t: True, {})
    query, target = seed
    roles, weights = zip(*ROLES, strict=True)
    doc = rng.choices(roles, weights)[0](rng, query, target)
    return (query, doc) if doc is not None else None


Operator = Callable[[random.Random, str], "Pair | None"]
OPERATORS: dict[str, Operator] = {
    "added_constraint": added_constraint,
    "negation": negation,
    "accessory_for_product": accessory_for_product,
    "attribute_swap": attribute_swap,
    "unit_or_pack_change": unit_or_pack_change,
    "misspelling": misspelling,
    "brand_trap": brand_trap,
    "resample": resample,
}
OPERATOR_RULES: dict[str, tuple[str, ...]] = {
    "added_constraint": ("R8", "R10", "R21", "R22", "R23", "R24"),
    "negation": ("R20",),
    "accessory_for_product": ("R4", "R11", "R12", "R14"),
    "attribute_swap": ("R6", "R7", "R8", "R9", "R10", "R23"),
    "unit_or_pack_change": ("R7", "R19", "R21"),
    "misspelling": ("R17",),
    "brand_trap": ("R13", "R15", "R16", "R18"),
    "resample": tuple(RULES),
}


def operators_for(rule_id: str, allowed: Sequence[str]) -> list[str]:
    """The operators (of `allowed`) that aim at `rule_id`; `resample` only when nothing else does."""
    aimed = [o for o in allowed if o != "resample" and rule_id in OPERATOR_RULES[o]]
    return aimed or (["resample"] if "resample" in allowed else [])
