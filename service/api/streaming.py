"""`POST /v1/score` with `stream: true`: Server-Sent Events.

    event: score      one per document, as soon as its micro-batch is graded   (ScoreResult)
    event: reasoning  {"index", "delta"} pieces of the explanations asked for  (ReasoningEvent)
    event: done       {"model", "usage"}                                       (DoneEvent)
    event: error      {"error": {"type", "message"}} if the stream fails after it began

The response starts only once the first micro-batch is graded, so refusals
(413, 429, 503, 504 before compute, ...) are ordinary HTTP errors and the
timing headers are known; the first event then follows one prefill, not the
decoding. A client that goes away cancels everything still queued,
explanation steps included.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import ExitStack
from typing import Any

from fastapi import Request
from pydantic import BaseModel
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from service.api.errors import ServiceError
from service.api.schemas import DoneEvent, ReasoningEvent, ScoreRequest, ScoreUsage
from service.api.serving import (
    check_limits,
    check_reasoning,
    engine_errors,
    ready_engine,
    request_deadline,
    score_result,
    timing_headers,
    until_disconnected,
)
from service.engine import ScoreRun
from service.runtime import ServiceRuntime
from service.tracing import record_phases

logger = logging.getLogger(__name__)

MEDIA_TYPE = "text/event-stream"


def sse(event: str, data: BaseModel | dict[str, Any]) -> bytes:
    payload = data.model_dump_json(exclude_none=True) if isinstance(data, BaseModel) else json.dumps(data)
    return f"event: {event}\ndata: {payload}\n\n".encode()


class EventStreamResponse(StreamingResponse):
    """A StreamingResponse that always runs `on_close`, even if the body never started."""

    def __init__(self, content: AsyncGenerator[bytes, None], on_close: Callable[[], None], headers: dict[str, str]):
        super().__init__(
            content,
            media_type=MEDIA_TYPE,
            headers={
                "cache-control": "no-cache",
                "x-accel-buffering": "no",
                **headers,
            },
        )
        self._content = content  # the body_iterator, typed as the generator it is
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._content.aclose()
            self._on_close()


async def serve_score_stream(
    runtime: ServiceRuntime, request: ScoreRequest, arrived: float, http: Request
) -> EventStreamResponse:
    texts = request.texts()
    check_limits(runtime, request.query, texts)
    engine = ready_engine(runtime)
    explain = check_reasoning(runtime, engine, request)
    deadline = request_deadline(request.timeout_ms, arrived)
    held = ExitStack()  # admission and the run live as long as the stream, not the handler
    try:
        with engine_errors(engine):
            held.enter_context(engine.admit())
            started = time.perf_counter()
            run = await until_disconnected(http, engine.start(request.query, texts, deadline, explain, arrived))
            held.callback(run.close)
            held.callback(record_phases, http, run, started, explain)  # when the stream ends
            scores = run.scores()
            first = await until_disconnected(http, anext(scores))
    except BaseException:
        held.close()
        raise
    events = _events(run, scores, first, request, explain, engine.name)
    return EventStreamResponse(events, held.close, timing_headers(run.queue_seconds, run.inference_seconds))


async def _events(
    run: ScoreRun,
    scores: AsyncIterator[list[int]],
    first: list[int],
    request: ScoreRequest,
    explain: int,
    model_name: str,
) -> AsyncGenerator[bytes, None]:
    ids = request.ids()

    def score_events(rows: list[int]) -> bytes:
        return b"".join(sse("score", score_result(i, ids[i], run.result(i), run.truncated[i])) for i in sorted(rows))

    try:
        with engine_errors(run.engine):
            yield score_events(first)
            async for rows in scores:
                yield score_events(rows)
            if explain:
                chosen = run.best(explain)
                async for index, text in run.explain(chosen):
                    yield sse("reasoning", ReasoningEvent(index=index, delta=text))
            yield sse("done", DoneEvent(model=model_name, usage=ScoreUsage(**run.usage)))
    except ServiceError as e:
        yield sse("error", {"error": {"type": e.type, "message": e.message}})
    finally:
        run.close()
