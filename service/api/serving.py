"""Score serving: a validated `ScoreRequest` -> limits, admission, engine -> `ScoreResponse`.

The protocol-to-engine glue (vLLM's `serving_*.py`): routes stay thin;
rerank (serving_rerank.py) and the event stream (streaming.py) reuse
`check_limits`, `engine_errors` and `until_disconnected` the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager, suppress
from typing import TypeVar

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel

from afrl.scoring import GradeResult
from service.admission import Deadline, DeadlineExceeded, QueueFull
from service.api.errors import (
    BackendStuckError,
    ClientDisconnected,
    DeadlineExceededError,
    InferenceTimeoutError,
    InternalError,
    InvalidRequest,
    NotReady,
    PayloadTooLarge,
    QueueFullError,
    ServiceError,
)
from service.api.schemas import ScoreRequest, ScoreResponse, ScoreResult, ScoreUsage
from service.engine import InputTooLong, ScoreOutcome, ScoringEngine
from service.inference_thread import BackendStuck, InferenceTimeout
from service.runtime import ServiceRuntime
from service.scheduler import ShuttingDown
from service.tracing import record_phases

logger = logging.getLogger(__name__)

T = TypeVar("T")


def check_limits(runtime: ServiceRuntime, query: str, documents: list[str], field: str = "documents") -> None:
    """413 for too many documents or a document (or query) over max_document_chars; `field` names
    the documents in the messages (TEI calls them `texts`)."""
    s = runtime.settings
    if len(documents) > s.max_documents:
        raise PayloadTooLarge(
            f"{field}: {len(documents)} documents, at most {s.max_documents} per request",
            reason="too_many_documents",
        )
    if len(query) > s.max_document_chars:
        raise PayloadTooLarge(
            f"query: {len(query)} characters, at most {s.max_document_chars}", reason="query_too_large"
        )
    for i, text in enumerate(documents):
        if len(text) > s.max_document_chars:
            raise PayloadTooLarge(
                f"{field}[{i}]: {len(text)} characters, at most {s.max_document_chars}",
                reason="document_too_large",
            )


def check_reasoning(runtime: ServiceRuntime, engine: ScoringEngine, request: ScoreRequest) -> int:
    """How many documents to explain; 422 when the model cannot explain, 413 when too many are asked."""
    count = request.explain_count()
    if count and not engine.reasoning:
        raise InvalidRequest(
            "reasoning: this model artifact has no decode graph (and prefix graphs), so it can grade but "
            "not explain; send reasoning=false or serve an artifact exported with them"
        )
    limit = runtime.settings.max_reasoning_documents
    if count > limit:
        raise PayloadTooLarge(
            f"reasoning: {count} documents to explain, at most {limit} per request; "
            'use reasoning={"top_k": k} or top_n',
            reason="too_many_reasoning_documents",
        )
    return count


def ready_engine(runtime: ServiceRuntime) -> ScoringEngine:
    if not runtime.serving or runtime.engine is None:
        why = f"model failed to load: {runtime.load_error}" if runtime.load_error else "model is loading"
        raise NotReady(why)
    return runtime.engine


def refuse_early(runtime: ServiceRuntime) -> None:
    """503 / 429 before the body is read: under overload a refusal should cost next to nothing."""
    engine = ready_engine(runtime)
    with engine_errors(engine):
        engine.check_admission()


@contextmanager
def engine_errors(engine: ScoringEngine) -> Iterator[None]:
    """Engine exceptions -> HTTP errors; anything unexpected is logged and becomes a generic 500."""
    try:
        yield
    except ServiceError:
        raise
    except QueueFull as e:
        retry = e.retry_after_s or engine.retry_after_s()
        raise QueueFullError(f"the server is busy ({e}); retry later", retry) from None
    except DeadlineExceeded as e:
        raise DeadlineExceededError(str(e)) from None
    except InputTooLong as e:
        raise PayloadTooLarge(str(e), reason="query_too_long") from None
    except ShuttingDown as e:
        raise NotReady(str(e)) from None
    except InferenceTimeout as e:
        raise InferenceTimeoutError(str(e)) from None
    except BackendStuck as e:
        raise BackendStuckError(str(e)) from None
    except Exception:
        logger.exception("scoring failed")
        raise InternalError("scoring failed; see the server log") from None


async def _disconnected(request: Request) -> None:
    """Returns when the client closes the connection (the body has been read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def until_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work`; if the client goes away first, cancel it (its queued work is dropped) and raise 499."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await task  # let its cleanup (dropping queued work) run before answering
    if task.cancelled():
        raise ClientDisconnected("the client closed the connection before the answer", reason="client_disconnected")
    return task.result()


def json_response(body: BaseModel, headers: dict[str, str]) -> Response:
    """The model serialised by pydantic-core straight to bytes, null fields left out."""
    return Response(body.model_dump_json(exclude_none=True), media_type="application/json", headers=headers)


def request_deadline(timeout_ms: int | None, arrived: float) -> Deadline | None:
    return Deadline.after_ms(timeout_ms, arrived) if timeout_ms else None


def timing_headers(queue_seconds: float, inference_seconds: float) -> dict[str, str]:
    return {"x-queue-time-ms": f"{queue_seconds * 1000:.3f}", "x-inference-time-ms": f"{inference_seconds * 1000:.3f}"}


async def serve_score(runtime: ServiceRuntime, request: ScoreRequest, arrived: float, http: Request) -> Response:
    """Score one request (not streamed); `arrived` (time.monotonic) anchors `timeout_ms`."""
    texts = request.texts()
    check_limits(runtime, request.query, texts)
    engine = ready_engine(runtime)
    explain = check_reasoning(runtime, engine, request)
    deadline = request_deadline(request.timeout_ms, arrived)
    with engine_errors(engine), engine.admit():
        started = time.perf_counter()
        outcome = await until_disconnected(http, engine.score(request.query, texts, deadline, explain, arrived))
    record_phases(http, outcome, started, explain)
    body = build_response(engine.name, request, outcome)
    return json_response(body, timing_headers(outcome.queue_seconds, outcome.inference_seconds))


def score_result(
    index: int, doc_id: str | None, grade: GradeResult, truncated: bool, reasoning: str | None = None
) -> ScoreResult:
    return ScoreResult(
        index=index,
        id=doc_id,
        grade=grade.grade,
        probs=grade.probs,
        score=grade.score,
        truncated=True if truncated else None,
        reasoning=reasoning,
    )


def build_response(model_name: str, request: ScoreRequest, outcome: ScoreOutcome) -> ScoreResponse:
    ids = request.ids()
    results = [
        score_result(i, ids[i], r, outcome.truncated[i], outcome.explanations.get(i))
        for i, r in enumerate(outcome.results)
    ]
    if request.top_n is not None:
        results = sorted(results, key=lambda r: (-r.score, r.index))[: request.top_n]
    return ScoreResponse(model=model_name, results=results, usage=ScoreUsage(**outcome.usage))
