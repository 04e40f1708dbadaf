"""The TRL subclass: per-step, per-token advantages replace TRL's per-sequence ones; the expert term is added.

TRL's own generation and loss run in the GPU smoke script (bench/gpu_train_smoke.py); here the
subclass's two overrides run against a stubbed parent, so the test takes seconds on a CPU.
"""

from types import SimpleNamespace

import pytest
import torch

from training.rl import RLConfig

trl_grpo = pytest.importorskip("training.trl_grpo")


def _trainer(ctx, **args):
    trainer = object.__new__(trl_grpo.StepwiseGRPOTrainer)  # the overrides only need these attributes
    trainer.processing_class = ctx.hf_tokenizer
    trainer.model = SimpleNamespace(training=True)
    trainer.num_generations = 2
    trainer.num_generations_eval = 2
    trainer.accelerator = SimpleNamespace(process_index=0, device=torch.device("cpu"))
    trainer.rl = RLConfig(
        step_weights=(1.0,) * 5, lam=0.5, lam_final=None, lam_schedule="constant", expert_batch_size=2
    )
    trainer.args = SimpleNamespace(**args)
    trainer._pieces = {}
    trainer._metrics = {"train": {"expert_nll": [], "lambda": []}}
    return trainer


def test_advantages_become_per_step_per_token(ctx, monkeypatch):
    texts = ["2\n[Query] a\n[Document] b\n[Rules] R1 satisfied: x\n[Conclusion] grade=2 because y", "3\n[Query] a"]
    ids = [ctx.hf_tokenizer.encode(t, add_special_tokens=False) for t in texts]
    width = max(len(i) for i in ids)
    completion_ids = torch.tensor([i + [ctx.pad_id] * (width - len(i)) for i in ids])
    mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i in ids])
    monkeypatch.setattr(
        trl_grpo.GRPOTrainer,
        "_generate_and_score_completions",
        lambda self, inputs: {"completion_ids": completion_ids, "completion_mask": mask, "advantages": torch.zeros(2)},
    )
    trainer = _trainer(ctx)
    trainer._step_rewards = torch.tensor([[1.0, 1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 0.0, 0.0, 0.0]])  # one group of 2
    out = trainer._generate_and_score_completions([])
    adv = out["advantages"]
    assert adv.shape == completion_ids.shape
    a = 0.5 / (2**0.5 / 2 + 1e-4)  # step advantage: +-0.5 / (unbiased std of {1, 0} + eps)
    # completion 0: 5 steps present; its grade token carries +a scaled by n_tokens / (1 * 5)
    assert adv[0, 0].item() == pytest.approx(a * len(ids[0]) / 5, rel=1e-5)
    # the query step tied (1 vs 1): zero advantage on its tokens; completion 1 loses on the grade step
    assert adv[0, 1:4].abs().max().item() == pytest.approx(0.0, abs=1e-6)
    assert adv[1, 0].item() < 0 and adv[1, len(ids[1]) :].abs().sum().item() == 0.0


def test_expert_term_is_added_with_lambda(ctx, small_world, small_spec, monkeypatch):
    from training.model_factory import build_tiny_qwen3
    from training.trl_grpo import expert_pairs

    model = build_tiny_qwen3(small_spec, seed=0)
    monkeypatch.setattr(
        trl_grpo.GRPOTrainer, "compute_loss", lambda self, m, inputs, r=False, n=None: torch.tensor(1.0)
    )
    trainer = _trainer(ctx, seed=0)
    trainer.expert = expert_pairs(small_world.train[:4], ctx.encoder.template, ctx.labels)
    trainer._rng = __import__("random").Random(0)
    trainer.state = SimpleNamespace(global_step=0, max_steps=10)
    trainer.current_gradient_accumulation_steps = 1
    loss = trainer.compute_loss(model, {})
    nll = trainer._metrics["train"]["expert_nll"][0]
    assert 5 < nll < 13  # a random model's completion NLL over 151,936 tokens
    assert loss.item() == pytest.approx(1.0 + 0.5 * nll, rel=1e-5)
    assert trainer._metrics["train"]["lambda"] == [0.5]


def test_config_requires_the_per_sequence_token_mean(tmp_path):
    config = trl_grpo.StepwiseGRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    assert config.loss_type == "grpo"
    with pytest.raises(ValueError, match="loss_type"):
        trl_grpo.StepwiseGRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", loss_type="bnpo")
    with pytest.raises(ValueError, match="step_weights"):  # the RL stage's one config, for both engines
        RLConfig(step_weights=(1.0,))
