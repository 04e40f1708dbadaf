"""Readiness, load failures, auth, metrics, /info and the run() entry point."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient
from service_testkit import DOCS, FakeBackend, wait_ready

from afrl.manifest import ArtifactError
from service.app import create_app, run
from service.settings import ServiceSettings

GOOD = {"query": "water bottle", "documents": DOCS[:2]}


def test_ready_is_503_until_the_model_is_loaded_and_warmed(artifact_dir):
    gate = threading.Event()
    backend = FakeBackend()

    def slow_factory(folder, manifest, settings):
        gate.wait(10)
        return backend

    app = create_app(ServiceSettings(model=artifact_dir), backend_factory=slow_factory)
    with TestClient(app) as client:
        r = client.get("/health/ready")
        assert r.status_code == 503 and r.json()["error"]["type"] == "not_ready"
        assert "loading" in r.json()["error"]["message"]
        assert client.get("/health/live").status_code == 200
        assert client.post("/v1/score", json=GOOD).status_code == 503
        assert backend.calls == []
        gate.set()
        wait_ready(client)
        assert backend.calls, "warmup must run the backend before ready"
        assert all(length % 64 == 0 and rows == 1 for rows, length in backend.calls)
        assert client.post("/v1/score", json=GOOD).status_code == 200


def test_warmup_covers_every_shape_bucket_a_request_can_use(make_client):
    client, backend = make_client()
    warmed = {length for _, length in backend.calls}
    engine = client.app.state.runtime.engine
    assert warmed == set(engine.warmup_lengths()) and len(warmed) >= 8  # 512 document tokens / 64
    backend.reset()
    long_doc = "insulated bottle " * 400  # truncated to 512 tokens: the longest bucket
    client.post("/v1/score", json={"query": "bottle", "documents": [long_doc, "short"]})
    assert {length for _, length in backend.calls} <= warmed


def test_unhealthy_backend_makes_ready_503(make_client):
    client, backend = make_client()
    backend.healthy = False
    r = client.get("/health/ready")
    assert r.status_code == 503 and "unhealthy" in r.json()["error"]["message"]
    backend.healthy = True
    assert client.get("/health/ready").status_code == 200


def test_load_failure_keeps_ready_503_with_the_reason(tmp_path):
    app = create_app(ServiceSettings(model=tmp_path / "missing"))
    failures: list[str] = []
    app.state.runtime.on_load_failure = failures.append
    with TestClient(app) as client:
        for _ in range(500):
            if failures:
                break
            threading.Event().wait(0.01)
        r = client.get("/health/ready")
        assert r.status_code == 503 and "does not exist" in r.json()["error"]["message"]
        assert client.post("/v1/score", json=GOOD).status_code == 503
    assert failures and "missing" in failures[0]


def test_corrupt_artifact_is_refused_with_the_file_named(artifact_dir, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(artifact_dir, bad)
    (bad / "score.onnx").write_bytes(b"tampered")
    app = create_app(ServiceSettings(model=bad))
    with TestClient(app) as client:
        for _ in range(500):
            if app.state.runtime.load_error:
                break
            threading.Event().wait(0.01)
        msg = client.get("/health/ready").json()["error"]["message"]
    assert "score.onnx" in msg and "corrupt" in msg


def test_run_raises_artifact_error_when_the_model_cannot_load(tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        run(ServiceSettings(model=tmp_path / "nowhere", port=0))


def test_afrl_serve_on_a_corrupt_artifact_exits_non_zero_naming_the_file(artifact_dir, tmp_path):
    import shutil
    import subprocess
    import sys

    bad = tmp_path / "bad"
    shutil.copytree(artifact_dir, bad)
    (bad / "score.onnx").write_bytes(b"tampered")
    done = subprocess.run(
        [sys.executable, "-m", "afrl.cli", "serve", "--model", str(bad), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("afrl serve:") and "score.onnx" in last and "corrupt" in last, done.stderr
    assert "Traceback" not in done.stderr


def test_api_key_required_on_score_rerank_and_info_but_not_health_or_metrics(make_client):
    client, _ = make_client(api_key="s3cret")
    rerank = {"query": "water bottle", "documents": DOCS[:2]}
    calls = {
        "/v1/score": lambda **kw: client.post("/v1/score", json=GOOD, **kw),
        "/v1/score stream": lambda **kw: client.post("/v1/score", json={**GOOD, "stream": True}, **kw),
        "/v1/rerank": lambda **kw: client.post("/v1/rerank", json=rerank, **kw),
        "/v2/rerank": lambda **kw: client.post("/v2/rerank", json=rerank, **kw),
        "/info": lambda **kw: client.get("/info", **kw),
    }
    for path, call in calls.items():
        missing = call()
        assert missing.status_code == 401, path
        assert missing.json()["error"]["type"] == "unauthorized" and missing.headers["www-authenticate"] == "Bearer"
        assert call(headers={"authorization": "Bearer wrong"}).status_code == 401
        assert call(headers={"x-api-key": "s3cre"}).status_code == 401
        assert call(headers={"authorization": "Bearer s3cret"}).status_code == 200
        assert call(headers={"x-api-key": "s3cret"}).status_code == 200
    for path in ("/health/live", "/health/ready", "/metrics"):
        assert client.get(path).status_code == 200, path
    assert 'reason="unauthorized"' in client.get("/metrics").text


def test_metrics_expose_the_afrl_families(shared):
    client, _ = shared
    assert client.post("/v1/score", json=GOOD).status_code == 200
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    for name in (
        'afrl_request_duration_seconds_bucket{endpoint="/v1/score",le="0.0001",status="200"}',
        "afrl_queue_duration_seconds_count",
        "afrl_tokenize_duration_seconds_count",
        "afrl_inference_duration_seconds_count",
        "afrl_batch_size_bucket",
        "afrl_batch_tokens_sum",
        "afrl_padding_ratio_count",
        "afrl_time_to_first_reasoning_token_seconds_bucket",
        "afrl_prefix_tokens_saved_total",
        "afrl_queue_depth 0.0",
        "afrl_queue_tokens 0.0",
    ):
        assert name in text, name
    tokenized = [ln for ln in text.splitlines() if ln.startswith("afrl_tokenize_duration_seconds_count")]
    assert float(tokenized[0].split()[-1]) >= 1


def test_each_app_has_its_own_registry(make_client):
    a, _ = make_client()
    b, _ = make_client()
    a.post("/v1/score", json=GOOD)
    count = 'afrl_request_duration_seconds_count{endpoint="/v1/score",status="200"}'
    assert count + " 1.0" in a.get("/metrics").text
    assert count not in b.get("/metrics").text


def test_info_reports_model_labels_and_limits(make_client):
    client, _ = make_client(max_documents=50, model_name="renamed")
    info = client.get("/info").json()
    assert info["model"] == "renamed"
    assert info["labels"] == {"values": [0, 1, 2, 3, 4], "tokens": ["0", "1", "2", "3", "4"]}
    limits = info["limits"]
    assert limits["max_documents"] == 50 and limits["max_document_tokens"] == 512
    assert limits["max_batch_tokens"] == 8192 and limits["max_sequence_length"] == 1024
    assert limits["max_queue_tokens"] == 65536 and limits["max_new_tokens"] == 256
    assert info["reasoning"] is False and info["shared_prefix"] is False and info["stream"] is True
    assert "recipe" not in info  # an exported artifact records no recipe; no null field either
    assert client.post("/v1/score", json=GOOD).json()["model"] == "renamed"


def test_info_reports_the_recipe_an_artifact_records(artifact_dir, tmp_path, caplog):
    import logging
    import shutil

    from afrl.recipe import make_recipe, write_recipe

    folder = tmp_path / "default"
    shutil.copytree(artifact_dir, folder)
    recipe = make_recipe("default", {"sft": {"steps": 800}}, recipe_version=1)
    write_recipe(folder, recipe)
    app = create_app(ServiceSettings(model=folder), backend_factory=lambda f, m, s: FakeBackend())
    with caplog.at_level(logging.INFO, logger="service.artifact_loader"), TestClient(app) as client:
        wait_ready(client)
        info = client.get("/info").json()
    assert info["recipe"] == {"preset": "default", "fingerprint": recipe.fingerprint}
    assert f"(recipe {recipe.label})" in caplog.text


def test_settings_read_the_afrl_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("AFRL_MODEL", str(tmp_path))
    monkeypatch.setenv("AFRL_MAX_BATCH_TOKENS", "1234")
    monkeypatch.setenv("AFRL_PROVIDERS", "CUDAExecutionProvider, CPUExecutionProvider")
    monkeypatch.setenv("AFRL_API_KEY", "zz-secret-zz")
    monkeypatch.setenv("AFRL_MAX_QUEUE_TOKENS", "999")
    monkeypatch.setenv("AFRL_GRACE_PERIOD_S", "7.5")
    monkeypatch.setenv("AFRL_INFERENCE_TIMEOUT_MS", "2500")
    monkeypatch.setenv("AFRL_CORS_ORIGINS", "https://a.example, https://b.example")
    s = ServiceSettings()
    assert s.max_queue_tokens == 999 and s.grace_period_s == 7.5
    assert s.inference_timeout_ms == 2500 and s.cors_origin_list == ["https://a.example", "https://b.example"]
    assert ServiceSettings.model_fields["cors_origins"].default == ""
    assert ServiceSettings.model_fields["providers"].default == "auto"
    assert s.model == tmp_path and s.max_batch_tokens == 1234
    assert s.provider_list == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert s.api_key.get_secret_value() == "zz-secret-zz" and "zz-secret-zz" not in repr(s)
    assert ServiceSettings.model_fields["max_request_bytes"].default == 4 * 1024 * 1024
    assert all(f.description for f in ServiceSettings.model_fields.values())


def test_service_never_imports_torch_or_transformers():
    import subprocess
    import sys

    code = (
        "import sys, service.app, service.engine, service.backend, service.__main__; "
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
