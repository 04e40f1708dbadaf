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
        assert method.evolution.guideline_rounds >= 1  # the guideline is evolved too
        assert method.distill.student.hidden_size < method.teacher.hidden_size
        json.dumps(asdict(preset(name)), default=str)  # what report.json records
    assert PRESETS["default"].method is None  # the embedded default model stays plain SFT


def test_method_refuses_inconsistent_configs():
    with pytest.raises(ValueError, match="evolved"):
        MethodConfig(curriculum=CurriculumConfig(stages=[StageConfig("head", {"head": 1.0}, 5)]))
    with pytest.raises(ValueError, match="lam > 0"):
        MethodConfig(rl=RLConfig(lam=0.0))
