"""Guideline evolution: propose an edit, train with and without it, keep it only if held-out agreement rises.

The guideline is the model's system prompt. Each round (`EvolutionConfig.guideline_*`):

    1. errors    the current model's error per rule on the *choosing* slice of dev
    2. propose   the proposer edits the guideline (`proposers`: rule-based, or an LLM at an endpoint)
    3. trial     two copies of the current model continue SFT for `guideline_steps` steps on the same
                 batches, one prompted with the edited guideline, the control with the unchanged one
    4. decide    held-out agreement (grade accuracy) of both on the *accepting* slice of dev (other
                 queries than the choosing slice); the edit stays when
                     edit - control > guideline_min_gain + guideline_z x SE
                 SE being the standard error of the paired per-example difference
    5. adopt     the winning copy becomes the current model: the edited one when the edit stays,
                 the control (the edit rolled back) otherwise
    6. log       every edit (proposer, kind, rules, diff, before and after, both agreements, the
                 margin, kept or not) in a `GuidelineEvolution`, which the method writes as
                 guideline_evolution.json beside its report

Why the margin is two paired standard errors. Both arms start from one model
and see the same batches, so most examples get the same grade from both;
only the discordant ones carry the difference, and the paired SE (from the
per-example differences) is what a no-effect edit's difference scatters by.
Unpaired figures would be useless: the control arm's own agreement moved by
up to 11 points from round to round in the measurement below, while the two
arms of one round differed by at most one point. z = 2 lets a no-effect edit
through about 2.3% of the time (one-sided), so a run of a few rounds adopts
noise with under 10% probability, while an edit worth a few discordant
examples more than noise passes. Measured on the tiny preset's world and
teacher after its 400 curriculum steps (4 rule-based rounds, 20 steps an
arm, 600 accepting examples): 1 to 38 discordant examples per round, SE
0.0017-0.0103, margin 0.3-2.1 points; differences +0.17, -0.17, 0.00 and
-1.0 points, so all four edits were rolled back. On the ci preset (90
accepting examples, a 64-wide model that still answers nearly one grade) the
arms agreed on every example (SE 0). At any slice size an edit that wins 4
examples and loses none just passes; 3 do not.
`guideline_min_gain` adds a floor in accuracy points on top (0 by default).

The loop needs no torch: the trials (`GuidelineTrials`) train and score;
`training.guideline_trials` is the SFT implementation, tests pass a fake.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from afrl.dataset import Example
from training.evolution.loop import EvolutionConfig
from training.evolution.proposers import EndpointProposer, GuidelineEdit, Proposer, RuleBasedProposer
from training.world.rules import Rule

log = logging.getLogger(__name__)

LOG_FILE = "guideline_evolution.json"


@dataclass
class Trial:
    """One arm: the guideline it trained with, whether it graded each accepting-slice example right, its model."""

    guideline: str
    correct: list[bool]
    state: Any = None  # what `GuidelineTrials.adopt` needs (the trained copy)
    losses: list[float] = field(default_factory=list)


class GuidelineTrials(Protocol):
    def rule_errors(self) -> dict[str, tuple[float, int]]:
        """rule id -> (error, support) of the current model, current guideline, on the choosing slice."""
        ...

    def trial(self, guideline: str, seed: int) -> Trial:
        """A copy of the current model trained further with `guideline`, scored on the accepting slice."""
        ...

    def adopt(self, trial: Trial) -> None:
        """The trial's model (and guideline) become the current ones."""
        ...


@dataclass(frozen=True)
class Decision:
    control: float  # agreement of the control arm
    edit: float  # agreement of the edited arm
    difference: float
    standard_error: float  # of the paired per-example difference
    margin: float
    accepted: bool
    edit_only_right: int = 0  # examples the edited arm grades right and the control wrong
    control_only_right: int = 0


def decide(edit: Sequence[bool], control: Sequence[bool], z: float, min_gain: float = 0.0) -> Decision:
    """Keep the edit when its agreement beats the control's by more than min_gain + z x paired SE."""
    if len(edit) != len(control) or not edit:
        raise ValueError(f"both arms must be scored on the same non-empty slice, got {len(edit)} and {len(control)}")
    n = len(edit)
    diffs = [int(a) - int(b) for a, b in zip(edit, control, strict=True)]
    mean = sum(diffs) / n
    variance = sum((d - mean) ** 2 for d in diffs) / (n - 1) if n > 1 else 0.0
    se = math.sqrt(variance / n)
    margin = min_gain + z * se
    flips = (diffs.count(1), diffs.count(-1))
    return Decision(sum(control) / n, sum(edit) / n, mean, se, margin, mean > margin, *flips)


@dataclass
class GuidelineRound:
    round: int
    proposer: str
    kind: str | None = None  # None: nothing was proposed
    rules: list[str] = field(default_factory=list)
    description: str = ""
    rule_errors: dict[str, float] = field(default_factory=dict)  # the edit's rules on the choosing slice, before
    diff: str = ""
    before: str = ""
    after: str = ""
    control_agreement: float | None = None
    edit_agreement: float | None = None
    difference: float | None = None
    standard_error: float | None = None
    margin: float | None = None
    edit_only_right: int | None = None  # the discordant examples the difference and its SE come from
    control_only_right: int | None = None
    accepted: bool = False
    note: str | None = None  # why the edit was not trained (too long) or the loop stopped


@dataclass
class GuidelineEvolution:
    """The log of guideline evolution: what `guideline_evolution.json` holds and the report carries."""

    proposer: str
    initial_guideline: str
    final_guideline: str
    choose_examples: int  # dev examples that pick the rules
    accept_examples: int  # dev examples that accept or roll back
    steps: int  # SFT steps per arm
    z: float
    min_gain: float
    rounds: list[GuidelineRound] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return sum(r.accepted for r in self.rounds)

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps(asdict(self), indent=2))
        return path


def split_dev(dev: Sequence[Example], accept_share: float) -> tuple[list[Example], list[Example]]:
    """(choosing, accepting) slices of dev by query: the last `accept_share` of its queries accept."""
    ids = list(dict.fromkeys(e.query_id for e in dev))
    if len(ids) < 2:
        raise ValueError(f"guideline evolution needs a dev split of at least 2 queries, got {len(ids)}")
    n_accept = min(len(ids) - 1, max(1, round(len(ids) * accept_share)))
    accepting = set(ids[-n_accept:])
    return [e for e in dev if e.query_id not in accepting], [e for e in dev if e.query_id in accepting]


def make_proposer(config: EvolutionConfig, train: Sequence[Example], rulebook: Mapping[str, Rule] | None) -> Proposer:
    """The configured proposer: `rules` (deterministic) or `endpoint` (the LLM at llm_base_url / llm_model)."""
    if config.guideline_proposer == "endpoint":
        assert config.llm_base_url and config.llm_model  # EvolutionConfig checks it
        return EndpointProposer(
            config.llm_base_url,
            config.llm_model,
            train,
            os.environ.get(config.llm_api_key_env),
            min_support=config.min_support,
        )
    return RuleBasedProposer(train, rulebook, min_support=config.min_support)


def run_guideline_evolution(
    config: EvolutionConfig,
    guideline: str,
    proposer: Proposer,
    trials: GuidelineTrials,
    slices: tuple[int, int],
    progress: Callable[[str], None] | None = None,
) -> GuidelineEvolution:
    """`config.guideline_rounds` rounds from `guideline`; `slices` = (choosing, accepting) example counts."""
    record = GuidelineEvolution(
        proposer.name,
        guideline,
        guideline,
        *slices,
        steps=config.guideline_steps,
        z=config.guideline_z,
        min_gain=config.guideline_min_gain,
    )
    for r in range(1, config.guideline_rounds + 1):
        errors = trials.rule_errors()
        edit = proposer.propose(guideline, errors)
        if edit is None:
            record.rounds.append(GuidelineRound(r, proposer.name, note="no edit proposed"))
            break
        row = _row(r, edit, errors)
        if len(edit.after) > config.guideline_max_chars:
            row.note = f"not tried: {len(edit.after)} characters, more than guideline_max_chars"
            record.rounds.append(row)
            continue
        control = trials.trial(guideline, seed=r)
        edited = trials.trial(edit.after, seed=r)  # same seed: the same batches, only the prompt differs
        d = decide(edited.correct, control.correct, config.guideline_z, config.guideline_min_gain)
        row.control_agreement, row.edit_agreement, row.difference = d.control, d.edit, d.difference
        row.standard_error, row.margin, row.accepted = d.standard_error, d.margin, d.accepted
        row.edit_only_right, row.control_only_right = d.edit_only_right, d.control_only_right
        trials.adopt(edited if d.accepted else control)
        if d.accepted:
            guideline = edit.after
        record.rounds.append(row)
        msg = (
            f"guideline round {r}: {edit.proposer} {edit.kind} {','.join(edit.rules)}: agreement "
            f"{d.edit:.3f} vs control {d.control:.3f} (margin {d.margin:.3f}): "
            + ("kept" if d.accepted else "rolled back")
        )
        log.info(msg)
        if progress:
            progress(msg)
    record.final_guideline = guideline
    return record


def _row(r: int, edit: GuidelineEdit, errors: Mapping[str, tuple[float, int]]) -> GuidelineRound:
    return GuidelineRound(
        r,
        edit.proposer,
        edit.kind,
        list(edit.rules),
        edit.description,
        {rule: errors[rule][0] for rule in edit.rules if rule in errors},
        edit.diff,
        edit.before,
        edit.after,
    )
