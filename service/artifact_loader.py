"""Load a model artifact folder: manifest, tokenizer and scoring backend.

Every way the folder can be unusable surfaces as `ArtifactError` with a
message naming the file and the reason, so `afrl serve` can print it as is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from afrl.manifest import TOKENIZER_FILE as TOKENIZER_FILE  # re-exported: the benchmarks read the artifact's tokenizer
from afrl.manifest import ArtifactError, Manifest, load_manifest, load_tokenizer
from afrl.paths import default_model_dir
from afrl.prompt import PromptEncoder
from afrl.recipe import Recipe, read_recipe
from service.backend import Backend, OnnxBackend
from service.providers import available_providers, cuda_blocker, resolve_providers
from service.settings import ServiceSettings

logger = logging.getLogger(__name__)

PAD_TOKEN = "<|endoftext|>"

# (artifact folder, its manifest, settings) -> backend; tests inject fakes here.
BackendFactory = Callable[[Path, Manifest, ServiceSettings], Backend]


@dataclass
class LoadedModel:
    """Everything the engine needs from one artifact."""

    folder: Path
    manifest: Manifest
    encoder: PromptEncoder
    backend: Backend
    pad_id: int
    name: str
    tokenizer: Any = None  # tokenizers.Tokenizer: decodes explanations
    eos_id: int | None = None  # the token that ends an explanation (the prompt's completion_end)
    recipe: Recipe | None = None  # what built it, when it records that (the embedded default model does)


def onnx_backend_factory(folder: Path, manifest: Manifest, settings: ServiceSettings) -> Backend:
    """The production backend: onnxruntime over the manifest's graphs, on the providers asked for
    (the CPU under 'auto' when the graphs' fused attention cannot run on CUDA, see service/providers.py)."""
    plan = resolve_providers(
        settings.provider_list,
        available_providers(),
        settings.cuda_device_id,
        settings.cuda_graphs,
        cuda_blocked=cuda_blocker(manifest),
    )
    return OnnxBackend(
        folder, manifest, plan, intra_op_threads=settings.intra_op_threads, shared_prefix=settings.shared_prefix
    )


def resolve_model_dir(settings: ServiceSettings) -> Path:
    return Path(settings.model).expanduser() if settings.model is not None else default_model_dir()


def load_artifact(settings: ServiceSettings, backend_factory: BackendFactory | None = None) -> LoadedModel:
    """Manifest (hashes verified), tokenizer, prompt encoder and backend of `settings.model`."""
    folder = resolve_model_dir(settings)
    if not folder.is_dir():
        hint = "" if settings.model is not None else " (no --model given and the default model is not built)"
        raise ArtifactError(f"{folder}: model artifact folder does not exist{hint}")
    manifest = load_manifest(folder)
    tokenizer = load_tokenizer(folder, manifest.labels)  # label tokens checked, as export/verify.py checks them
    pad_id = tokenizer.token_to_id(PAD_TOKEN)
    eos_ids = tokenizer.encode(manifest.prompt.completion_end, add_special_tokens=False).ids
    backend = (backend_factory or onnx_backend_factory)(folder, manifest, settings)
    if backend.num_labels != manifest.labels.size:
        raise ArtifactError(
            f"{folder}: backend returns {backend.num_labels} label logits, manifest lists {manifest.labels.size}"
        )
    recipe = read_recipe(folder)
    built_by = f" (recipe {recipe.label})" if recipe is not None else ""
    logger.info("loaded model %s%s from %s", manifest.model_name, built_by, folder)
    return LoadedModel(
        folder=folder,
        manifest=manifest,
        encoder=PromptEncoder(manifest.prompt, tokenizer, settings.max_document_tokens),
        backend=backend,
        pad_id=pad_id if pad_id is not None else 0,
        name=settings.model_name or manifest.model_name,
        tokenizer=tokenizer,
        eos_id=eos_ids[0] if len(eos_ids) == 1 else None,
        recipe=recipe,
    )
