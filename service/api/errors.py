"""HTTP errors: every failure is JSON `{"error": {"type", "message"}}`.

Routes and serving raise a `ServiceError` subclass; the handlers installed
by `install_error_handlers` render it, count refusals in
`afrl_requests_rejected_total{reason}`, and turn anything unexpected into a
generic 500 (the traceback goes to the log, never to the client).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import HTTPExceptionHandler

from service.metrics import ServiceMetrics

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 1


class ServiceError(Exception):
    """An error with an HTTP status, a stable `type`, and a metric `reason`."""

    status = 500
    type = "internal_error"

    def __init__(self, message: str, reason: str | None = None, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.reason = reason or self.type
        self.headers = dict(headers or {})


class InvalidRequest(ServiceError):
    status, type = 422, "invalid_request"


class PayloadTooLarge(ServiceError):
    status, type = 413, "payload_too_large"


class Unauthorized(ServiceError):
    status, type = 401, "unauthorized"

    def __init__(self, message: str):
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class QueueFullError(ServiceError):
    status, type = 429, "queue_full"

    def __init__(self, message: str, retry_after_s: int | None = None):
        super().__init__(message, headers={"Retry-After": str(retry_after_s or RETRY_AFTER_SECONDS)})


class NotReady(ServiceError):
    status, type = 503, "not_ready"


class DeadlineExceededError(ServiceError):
    status, type = 504, "deadline_exceeded"


class InferenceTimeoutError(ServiceError):
    """The forward pass itself passed AFRL_INFERENCE_TIMEOUT_MS (not the request's own deadline)."""

    status, type = 504, "inference_timeout"


class BackendStuckError(ServiceError):
    status, type = 503, "backend_stuck"


class ClientDisconnected(ServiceError):
    """The client went away before the answer; nobody reads this response (nginx's 499)."""

    status, type = 499, "client_closed_request"


class InternalError(ServiceError):
    status, type = 500, "internal_error"


def error_response(status: int, type_: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"type": type_, "message": message}}, status_code=status, headers=headers)


def describe_validation_errors(errors: Iterable[Mapping[str, Any]], limit: int = 5) -> str:
    """Pydantic errors -> 'documents[3]: must be a string ...; top_n: ...' naming each field."""
    parts = []
    for err in list(errors)[:limit]:
        where = _location(err.get("loc", ())) or "body"
        msg = str(err.get("msg", "invalid"))
        msg = msg.removeprefix("Value error, ")
        if err.get("type") == "json_invalid":
            where, msg = "body", f"not valid JSON ({err.get('ctx', {}).get('error', msg)})"
        elif err.get("type") == "missing":
            msg = "is required"
        elif err.get("type") == "value_error" and not err.get("loc"):
            parts.append(msg)  # a check across fields (a model validator) names its fields itself
            continue
        parts.append(f"{where}: {msg}")
    return "; ".join(parts) or "invalid request"


def _location(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if part == "body":  # FastAPI prefixes body fields with 'body'
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _metrics(request: Request) -> ServiceMetrics | None:
    runtime = getattr(request.app.state, "runtime", None)  # app.state is untyped storage
    return runtime.metrics if runtime is not None else None


async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
    if exc.status != 500 and (metrics := _metrics(request)) is not None:
        metrics.requests_rejected.labels(reason=exc.reason).inc()
    return error_response(exc.status, exc.type, exc.message, exc.headers)


async def _request_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    return await _service_error(request, InvalidRequest(describe_validation_errors(exc.errors())))


_HTTP_TYPES = {404: "not_found", 405: "method_not_allowed"}


async def _http_exception(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return error_response(exc.status_code, _HTTP_TYPES.get(exc.status_code, "http_error"), str(exc.detail), exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, InternalError.type, "internal server error")


E = TypeVar("E", bound=Exception)


def _handle(app: FastAPI, kind: type[E], handler: Callable[[Request, E], Awaitable[JSONResponse]]) -> None:
    # Starlette types every handler as taking any Exception; it calls this one only with a `kind`.
    app.add_exception_handler(kind, cast(HTTPExceptionHandler, handler))


def install_error_handlers(app: FastAPI) -> None:
    _handle(app, ServiceError, _service_error)
    _handle(app, RequestValidationError, _request_validation)
    _handle(app, StarletteHTTPException, _http_exception)
    _handle(app, Exception, _unexpected)
