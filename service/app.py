"""The FastAPI app factory and the server entry point.

    create_app(settings, backend_factory) -> FastAPI   no import-time singletons; the
                                                       model loads and warms in the lifespan
    run(settings)                                      what `afrl serve` calls: uvicorn until
                                                       stopped; raises ArtifactError if the
                                                       model cannot be loaded

CORS is off (no headers: browsers refuse cross-origin calls) unless
`cors_origins` lists the origins allowed. Traces (service.tracing) are on
when an OTLP endpoint is configured; `log_format: json` makes `run` log
JSON lines (service.log_format).

Graceful shutdown (SIGTERM or SIGINT): /health/ready turns 503 at once, the
listening socket closes, in-flight requests (streams included) run to the
end for at most `grace_period_s`, then the rest are cancelled (their queued
work never reaches the model) and the process exits.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

import afrl
from afrl.manifest import ArtifactError
from service.api.errors import install_error_handlers
from service.api.middleware import RequestMetricsMiddleware
from service.api.openapi import declare_api_key
from service.api.routes import router
from service.artifact_loader import BackendFactory
from service.log_format import use_json_logs
from service.runtime import ServiceRuntime
from service.settings import ServiceSettings
from service.tracing import TracingMiddleware, configure_tracing

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter  # the otel extra; only its type here

logger = logging.getLogger(__name__)


def create_app(
    settings: ServiceSettings | None = None,
    backend_factory: BackendFactory | None = None,
    span_exporter: SpanExporter | None = None,
) -> FastAPI:
    """A scoring app over `settings.model`; `backend_factory` replaces the onnxruntime backend, and
    `span_exporter` receives the traces (both for tests)."""
    runtime = ServiceRuntime(settings or ServiceSettings(), backend_factory)
    tracing = configure_tracing(runtime.settings.otel_endpoint, span_exporter)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime.start()
        try:
            yield
        finally:
            await runtime.stop()
            if tracing is not None:
                tracing.shutdown()

    app = FastAPI(
        title="afrl relevance service",
        version=afrl.__version__,
        summary="Answer First, Reason Later: relevance grades from the first generated token",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.tracing = tracing
    app.include_router(router)
    if runtime.settings.api_key is not None:
        declare_api_key(app, router)
    install_error_handlers(app)
    app.add_middleware(RequestMetricsMiddleware, metrics=runtime.metrics)
    if tracing is not None:
        app.add_middleware(TracingMiddleware, tracing=tracing)
    if origins := runtime.settings.cors_origin_list:
        # Added last, so outermost: refusals (401, 413, 429, ...) carry the CORS headers too and a
        # browser can read them.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type", "x-api-key"],
            expose_headers=["retry-after", "x-queue-time-ms", "x-inference-time-ms"],
            max_age=600,
        )
    return app


def run(settings: ServiceSettings | None = None, backend_factory: BackendFactory | None = None) -> None:
    """Serve until interrupted. Raises ArtifactError (server stopped) if the model fails to load."""
    import uvicorn

    chosen = settings or ServiceSettings()
    if chosen.log_format == "json":
        use_json_logs()
    app = create_app(chosen, backend_factory)
    runtime: ServiceRuntime = app.state.runtime

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if not runtime.draining:
                logger.info("signal %s: draining in-flight requests for up to %.0f s", sig, chosen.grace_period_s)
            runtime.draining = True
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app,
        host=chosen.host,
        port=chosen.port,
        # uvicorn annotates int, but waits with asyncio.wait_for, which takes fractions of a second too
        timeout_graceful_shutdown=chosen.grace_period_s,  # type: ignore[arg-type]
        access_log=chosen.access_log,
        # JSON: no logging config of uvicorn's own, so its records reach the root logger's JSON handlers
        log_config=None if chosen.log_format == "json" else uvicorn.config.LOGGING_CONFIG,
    )
    server = DrainingServer(config)

    def stop_on_failure(message: str) -> None:
        server.should_exit = True

    runtime.on_load_failure = stop_on_failure
    server.run()
    if runtime.load_error is not None:
        raise ArtifactError(runtime.load_error)
