"""The one setup every training command shares: data sources, starting models, pools, teachers."""

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest
from transformers import AutoTokenizer

from afrl.dataset import DatasetError
from afrl.sidecar import Sidecar, SidecarError, read_sidecar
from afrl.tokenizer_files import qwen3_tokenizer_dir
from training.base_model import BaseModelError, is_lora
from training.context import checkpoint_context, load_checkpoint, save_checkpoint
from training.distill import DistillConfig
from training.model_factory import build_tiny_qwen3
from training.presets import preset
from training.rl import RLConfig
from training.setup import (
    PRETRAINED_LEARNING_RATE,
    PRETRAINED_LORA_LEARNING_RATE,
    TrainingSetup,
    from_dataset,
    generated_world,
    is_afrl_checkpoint,
    load_training_data,
    pretrained_sft,
    starting_model,
)
from training.sft import SFTConfig
from training.teachers import CheckpointTeacher, EndpointTeacher

BOOKSTORE = "tests/data/bookstore"


@pytest.fixture(scope="module")
def world():
    return generated_world(seed=3, n_queries=40, docs_per_query=4)


def test_the_setup_encodes_pools_and_vocabulary_once(world, ctx):
    setup = TrainingSetup.build(world, ctx, eval_examples=10)
    assert len(setup.sequences) == len(world.train) and len(setup.test) == 10
    tail = [e for e in world.train if e.long_tail]
    assert len(setup.pools["long_tail"]) == len(tail) and len(setup.pools["head"]) == len(world.train) - len(tail)
    assert setup.expert() == setup.pools["long_tail"] and setup.pools["evolved"] == []
    assert set(ctx.labels.token_ids) <= set(setup.vocab.tolist())
    evolved = generated_world(seed=9, n_queries=4, docs_per_query=3).train
    setup.add_evolved(evolved)
    assert len(setup.pools["evolved"]) == len(evolved)
    assert len(setup.expert()) == len(tail) + sum(e.long_tail for e in evolved)
    assert [p.grade for p in setup.rl_prompts()] == [e.grade for e in world.train]


def test_distillation_prompts_sample_train_and_add_fresh_world_prompts(world, ctx):
    setup = TrainingSetup.build(world, ctx)
    pairs = setup.distill_prompts(DistillConfig(train_prompts=10, extra_prompts=7))
    assert len(pairs) == 17 and len(set(pairs[:10])) == 10
    assert all(q not in setup.heldout_queries for q, _ in pairs[10:])
    assert pairs == setup.distill_prompts(DistillConfig(train_prompts=10, extra_prompts=7))  # deterministic


def test_the_endpoint_teacher_gets_its_api_key_from_the_configured_variable(world, ctx, monkeypatch):
    """The pipeline and `afrl train distill` build teachers here; both endpoint teachers carry the key."""
    monkeypatch.setenv("AFRL_TEACHER_KEY", "sk-test")
    setup = TrainingSetup.build(world, ctx)
    config = DistillConfig(
        teacher_base_url="http://vllm:8000/v1", teacher_model="big", teacher_api_key_env="AFRL_TEACHER_KEY"
    )
    teacher = setup.teacher(config)
    assert isinstance(teacher, EndpointTeacher) and teacher.api_key == "sk-test"
    assert teacher.url == "http://vllm:8000/v1/chat/completions"
    model = build_tiny_qwen3(preset("ci").method.distill.student, seed=0)
    assert isinstance(setup.teacher(DistillConfig(), model=model), CheckpointTeacher)
    with pytest.raises(ValueError, match="give a teacher"):
        setup.teacher(DistillConfig())


def test_a_dataset_folder_becomes_training_data(monkeypatch, tmp_path):
    data = load_training_data(preset("ci"), BOOKSTORE)
    assert data.world is None and data.source == BOOKSTORE
    assert data.guideline.startswith("Bookstore search relevance")  # the folder's guideline.md
    assert data.label_values == (0, 1, 2, 3, 4) and data.train and data.test
    assert any("rows" in line for line in data.summary)
    guideline = tmp_path / "g.md"
    guideline.write_text("Grade books strictly.")
    assert load_training_data(preset("ci"), BOOKSTORE, str(guideline)).guideline == "Grade books strictly."
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train.jsonl").write_text('{"query": "q", "document": "d", "grade": 7}\n')
    with pytest.raises(DatasetError, match="train.jsonl:1"):
        load_training_data(preset("ci"), str(bad))
    ds = SimpleNamespace(train=data.train, dev=[], test=data.test, guideline=None)
    with pytest.raises(ValueError, match="no guideline"):
        from_dataset(ds, source="stand-in")
    assert from_dataset(ds, source="stand-in", guideline="g").label_values == (0, 1, 2, 3, 4)


def test_starting_models_fresh_from_a_checkpoint_or_refused_with_the_reason(world, ctx, tmp_path, small_spec):
    fresh = starting_model(None, small_spec, seed=0, data=world)
    assert fresh.source.startswith("random init") and fresh.ctx.guideline == world.guideline
    folder = save_checkpoint(fresh.model, tmp_path / "ckpt", fresh.ctx, {"rl": RLConfig()})
    assert json.loads((folder / "rl_config.json").read_text())["lam"] == 0.5
    again = starting_model(str(folder), small_spec, seed=0, data=world)
    assert again.source == str(folder) and again.ctx.labels == fresh.ctx.labels
    other = world.with_guideline("Another guideline.")
    assert starting_model(str(folder), small_spec, 0, other).ctx.guideline == "Another guideline."
    assert starting_model(str(folder), small_spec, 0, other, keep_guideline=True).ctx.guideline == world.guideline
    with pytest.raises(ValueError, match="--lora-rank 8 adapts a pretrained model: give --base"):
        starting_model(None, small_spec, 0, world, lora_rank=8)
    with pytest.raises(BaseModelError, match="no config.json"):
        starting_model(str(tmp_path), small_spec, 0, world)


def test_a_plain_checkpoint_starts_with_its_own_tokenizer_and_lora_merges_on_save(world, tmp_path, small_spec):
    plain = tmp_path / "plain"
    build_tiny_qwen3(small_spec, seed=0).save_pretrained(plain)  # a Hugging Face folder without afrl.json
    with pytest.raises(BaseModelError, match="the folder has no tokenizer"):
        starting_model(str(plain), small_spec, 0, world)
    AutoTokenizer.from_pretrained(qwen3_tokenizer_dir()).save_pretrained(plain)
    start = starting_model(str(plain), small_spec, 0, world, keep_guideline=True, lora_rank=4)
    assert is_lora(start.model) and start.source == str(plain)
    assert start.ctx.guideline == world.guideline and start.ctx.labels.values == [0, 1, 2, 3, 4]  # the data's
    assert start.ctx.encoder.template.completion_end == "<|im_end|>"
    setup = TrainingSetup.build(world, start.ctx)
    folder = setup.save(start.model, tmp_path / "saved", {})
    assert read_sidecar(folder) == Sidecar(guideline=world.guideline, label_values=[0, 1, 2, 3, 4])
    assert not list(folder.glob("adapter_*"))  # merged: a plain checkpoint, not an adapter folder
    assert is_afrl_checkpoint(str(folder)) and not is_afrl_checkpoint(str(plain))
    with pytest.raises(BaseModelError, match=r"label '10' is not a single token"):
        starting_model(str(plain), small_spec, 0, replace(world, label_values=(0, 10)))


def test_a_plain_checkpoint_gets_a_pretrained_learning_rate_unless_one_was_set(tmp_path):
    preset_sft = SFTConfig(learning_rate=4e-3)
    assert pretrained_sft(preset_sft, preset_sft, None) == preset_sft  # from scratch: the preset's
    assert pretrained_sft(preset_sft, preset_sft, str(tmp_path)).learning_rate == PRETRAINED_LEARNING_RATE
    lora = SFTConfig(learning_rate=4e-3, lora_rank=8)
    assert pretrained_sft(lora, preset_sft, str(tmp_path)).learning_rate == PRETRAINED_LORA_LEARNING_RATE
    chosen = SFTConfig(learning_rate=3e-5)
    assert pretrained_sft(chosen, preset_sft, str(tmp_path)) == chosen  # --lr or --config set it


def test_the_sidecar_is_written_and_read_by_one_module(ctx, tmp_path, small_spec):
    model = build_tiny_qwen3(small_spec, seed=0)
    folder = save_checkpoint(model, tmp_path / "ckpt", ctx, {})
    assert read_sidecar(folder) == Sidecar(guideline=ctx.guideline, label_values=[0, 1, 2, 3, 4])
    assert checkpoint_context(folder).guideline == ctx.guideline
    _, loaded = load_checkpoint(folder)
    assert loaded.labels == ctx.labels
    assert read_sidecar(tmp_path) is None
    (folder / "afrl.json").write_text(json.dumps({"guideline": "g", "label_values": [3, 1]}))
    with pytest.raises(SidecarError, match="afrl.json: label_values: .*ascending"):
        read_sidecar(folder)
    (folder / "afrl.json").write_text("{not json")
    with pytest.raises(SidecarError, match="not valid JSON"):
        read_sidecar(folder)
