"""The torch paths a user would write first, on the checkpoint in FP32 (transformers, eager):

    naive         one forward pass over the left-padded batch: logits at every position and over
                  the whole vocabulary (B, T, V), the grade read from the last position's label columns
    generate      model.generate(max_new_tokens=1): one prefill; transformers keeps only the last
                  position's logits, still over the whole vocabulary
    reason_first  the classic order: decode an explanation of exactly `tokens` tokens (greedy, KV
                  cache, end-of-turn suppressed), then read the grade from the next position

Each call tokenizes the request, runs, and returns (B, K) label logits.
Position ids follow the attention mask (as generate builds them), so the
left-padded rows score as they would alone.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.compare.inputs import CompareInputs


def load_model(checkpoint: Path, threads: int):
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    return AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()


def _tensors(inputs: CompareInputs):
    import torch

    ids, mask = inputs.batch()
    return torch.from_numpy(ids), torch.from_numpy(mask)  # (B, T), (B, T)


def naive(model, inputs: CompareInputs) -> Callable[[], np.ndarray]:
    import torch

    def call() -> np.ndarray:
        ids, mask = _tensors(inputs)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T)
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits  # (B, T, V)
        return logits[:, -1, inputs.label_token_ids].numpy()

    return call


def generate(model, inputs: CompareInputs, new_tokens: int = 1) -> Callable[[], np.ndarray]:
    """generate() for `new_tokens` tokens (greedy, exactly that many); the label logits of the last one."""
    import torch

    def call() -> np.ndarray:
        ids, mask = _tensors(inputs)
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                output_logits=True,
                return_dict_in_generate=True,
                pad_token_id=inputs.pad_id,
            )
        return out.logits[-1][:, inputs.label_token_ids].float().numpy()  # raw logits of the last step (B, V)

    return call


def reason_first(model, inputs: CompareInputs, tokens: int) -> Callable[[], np.ndarray]:
    """An explanation of `tokens` tokens, then the grade: generate's last step is the grade position."""
    return generate(model, inputs, new_tokens=tokens + 1)
