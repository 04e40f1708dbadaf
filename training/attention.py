"""Which attention kernel the SFT loop trains with: on a CPU the eager one (matmuls and a softmax).

`SFTConfig.attention` is "auto", "eager" or "sdpa". transformers builds
models with `sdpa`, which on a CPU runs torch's flash-attention kernel; its
backward is slow at the sizes the from-scratch presets train (a few hundred
keys, head size 64): in the default recipe's step (256 wide x 2 layers, 16
rows of ~120 new tokens over a 206-token shared prefix, bfloat16 autocast)
the kernel took 35% of the time, 29 ms per backward call, where the matmuls
of the whole model took 26%. The eager path (`eager_attention_forward`: two
batched matmuls and a softmax, the attention matrix materialised) trains the
same model faster: 307 -> 417 steps/min on one thread (paired median ratio
1.40x) and 419 -> 523 on two (1.23x), `afrl bench train-compact-vocab speed
--compare attention`, on the 2-core AMD EPYC these sessions run on. "auto"
therefore means eager on a CPU and the model's own kernel elsewhere (on a GPU
the fused kernels are the fast ones).

Only training switches: the model goes back to its own implementation when
the loop returns, so evaluation, export and a saved config are unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

ATTENTIONS = ("auto", "eager", "sdpa")


def resolve_attention(attention: str, device: torch.device) -> str | None:
    """The kernel `attention` means on `device` ("eager" or "sdpa"), or None to keep the model's own."""
    if attention not in ATTENTIONS:
        raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
    if attention != "auto":
        return attention
    return "eager" if device.type == "cpu" else None


@contextlib.contextmanager
def training_attention(model: torch.nn.Module, attention: str, device: torch.device) -> Iterator[None]:
    """Train `model` with the attention kernel `attention` resolves to on `device`; restored on exit."""
    wanted = resolve_attention(attention, device)
    hf = model.get_base_model() if hasattr(model, "get_base_model") else model  # a peft wrapper's model
    config = getattr(hf, "config", None)
    own = getattr(config, "_attn_implementation", None)
    if wanted is None or own is None or own == wanted or not hasattr(hf, "set_attn_implementation"):
        yield
        return
    hf.set_attn_implementation(wanted)
    try:
        yield
    finally:
        hf.set_attn_implementation(own)
