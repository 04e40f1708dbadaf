"""The evolution loop: probe, target, mutate, label, filter, train, record (see `training.evolution`)."""

from __future__ import annotations

import logging
import os
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from training.evolution.mutators import LLMMutator, Mutator, ProgrammaticMutator
from training.evolution.operators import OPERATORS, operators_for
from training.metrics import per_rule_accuracy
from training.world import Example, make_example
from training.world.explanation import parse_explanation

log = logging.getLogger(__name__)

GUIDELINE_PROPOSERS = ("rules", "endpoint")


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
    # guideline evolution (`training.evolution.guideline`): edits of the guideline, kept only when they help
    guideline_rounds: int = field(
        default=2,
        metadata={"help": "guideline edit rounds (propose, train edit vs control, keep or roll back); 0 = off"},
    )
    guideline_proposer: str = field(
        default="rules",
        metadata={
            "help": "rules (deterministic) or endpoint: the LLM at llm_base_url / llm_model, "
            "which then also mutates the hard cases"
        },
    )
    guideline_steps: int = field(default=20, metadata={"help": "SFT steps each arm (edit, control) continues for"})
    guideline_accept_share: float = field(
        default=0.5, metadata={"help": "share of dev queries that accept edits (the rest picks the rules)"}
    )
    guideline_z: float = field(
        default=2.0, metadata={"help": "an edit must beat the control by this many paired standard errors"}
    )
    guideline_min_gain: float = field(default=0.0, metadata={"help": "and by at least this much agreement"})
    guideline_max_chars: int = field(
        default=2000, metadata={"help": "edits that make the guideline longer are not tried"}
    )

    def __post_init__(self) -> None:
        self.operators = tuple(self.operators)
        unknown = set(self.operators) - set(OPERATORS)
        if unknown:
            raise ValueError(f"unknown operators {sorted(unknown)}; choose from {sorted(OPERATORS)}")
        if self.rounds < 0 or self.target_rules < 1 or self.variants_per_rule < 1:
            raise ValueError(
                "rounds >= 0, target_rules >= 1 and variants_per_rule >= 1 are required, got "
                f"{self.rounds}, {self.target_rules}, {self.variants_per_rule} (rounds=0 turns evolution off)"
            )
        if not 0 <= self.holdout_share < 1:
            raise ValueError(f"holdout_share {self.holdout_share} must be in [0, 1); try 0.2")
        if (self.llm_base_url is None) != (self.llm_model is None):
            raise ValueError("set both llm_base_url and llm_model (or neither: the programmatic mutator)")
        if self.guideline_proposer not in GUIDELINE_PROPOSERS:
            raise ValueError(
                f"guideline_proposer {self.guideline_proposer!r}: choose from {', '.join(GUIDELINE_PROPOSERS)}"
            )
        if self.guideline_proposer == "endpoint" and not self.llm_base_url:
            raise ValueError("guideline_proposer endpoint needs llm_base_url and llm_model (the endpoint it asks)")
        if self.guideline_rounds < 0 or self.guideline_steps < 1 or self.guideline_max_chars < 1:
            raise ValueError(
                "guideline_rounds >= 0, guideline_steps >= 1 and guideline_max_chars >= 1 are required, got "
                f"{self.guideline_rounds}, {self.guideline_steps}, {self.guideline_max_chars} (rounds=0 turns it off)"
            )
        if not 0 < self.guideline_accept_share < 1 or self.guideline_z < 0:
            raise ValueError(
                f"guideline_accept_share must be in (0, 1) and guideline_z >= 0, got "
                f"{self.guideline_accept_share}, {self.guideline_z}; try 0.5 and 2.0"
            )

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
class TargetRule:
    """One targeted rule in one round: errors on the probe and on the round's held-out variants."""

    support: int  # probe examples the rule decided
    probe_error_before: float
    probe_error_after: float | None  # None: the rule decided no probe example after the round
    variants: int  # accepted variants aimed at the rule
    variant_error_before: float | None  # None: no variant was held out
    variant_error_after: float | None


@dataclass
class EvolutionRound:
    round: int
    targets: dict[str, TargetRule]
    mutator: str = ""
    accepted_per_operator: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> variants
    note: str | None = None  # why the loop stopped early


@dataclass
class EvolutionResult:
    train: list[Example]  # evolved variants used for training
    holdout: list[Example]  # evolved variants kept out, to measure the targeted rules
    rounds: list[EvolutionRound]


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
    rounds: list[EvolutionRound] = []
    for r in range(config.rounds):
        probe_pred = score(probe)
        errors = rule_errors(probe, probe_pred)
        targets = pick_targets(errors, config.target_rules, config.min_support)
        if not targets:
            rounds.append(EvolutionRound(r + 1, {}, note="no rule with errors and enough support"))
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
            EvolutionRound(
                round=r + 1,
                mutator=mutator.name,
                targets={
                    rule: TargetRule(
                        support=errors[rule][1],
                        probe_error_before=errors[rule][0],
                        probe_error_after=after.get(rule, (None, 0))[0],
                        variants=len(fresh[rule]),
                        variant_error_before=held_before.get(rule),
                        variant_error_after=_error(round_holdout[rule], score(round_holdout[rule]))
                        if round_holdout[rule]
                        else None,
                    )
                    for rule in targets
                },
                accepted_per_operator=dict(per_op),
                rejected=dict(rejected),
            )
        )
    return EvolutionResult(train, holdout, rounds)


def _error(examples: Sequence[Example], predicted: Sequence[int]) -> float:
    return sum(p != e.grade for e, p in zip(examples, predicted, strict=True)) / len(examples)
