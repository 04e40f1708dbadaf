"""Security defaults: no secrets or document texts in logs, CORS off unless configured, the key check.

Body size limits before parsing are in test_service_errors.py (Content-Length and chunked bodies).
"""

from __future__ import annotations

import logging

from service_testkit import DOCS, FakeBackend

import service.api.auth

GOOD = {"query": "water bottle", "documents": DOCS[:3]}
MARKER = "zq-private-text-7731"  # stands for a customer's document text
KEY = "sk-afrl-test-4242"
ALLOWED = "https://search.example.com"


def test_logs_carry_neither_document_texts_nor_the_api_key(make_client, caplog):
    caplog.set_level(logging.DEBUG)
    backend = FakeBackend()
    client, _ = make_client(backend=backend, api_key=KEY)
    auth = {"authorization": f"Bearer {KEY}"}
    body = {"query": f"bottle {MARKER}", "documents": [f"steel bottle {MARKER}", {"id": MARKER, "text": MARKER}]}
    assert client.post("/v1/score", json=body, headers=auth).status_code == 200
    assert client.post("/v1/score", json={**body, "stream": True}, headers=auth).status_code == 200
    assert client.post("/v2/rerank", json={**body, "return_documents": True}, headers=auth).status_code == 200
    assert client.post("/v1/score", json={**body, "top_n": MARKER}, headers=auth).status_code == 422
    assert client.post("/v1/score", json=body, headers={"x-api-key": KEY + MARKER}).status_code == 401
    backend.fail = True  # an unexpected failure is logged with its traceback
    assert client.post("/v1/score", json=body, headers=auth).status_code == 500
    assert any(r.levelno == logging.ERROR and r.name.startswith("service") for r in caplog.records), (
        "the failure must be logged, or this test proves nothing"
    )
    assert MARKER not in caplog.text
    assert KEY not in caplog.text


def test_the_key_is_compared_in_constant_time(make_client, monkeypatch):
    client, _ = make_client(api_key=KEY)
    compared: list[tuple[bytes, bytes]] = []
    real = service.api.auth.hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(service.api.auth.hmac, "compare_digest", spy)
    assert client.get("/info", headers={"x-api-key": "wrong"}).status_code == 401
    assert client.get("/info", headers={"x-api-key": KEY}).status_code == 200
    assert compared == [(b"wrong", KEY.encode()), (KEY.encode(), KEY.encode())]


def test_cors_is_off_unless_configured(shared):
    client, _ = shared
    r = client.post("/v1/score", json=GOOD, headers={"origin": ALLOWED})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    preflight = client.options("/v1/score", headers={"origin": ALLOWED, "access-control-request-method": "POST"})
    assert preflight.status_code == 405 and "access-control-allow-origin" not in preflight.headers


def test_cors_answers_only_the_configured_origins(make_client):
    client, _ = make_client(cors_origins=f"{ALLOWED}, https://admin.example.com", api_key=KEY)
    asks = {"access-control-request-method": "POST", "access-control-request-headers": "authorization, content-type"}
    preflight = client.options("/v1/score", headers={"origin": ALLOWED, **asks})
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == ALLOWED
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    r = client.post("/v1/score", json=GOOD, headers={"origin": ALLOWED, "authorization": f"Bearer {KEY}"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ALLOWED
    assert "x-queue-time-ms" in r.headers["access-control-expose-headers"]
    refused = client.post("/v1/score", json=GOOD, headers={"origin": ALLOWED})  # no key: the 401 is readable
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == ALLOWED
    other = client.options("/v1/score", headers={"origin": "https://evil.example.com", **asks})
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
    r = client.post("/v1/score", json=GOOD, headers={"origin": "https://evil.example.com", "x-api-key": KEY})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
