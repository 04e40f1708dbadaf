"""What the routes declare in /openapi.json beyond FastAPI's defaults.

The scoring bodies are parsed by hand (service.api.body: size limit first,
then pydantic), so FastAPI cannot see them: `request_body` declares them.
`errors` lists the error statuses an operation answers, and `EVENT_STREAM`
describes each server-sent event (one schema per event name), so clients
and schema-driven fuzzers (tests/service/test_service_fuzz.py) check real
answers against the document. With an API key configured, `declare_api_key`
adds the two ways to present it as security schemes on the operations that
need it, so generated clients know, and the docs page (/docs) shows an
Authorize button whose key it sends.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel

from service.api.auth import require_api_key
from service.api.schemas import DoneEvent, ErrorResponse, ReasoningEvent, ScoreResult

ERROR_MEANINGS = {
    401: "wrong or missing API key (when one is configured)",
    413: "too many documents, a document or the body too large",
    422: "malformed input: the field and why",
    429: "queue full: retry after Retry-After seconds",
    500: "unexpected failure (details in the server log only)",
    503: "not ready: loading, draining, or the model backend is stuck",
    504: "deadline passed before compute, or the forward pass passed the inference timeout",
}


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its $defs inlined (it is not registered in the components)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return inline(schema)


def request_body(*models: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` declaring a required JSON body of `model` (several: one of them)."""
    schemas = [inline_schema(m) for m in models]
    schema = schemas[0] if len(schemas) == 1 else {"oneOf": schemas}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses` entries for the error statuses an operation can answer (DESIGN section 4)."""
    return {status: {"model": ErrorResponse, "description": ERROR_MEANINGS[status]} for status in statuses}


def _event(name: str, data: type[BaseModel]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"const": name},
            "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": inline_schema(data)},
        },
    }


# Before OpenAPI 3.2's itemSchema, `schema` of text/event-stream describes one event.
EVENT_STREAM = {
    "text/event-stream": {
        "schema": {
            "description": "a score event per document, reasoning deltas if asked, then done (or error)",
            "oneOf": [
                _event("score", ScoreResult),
                _event("reasoning", ReasoningEvent),
                _event("done", DoneEvent),
                _event("error", ErrorResponse),
            ],
        }
    }
}
SCORING_ERRORS = errors(401, 413, 422, 429, 500, 503, 504)


API_KEY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "AFRL_API_KEY as 'Authorization: Bearer KEY'"},
    "apiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
        "description": "AFRL_API_KEY as 'x-api-key: KEY'",
    },
}


def declare_api_key(app: FastAPI, router: APIRouter) -> None:
    """The app's /openapi.json declares API_KEY_SCHEMES, either one accepted, on every operation of
    `router` (included in `app`) that checks the key."""
    secured = [
        (route.path, method.lower())
        for route in router.routes
        if isinstance(route, APIRoute) and any(d.dependency is require_api_key for d in route.dependencies)
        for method in route.methods or ()
    ]
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()  # FastAPI's, cached on the app: the changes below are made once and kept
        schema.setdefault("components", {})["securitySchemes"] = API_KEY_SCHEMES
        for path, method in secured:
            schema["paths"][path][method]["security"] = [{name: []} for name in API_KEY_SCHEMES]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the schema
