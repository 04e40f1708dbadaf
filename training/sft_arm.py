"""The comparison's "SFT alone" arm: the RL stage's data, steps and optimizer, with the SFT loss.

The method compares three arms from one checkpoint (`training.method`): SFT alone,
Stepwise-GRPO alone (lambda = 0) and mode-balanced (lambda > 0). For the comparison to
measure the objective and nothing else, the SFT arm takes at step t exactly the data the
RL arms take at step t (`training.rl.step_data` under the same `RLConfig`):

    RL arms   P prompts (sampled, rewarded against their references) + B_e expert demonstrations
    SFT arm   the same P prompts with their reference completions + the same B_e demonstrations,
              one batch, the SFT NLL (`sft.sft_loss`, grade token weighted `RLConfig.grade_weight`)

with the same optimizer (`rl.rl_optimizer`: AdamW, constant learning rate, weight decay and
gradient clipping of the `RLConfig`) and the same number of updates (steps x epochs_per_batch).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

from training.context import TrainingContext
from training.rl import RLConfig, RLExample, RLResult, rl_optimizer, step_data
from training.sft import sft_loss
from training.sft_data import SFTSequence, collate


def train_sft_arm(
    model: torch.nn.Module,
    prompts: Sequence[RLExample],
    expert: Sequence[SFTSequence],
    ctx: TrainingContext,
    config: RLConfig,
    vocab: torch.Tensor | None,
    progress: Callable[[str], None] | None = None,
) -> RLResult:
    """Train `model` in place on the RL stage's step data with the SFT loss; history rows: step, loss."""
    device = next(model.parameters()).device
    vocab = None if vocab is None else vocab.to(device)
    prefix = torch.tensor(prompts[0].sequence.prompt_ids[: ctx.prefix_len], device=device)
    optimizer = rl_optimizer(model, config)
    history: list[dict] = []
    start = time.perf_counter()
    model.train()
    for step, data in enumerate(step_data(prompts, expert, config)):
        chunk = [x.sequence for x in data.prompts] + data.expert  # what the RL arms see this step
        batch = collate(chunk, ctx.pad_id, skip_prefix=ctx.prefix_len).to(device)
        for _ in range(config.epochs_per_batch):
            loss = sft_loss(model, batch, vocab, config.grade_weight, prefix)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
        history.append({"step": step + 1, "loss": loss.item()})
        if progress and (step % config.log_every == 0 or step == config.steps - 1):
            progress(f"sft arm step {step + 1}/{config.steps} loss {loss.item():.3f}")
    model.eval()
    return RLResult(history, time.perf_counter() - start)
