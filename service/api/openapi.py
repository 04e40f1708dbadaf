"""What the routes declare in /openapi.json beyond FastAPI's defaults.

The scoring bodies are parsed by hand (service.api.body: size limit first,
then pydantic), so FastAPI cannot see them: `request_body` declares them.
`errors` lists the error statuses an operation answers, and `EVENT_STREAM`
describes each server-sent event (one schema per event name), so clients
and schema-driven fuzzers (tests/service/test_service_fuzz.py) check real
answers against the document.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

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


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` declaring a required JSON body of `model`."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inline_schema(model)}}}}


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
