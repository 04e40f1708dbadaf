"""HTTP routes: thin wrappers that parse, delegate and answer.

POST /v1/score     grades (service.api.serving), or an event stream (service.api.streaming)
POST /v1/rerank    Cohere/Jina rerank (service.api.serving_rerank); /v2/rerank the same
POST /rerank       TEI's rerank when the body has `texts`, else Jina/vLLM/Infinity's (/v1/rerank's)
GET  /health/live  the process answers and its backend is not wedged (503: restart it)
GET  /health/ready the model is loaded and warmed, not draining, no forward pass stuck (503 otherwise)
GET  /metrics      Prometheus text
GET  /info         model, label set, limits
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse, Response
from fastapi.types import DecoratedCallable

from service.api.auth import require_api_key
from service.api.body import parse_json, read_body, read_json, validate
from service.api.errors import BackendStuckError, NotReady
from service.api.openapi import EVENT_STREAM, SCORING_ERRORS, errors, request_body
from service.api.rerank_schemas import RerankRequest, RerankResponse, TeiRerankRequest, TeiRerankResponse
from service.api.schemas import InfoResponse, LabelInfo, LimitsInfo, RecipeInfo, ScoreRequest, ScoreResponse
from service.api.serving import ready_engine, refuse_early, serve_score
from service.api.serving_rerank import serve_rerank, serve_tei_rerank
from service.api.streaming import serve_score_stream
from service.inference_thread import BackendStuck
from service.metrics import CONTENT_TYPE
from service.runtime import ServiceRuntime

router = APIRouter()


def _runtime(request: Request) -> ServiceRuntime:
    return request.app.state.runtime


@router.post(
    "/v1/score",
    dependencies=[Depends(require_api_key)],
    response_model=ScoreResponse,
    response_model_exclude_none=True,
    responses={200: {"content": EVENT_STREAM}, **SCORING_ERRORS},
    openapi_extra=request_body(ScoreRequest),
)
async def score(request: Request) -> Response:
    arrived = time.monotonic()
    runtime = _runtime(request)
    refuse_early(runtime)
    body = await read_json(request, ScoreRequest, runtime.settings.max_request_bytes)
    if body.stream:
        return await serve_score_stream(runtime, body, arrived, request)
    return await serve_score(runtime, body, arrived, request)


async def _rerank(request: Request, api_version: str) -> Response:
    arrived = time.monotonic()
    runtime = _runtime(request)
    refuse_early(runtime)
    body = await read_json(request, RerankRequest, runtime.settings.max_request_bytes)
    return await serve_rerank(runtime, body, arrived, request, api_version)


def _rerank_route(path: str) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """`POST path` documented as a rerank operation (both API versions are the same operation)."""
    return router.post(
        path,
        dependencies=[Depends(require_api_key)],
        response_model=RerankResponse,
        response_model_exclude_none=True,
        responses=SCORING_ERRORS,
        openapi_extra=request_body(RerankRequest),
    )


@_rerank_route("/v1/rerank")
async def rerank_v1(request: Request) -> Response:
    return await _rerank(request, "1")


@_rerank_route("/v2/rerank")
async def rerank_v2(request: Request) -> Response:
    return await _rerank(request, "2")


@router.post(
    "/rerank",
    dependencies=[Depends(require_api_key)],
    response_model=TeiRerankResponse | RerankResponse,
    response_model_exclude_none=True,
    responses=SCORING_ERRORS,
    openapi_extra=request_body(TeiRerankRequest, RerankRequest),
)
async def rerank(request: Request) -> Response:
    """TEI's rerank when the body has `texts` (a bare array back); else `documents`: Jina's, vLLM's and
    Infinity's rerank, answered as /v1/rerank is, except that documents are not echoed."""
    arrived = time.monotonic()
    runtime = _runtime(request)
    refuse_early(runtime)
    body = parse_json(await read_body(request, runtime.settings.max_request_bytes))
    if isinstance(body, dict) and "texts" in body:
        return await serve_tei_rerank(runtime, validate(TeiRerankRequest, body), arrived, request)
    return await serve_rerank(runtime, validate(RerankRequest, body), arrived, request, "1", echo=False)


@router.get("/health/live", responses=errors(503))
async def live(request: Request) -> dict[str, str]:
    """The process answers, and its model backend is not wedged (service.inference_thread)."""
    engine = _runtime(request).engine
    if engine is not None:
        try:
            engine.liveness()
        except BackendStuck as e:
            raise BackendStuckError(str(e)) from None
    return {"status": "live"}


@router.get("/health/ready", responses=errors(503))
async def ready(request: Request) -> dict[str, str]:
    runtime = _runtime(request)
    if runtime.draining:
        raise NotReady("shutting down: finishing in-flight requests")
    engine = ready_engine(runtime)
    try:
        engine.health()
    except Exception as e:
        raise NotReady(f"backend unhealthy: {e}") from None
    return {"status": "ready"}


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> Response:
    return Response(_runtime(request).metrics.render(), media_type=CONTENT_TYPE)


@router.get(
    "/info", dependencies=[Depends(require_api_key)], response_model_exclude_none=True, responses=errors(401, 503)
)
async def info(request: Request) -> InfoResponse:
    runtime = _runtime(request)
    engine = ready_engine(runtime)
    s, manifest, recipe = runtime.settings, engine.manifest, engine.recipe
    return InfoResponse(
        model=engine.name,
        prompt_version=manifest.prompt.version,
        labels=LabelInfo(values=manifest.labels.values, tokens=manifest.labels.tokens),
        limits=LimitsInfo(
            max_documents=s.max_documents,
            max_document_tokens=s.max_document_tokens,
            max_document_chars=s.max_document_chars,
            max_request_bytes=s.max_request_bytes,
            max_batch_tokens=s.max_batch_tokens,
            max_queue=s.max_queue,
            max_queue_tokens=s.max_queue_tokens,
            max_queue_delay_ms=s.max_queue_delay_ms,
            max_wait_ms=s.max_wait_ms,
            max_sequence_length=manifest.max_sequence_length,
            max_new_tokens=s.max_new_tokens,
            max_reasoning_documents=s.max_reasoning_documents,
        ),
        recipe=RecipeInfo(preset=recipe.preset, fingerprint=recipe.fingerprint) if recipe is not None else None,
        reasoning=engine.reasoning,
        shared_prefix=engine.shared_prefix,
        providers=engine.providers,
    )
