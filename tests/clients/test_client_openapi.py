"""What generated clients and the docs page read: /openapi.json declares the API key when one is set.

A request built from the declared schemes, as Swagger UI's Authorize button builds it (an HTTP
bearer scheme: `Authorization: Bearer KEY`; an apiKey scheme: its header), gets through.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from service_testkit import DOCS, wait_ready

from service.app import create_app
from service.settings import ServiceSettings

KEY = "s3cret-key"


@pytest.fixture(scope="module")
def keyed(artifact):
    app = create_app(ServiceSettings(model=artifact, api_key=KEY, intra_op_threads=1, tokenize_workers=1))
    with TestClient(app) as client:
        wait_ready(client)
        yield client


def headers_for(scheme: dict, key: str) -> dict[str, str]:
    """The header an OpenAPI client sends for `scheme` (the two kinds the server declares)."""
    if scheme["type"] == "http":
        assert scheme["scheme"].lower() == "bearer"
        return {"Authorization": f"Bearer {key}"}
    assert scheme["type"] == "apiKey" and scheme["in"] == "header"
    return {scheme["name"]: key}


def test_the_schema_declares_the_key_on_the_operations_that_need_it(keyed):
    document = keyed.get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert {(s["type"], s.get("scheme"), s.get("name")) for s in schemes.values()} == {
        ("http", "bearer", None),
        ("apiKey", None, "x-api-key"),
    }
    for path in ["/v1/score", "/v1/rerank", "/v2/rerank", "/rerank"]:
        assert document["paths"][path]["post"]["security"] == [{name: []} for name in schemes]
        assert "401" in document["paths"][path]["post"]["responses"]
    assert "security" in document["paths"]["/info"]["get"]
    for path in ["/health/live", "/health/ready", "/metrics"]:
        assert "security" not in document["paths"][path]["get"]


@pytest.mark.parametrize("name", ["bearer", "apiKey"])
def test_a_request_through_each_declared_scheme_gets_through(keyed, name):
    scheme = keyed.get("/openapi.json").json()["components"]["securitySchemes"][name]
    body = {"query": "water bottle", "documents": DOCS[:3]}
    assert keyed.post("/v1/rerank", json=body, headers=headers_for(scheme, KEY)).status_code == 200
    assert (
        keyed.post("/rerank", json={"query": "q", "texts": ["a"]}, headers=headers_for(scheme, KEY)).status_code == 200
    )
    assert keyed.get("/info", headers=headers_for(scheme, KEY)).status_code == 200
    assert keyed.post("/v1/rerank", json=body, headers=headers_for(scheme, "wrong")).status_code == 401
    assert keyed.post("/v1/rerank", json=body).status_code == 401


def test_the_docs_page_loads_the_schema(keyed):
    page = keyed.get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/openapi.json" in page.text and "SwaggerUIBundle" in page.text


def test_without_a_key_nothing_is_declared(artifact):
    document = create_app(ServiceSettings(model=artifact)).openapi()
    assert "securitySchemes" not in document.get("components", {})
    assert all("security" not in op for ops in document["paths"].values() for op in ops.values())
