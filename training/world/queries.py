"""Search queries, phrased the way people type them, composed from a target product.

A `Query` is the structured intent the judge reads plus the `text` a user
typed. Every field that is set is visible in the text: fragments ("kettle
1.7l"), brand only ("samsung"), model numbers ("wh-1000xm4"), misspelled
brands ("samsng"), units written several ways ("500ml", "0.5 l"), negations
("without sulfates", "non-plastic"), price and quantity constraints ("under
$50", "pack of 6"), targets ("women's", "for kids") and condition
("refurbished").
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from training.world.catalog import Product
from training.world.units import Quantity, sample_writing
from training.world.vocabulary import (
    FEATURE_QUERY_FORMS,
    MISSPELLINGS,
    PRODUCT_TYPES,
    TARGET_QUERY_FORMS,
)


@dataclass(frozen=True)
class Query:
    text: str
    type_key: str | None = None  # None: a brand-only query
    brand: str | None = None  # the brand meant, correctly spelled
    brand_typed: str | None = None  # the brand as typed, when misspelled
    model: str | None = None
    fits_model: str | None = None  # an accessory query: "case for galaxy s21"
    fits_brand: str | None = None  # "charger for samsung"
    quantity: Quantity | None = None
    size: str | None = None
    colour: str | None = None
    material: str | None = None
    pack: int | None = None
    target: str | None = None
    condition: str | None = None
    price_max: float | None = None
    excluded_feature: str | None = None

    @property
    def misspelled(self) -> bool:
        return self.brand_typed is not None

    @property
    def brand_only(self) -> bool:
        return self.type_key is None


@dataclass(frozen=True)
class QueryMix:
    """How often each query ingredient appears (given the target product allows it)."""

    p_brand_only: float = 0.035
    p_model: float = 0.4
    p_model_only: float = 0.35  # of model queries: no brand, no type noun
    p_brand: float = 0.55
    p_misspell: float = 0.12
    p_quantity: float = 0.45
    p_query_other_unit: float = 0.1
    p_size: float = 0.45
    p_colour: float = 0.65
    p_material: float = 0.5
    p_fit: float = 0.8
    p_pack: float = 0.08
    p_target: float = 0.08
    p_condition: float = 0.06
    p_price: float = 0.02
    p_exclude: float = 0.09


def _price_limit(price: float, rng: random.Random) -> float:
    step = 10 if price < 60 else 50
    return float(math.ceil((price + 1) / step) * step + step * rng.randrange(2))


def compose_query(rng: random.Random, product: Product, mix: QueryMix = QueryMix()) -> Query:
    """A query for which `product` is an exact (grade 4) match."""
    t = product.ptype
    typed = _brand_as_typed(product.brand, rng, mix)
    if not t.is_accessory and rng.random() < mix.p_brand_only:
        return Query(text=typed or product.brand.lower(), brand=product.brand, brand_typed=typed)
    f: dict = {"type_key": t.key}
    if product.model and rng.random() < mix.p_model:
        f["model"] = product.model
        if t.is_accessory or rng.random() >= mix.p_model_only:
            f["brand"] = product.brand
    elif rng.random() < mix.p_brand:
        f["brand"] = product.brand
    if f.get("brand") and typed:
        f["brand_typed"] = typed
    official_brand_fit = t.fit == "brand" and product.fits_brand == f.get("brand")
    if t.fit and not official_brand_fit and rng.random() < mix.p_fit:
        if product.fits_model and (t.fit == "model"):
            f["fits_model"] = product.fits_model
        else:
            f["fits_brand"] = product.fits_brand
    if product.quantity and rng.random() < mix.p_quantity:
        f["quantity"] = sample_writing(product.quantity.value, product.quantity.dimension, rng, mix.p_query_other_unit)
    for name, p in (
        ("size", mix.p_size),
        ("colour", mix.p_colour),
        ("material", mix.p_material),
        ("target", mix.p_target),
    ):
        if getattr(product, name) and rng.random() < p:
            f[name] = getattr(product, name)
    if product.pack > 1 and rng.random() < mix.p_pack:
        f["pack"] = product.pack
    if t.has_condition and rng.random() < mix.p_condition:
        f["condition"] = product.condition
    if rng.random() < mix.p_price:
        f["price_max"] = _price_limit(product.price, rng)
    if t.feature and not product.has_feature(t.feature) and rng.random() < mix.p_exclude:
        f["excluded_feature"] = t.feature
    return Query(text=render_query(f, rng), **f)


def _brand_as_typed(brand: str, rng: random.Random, mix: QueryMix) -> str | None:
    forms = MISSPELLINGS.get(brand)
    return rng.choice(forms) if forms and rng.random() < mix.p_misspell else None


def render_query(f: dict, rng: random.Random) -> str:
    """The text a user types for the intent in `f` (Query field names), lower case."""
    t = PRODUCT_TYPES[f["type_key"]]
    pre, post = [], []
    if f.get("condition"):
        pre.append(
            rng.choice(("refurbished", "renewed"))
            if f["condition"] == "refurbished"
            else rng.choice(("new", "brand new"))
        )
    if f.get("colour"):
        pre.append(f["colour"])
    if f.get("material"):
        pre.append(f["material"])
    if f.get("brand"):
        pre.append(f.get("brand_typed") or f["brand"].lower())
    if f.get("model"):
        pre.append(f["model"].lower())
    model_only = f.get("model") and not f.get("brand") and not t.is_accessory
    noun = "" if model_only else rng.choice(t.query_nouns)
    if f.get("target") and noun:
        noun = rng.choice(TARGET_QUERY_FORMS[f["target"]]).format(noun=noun)
    elif f.get("target"):
        post.append(rng.choice(TARGET_QUERY_FORMS[f["target"]]).format(noun="").strip())
    fit = (f.get("fits_model") or f.get("fits_brand") or "").lower()
    if fit and rng.random() < 0.5 and f.get("fits_model"):
        pre.append(fit)
    elif fit:
        post.append(f"for {fit}")
    if f.get("quantity"):
        (pre if rng.random() < 0.4 else post).append(f["quantity"].text.lower())
    if f.get("size"):
        post.append(f"size {f['size'].lower()}")
    if f.get("pack"):
        post.append(rng.choice(("pack of {n}", "{n} pack", "{n}-pack", "set of {n}")).format(n=f["pack"]))
    if f.get("excluded_feature"):
        form = rng.choice(FEATURE_QUERY_FORMS[f["excluded_feature"]])
        (post if form.startswith(("without", "no ")) else pre).append(form)
    if f.get("price_max"):
        limit = int(f["price_max"])
        post.append(rng.choice(("under ${n}", "under {n} dollars", "below ${n}", "less than ${n}")).format(n=limit))
    return " ".join(w for w in (*pre, noun, *post) if w)
