"""Execution providers: which ONNX Runtime providers run the graphs, with what options.

    AFRL_PROVIDERS=auto         CUDA (then CPU) when onnxruntime-gpu is installed, else CPU
    AFRL_PROVIDERS=A,B          exactly these, in priority order; a missing one is an error

Pure functions over the list onnxruntime reports, so the choice is tested
without a GPU. Falling back silently from a GPU to the CPU would hide a
broken deployment, so an explicitly named provider that is missing stops
the load.

Fused FP32 and INT8 graphs (export/fusion.py) run attention as
GroupQueryAttention with the graph's mask as `attention_bias`, which
onnxruntime's CUDA kernel refuses when the graph runs, not when it loads
(contrib_ops/cuda/bert/group_query_attention.cc). `cuda_blocker(manifest)`
names such graphs (from `manifest.fusions`); given that reason,
`resolve_providers` serves 'auto' on the CPU, with one log line, and refuses
a list that puts CUDA before the CPU. FP16 artifacts, fused without the
attention, are not affected.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from afrl.manifest import ArtifactError, Manifest

logger = logging.getLogger(__name__)

AUTO = "auto"
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
BIASED_ATTENTION = "GroupQueryAttention"  # export/fusion.py's fused attention: always with attention_bias
NO_FUSE_HINT = "`afrl export --no-fuse` makes a CUDA-capable artifact"


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


def cuda_blocker(manifest: Manifest) -> str | None:
    """Why this artifact cannot run on CUDA, or None: its graphs with a fused attention that needs a bias."""
    graphs = [name for name, counts in manifest.fusions.items() if counts.get(BIASED_ATTENTION, 0) > 0]
    if not graphs:
        return None
    return (
        f"the {', '.join(graphs)} graph(s) fuse attention as {BIASED_ATTENTION} with the mask as attention_bias, "
        "which onnxruntime's CUDA kernel refuses"
    )


def resolve_providers(
    requested: list[str],
    available: list[str],
    cuda_device_id: int = 0,
    cuda_graphs: bool = False,
    cuda_blocked: str | None = None,
) -> ProviderPlan:
    """`requested` (AFRL_PROVIDERS split on commas) against what this onnxruntime build offers.

    `cuda_blocked`: why the artifact cannot run on CUDA (`cuda_blocker`); 'auto' then picks the CPU.
    """
    explicit = [p.lower() for p in requested] != [AUTO]
    if not explicit:
        chosen = [CUDA, CPU] if CUDA in available else [CPU]
        if cuda_blocked is not None and CUDA in chosen:
            logger.warning("serving on the CPU although CUDA is available: %s; %s", cuda_blocked, NO_FUSE_HINT)
            chosen = [CPU]
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
        if cuda_blocked is not None and _cuda_first(chosen):
            raise ArtifactError(
                f"AFRL_PROVIDERS={','.join(requested)} runs this artifact on CUDA, but {cuda_blocked}; "
                f"{NO_FUSE_HINT} (or set AFRL_PROVIDERS=auto or {CPU})"
            )
    on_gpu = chosen[0] == CUDA
    if cuda_graphs and not on_gpu:
        why = f"{cuda_blocked}; {NO_FUSE_HINT}" if cuda_blocked is not None else "install onnxruntime-gpu"
        raise ArtifactError(
            f"AFRL_CUDA_GRAPHS needs CUDAExecutionProvider first, the providers are {chosen}; "
            f"{why} or unset AFRL_CUDA_GRAPHS"
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


def _cuda_first(providers: list[str]) -> bool:
    """Whether CUDA would get the graph's nodes: onnxruntime hands each node to the first provider with a kernel."""
    return CUDA in providers and (CPU not in providers or providers.index(CUDA) < providers.index(CPU))


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
