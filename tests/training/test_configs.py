"""Stage configs from a preset, a file and flags: precedence, nesting, coercion, and refusals that say what to fix."""

import json

import pytest

from training.configs import config_dict, merged, read_config_file, resolve, save_config
from training.curriculum import CurriculumConfig, StageConfig
from training.distill import DistillConfig
from training.presets import PRESETS, PipelineConfig, preset
from training.rl import RLConfig
from training.sft import SFTConfig


def test_flags_override_the_file_which_overrides_the_preset(tmp_path):
    file = tmp_path / "rl.yaml"
    file.write_text("lam: 0.3\nbeta: 1e-2\nlearning_rate: 1e-4\nstep_weights: [2, 1, 1, 1, 1]\n")
    default = preset("tiny").rl_stage_config()
    config = resolve(default, file, {"lam": 0.1, "steps": None, "temperature": None})
    assert config.lam == 0.1  # the flag
    assert config.beta == 0.01 and config.learning_rate == 1e-4  # the file ("1e-4" is a string to YAML)
    assert config.step_weights == (2.0, 1.0, 1.0, 1.0, 1.0)
    assert config.steps == default.steps and config.group_size == default.group_size  # the preset
    assert PRESETS["tiny"].method.rl.lam == 0.5  # the preset itself is untouched


def test_nested_configs_merge_field_by_field(tmp_path):
    file = tmp_path / "distill.json"
    file.write_text(json.dumps({"sft": {"learning_rate": 1e-3}, "student": {"num_hidden_layers": 1}}))
    default = preset("tiny").distill_stage_config()
    config = resolve(default, file, {"sft": {"batch_size": 4, "epochs": None}})
    assert config.sft.learning_rate == 1e-3 and config.sft.batch_size == 4
    assert config.sft.grade_weight == default.sft.grade_weight  # not named: kept
    assert config.student.num_hidden_layers == 1 and config.student.hidden_size == default.student.hidden_size
    stages = merged(CurriculumConfig(), {"stages": [{"name": "all", "mix": {"all": 1.0}, "steps": 7}]})
    assert stages.stages == [StageConfig("all", {"all": 1.0}, 7)]
    method = merged(PipelineConfig(), {"method": {"compare": False}})  # None -> the nested config's defaults
    assert method.method is not None and method.method.compare is False


def test_the_saved_effective_config_reads_back_as_the_same_config(tmp_path):
    config = merged(preset("ci").sft_stage_config(), {"sft": {"learning_rate": 5e-4, "epochs": 2.0}})
    path = save_config(config, tmp_path / "curriculum_config.json")
    again = resolve(CurriculumConfig(), path, {})
    assert again == config
    assert config_dict(again) == json.loads(path.read_text())


def test_refusals_name_the_field_and_the_fix(tmp_path):
    with pytest.raises(ValueError, match="unknown field.*lamda.*known:.*lam"):
        merged(RLConfig(), {"lamda": 0.1})
    with pytest.raises(ValueError, match=r"sft\.batch_size: expected an integer"):
        merged(DistillConfig(), {"sft": {"batch_size": "big"}})
    with pytest.raises(ValueError, match="learning_rate: expected a number"):
        merged(SFTConfig(), {"learning_rate": "fast"})
    with pytest.raises(ValueError, match="try warmup_steps="):
        merged(SFTConfig(), {"steps": 5})  # the default warmup (30) does not fit
    with pytest.raises(ValueError, match="share_prefix=False"):
        SFTConfig(gradient_checkpointing=True)
    with pytest.raises(ValueError, match="group_size.*try 4"):
        RLConfig(group_size=1)
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="must be a mapping"):
        read_config_file(bad)
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_config_file(tmp_path / "x.toml")
    (tmp_path / "x.toml").write_text("")
    with pytest.raises(ValueError, match=r"\.json, \.yaml or \.yml"):
        read_config_file(tmp_path / "x.toml")
    broken = tmp_path / "broken.json"
    broken.write_text('{"lam": }')
    with pytest.raises(ValueError, match="broken.json:1: not valid JSON"):
        read_config_file(broken)


def test_epochs_become_steps_for_the_data_at_hand():
    config = SFTConfig(epochs=2.0, batch_size=10, warmup_steps=30)
    resolved = config.resolved(rows=45)
    assert resolved.steps == 9 and resolved.epochs is None and resolved.warmup_steps == 8
    curriculum = CurriculumConfig(stages=[StageConfig("a", {"all": 1.0}, 30), StageConfig("b", {"all": 1.0}, 10)])
    scaled = merged(curriculum, {"sft": {"epochs": 1.0, "batch_size": 10}}).resolved(rows=80)
    assert [s.steps for s in scaled.stages] == [6, 2] and scaled.sft.epochs is None
