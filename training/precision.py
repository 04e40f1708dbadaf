"""Mixed precision for the training loops: bfloat16 autocast where the hardware multiplies it natively.

`SFTConfig.precision` is "fp32", "bf16" or "auto". Under "bf16" the forward
pass and the loss run in `torch.autocast` (matmuls and attention in
bfloat16, reductions and the softmax in float32, as autocast's op lists
decide); the weights, their gradients and AdamW's moments stay float32, so
a checkpoint is the same float32 model either way.

"auto" picks bf16 only where it is a speed-up, decided from the hardware,
not from a timing (a busy box must not change the recipe's numerics):
CUDA devices that support bfloat16, and CPUs with native bfloat16 dot
products (x86 `avx512_bf16` or `amx_bf16`, read from /proc/cpuinfo; Arm
`bf16`). Elsewhere bfloat16 matmuls are emulated and slower than float32,
so "auto" stays fp32. Measured on the 2-core AMD EPYC (avx512_bf16) these
sessions run on: a (2400 x 256) @ (256 x 768) matmul 109 -> 502 GFLOP/s on
one thread; the default recipe's SFT step 356 -> 513 steps/min on 2 threads
(the rest of the step is elementwise work autocast does not shorten).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

import torch

PRECISIONS = ("fp32", "bf16", "auto")
CPUINFO = Path("/proc/cpuinfo")
_CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})  # x86 AVX-512 BF16, AMX; Arm FEAT_BF16


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bfloat16 dot-product instructions (Linux: /proc/cpuinfo flags; elsewhere False)."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return bool(_CPU_BF16_FLAGS & set(value.split()))
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision `precision` means on `device`: "fp32" or "bf16" ("auto": bf16 where native, see above)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return "fp32"


@contextlib.contextmanager
def autocast(precision: str, device: torch.device) -> Iterator[None]:
    """bfloat16 autocast on `device` when `precision` is "bf16" (resolved), else nothing."""
    if precision == "bf16":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    else:
        yield
