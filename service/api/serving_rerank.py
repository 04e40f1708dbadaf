"""The rerank protocols over the same engine: Cohere/Jina (`/v1/rerank`, `/v2/rerank`, `/rerank` with
`documents`) and TEI (`/rerank` with `texts`).

`relevance_score` (TEI: `score`) is afrl's `score` (expected grade scaled
to [0, 1]); results come best first, `top_n` of them. Cohere's `document`
only with `return_documents: true` (Cohere's default is false), an object
document whole. The response carries both Cohere's `meta` and Jina's
`usage`; truncated documents and unsupported parameters are named in
`meta.warnings`. On `/rerank` documents are never echoed: litellm's
`infinity/` and `hosted_vllm/` send the same request there and parse
`document` as a string and as an object respectively, so only its absence
reads right to both (the caller holds the documents; `index` points at
them).
"""

from __future__ import annotations

import time
import uuid

from fastapi import Request
from fastapi.responses import Response

from service.api.errors import PayloadTooLarge
from service.api.rerank_schemas import (
    ApiVersion,
    RerankMeta,
    RerankRequest,
    RerankResponse,
    RerankResult,
    RerankTokens,
    RerankUsage,
    TeiRerankRequest,
    TeiRerankResponse,
    TeiRerankResult,
)
from service.api.serving import (
    check_limits,
    engine_errors,
    json_response,
    ready_engine,
    request_deadline,
    timing_headers,
    until_disconnected,
)
from service.engine import ScoreOutcome
from service.runtime import ServiceRuntime
from service.tracing import record_phases

NOT_ECHOED = (
    "return_documents is not supported on /rerank: documents are not echoed there (Infinity's and vLLM's "
    "clients read `document` differently); /v1/rerank echoes them"
)


async def _score(
    runtime: ServiceRuntime,
    http: Request,
    query: str,
    texts: list[str],
    arrived: float,
    field: str,
    timeout_ms: int | None = None,
    max_document_tokens: int | None = None,
) -> tuple[str, ScoreOutcome]:
    """(model name, outcome) for one rerank request, through the same limits and admission as /v1/score."""
    check_limits(runtime, query, texts, field)
    engine = ready_engine(runtime)
    deadline = request_deadline(timeout_ms, arrived)
    with engine_errors(engine), engine.admit():
        started = time.perf_counter()
        scoring = engine.score(query, texts, deadline, arrived=arrived, max_document_tokens=max_document_tokens)
        outcome = await until_disconnected(http, scoring)
    record_phases(http, outcome, started)
    return engine.name, outcome


def best_first(outcome: ScoreOutcome, top_n: int | None) -> list[int]:
    """Document indices by score, best first (ties: input order), the best `top_n` of them."""
    return sorted(range(len(outcome.results)), key=lambda i: (-outcome.results[i].score, i))[:top_n]


async def serve_rerank(
    runtime: ServiceRuntime, request: RerankRequest, arrived: float, http: Request, api_version: str, echo: bool = True
) -> Response:
    """Cohere/Jina rerank; `echo=False` (`/rerank`): documents are never returned."""
    texts = request.texts()
    name, outcome = await _score(
        runtime, http, request.query, texts, arrived, "documents", request.timeout_ms, request.max_tokens_per_doc
    )
    body = build_rerank_response(name, request, outcome, api_version, echo)
    return json_response(body, timing_headers(outcome.queue_seconds, outcome.inference_seconds))


def build_rerank_response(
    model_name: str, request: RerankRequest, outcome: ScoreOutcome, api_version: str, echo: bool = True
) -> RerankResponse:
    results = [
        RerankResult(
            index=i,
            relevance_score=outcome.results[i].score,
            document=request.echoed(i) if request.return_documents and echo else None,
        )
        for i in best_first(outcome, request.top_n)
    ]
    warnings = request.warnings()
    if request.return_documents and not echo:
        warnings.append(NOT_ECHOED)
    if truncated := [i for i, t in enumerate(outcome.truncated) if t]:
        warnings.append(f"documents {truncated} were truncated to fit the model's document length")
    tokens = outcome.usage["prompt_tokens"]
    return RerankResponse(
        id=str(uuid.uuid4()),
        model=model_name,
        results=results,
        meta=RerankMeta(
            api_version=ApiVersion(version=api_version),
            tokens=RerankTokens(input_tokens=tokens),
            warnings=warnings or None,
        ),
        usage=RerankUsage(prompt_tokens=tokens, total_tokens=tokens),
    )


async def serve_tei_rerank(
    runtime: ServiceRuntime, request: TeiRerankRequest, arrived: float, http: Request
) -> Response:
    """TEI rerank: a bare array `[{index, score, text?}]`, best first."""
    _, outcome = await _score(runtime, http, request.query, request.texts, arrived, "texts")
    if request.truncate is False and any(outcome.truncated):
        first = outcome.truncated.index(True)
        raise PayloadTooLarge(
            f"texts[{first}]: longer than the server's {runtime.settings.max_document_tokens} tokens per text "
            "and truncate is false",
            reason="document_too_long",
        )
    body = TeiRerankResponse(
        [
            TeiRerankResult(
                index=i,
                score=outcome.results[i].expected if request.raw_scores else outcome.results[i].score,
                text=request.texts[i] if request.return_text else None,
            )
            for i in best_first(outcome, request.top_n)
        ]
    )
    return json_response(body, timing_headers(outcome.queue_seconds, outcome.inference_seconds))
