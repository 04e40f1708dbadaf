"""`POST /v1/rerank`, `/v2/rerank`: the Cohere/Jina rerank protocol over the same engine.

`relevance_score` is afrl's `score` (expected grade scaled to [0, 1]);
results come best first, `top_n` of them; `document` only with
`return_documents: true` (Cohere's default is false). The response carries
both Cohere's `meta` and Jina's `usage`; truncated documents are reported in
`meta.warnings`. Unknown request fields are ignored, null fields never sent.
"""

from __future__ import annotations

import uuid

from fastapi import Request
from fastapi.responses import Response

from service.api.schemas import (
    ApiVersion,
    RerankDocumentOut,
    RerankMeta,
    RerankRequest,
    RerankResponse,
    RerankResult,
    RerankTokens,
    RerankUsage,
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


async def serve_rerank(
    runtime: ServiceRuntime, request: RerankRequest, arrived: float, http: Request, api_version: str
) -> Response:
    texts = request.texts()
    check_limits(runtime, request.query, texts)
    engine = ready_engine(runtime)
    deadline = request_deadline(request.timeout_ms, arrived)
    with engine_errors(engine), engine.admit():
        scoring = engine.score(
            request.query, texts, deadline, arrived=arrived, max_document_tokens=request.max_tokens_per_doc
        )
        outcome = await until_disconnected(http, scoring)
    body = build_rerank_response(engine.name, request, texts, outcome, api_version)
    return json_response(body, timing_headers(outcome.queue_seconds, outcome.inference_seconds))


def build_rerank_response(
    model_name: str, request: RerankRequest, texts: list[str], outcome: ScoreOutcome, api_version: str
) -> RerankResponse:
    order = sorted(range(len(texts)), key=lambda i: (-outcome.results[i].score, i))[: request.top_n]
    results = [
        RerankResult(
            index=i,
            relevance_score=outcome.results[i].score,
            document=RerankDocumentOut(text=texts[i]) if request.return_documents else None,
        )
        for i in order
    ]
    truncated = [i for i, t in enumerate(outcome.truncated) if t]
    warnings = [f"documents {truncated} were truncated to fit the model's document length"] if truncated else None
    tokens = outcome.usage["prompt_tokens"]
    return RerankResponse(
        id=str(uuid.uuid4()),
        model=model_name,
        results=results,
        meta=RerankMeta(
            api_version=ApiVersion(version=api_version), tokens=RerankTokens(input_tokens=tokens), warnings=warnings
        ),
        usage=RerankUsage(prompt_tokens=tokens, total_tokens=tokens),
    )
