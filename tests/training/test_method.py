"""The full method's configuration: presets that validate, refusals that say what to fix, arms that differ in
objective only."""

import copy
import json
from dataclasses import asdict

import pytest

import training.rl
from training import sft_arm
from training.curriculum import CurriculumConfig, StageConfig
from training.method import ARMS, _train_arm
from training.presets import PRESETS, MethodConfig, preset
from training.rl import RLConfig
from training.setup import TrainingSetup, generated_world


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


def test_the_comparison_arms_see_the_same_prompts_and_expert_batches(ctx, warm_model, small_spec, monkeypatch):
    """SFT alone, GRPO alone and mode-balanced: at every step the same P prompts (the SFT arm trains on
    their references) and the same B_e expert demonstrations; they differ in objective only."""
    setup = TrainingSetup.build(generated_world(3, 40, 4), ctx)
    setup.add_evolved(setup.data.train[:3])  # an evolved pool, as after evolution
    expert = {id(s) for s in setup.expert()}
    rl = RLConfig(steps=3, prompts_per_step=2, group_size=2, max_new_tokens=6, lam=0.5, expert_batch_size=3, seed=4)
    method = MethodConfig(teacher=small_spec, rl=rl)
    seen: dict[str, dict[str, list]] = {}
    arm = ""

    def record(kind: str, value) -> None:
        seen.setdefault(arm, {"prompts": [], "expert": []})[kind].append(value)

    real_generate, real_rl_collate, real_sft_collate = training.rl.generate, training.rl.collate, sft_arm.collate

    def generate(model, prompts, **kw):
        record("prompts", [tuple(p) for p in prompts])
        return real_generate(model, prompts, **kw)

    def rl_collate(sequences, *args, **kw):
        if all(id(s) in expert for s in sequences):  # the expert batch (rollout batches are new sequences)
            record("expert", [id(s) for s in sequences])
        return real_rl_collate(sequences, *args, **kw)

    def sft_collate(sequences, *args, **kw):
        record("prompts", [tuple(s.prompt_ids) for s in sequences[: rl.prompts_per_step]])
        record("expert", [id(s) for s in sequences[rl.prompts_per_step :]])
        return real_sft_collate(sequences, *args, **kw)

    monkeypatch.setattr(training.rl, "generate", generate)
    monkeypatch.setattr(training.rl, "collate", rl_collate)
    monkeypatch.setattr(sft_arm, "collate", sft_collate)
    histories = {}
    for arm in ARMS:
        _, histories[arm], _ = _train_arm(arm, method, setup, copy.deepcopy(warm_model), None)
    assert set(seen) == set(ARMS) and all(len(h) == rl.steps for h in histories.values())
    for kind in ("prompts", "expert"):
        assert len(seen["sft"][kind]) == rl.steps
        assert seen["sft"][kind] == seen["grpo"][kind] == seen["mbo"][kind], kind
    assert len({tuple(p) for p in seen["sft"]["prompts"]}) == rl.steps  # a new draw every step


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
