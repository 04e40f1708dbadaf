"""A test that fails when learning breaks: the default recipe, shortened, far above the majority class.

The embedded default model's own shape and optimiser settings (`PRESETS["default"]`), on its world,
for 300 steps instead of its 1,800 (in bf16 autocast where the CPU has native bf16, as the recipe
says). Measured when this test was written (float32, the recipe of the day): test accuracy 0.385 and
0.393 on the first 600 test rows for seeds 0 and 1 against 0.222 for the majority class there, so
the margin asserted (0.10) holds with room on both (the category heuristic's 0.65 is not asserted:
the full recipe does not beat it yet either, see the README's What is measured). A loop that stops
learning (a detached loss, a wrong target shift, a learning rate of zero, labels read from the wrong
rows) lands at the majority class or below.
"""

from __future__ import annotations

import pytest

from training.evaluate.torch_model import evaluate_model
from training.presets import PRESETS
from training.setup import TrainingSetup, load_training_data, starting_model
from training.sft import train_sft

pytestmark = pytest.mark.slow


def test_the_default_recipe_learns_far_above_the_majority_class():
    config = PRESETS["default"]
    data = load_training_data(config)
    start = starting_model(None, config.start_spec(), config.sft.seed, data)
    setup = TrainingSetup.build(data, start.ctx, config.eval_examples)
    sft = config.sft.with_steps(300)
    result = train_sft(start.model, setup.sequences, setup.ctx.labels, sft, setup.ctx.pad_id, vocab=setup.vocab)
    figures = evaluate_model(start.model, setup.ctx, setup.test[:600], setup.train_grades)
    assert result.losses[-1] < result.losses[0] / 3
    assert figures["accuracy"] > figures["majority_baseline_accuracy"] + 0.10, figures["accuracy"]
