"""The SFT loop's attention kernel: eager on a CPU while it trains, the model's own afterwards, the same losses."""

from dataclasses import replace

import pytest
import torch

from training import sft as sft_module
from training.attention import resolve_attention, training_attention
from training.model_factory import build_tiny_qwen3
from training.sft import SFTConfig, train_sft


def test_auto_is_eager_on_a_cpu_and_the_models_own_elsewhere():
    assert resolve_attention("auto", torch.device("cpu")) == "eager"
    assert resolve_attention("auto", torch.device("cuda")) is None
    assert resolve_attention("sdpa", torch.device("cpu")) == "sdpa"
    with pytest.raises(ValueError, match="attention must be one of"):
        resolve_attention("flash", torch.device("cpu"))
    with pytest.raises(ValueError, match="attention must be one of"):
        SFTConfig(attention="flash")


def test_the_kernel_switches_for_the_loop_and_back_afterwards_also_when_it_raises(
    sequences, ctx, small_spec, monkeypatch
):
    model = build_tiny_qwen3(small_spec, seed=0)
    assert model.config._attn_implementation == "sdpa"
    seen = []
    real_loss = sft_module.sft_loss

    def spy(model_, *args, **kwargs):
        seen.append(model_.config._attn_implementation)
        return real_loss(model_, *args, **kwargs)

    monkeypatch.setattr(sft_module, "sft_loss", spy)
    train_sft(model, sequences, ctx.labels, SFTConfig(steps=2, batch_size=4, warmup_steps=1), ctx.pad_id)
    assert seen == ["eager", "eager"]
    assert model.config._attn_implementation == "sdpa"

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(sft_module, "sft_loss", broken)
    with pytest.raises(RuntimeError, match="boom"):
        train_sft(model, sequences, ctx.labels, SFTConfig(steps=2, batch_size=4, warmup_steps=1), ctx.pad_id)
    assert model.config._attn_implementation == "sdpa"
    with training_attention(model, "sdpa", torch.device("cpu")):
        assert model.config._attn_implementation == "sdpa"


def test_eager_and_sdpa_train_the_same_model_in_float32(sequences, ctx, small_spec):
    config = SFTConfig(steps=12, batch_size=4, warmup_steps=2, learning_rate=1e-2, seed=1)
    runs = {}
    for attention in ("eager", "sdpa"):
        model = build_tiny_qwen3(small_spec, seed=0)
        result = train_sft(model, sequences, ctx.labels, replace(config, attention=attention), ctx.pad_id)
        runs[attention] = (result.losses, torch.cat([p.detach().flatten() for p in model.parameters()]))
    (eager_losses, eager_weights), (sdpa_losses, sdpa_weights) = runs["eager"], runs["sdpa"]
    assert eager_losses == pytest.approx(sdpa_losses, rel=1e-4)
    assert torch.allclose(eager_weights, sdpa_weights, atol=1e-4)
    assert sum(eager_losses[-3:]) < sum(eager_losses[:3])  # and it learned
