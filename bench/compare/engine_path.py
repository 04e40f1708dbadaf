"""Our engine, as the service runs it but without HTTP: `ScoringEngine.score(query, documents)` on an artifact.

The engine tokenizes (the prefix once), batches by token budget and runs
onnxruntime's CPU provider with `threads` intra-op threads. With
`shared_prefix` it scores on the prefix + score_prefix graphs (guideline and
query once, every document on their KV cache); without, every full prompt on
the score graph. Only the graphs the path uses are opened (the compare never
explains, so no decode graph). The artifact's prompt template is replaced by
the compare's (guideline cut), so the engine sees the same prompts as every
other path. Returns (B, K) label probabilities.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from afrl.prompt import PromptEncoder
from bench.compare.inputs import CompareInputs


def engine_call(
    artifact: Path, inputs: CompareInputs, threads: int, shared_prefix: bool
) -> tuple[Callable[[], np.ndarray], Callable[[], None]]:
    """The call and what closes the engine."""
    from service.artifact_loader import load_artifact, onnx_backend_factory
    from service.blocking import BlockingScorer
    from service.engine import ScoringEngine
    from service.metrics import ServiceMetrics
    from service.settings import ServiceSettings

    settings = ServiceSettings(
        model=artifact, intra_op_threads=threads, shared_prefix=shared_prefix, providers="CPUExecutionProvider"
    )
    used = ("score", "prefix", "score_prefix") if shared_prefix else ("score",)

    def backend(folder, manifest, s):
        graphs = {name: spec for name, spec in manifest.graphs.items() if name in used}
        return onnx_backend_factory(folder, manifest.model_copy(update={"graphs": graphs}), s)

    model = load_artifact(settings, backend)
    model.encoder = PromptEncoder(inputs.template, model.tokenizer, settings.max_document_tokens)
    scorer = BlockingScorer(ScoringEngine(model, settings.max_batch_tokens, ServiceMetrics(), settings))

    def call() -> np.ndarray:
        outcome = scorer.score(inputs.query, inputs.documents)
        return np.asarray([r.probs for r in outcome.results])  # (B, K)

    return call, scorer.close
