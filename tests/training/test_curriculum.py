"""Curriculum stages: validation and the mix each stage draws."""

import random
from collections import Counter

import pytest

from training.curriculum import CurriculumConfig, StageConfig, default_stages, draw_mix
from training.sft_data import SFTSequence


def test_default_curriculum_is_head_then_long_tail_then_evolved():
    stages = default_stages(30, 20, 10)
    assert [s.name for s in stages] == ["head", "long_tail", "evolved"]
    assert stages[0].mix == {"head": 1.0} and "evolved" in stages[2].mix


def test_draw_mix_follows_the_shares_and_skips_empty_pools():
    pools = {"head": [SFTSequence([1], [2], 0)] * 5, "long_tail": [SFTSequence([1], [3], 1)] * 5, "evolved": []}
    drawn = draw_mix(pools, {"head": 0.75, "long_tail": 0.25, "evolved": 0.5}, 100, random.Random(0))
    counts = Counter(s.grade for s in drawn)
    assert counts == {0: 75, 1: 25}  # the empty evolved pool is skipped, the rest renormalised
    with pytest.raises(ValueError, match="empty"):
        draw_mix(pools, {"evolved": 1.0}, 10, random.Random(0))


def test_stages_validate_themselves():
    with pytest.raises(ValueError, match="unknown pools"):
        StageConfig("x", {"rare": 1.0}, 10)
    with pytest.raises(ValueError, match="unique"):
        CurriculumConfig(stages=[StageConfig("a", {"all": 1.0}, 1), StageConfig("a", {"head": 1.0}, 1)])
    assert CurriculumConfig(stages=[{"name": "a", "mix": {"all": 1.0}, "steps": 3}]).stage("a").steps == 3
