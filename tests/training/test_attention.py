"""The SFT loop's attention kernel: eager on a CPU while it trains, the model's own afterwards, the same losses."""

import pytest
import torch
from tokenizers import Tokenizer
from transformers import AutoTokenizer

from afrl.labels import LabelSet
from afrl.prompt import PromptEncoder, PromptTemplate
from afrl.tokenizer_files import qwen3_tokenizer_dir
from training import sft as sft_module
from training.attention import resolve_attention, training_attention
from training.model_factory import TinyQwen3Spec, build_tiny_qwen3
from training.sft import SFTConfig, train_sft
from training.sft_data import encode_examples
from training.world import build_world, guideline_text

PAD = 151643
SMALL = TinyQwen3Spec(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1
)


@pytest.fixture(scope="module")
def sequences_and_labels():
    hf = AutoTokenizer.from_pretrained(qwen3_tokenizer_dir())
    labels = LabelSet.from_tokenizer(hf)
    encoder = PromptEncoder(
        PromptTemplate.from_chat_template(hf, guideline_text()),
        Tokenizer.from_file(str(qwen3_tokenizer_dir() / "tokenizer.json")),
    )
    world = build_world(seed=3, n_queries=30, docs_per_query=4)
    return encode_examples(world.train, encoder, labels), labels


def test_auto_is_eager_on_a_cpu_and_the_models_own_elsewhere():
    assert resolve_attention("auto", torch.device("cpu")) == "eager"
    assert resolve_attention("auto", torch.device("cuda")) is None
    assert resolve_attention("sdpa", torch.device("cpu")) == "sdpa"
    with pytest.raises(ValueError, match="attention must be one of"):
        resolve_attention("flash", torch.device("cpu"))
    with pytest.raises(ValueError, match="attention must be one of"):
        SFTConfig(attention="flash")


def test_the_kernel_switches_for_the_loop_and_back_afterwards_also_when_it_raises(sequences_and_labels, monkeypatch):
    sequences, labels = sequences_and_labels
    model = build_tiny_qwen3(SMALL, seed=0)
    assert model.config._attn_implementation == "sdpa"
    seen = []
    real_loss = sft_module.sft_loss

    def spy(model_, *args, **kwargs):
        seen.append(model_.config._attn_implementation)
        return real_loss(model_, *args, **kwargs)

    monkeypatch.setattr(sft_module, "sft_loss", spy)
    train_sft(model, sequences, labels, SFTConfig(steps=2, batch_size=4, warmup_steps=1), PAD)
    assert seen == ["eager", "eager"]
    assert model.config._attn_implementation == "sdpa"

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(sft_module, "sft_loss", broken)
    with pytest.raises(RuntimeError, match="boom"):
        train_sft(model, sequences, labels, SFTConfig(steps=2, batch_size=4, warmup_steps=1), PAD)
    assert model.config._attn_implementation == "sdpa"
    with training_attention(model, "sdpa", torch.device("cpu")):
        assert model.config._attn_implementation == "sdpa"


def test_eager_and_sdpa_train_the_same_model_in_float32(sequences_and_labels):
    sequences, labels = sequences_and_labels
    config = SFTConfig(steps=12, batch_size=4, warmup_steps=2, learning_rate=1e-2, seed=1)
    runs = {}
    for attention in ("eager", "sdpa"):
        model = build_tiny_qwen3(SMALL, seed=0)
        result = train_sft(model, sequences, labels, SFTConfig(**{**config.__dict__, "attention": attention}), PAD)
        runs[attention] = (result.losses, torch.cat([p.detach().flatten() for p in model.parameters()]))
    (eager_losses, eager_weights), (sdpa_losses, sdpa_weights) = runs["eager"], runs["sdpa"]
    assert eager_losses == pytest.approx(sdpa_losses, rel=1e-4)
    assert torch.allclose(eager_weights, sdpa_weights, atol=1e-4)
    assert sum(eager_losses[-3:]) < sum(eager_losses[:3])  # and it learned
