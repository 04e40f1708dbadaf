"""ASGI middleware: `afrl_request_duration_seconds{endpoint, status}` for every request.

Pure ASGI (not BaseHTTPMiddleware) so it adds no task or body copy per
request. The endpoint label is the matched route's path template, or
"unmatched", so label cardinality stays bounded.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.metrics import ServiceMetrics


class RequestMetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: ServiceMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        answer = StatusCapture(send)
        try:
            await self.app(scope, receive, answer)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            self.metrics.request_duration.labels(endpoint=endpoint, status=str(answer.status)).observe(
                time.perf_counter() - start
            )


class StatusCapture:
    """An ASGI `send` that remembers the response's status (the middlewares' label or attribute)."""

    def __init__(self, send: Send):
        self.send = send
        self.status = 500  # if the app raises before answering, the outer error handler sends a 500

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self.send(message)
