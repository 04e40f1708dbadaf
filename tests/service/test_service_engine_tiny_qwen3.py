"""The engine's shared work on a real exported model (the tests' tiny random Qwen3, every graph, FP32):
with the guideline cache, passes shared across requests and explanations decoded together, each request
gets what it gets alone with all of that off (main's way: every prefix whole, every request on its own).

Positions and holes are what a real transformer is sensitive to (the tiny hand-written graphs of the other
tests ignore both): a query extended on the guideline's cache, a row seeing only its own request's part of
a shared past, a stream's rows left-padded with holes to the other streams' length.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest
from service_testkit import ExtendingBackend

pytestmark = pytest.mark.slow

QUERIES = ["white samsung galaxy buds2", "red wine glass", "ssd 1tb usb-c", "kids water bottle", "laptop stand", "mug"]
DOCUMENTS = [
    "Samsung Galaxy Buds2 Earbuds, White. In-ear, with charging case.",
    "Set of 6 red wine glasses, lead-free crystal, 450 ml.",
    "Portable SSD 1 TB, USB 3.2 Gen 2, up to 1050 MB/s read, shock resistant, USB-C and USB-A cables.",
    "Plastic kids water bottle with straw",
    "Stand.",
    "Coffee mug 350 ml ceramic, dishwasher safe, a long description " + "with many words " * 12,
    "Champagne flutes, 4 pack.",
]
EXPLAIN = 2
MAX_NEW_TOKENS = 6


@pytest.fixture(scope="module")
def qwen3_checkpoint(tmp_path_factory) -> Path:
    from bench.qwen3_0p6b import TINY, make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("engine-qwen3") / "checkpoint", TINY)


@pytest.fixture(scope="module")
def qwen3_artifact(qwen3_checkpoint) -> Path:
    """Export's default: fused graphs (export/fusion.py), GroupQueryAttention taking the graph's mask."""
    from export.artifact import export_artifact

    out = qwen3_checkpoint.parent / "artifact"
    export_artifact(qwen3_checkpoint, out, dtype="fp32")
    return out


@pytest.fixture(scope="module")
def qwen3_plain_artifact(qwen3_checkpoint) -> Path:
    """The same checkpoint without fusion (afrl export --no-fuse): attention as plain ops over the mask."""
    from export.artifact import export_artifact

    out = qwen3_checkpoint.parent / "plain-artifact"
    export_artifact(qwen3_checkpoint, out, dtype="fp32", fuse=False)
    return out


def requests() -> list[tuple[str, list[str]]]:
    return [(q, [DOCUMENTS[(i + j) % len(DOCUMENTS)] for j in range(3 + i % 3)]) for i, q in enumerate(QUERIES)]


def engine_for(artifact: Path, gated: bool = False, **settings):
    from service.artifact_loader import load_artifact, onnx_backend_factory
    from service.engine import ScoringEngine
    from service.metrics import ServiceMetrics
    from service.settings import ServiceSettings

    s = ServiceSettings(model=artifact, intra_op_threads=1, max_new_tokens=MAX_NEW_TOKENS, **settings)
    factory = (lambda f, m, st: ExtendingBackend(onnx_backend_factory(f, m, st))) if gated else None
    return ScoringEngine(load_artifact(s, factory), s.max_batch_tokens, ServiceMetrics(), s)


def outcome(o) -> tuple[np.ndarray, dict[int, str]]:
    return np.asarray([r.probs for r in o.results]), o.explanations


def alone_and_shared(alone_artifact: Path, shared_artifact: Path):
    """Every request alone with the shared work off on `alone_artifact`; then on `shared_artifact`, the
    first two alone with the guideline cache, and all of them queued behind one gated pass."""

    async def main():
        before = engine_for(alone_artifact, cross_request_batching=False, guideline_cache=False)
        alone = [outcome(await before.score(q, docs, explain=EXPLAIN)) for q, docs in requests()]
        before.close()
        after = engine_for(shared_artifact, gated=True)
        backend = after.model.backend
        assert after.scheduler.guideline_length > 100, "the 188-token guideline is cached"
        await asyncio.to_thread(after.warmup)
        single = [outcome(await after.score(q, docs, explain=EXPLAIN)) for q, docs in requests()[:2]]
        backend.reset()
        backend.gate = threading.Event()
        tasks = [asyncio.create_task(after.score(q, docs, explain=EXPLAIN)) for q, docs in requests()]
        while len(after.scheduler._order) < len(tasks) - 1:  # all queued behind the first pass, held at the gate
            await asyncio.sleep(0.01)
        backend.gate.set()
        together = [outcome(t) for t in await asyncio.gather(*tasks)]
        calls = list(backend.calls)
        after.close()
        return alone, single, together, calls

    return asyncio.run(main())


def check_alone_and_shared(alone, single, together, calls) -> None:
    for (want_probs, want_text), (probs, text) in zip(alone[:2], single, strict=True):
        np.testing.assert_allclose(probs, want_probs, atol=1e-5)  # the guideline cache alone
        assert text == want_text
    for (want_probs, want_text), (probs, text) in zip(alone, together, strict=True):
        np.testing.assert_allclose(probs, want_probs, atol=1e-5)
        assert text == want_text and len(text) == EXPLAIN
    most = max(len(docs) for _, docs in requests())
    assert max(shapes[0][0] for m, shapes in calls if m == "score_prefix") > most, "requests shared a score pass"
    assert max(shapes[0][0] for m, shapes in calls if m == "extend") > 1, "queries were extended together"
    assert max(shapes[0][0] for m, shapes in calls if m == "decode") > EXPLAIN, "streams decoded together"


@pytest.mark.parametrize("alone_on", ["fused", "plain"])
def test_shared_work_gives_every_request_what_it_gets_alone(qwen3_artifact, qwen3_plain_artifact, alone_on):
    """On the fused graphs; "plain": against each request alone on the unfused graphs, so fused
    attention honours the guideline's extension, a shared past's holes and a decode batch's left
    padding exactly as the plain attention over the mask does."""
    from afrl.manifest import load_manifest

    fused = load_manifest(qwen3_artifact).fusions
    assert all(fused[g]["GroupQueryAttention"] > 0 for g in ("score", "score_prefix", "decode")), fused
    assert not load_manifest(qwen3_plain_artifact).fusions
    alone = qwen3_artifact if alone_on == "fused" else qwen3_plain_artifact
    check_alone_and_shared(*alone_and_shared(alone, qwen3_artifact))
