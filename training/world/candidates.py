"""Candidate documents for a query: the mix a retrieval stage would hand a ranker.

Around the exact product each query gets near variants (another size, colour,
pack or model), the same product from other brands, substitutes from a
sibling type, accessories or the device an accessory fits, products from the
same department and random ones, plus a few deliberate traps (look-alike
brands, "compatible with" makers, titles that omit the brand). The judge,
not the role, decides each grade; the roles only shape the distribution.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from training.world.catalog import (
    Product,
    accessory_for,
    alternatives,
    lookalike_brands,
    real_brands,
    sample_product,
    vary,
    with_changes,
)
from training.world.queries import Query
from training.world.vocabulary import LOOKALIKES, PRODUCT_TYPES, THIRD_PARTY, model_brand, relation

Role = Callable[[random.Random, Query, Product], "Product | None"]

# query field -> the product field a variant changes to violate it
_ASKED_FIELDS = {
    "model": "model",
    "fits_model": "fits_model",
    "quantity": "quantity",
    "size": "size",
    "colour": "colour",
    "material": "material",
    "pack": "pack",
    "target": "target",
    "condition": "condition",
    "excluded_feature": "feature",
}
_MINOR_FIELDS = ("colour", "material", "pack", "condition")  # violating these costs one grade
_FREE_FIELDS = ("colour", "quantity", "size", "material", "unit", "model")
_COPYABLE = ("size", "colour", "material", "target")


def _asked(query: Query) -> list[str]:
    return [field for q_field, field in _ASKED_FIELDS.items() if getattr(query, q_field) is not None]


def _copied(query: Query, target: Product) -> dict:
    """The attributes the query asked for, so that another maker's product differs only by maker."""
    fixed = {f: getattr(target, f) for f in _COPYABLE if getattr(query, f) is not None}
    if query.quantity is not None and target.quantity is not None:
        fixed["quantity"] = target.quantity.value
    return fixed


def variant_asked(rng: random.Random, query: Query, target: Product) -> Product | None:
    """Violates one thing the query asked for: usually grade 3 or 2, sometimes 0 or 1."""
    if query.price_max is not None and rng.random() < 0.5:
        return with_changes(target, rng, price=query.price_max + rng.randint(5, 60) + 0.99)
    fields = [f for f in _asked(query) if alternatives(target, f)]
    minor = [f for f in fields if f in _MINOR_FIELDS]
    if minor and rng.random() < 0.85:
        fields = minor
    return vary(target, rng.choice(fields), rng) if fields else None


def variant_free(rng: random.Random, query: Query, target: Product) -> Product | None:
    """Changes something the query did not ask about: still an exact match."""
    asked = set(_asked(query))
    fields = [f for f in _FREE_FIELDS if f not in asked and alternatives(target, f)]
    if query.quantity is not None and "unit" in fields and rng.random() < 0.5:
        fields.remove("unit")  # rewriting a queried amount in other units is the rarer equal-units case
    if "model" in fields and (query.model or query.brand_only):
        fields.remove("model")
    return vary(target, rng.choice(fields), rng) if fields else None


def other_brand(rng: random.Random, query: Query, target: Product) -> Product | None:
    brands = [b for b in real_brands(target.type_key) if b != target.brand]
    if not brands:
        return None
    if target.ptype.fit:
        return accessory_for(rng, target.type_key, target.fits_model, target.fits_brand)
    fixed = _copied(query, target) if rng.random() < 0.7 else {}
    return sample_product(rng, target.type_key, rng.choice(brands), **fixed)


def lookalike(rng: random.Random, query: Query, target: Product) -> Product | None:
    fakes = [b for b in lookalike_brands(target.type_key) if LOOKALIKES[b] == target.brand]
    if not fakes:
        return None
    return sample_product(rng, target.type_key, rng.choice(fakes), **_copied(query, target))


def compatible(rng: random.Random, query: Query, target: Product) -> Product | None:
    """A third-party accessory for the queried maker's devices ("compatible with Samsung")."""
    t = target.ptype
    if not t.fit or target.brand in THIRD_PARTY or query.brand != target.brand:
        return None
    makers = [b for b in real_brands(t.key) if b in THIRD_PARTY]
    return sample_product(
        rng,
        t.key,
        rng.choice(makers),
        fits_model=target.fits_model,
        fits_brand=target.brand,
        model=None,
        **_copied(query, target),
    )


def weak_title(rng: random.Random, query: Query, target: Product) -> Product | None:
    """The same model with a title that leaves the brand out."""
    if not (query.brand and query.model and target.model) or target.ptype.is_accessory:
        return None
    product = with_changes(target, rng, brand_in_title=False)
    if rng.random() < 0.3:
        return vary(product, "model", rng) or product
    return product


def sibling(rng: random.Random, query: Query, target: Product) -> Product | None:
    group = target.ptype.sibling_group
    types = [k for k, t in PRODUCT_TYPES.items() if group and t.sibling_group == group and k != target.type_key]
    if not types:
        return None
    type_key = rng.choice(types)
    brand = target.brand if target.brand in real_brands(type_key) and rng.random() < 0.6 else None
    return sample_product(rng, type_key, brand)


def complement(rng: random.Random, query: Query, target: Product) -> Product | None:
    """An accessory of the target, or the device the target (an accessory) fits."""
    t = target.ptype
    if t.is_accessory:
        host_type = rng.choice(t.hosts)
        if target.fits_model and rng.random() < 0.2:
            brand, model_type = model_brand(target.fits_model)
            if model_type == host_type:
                return sample_product(rng, host_type, brand, model=target.fits_model)
        return sample_product(rng, host_type)
    accessories = [k for k, a in PRODUCT_TYPES.items() if target.type_key in a.hosts]
    if not accessories:
        return None
    type_key = rng.choice(accessories)
    roll = rng.random()
    if roll < 0.1:
        return accessory_for(rng, type_key, host_model=target.model, host_brand=target.brand)
    if roll < 0.35:
        return accessory_for(rng, type_key, host_brand=target.brand)
    return accessory_for(rng, type_key)


def same_department(rng: random.Random, query: Query, target: Product) -> Product | None:
    types = [
        k
        for k, t in PRODUCT_TYPES.items()
        if t.department == target.ptype.department and relation(target.type_key, k) == "unrelated"
    ]
    return sample_product(rng, rng.choice(types)) if types else None


def random_product(rng: random.Random, query: Query, target: Product) -> Product | None:
    types = [k for k, t in PRODUCT_TYPES.items() if t.department != target.ptype.department]
    return sample_product(rng, rng.choice(types))


ROLES: tuple[tuple[Role, float], ...] = (
    (variant_asked, 3.2),
    (variant_free, 0.8),
    (other_brand, 0.8),
    (sibling, 1.0),
    (complement, 1.7),
    (same_department, 0.7),
    (random_product, 0.8),
    (lookalike, 0.25),
    (compatible, 0.4),
    (weak_title, 0.4),
)


def candidate_documents(rng: random.Random, query: Query, target: Product, n: int) -> list[Product]:
    """`n` distinct candidates for `query`, the exact `target` among them, in random order."""
    docs, seen = [target], {target.document}
    roles, weights = zip(*ROLES, strict=True)
    for _ in range(n * 20):
        if len(docs) >= n:
            break
        role = rng.choices(roles, weights)[0]
        product = role(rng, query, target)
        if product is not None and product.document not in seen:
            docs.append(product)
            seen.add(product.document)
    rng.shuffle(docs)
    return docs
