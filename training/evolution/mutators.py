"""Who proposes a variant: the operators (offline) or a chat model behind an OpenAI-compatible endpoint.

An LLM only edits fields of a seed pair; every edited value is checked
against the product type's vocabulary (`apply_edit`), and the rulebook, not
the model, grades what survives.
"""

from __future__ import annotations

import functools
import json
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import fields, replace
from typing import Protocol

from training.endpoint import Post, auth_headers, chat_completions_url, json_object, post_json
from training.evolution.operators import OPERATORS, Pair, resample, seed_pair
from training.world.catalog import Product, alternatives, real_brands, with_changes
from training.world.queries import Query, render_query
from training.world.rules import RULES
from training.world.vocabulary import MISSPELLINGS, ProductType


class Mutator(Protocol):
    name: str

    def propose(self, rng: random.Random, rule_id: str, operator: str) -> Pair | None: ...


class ProgrammaticMutator:
    """The offline default: the operator functions (`training.evolution.operators`)."""

    name = "programmatic"

    def propose(self, rng: random.Random, rule_id: str, operator: str) -> Pair | None:
        return OPERATORS[operator](rng, rule_id)


# the fields an edit may change; the order is the one the LLM sees them in
_SHARED_EDITABLE = ("model", "colour", "material", "size", "pack", "target", "condition")
_QUERY_EDITABLE = ("brand", "brand_typed", *_SHARED_EDITABLE, "price_max", "excluded_feature")
_DOC_EDITABLE = ("brand", *_SHARED_EDITABLE, "price", "has_feature", "brand_in_title")


def _allowed_values(t: ProductType) -> dict[str, Sequence]:
    """The values an edit may set on a product of type `t`, per field."""
    return {
        "colour": t.colours,
        "material": t.materials,
        "size": t.sizes,
        "pack": t.packs,
        "target": t.targets,
        "condition": ("new", "refurbished") if t.has_condition else (),
        "brand": real_brands(t.key),
        "excluded_feature": (t.feature,) if t.feature else (),
    }


class LLMMutator:
    """Asks a chat model behind an OpenAI-compatible endpoint to edit a seed pair toward a rule.

    The model sees the rule, the operator, the seed's fields and the values the
    product type allows, and answers JSON `{"query": {...}, "document": {...}}`
    with the fields to change. Edits outside the vocabulary are rejected; the
    rulebook labels whatever survives.
    """

    name = "llm"

    def __init__(self, base_url: str, model: str, api_key: str | None = None, post: Post | None = None):
        self.url = chat_completions_url(base_url)
        self.model, self.api_key = model, api_key
        self.post = post or functools.partial(post_json, timeout=60)
        self.failures: Counter = Counter()

    def propose(self, rng: random.Random, rule_id: str, operator: str) -> Pair | None:
        seed = resample(rng, rule_id) if operator == "resample" else seed_pair(rng, lambda t: True, {})
        if seed is None:
            return None
        query, product = seed
        try:
            reply = self.post(
                self.url,
                self._request(rule_id, operator, query, product),
                auth_headers(self.api_key),
            )
            edit = json_object(reply["choices"][0]["message"]["content"])
        except Exception as e:  # a flaky endpoint costs a variant, never the run
            self.failures[type(e).__name__] += 1
            return None
        return apply_edit(rng, query, product, edit)

    def _request(self, rule_id: str, operator: str, query: Query, product: Product) -> dict:
        rule, t = RULES[rule_id], product.ptype
        allowed = _allowed_values(t)
        prompt = (
            f"Make a harder search-relevance test case for rule {rule.id} ({rule.name}: {rule.rationale}) "
            f"with the operator '{operator}'. Edit the query intent and/or the product so that this rule decides "
            f"the grade.\nQuery: {json.dumps(_fields(query, _QUERY_EDITABLE))}\n"
            f"Product ({t.key}): {json.dumps(_fields(product, _DOC_EDITABLE))}\n"
            f"Allowed values: {json.dumps({k: list(v) for k, v in allowed.items()})}\n"
            'Answer with JSON only: {"query": {field: value}, "document": {field: value}}, changed fields only.'
        )
        return {"model": self.model, "temperature": 0.7, "messages": [{"role": "user", "content": prompt}]}


def _fields(obj, names: Sequence[str]) -> dict:
    """The set fields of a query or product, as JSON values (`has_feature` only where the type has a feature)."""
    out = {n: getattr(obj, n) for n in names if n != "has_feature" and getattr(obj, n, None) is not None}
    if "has_feature" in names and obj.ptype.feature:
        out["has_feature"] = obj.has_feature(obj.ptype.feature)
    return out


def apply_edit(rng: random.Random, query: Query, product: Product, edit: dict) -> Pair | None:
    """Apply an LLM's field edit if every value is in the product type's vocabulary, else None."""
    q_edit, d_edit = edit.get("query") or {}, edit.get("document") or {}
    if not isinstance(q_edit, dict) or not isinstance(d_edit, dict):
        return None
    if set(q_edit) - set(_QUERY_EDITABLE) or set(d_edit) - set(_DOC_EDITABLE):
        return None
    t = product.ptype
    allowed = _allowed_values(t)
    for name, value in (*q_edit.items(), *d_edit.items()):
        if name == "brand" and value not in allowed["brand"]:
            return None
        if name in allowed and value is not None and value not in allowed[name]:
            return None
        if name == "model" and value is not None and value not in alternatives(product, "model") + [product.model]:
            return None
        if name in ("price", "price_max") and not (isinstance(value, (int, float)) and 0 < value < 10_000):
            return None
    if "brand_typed" in q_edit and q_edit["brand_typed"] not in MISSPELLINGS.get(q_edit.get("brand", query.brand), ()):
        return None
    new_query = replace(query, **q_edit)
    f = {x.name: getattr(new_query, x.name) for x in fields(Query) if x.name != "text"}
    f = {k: v for k, v in f.items() if v is not None}
    new_query = replace(new_query, text=render_query(f, rng)) if new_query.type_key else None
    if new_query is None:
        return None
    changes = dict(d_edit)
    if "has_feature" in changes:
        flag = changes.pop("has_feature")
        if t.feature and t.feature != "plastic":
            changes["features"] = (t.feature,) if flag else ()
    return new_query, with_changes(product, rng, **changes)
