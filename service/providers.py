"""Execution providers: which ONNX Runtime providers run the graphs, with what options.

    AFRL_PROVIDERS=auto         CUDA (then CPU) when onnxruntime-gpu is installed, else CPU
    AFRL_PROVIDERS=A,B          exactly these, in priority order; a missing one is an error

Pure functions over the list onnxruntime reports, so the choice is tested
without a GPU. Falling back silently from a GPU to the CPU would hide a
broken deployment, so an explicitly named provider that is missing stops
the load.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from afrl.manifest import ArtifactError

logger = logging.getLogger(__name__)

AUTO = "auto"
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


@dataclass(frozen=True)
class ProviderPlan:
    """What every session of one backend is created with."""

    providers: list[str]
    options: list[dict[str, Any]] = field(default_factory=list)  # one dict per provider
    device: str = "cpu"  # where IO binding keeps tensors: "cpu" or "cuda"
    device_id: int = 0
    cuda_graphs: bool = False
    explicit: bool = True  # named in AFRL_PROVIDERS (not 'auto'): a provider that fails to start is an error

    @property
    def on_gpu(self) -> bool:
        return self.device == "cuda"


def resolve_providers(
    requested: list[str], available: list[str], cuda_device_id: int = 0, cuda_graphs: bool = False
) -> ProviderPlan:
    """`requested` (AFRL_PROVIDERS split on commas) against what this onnxruntime build offers."""
    explicit = [p.lower() for p in requested] != [AUTO]
    if not explicit:
        chosen = [CUDA, CPU] if CUDA in available else [CPU]
    else:
        if any(p.lower() == AUTO for p in requested):
            raise ArtifactError(f"AFRL_PROVIDERS={','.join(requested)}: 'auto' cannot be combined with names")
        missing = [p for p in requested if p not in available]
        if missing:
            raise ArtifactError(
                f"execution provider(s) {missing} are not available in this onnxruntime build "
                f"(available: {available}); set AFRL_PROVIDERS (or 'auto')"
            )
        chosen = list(dict.fromkeys(requested))
    on_gpu = chosen[0] == CUDA
    if cuda_graphs and not on_gpu:
        raise ArtifactError(
            f"AFRL_CUDA_GRAPHS needs CUDAExecutionProvider first, the providers are {chosen}; "
            "install onnxruntime-gpu or unset AFRL_CUDA_GRAPHS"
        )
    options = [_options(p, cuda_device_id) for p in chosen]
    return ProviderPlan(
        providers=chosen,
        options=options,
        device="cuda" if on_gpu else "cpu",
        device_id=cuda_device_id if on_gpu else 0,
        cuda_graphs=cuda_graphs,
        explicit=explicit,
    )


def _options(provider: str, cuda_device_id: int) -> dict[str, Any]:
    if provider == CUDA:
        # The whole model lives on one GPU; the arena grows only as far as requests need.
        return {"device_id": cuda_device_id, "arena_extend_strategy": "kSameAsRequested"}
    return {}


def available_providers() -> list[str]:
    import onnxruntime as ort

    available = list(ort.get_available_providers())
    if CUDA in available:
        _preload_cuda_libraries(ort)
    return available


def _preload_cuda_libraries(ort: Any) -> None:
    """onnxruntime-gpu[cuda,cudnn] (the CUDA image) brings CUDA and cuDNN as nvidia-* pip packages,
    outside the loader's search path; onnxruntime's preload_dlls (1.21+) loads them before any
    session needs them. Where CUDA is installed system-wide this finds nothing new; a failure
    here is logged and the session creation reports whatever is really missing."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    try:
        preload()
    except Exception as e:  # best effort, see above
        logger.warning("onnxruntime.preload_dlls failed: %s", e)
