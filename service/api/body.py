"""Reading and parsing request bodies within `max_request_bytes`.

The size is checked from Content-Length before anything is read, and again
while reading (a chunked body has no Content-Length), so an oversized body
is refused without being buffered. Parsing goes through pydantic's JSON
validator, so invalid JSON and wrong types give the same 422 shape. A body
whose protocol depends on its fields (`POST /rerank`: TEI's `texts`, or
`documents`) is parsed once into Python values (`parse_json`), then
validated as the protocol it names (`validate`).
"""

from __future__ import annotations

from typing import Any, TypeVar

import pydantic_core
from fastapi import Request
from pydantic import BaseModel, ValidationError

from service.api.errors import InvalidRequest, PayloadTooLarge, describe_validation_errors

M = TypeVar("M", bound=BaseModel)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body is larger than {limit} bytes", reason="body_too_large")


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise InvalidRequest("the Content-Length header is not a number") from None
        if size > limit:
            raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_body(model: type[M], body: bytes) -> M:
    if not body.strip():
        raise InvalidRequest("body: a JSON object is required")
    try:
        return model.model_validate_json(body)
    except ValidationError as e:
        raise InvalidRequest(describe_validation_errors(e.errors(include_url=False))) from None


async def read_json(request: Request, model: type[M], limit: int) -> M:
    return parse_body(model, await read_body(request, limit))


def parse_json(body: bytes) -> Any:
    """The body's JSON value (422 when it is empty or not JSON)."""
    if not body.strip():
        raise InvalidRequest("body: a JSON object is required")
    try:
        return pydantic_core.from_json(body)
    except ValueError as e:
        raise InvalidRequest(f"body: not valid JSON ({e})") from None


def validate(model: type[M], value: Any) -> M:
    """`value` (parsed JSON) as `model`, with the same 422 messages as `parse_body`."""
    try:
        return model.model_validate(value)
    except ValidationError as e:
        raise InvalidRequest(describe_validation_errors(e.errors(include_url=False))) from None
