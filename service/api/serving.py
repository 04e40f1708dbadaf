"""Score serving: a validated `ScoreRequest` -> limits, admission, engine -> `ScoreResponse`.

The protocol-to-engine glue (vLLM's `serving_*.py`): routes stay thin, and
a later `/v1/rerank` reuses `check_limits` and the engine the same way.
"""

from __future__ import annotations

import logging

from fastapi.responses import JSONResponse

from service.admission import QueueFull
from service.api.errors import (
    DeadlineExceededError,
    InternalError,
    InvalidRequest,
    NotReady,
    PayloadTooLarge,
    QueueFullError,
)
from service.api.schemas import ScoreRequest, ScoreResponse, ScoreResult, ScoreUsage
from service.engine import Deadline, DeadlineExceeded, InputTooLong, ScoreOutcome, ScoringEngine
from service.runtime import ServiceRuntime

logger = logging.getLogger(__name__)


def check_limits(runtime: ServiceRuntime, query: str, documents: list[str]) -> None:
    """413 for too many documents or a document (or query) over max_document_chars."""
    s = runtime.settings
    if len(documents) > s.max_documents:
        raise PayloadTooLarge(
            f"documents: {len(documents)} documents, at most {s.max_documents} per request",
            reason="too_many_documents",
        )
    if len(query) > s.max_document_chars:
        raise PayloadTooLarge(
            f"query: {len(query)} characters, at most {s.max_document_chars}", reason="query_too_large"
        )
    for i, text in enumerate(documents):
        if len(text) > s.max_document_chars:
            raise PayloadTooLarge(
                f"documents[{i}]: {len(text)} characters, at most {s.max_document_chars}",
                reason="document_too_large",
            )


def ready_engine(runtime: ServiceRuntime) -> ScoringEngine:
    if not runtime.ready or runtime.engine is None:
        why = f"model failed to load: {runtime.load_error}" if runtime.load_error else "model is loading"
        raise NotReady(why)
    return runtime.engine


async def serve_score(runtime: ServiceRuntime, request: ScoreRequest, arrived: float) -> JSONResponse:
    """Score one request; `arrived` (time.monotonic) anchors `timeout_ms`."""
    if request.stream:
        raise InvalidRequest("stream: streaming is not available in this build; send stream=false")
    if request.wants_reasoning:
        raise InvalidRequest("reasoning: explanations are not available in this build; send reasoning=false")
    texts = request.texts()
    check_limits(runtime, request.query, texts)
    engine = ready_engine(runtime)
    deadline = Deadline.after_ms(request.timeout_ms, arrived) if request.timeout_ms else None
    try:
        with runtime.admission.admit():
            outcome = await engine.score(request.query, texts, deadline)
    except QueueFull as e:
        raise QueueFullError(f"the server is busy ({e}); retry later") from None
    except DeadlineExceeded as e:
        raise DeadlineExceededError(str(e)) from None
    except InputTooLong as e:
        raise PayloadTooLarge(str(e), reason="query_too_long") from None
    except Exception:
        logger.exception("scoring failed")
        raise InternalError("scoring failed; see the server log") from None
    body = build_response(engine.model.name, request, outcome)
    return JSONResponse(
        body.model_dump(exclude_none=True),
        headers={
            "x-queue-time-ms": f"{outcome.queue_seconds * 1000:.3f}",
            "x-inference-time-ms": f"{outcome.inference_seconds * 1000:.3f}",
        },
    )


def build_response(model_name: str, request: ScoreRequest, outcome: ScoreOutcome) -> ScoreResponse:
    ids = request.ids()
    results = [
        ScoreResult(
            index=i, id=ids[i], grade=r.grade, probs=r.probs, score=r.score,
            truncated=True if outcome.truncated[i] else None,
        )  # fmt: skip
        for i, r in enumerate(outcome.results)
    ]
    if request.top_n is not None:
        results = sorted(results, key=lambda r: (-r.score, r.index))[: request.top_n]
    return ScoreResponse(model=model_name, results=results, usage=ScoreUsage(**outcome.usage))

