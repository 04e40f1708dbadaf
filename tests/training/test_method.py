"""The full method's configuration: presets that validate, and refusals that say what to fix."""

import json
from dataclasses import asdict

import pytest

from training.curriculum import CurriculumConfig, StageConfig
from training.presets import PRESETS, MethodConfig, preset
from training.rl import RLConfig


def test_method_presets_run_every_stage():
    for name in ("ci", "tiny"):
        method = preset(name).method
        assert [s.name for s in method.curriculum.stages] == ["head", "long_tail", "evolved"]
        assert method.evolution.rounds >= 1 and method.rl.lam > 0 and method.compare
        assert method.distill.student.hidden_size < method.teacher.hidden_size
        json.dumps(asdict(preset(name)), default=str)  # what report.json records
    assert PRESETS["default"].method is None  # the embedded default model stays plain SFT


def test_method_refuses_inconsistent_configs():
    with pytest.raises(ValueError, match="evolved"):
        MethodConfig(curriculum=CurriculumConfig(stages=[StageConfig("head", {"head": 1.0}, 5)]))
    with pytest.raises(ValueError, match="lam > 0"):
        MethodConfig(rl=RLConfig(lam=0.0))


def test_the_curriculum_schedule_spans_every_stage_and_evolution_round():
    """One warm-up and one cosine over the steps the method will take: the evolved stage as its rounds."""
    from training.method import _planned_steps

    tiny = preset("tiny").method  # stages 300, 100, 100; two evolution rounds of 50 steps
    assert _planned_steps(tiny) == 300 + 100 + 2 * 50
    odd = MethodConfig(
        curriculum=CurriculumConfig(stages=[StageConfig("head", {"head": 1.0}, 7), StageConfig("e", {"evolved": 1}, 5)])
    )
    rounds = odd.evolution.rounds
    assert _planned_steps(odd) == 7 + rounds * max(1, 5 // rounds)
