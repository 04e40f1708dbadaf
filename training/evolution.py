"""Automated instruction evolution: error-driven generation of hard cases aimed at weak rules.

Each round:

    1. probe     score the current model on a probe set; error per rule = share of the
                 examples a rule decided (`decisive_rule_ids`) whose grade the model missed
    2. target    the `target_rules` rules with the highest error (at least `min_support` examples)
    3. mutate    for each target rule, variants from operators that can make that rule decide:
                 added constraint, negation, accessory-for-product, attribute swap,
                 unit or pack-size change, misspelling, brand trap (look-alike, "compatible
                 with", weak title); `resample` (fresh candidates) covers the rest
    4. label     the rulebook's judge grades every variant and writes its explanation
    5. filter    keep a variant only if the target rule is among the deciding rules, its query
                 text is not a dev/test query, it is new, its explanation parses, and it fits
                 `max_completion_tokens`; rejections are counted by reason
    6. train     the caller's `train_round` fine-tunes on the evolved pool (the curriculum's
                 "evolved" stage); a share of each round's variants is held out
    7. record    per target rule: probe error before and after, and the error on the
                 held-out variants before and after the round's training

The mutator is pluggable (`Mutator`): `ProgrammaticMutator` (offline default)
applies the operators; `LLMMutator` asks a model behind an OpenAI-compatible
endpoint to edit a seed pair's fields (JSON), validates the edit against the
catalog's vocabulary and lets the rulebook label the result, so an LLM can
propose but never decide a grade.
"""

from __future__ import annotations

import json
import logging
import os
import random
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Protocol

from training.metrics import per_rule_accuracy
from training.world.candidates import ROLES, compatible, lookalike, weak_title
from training.world.catalog import Product, accessory_for, alternatives, real_brands, sample_product, vary, with_changes
from training.world.dataset import Example, make_example
from training.world.explanation import parse_explanation
from training.world.queries import Query, QueryMix, compose_query, render_query
from training.world.rules import RULES
from training.world.vocabulary import FEATURE_QUERY_FORMS, MISSPELLINGS, PRODUCT_TYPES, ProductType

log = logging.getLogger(__name__)

Pair = tuple[Query, Product]


# operators ------------------------------------------------------------------


def _types(rng: random.Random, ok: Callable[[ProductType], bool]) -> str | None:
    keys = [k for k, t in PRODUCT_TYPES.items() if ok(t)]
    return rng.choice(keys) if keys else None


def _seed(rng: random.Random, ok: Callable[[ProductType], bool], mix: dict, **fixed) -> Pair | None:
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
    seed = _seed(rng, ok, mix)
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
        seed = _seed(rng, lambda t: bool(t.dimension), {"p_quantity": 1.0})
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
    seed = _seed(rng, lambda t: t.feature in FEATURE_QUERY_FORMS, {"p_exclude": 1.0})
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
        seed = _seed(rng, lambda t: t.key in hosts, {"p_model": 0.7, "p_model_only": 0.0, "p_brand": 1.0})
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
        seed = _seed(rng, lambda t: t.fit is not None, {"p_fit": 1.0})
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
        seed = _seed(rng, lambda t: not t.is_accessory and len(real_brands(t.key)) > 1, {"p_brand_only": 1.0})
        if seed is None or not seed[0].brand_only:
            return None
        query, target = seed
        others = [b for b in real_brands(target.type_key) if b != target.brand]
        return query, sample_product(rng, target.type_key, rng.choice(others))
    role = {"R15": compatible, "R16": lookalike, "R18": weak_title}.get(rule_id)
    if role is None:
        return None
    mix = {"p_brand": 1.0, "p_model": 1.0 if rule_id == "R18" else 0.4, "p_model_only": 0.0, "p_fit": 0.0}
    seed = _seed(rng, lambda t: True, mix)
    if seed is None:
        return None
    query, target = seed
    doc = role(rng, query, target)
    return (query, doc) if doc is not None else None


def resample(rng: random.Random, rule_id: str) -> Pair | None:
    """A fresh query and one candidate from the world's own mix (the fallback for head rules)."""
    seed = _seed(rng, lambda t: True, {})
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


# mutators -------------------------------------------------------------------


class Mutator(Protocol):
    name: str

    def propose(self, rng: random.Random, rule_id: str, operator: str) -> Pair | None: ...


class ProgrammaticMutator:
    """The offline default: the operator functions above."""

    name = "programmatic"

    def propose(self, rng: random.Random, rule_id: str, operator: str) -> Pair | None:
        return OPERATORS[operator](rng, rule_id)


Post = Callable[[str, dict, dict], dict]


def _http_post(url: str, payload: dict, headers: dict) -> dict:
    req = urllib.request.Request(
        url, data=json.dumps(payload).encode(), method="POST", headers={"content-type": "application/json", **headers}
    )
    with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310 (the user configures the endpoint)
        return json.loads(resp.read())


_QUERY_EDITABLE = (
    "brand",
    "brand_typed",
    "model",
    "colour",
    "material",
    "size",
    "pack",
    "target",
    "condition",
    "price_max",
    "excluded_feature",
)
_DOC_EDITABLE = (
    "brand",
    "model",
    "colour",
    "material",
    "size",
    "pack",
    "target",
    "condition",
    "price",
    "has_feature",
    "brand_in_title",
)


class LLMMutator:
    """Asks a chat model behind an OpenAI-compatible endpoint to edit a seed pair toward a rule.

    The model sees the rule, the operator, the seed's fields and the values the
    product type allows, and answers JSON `{"query": {...}, "document": {...}}`
    with the fields to change. Edits outside the vocabulary are rejected; the
    rulebook labels whatever survives.
    """

    name = "llm"

    def __init__(self, base_url: str, model: str, api_key: str | None = None, post: Post | None = None):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.api_key, self.post = model, api_key, post or _http_post
        self.failures: Counter = Counter()

    def propose(self, rng: random.Random, rule_id: str, operator: str) -> Pair | None:
        seed = resample(rng, rule_id) if operator == "resample" else _seed(rng, lambda t: True, {})
        if seed is None:
            return None
        query, product = seed
        try:
            reply = self.post(
                self.url,
                self._request(rule_id, operator, query, product),
                {"authorization": f"Bearer {self.api_key}"} if self.api_key else {},
            )
            edit = _json_object(reply["choices"][0]["message"]["content"])
        except Exception as e:  # a flaky endpoint costs a variant, never the run
            self.failures[type(e).__name__] += 1
            return None
        return apply_edit(rng, query, product, edit)

    def _request(self, rule_id: str, operator: str, query: Query, product: Product) -> dict:
        rule, t = RULES[rule_id], product.ptype
        allowed = {
            "colour": t.colours,
            "material": t.materials,
            "size": t.sizes,
            "pack": t.packs,
            "target": t.targets,
            "condition": ("new", "refurbished") if t.has_condition else (),
            "brand": real_brands(t.key),
            "excluded_feature": (t.feature,) if t.feature else (),
        }
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


def _json_object(text: str) -> dict:
    text = text.strip()
    if text.startswith("```"):
        text = text.strip("`").split("\n", 1)[1] if "\n" in text else text
    start, end = text.find("{"), text.rfind("}")
    value = json.loads(text[start : end + 1])
    if not isinstance(value, dict):
        raise ValueError("the edit is not a JSON object")
    return value


def apply_edit(rng: random.Random, query: Query, product: Product, edit: dict) -> Pair | None:
    """Apply an LLM's field edit if every value is in the product type's vocabulary, else None."""
    q_edit, d_edit = edit.get("query") or {}, edit.get("document") or {}
    if not isinstance(q_edit, dict) or not isinstance(d_edit, dict):
        return None
    if set(q_edit) - set(_QUERY_EDITABLE) or set(d_edit) - set(_DOC_EDITABLE):
        return None
    t = product.ptype
    allowed = {
        "colour": t.colours,
        "material": t.materials,
        "size": t.sizes,
        "pack": t.packs,
        "target": t.targets,
        "condition": ("new", "refurbished") if t.has_condition else (),
        "excluded_feature": (t.feature,) if t.feature else (),
    }
    for name, value in (*q_edit.items(), *d_edit.items()):
        if name in allowed and value is not None and value not in allowed[name]:
            return None
        if name == "brand" and value not in real_brands(t.key):
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


# the loop -------------------------------------------------------------------


@dataclass
class EvolutionConfig:
    rounds: int = field(default=2, metadata={"help": "probe -> mutate -> train rounds"})
    target_rules: int = field(default=4, metadata={"help": "rules targeted per round (highest error first)"})
    min_support: int = field(default=8, metadata={"help": "probe examples a rule must decide to be ranked"})
    variants_per_rule: int = field(default=100, metadata={"help": "accepted variants generated per target rule"})
    holdout_share: float = field(default=0.2, metadata={"help": "share of each round's variants kept out of training"})
    max_attempts: int = field(default=30, metadata={"help": "mutation attempts per accepted variant, at most"})
    max_completion_tokens: int = field(default=120, metadata={"help": "reject variants whose completion is longer"})
    operators: tuple[str, ...] = field(default=tuple(OPERATORS), metadata={"help": "operators to use"})
    llm_base_url: str | None = field(default=None, metadata={"help": "OpenAI-compatible endpoint: use an LLM mutator"})
    llm_model: str | None = field(default=None, metadata={"help": "model name at the endpoint"})
    llm_api_key_env: str = field(default="OPENAI_API_KEY", metadata={"help": "environment variable with the key"})
    seed: int = field(default=0, metadata={"help": "mutation seed"})

    def __post_init__(self) -> None:
        self.operators = tuple(self.operators)
        unknown = set(self.operators) - set(OPERATORS)
        if unknown:
            raise ValueError(f"unknown operators {sorted(unknown)}; choose from {sorted(OPERATORS)}")
        if self.rounds < 0 or self.target_rules < 1 or self.variants_per_rule < 1:
            raise ValueError("rounds >= 0, target_rules >= 1 and variants_per_rule >= 1 are required")
        if not 0 <= self.holdout_share < 1:
            raise ValueError(f"holdout_share {self.holdout_share} must be in [0, 1)")
        if (self.llm_base_url is None) != (self.llm_model is None):
            raise ValueError("set both llm_base_url and llm_model (or neither)")

    def mutator(self) -> Mutator:
        if self.llm_base_url:
            return LLMMutator(self.llm_base_url, self.llm_model, os.environ.get(self.llm_api_key_env))
        return ProgrammaticMutator()


def rule_errors(examples: Sequence[Example], predicted: Sequence[int]) -> dict[str, tuple[float, int]]:
    """rule id -> (error rate, support) over the examples the rule decided."""
    table = per_rule_accuracy([e.decisive_rule_ids for e in examples], [e.grade for e in examples], predicted)
    return {r: (1 - row["accuracy"], row["support"]) for r, row in table.items()}


def pick_targets(errors: dict[str, tuple[float, int]], k: int, min_support: int) -> list[str]:
    """The k rules with the highest error among those with enough support (ties: rarer first, then id)."""
    ranked = sorted(
        ((e, n, r) for r, (e, n) in errors.items() if n >= min_support and e > 0),
        key=lambda x: (-x[0], x[1], int(x[2][1:])),
    )
    return [r for _, _, r in ranked[:k]]


@dataclass
class VariantFilter:
    heldout_queries: frozenset[str]
    max_completion_tokens: int
    count_tokens: Callable[[str], int]
    seen: set[tuple[str, str]] = field(default_factory=set)

    def check(self, ex: Example, rule_id: str) -> str | None:
        """None when `ex` passes, else the reason it is rejected."""
        if rule_id not in ex.decisive_rule_ids:
            return "target rule not decisive"
        if ex.query in self.heldout_queries:
            return "dev/test query"
        if (ex.query, ex.document) in self.seen:
            return "duplicate"
        parsed = parse_explanation(ex.explanation)
        if parsed is None or not parsed.valid:
            return "invalid explanation"
        if self.count_tokens(ex.explanation) > self.max_completion_tokens:
            return "too long"
        self.seen.add((ex.query, ex.document))
        return None


def generate_variants(
    rng: random.Random,
    rule_id: str,
    n: int,
    mutator: Mutator,
    operators: Sequence[str],
    vfilter: VariantFilter,
    max_attempts: int,
    tag: str,
) -> tuple[list[Example], Counter, Counter]:
    """Up to `n` accepted variants aimed at `rule_id`; (variants, accepted per operator, rejections per reason)."""
    ops = operators_for(rule_id, operators)
    accepted: list[Example] = []
    per_op: Counter = Counter()
    rejected: Counter = Counter()
    if not ops:
        rejected["no operator"] += 1
        return accepted, per_op, rejected
    for attempt in range(n * max_attempts):
        if len(accepted) >= n:
            break
        op = rng.choice(ops)
        pair = mutator.propose(rng, rule_id, op)
        if pair is None or pair[1] is None:
            rejected["operator produced nothing"] += 1
            continue
        ex = make_example(f"{tag}-{rule_id}-{attempt}", *pair)
        reason = vfilter.check(ex, rule_id)
        if reason:
            rejected[reason] += 1
            continue
        accepted.append(ex)
        per_op[op] += 1
    return accepted, per_op, rejected


@dataclass
class EvolutionResult:
    train: list[Example]  # evolved variants used for training
    holdout: list[Example]  # evolved variants kept out, to measure the targeted rules
    rounds: list[dict]


Score = Callable[[Sequence[Example]], list[int]]


def run_evolution(
    config: EvolutionConfig,
    probe: Sequence[Example],
    heldout_queries: frozenset[str],
    score: Score,
    train_round: Callable[[list[Example]], None],
    count_tokens: Callable[[str], int],
    progress: Callable[[str], None] | None = None,
) -> EvolutionResult:
    """`score(examples)` -> predicted grades of the current model; `train_round(pool)` trains it on the pool."""
    rng = random.Random(config.seed)
    mutator = config.mutator()
    vfilter = VariantFilter(heldout_queries, config.max_completion_tokens, count_tokens)
    train: list[Example] = []
    holdout: list[Example] = []
    rounds: list[dict] = []
    for r in range(config.rounds):
        probe_pred = score(probe)
        errors = rule_errors(probe, probe_pred)
        targets = pick_targets(errors, config.target_rules, config.min_support)
        if not targets:
            rounds.append({"round": r + 1, "targets": {}, "note": "no rule with errors and enough support"})
            break
        fresh: dict[str, list[Example]] = {}
        per_op: Counter = Counter()
        rejected: Counter = Counter()
        for rule_id in targets:
            variants, ops, rej = generate_variants(
                rng,
                rule_id,
                config.variants_per_rule,
                mutator,
                config.operators,
                vfilter,
                config.max_attempts,
                f"evo{r + 1}",
            )
            fresh[rule_id] = variants
            per_op.update(ops)
            rejected.update(rej)
        round_holdout = {rule: v[: round(len(v) * config.holdout_share)] for rule, v in fresh.items()}
        round_train = [ex for rule, v in fresh.items() for ex in v[len(round_holdout[rule]) :]]
        held_before = {rule: _error(v, score(v)) for rule, v in round_holdout.items() if v}
        train += round_train
        holdout += [ex for v in round_holdout.values() for ex in v]
        if progress:
            progress(
                f"evolution round {r + 1}: targets "
                + ", ".join(f"{rule} (error {errors[rule][0]:.2f}, n={errors[rule][1]})" for rule in targets)
                + f"; {len(round_train)} variants to train on"
            )
        train_round(list(train))
        after = rule_errors(probe, score(probe))
        rounds.append(
            {
                "round": r + 1,
                "mutator": mutator.name,
                "targets": {
                    rule: {
                        "support": errors[rule][1],
                        "probe_error_before": errors[rule][0],
                        "probe_error_after": after.get(rule, (None, 0))[0],
                        "variants": len(fresh[rule]),
                        "variant_error_before": held_before.get(rule),
                        "variant_error_after": _error(round_holdout[rule], score(round_holdout[rule]))
                        if round_holdout[rule]
                        else None,
                    }
                    for rule in targets
                },
                "accepted_per_operator": dict(per_op),
                "rejected": dict(rejected),
            }
        )
    return EvolutionResult(train, holdout, rounds)


def _error(examples: Sequence[Example], predicted: Sequence[int]) -> float:
    return sum(p != e.grade for e, p in zip(examples, predicted, strict=True)) / len(examples)
