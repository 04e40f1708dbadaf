"""The SFT arms of guideline evolution: continue training a copy of the model with a guideline, score it on dev.

`training.evolution.guideline` decides; this module trains and measures.
Each trial deep-copies the current model, re-encodes the training data with
the trial's guideline (`TrainingSetup.with_guideline`; the control reuses
the current encoding) and runs one curriculum-style SFT stage of
`guideline_steps` steps over the natural mix. The stage's batches depend on
the seed and the pool sizes only, and both arms have the same pools, so edit
and control see the same examples in the same order: only the prompt differs.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from afrl.dataset import Example
from afrl.progress import Progress
from training.curriculum import CurriculumConfig, StageConfig, run_stage
from training.evaluate.torch_model import predict_grades
from training.evolution import Trial, rule_errors
from training.setup import TrainingSetup

TRIAL_MIX = {"all": 1.0}  # the natural mix: every pool a dataset has, none that may be empty
SEED_OFFSET = 300  # apart from the curriculum's and the evolved rounds' stage seeds


class SFTGuidelineTrials:
    """`GuidelineTrials` over a torch model and its `TrainingSetup`; `model` and `setup` are the current ones."""

    def __init__(
        self,
        setup: TrainingSetup,
        model: torch.nn.Module,
        curriculum: CurriculumConfig,
        steps: int,
        choosing: Sequence[Example],
        accepting: Sequence[Example],
        progress: Progress | None = None,
    ):
        self.setup, self.model, self.curriculum, self.steps = setup, model, curriculum, steps
        self.choosing, self.accepting, self.progress = list(choosing), list(accepting), progress
        self.adopted: list[Trial] = []  # the arms that became the current model, in order

    def rule_errors(self) -> dict[str, tuple[float, int]]:
        return rule_errors(self.choosing, predict_grades(self.model, self.setup.ctx, self.choosing))

    def trial(self, guideline: str, seed: int) -> Trial:
        setup = self.setup if guideline == self.setup.ctx.guideline else self.setup.with_guideline(guideline)
        model = copy.deepcopy(self.model)
        stage = StageConfig("guideline", dict(TRIAL_MIX), self.steps)
        ctx = setup.ctx
        result = run_stage(
            model,
            stage,
            setup.pools,
            self.curriculum,
            ctx.labels,
            ctx.pad_id,
            setup.vocab,
            self.progress,
            seed=SEED_OFFSET + seed,
        )
        predicted = predict_grades(model, ctx, self.accepting)
        correct = [p == e.grade for p, e in zip(predicted, self.accepting, strict=True)]
        return Trial(guideline, correct, (model, setup), result.losses)

    def adopt(self, trial: Trial) -> None:
        self.model, self.setup = trial.state
        self.adopted.append(trial)
