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

Guideline evolution is the second step (`guideline`): the guideline itself
is edited (`proposers`: a deterministic rule-based proposer, or an LLM at an
OpenAI-compatible endpoint), each edit trained against an unchanged control
from the same model and kept only when held-out dev agreement rises by a
margin; every edit is logged.

Modules: `operators` (what a mutation does to a query and a product, per
rule), `mutators` (who proposes: the operators or an LLM), `loop` (the
config, the filter and the rounds, with their typed record), `proposers`
(guideline edits), `guideline` (the edit rounds, the acceptance test, the log).
"""

from training.evolution.guideline import (
    LOG_FILE,
    Decision,
    GuidelineEvolution,
    GuidelineRound,
    GuidelineTrials,
    Trial,
    decide,
    make_proposer,
    run_guideline_evolution,
    split_dev,
)
from training.evolution.loop import (
    EvolutionConfig,
    EvolutionResult,
    EvolutionRound,
    TargetRule,
    VariantFilter,
    generate_variants,
    pick_targets,
    rule_errors,
    run_evolution,
)
from training.evolution.mutators import LLMMutator, Mutator, ProgrammaticMutator, apply_edit
from training.evolution.operators import OPERATOR_RULES, OPERATORS, Operator, Pair, operators_for
from training.evolution.proposers import EndpointProposer, GuidelineEdit, Proposer, RuleBasedProposer

__all__ = [
    "LOG_FILE",
    "OPERATORS",
    "OPERATOR_RULES",
    "Decision",
    "EndpointProposer",
    "EvolutionConfig",
    "EvolutionResult",
    "EvolutionRound",
    "GuidelineEdit",
    "GuidelineEvolution",
    "GuidelineRound",
    "GuidelineTrials",
    "LLMMutator",
    "Mutator",
    "Operator",
    "Pair",
    "ProgrammaticMutator",
    "Proposer",
    "RuleBasedProposer",
    "TargetRule",
    "Trial",
    "VariantFilter",
    "apply_edit",
    "decide",
    "generate_variants",
    "make_proposer",
    "operators_for",
    "pick_targets",
    "rule_errors",
    "run_evolution",
    "run_guideline_evolution",
    "split_dev",
]
