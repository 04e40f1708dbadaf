"""Optional OpenTelemetry traces (the `otel` extra): a span per request, a child span per phase.

On when `AFRL_OTEL_ENDPOINT`, or the standard `OTEL_EXPORTER_OTLP_ENDPOINT`,
is set (`ServiceSettings.otel_endpoint`) and opentelemetry-sdk is installed;
otherwise this module imports nothing from OpenTelemetry and nothing changes.
Spans go over OTLP/gRPC (TEI's default), or OTLP/HTTP when
`OTEL_EXPORTER_OTLP_PROTOCOL` (or `..._TRACES_PROTOCOL`) is `http/protobuf`;
`OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` apply as usual.

    TracingMiddleware  one SERVER span per HTTP request, "POST /v1/rerank", continuing the caller's
                       W3C `traceparent`; health probes and /metrics scrapes are not traced
    record_phases      its children: tokenize, queue, inference, and decode when explanations ran

The engine measures each phase's duration (tokenize, wait before the first
forward pass, forward passes); the phase spans are laid end to end from the
moment the serving code handed the request to the engine, so their lengths
are the engine's figures and their positions follow from them. This keeps
tracing out of the scheduler and the engine. Attributes are counts and
sizes (documents, prompt tokens, truncated documents, explained documents),
never a query, a document or a key.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any, Protocol

from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

import afrl
from service.api.middleware import StatusCapture

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

logger = logging.getLogger(__name__)

UNTRACED = ("/health/", "/metrics")  # probes and scrapes every few seconds would drown the traces


class Phases(Protocol):
    """What the engine measured for one request (ScoreOutcome, ScoreRun)."""

    tokenize_seconds: float
    truncated: list[bool]
    usage: dict[str, int]

    @property
    def queue_seconds(self) -> float: ...

    @property
    def inference_seconds(self) -> float: ...


class Tracing:
    """A tracer provider exporting to `exporter`; `batch=False` exports each span as it ends (tests)."""

    def __init__(self, exporter: SpanExporter, batch: bool = True):
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        resource = Resource.create({"service.version": afrl.__version__})
        if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
            resource = resource.merge(Resource({"service.name": "afrl"}))
        self.provider = TracerProvider(resource=resource)
        self.provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("afrl.service", afrl.__version__)

    def shutdown(self) -> None:
        """Export what is still buffered, then stop."""
        self.provider.shutdown()


def otlp_exporter(endpoint: str) -> SpanExporter:
    """The OTLP span exporter for `endpoint`, over the protocol the standard variables choose."""
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"
    )
    if protocol.startswith("http"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        # An endpoint given in code is used as it is: the HTTP exporter needs the signal's path.
        url = endpoint if endpoint.rstrip("/").endswith("/v1/traces") else endpoint.rstrip("/") + "/v1/traces"
        return HttpExporter(endpoint=url)
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

    return GrpcExporter(endpoint=endpoint)


def configure_tracing(endpoint: str | None, exporter: SpanExporter | None = None) -> Tracing | None:
    """Tracing to `exporter` (tests: in memory, spans exported as they end), or over OTLP to `endpoint`;
    None when neither is given, or OpenTelemetry is not installed (a warning says so)."""
    if exporter is not None:
        return Tracing(exporter, batch=False)
    if not endpoint:
        return None
    try:
        tracing = Tracing(otlp_exporter(endpoint))
    except ImportError:
        logger.warning(
            "an OTLP endpoint is set but OpenTelemetry is not installed (pip install 'afrl[otel]'): no traces"
        )
        return None
    logger.info("tracing: spans go to %s", endpoint)
    return tracing


class TracingMiddleware:
    """Pure ASGI: the request's SERVER span is current while the app (and a streamed body) runs."""

    def __init__(self, app: ASGIApp, tracing: Tracing):
        self.app = app
        self.tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(UNTRACED):
            await self.app(scope, receive, send)
            return
        from opentelemetry import propagate, trace

        method = scope["method"]
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        answer = StatusCapture(send)
        with self.tracing.tracer.start_as_current_span(
            method,
            context=propagate.extract(carrier),
            kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": scope["path"]},
        ) as span:
            try:
                await self.app(scope, receive, answer)
            finally:
                route = getattr(scope.get("route"), "path", None)
                if route:
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", answer.status)
                if answer.status >= 500:
                    span.set_status(trace.StatusCode.ERROR)


def record_phases(http: Request, phases: Phases, started: float, explained: int = 0) -> None:
    """Child spans of the request's span for the engine's phases of one request; `started`
    (time.perf_counter) is when the request went to the engine. A no-op without tracing."""
    tracing: Tracing | None = http.app.state.tracing
    if tracing is None:
        return
    from opentelemetry import trace

    ended = time.perf_counter()
    to_ns = time.time_ns() - time.perf_counter_ns()  # perf_counter -> wall clock, in nanoseconds

    def ns(t: float) -> int:
        return int(min(t, ended) * 1e9) + to_ns

    bounds: list[tuple[str, float, float, dict[str, Any]]] = []
    t = started
    for name, seconds in (
        ("tokenize", phases.tokenize_seconds),
        ("queue", phases.queue_seconds),
        ("inference", phases.inference_seconds),
    ):
        bounds.append((name, t, t + seconds, {}))
        t += seconds
    if explained:
        bounds.append(("decode", t, ended, {"afrl.explained_documents": explained}))
    for name, start, end, attributes in bounds:
        tracing.tracer.start_span(name, start_time=ns(start), attributes=attributes).end(end_time=ns(end))
    trace.get_current_span().set_attributes(
        {
            "afrl.documents": len(phases.truncated),
            "afrl.prompt_tokens": phases.usage.get("prompt_tokens", 0),
            "afrl.truncated_documents": sum(phases.truncated),
            "afrl.explained_documents": explained,
        }
    )
