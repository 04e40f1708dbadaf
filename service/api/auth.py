"""API-key check for the scoring routes (health and metrics stay open)."""

from __future__ import annotations

import hmac

from fastapi import Request

from service.api.errors import Unauthorized


def presented_key(request: Request) -> str | None:
    """The key from `Authorization: Bearer KEY` or `x-api-key: KEY`."""
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return request.headers.get("x-api-key")


async def require_api_key(request: Request) -> None:
    """FastAPI dependency: 401 unless the configured key is presented (no-op without one)."""
    expected = request.app.state.runtime.settings.api_key
    if expected is None:
        return
    given = presented_key(request)
    if given is None:
        raise Unauthorized("an API key is required: send 'Authorization: Bearer KEY'")
    if not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
        raise Unauthorized("the API key is not valid")
