"""Traces (service/tracing.py) through the SDK's in-memory exporter, and JSON-lines logs.

A traced request is one SERVER span with tokenize, queue, inference (and decode) children whose
lengths are the engine's own figures; no attribute carries a query or a document. Without an
endpoint nothing is traced and OpenTelemetry's SDK is never imported.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from service_testkit import DOCS, FakeBackend, free_port, wait_ready

from service.app import create_app
from service.log_format import JsonFormatter
from service.settings import ServiceSettings
from service.tracing import configure_tracing, otlp_exporter

pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed")
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

QUERY = "insulated water bottle 500ml"
OTEL_ENV = ("AFRL_OTEL_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL")


@pytest.fixture
def traced(artifact_dir, prefix_artifact_dir):
    """traced(prefix=False, backend=None) -> (started TestClient, exporter); prefix: onnx with decode graphs."""
    clients = []

    def make(prefix: bool = False, backend: FakeBackend | None = None):
        exporter = InMemorySpanExporter()
        if prefix:
            settings = ServiceSettings(model=prefix_artifact_dir, intra_op_threads=1, max_new_tokens=8)
            app = create_app(settings, span_exporter=exporter)
        else:
            fake = backend or FakeBackend()
            app = create_app(ServiceSettings(model=artifact_dir), lambda f, m, s: fake, span_exporter=exporter)
        client = TestClient(app, raise_server_exceptions=False).__enter__()
        clients.append(client)
        wait_ready(client)
        exporter.clear()
        return client, exporter

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def spans_by_name(exporter: InMemorySpanExporter) -> dict[str, list]:
    out: dict[str, list] = {}
    for span in exporter.get_finished_spans():
        out.setdefault(span.name, []).append(span)
    return out


def assert_no_text(exporter: InMemorySpanExporter, texts: list[str]) -> None:
    for span in exporter.get_finished_spans():
        for value in (span.attributes or {}).values():
            assert not any(t in str(value) for t in texts if len(t) > 3), (span.name, value)


def test_a_rerank_request_is_a_server_span_with_phase_children(traced):
    client, exporter = traced()
    r = client.post("/v1/rerank", json={"query": QUERY, "documents": DOCS, "top_n": 3})
    assert r.status_code == 200
    spans = spans_by_name(exporter)
    (root,) = spans["POST /v1/rerank"]
    assert root.kind.name == "SERVER" and root.parent is None
    assert root.attributes["http.route"] == "/v1/rerank" and root.attributes["http.response.status_code"] == 200
    assert root.attributes["afrl.documents"] == len(DOCS) and root.attributes["afrl.prompt_tokens"] > 0
    phases = [spans[name][0] for name in ("tokenize", "queue", "inference")]
    assert "decode" not in spans
    for phase in phases:
        assert phase.parent.span_id == root.context.span_id and phase.context.trace_id == root.context.trace_id
        assert root.start_time <= phase.start_time <= phase.end_time <= root.end_time
    assert phases[0].end_time <= phases[1].start_time and phases[1].end_time <= phases[2].start_time
    inference_ms = (phases[2].end_time - phases[2].start_time) / 1e6
    assert inference_ms == pytest.approx(float(r.headers["x-inference-time-ms"]), abs=0.01)
    assert_no_text(exporter, [QUERY, *DOCS])


def test_tei_rerank_and_a_callers_traceparent(traced):
    client, exporter = traced()
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    r = client.post(
        "/rerank", json={"query": QUERY, "texts": DOCS[:4]}, headers={"traceparent": f"00-{trace_id}-{parent_id}-01"}
    )
    assert r.status_code == 200
    (root,) = spans_by_name(exporter)["POST /rerank"]
    assert f"{root.context.trace_id:032x}" == trace_id and f"{root.parent.span_id:016x}" == parent_id
    assert {s.name for s in exporter.get_finished_spans()} == {"POST /rerank", "tokenize", "queue", "inference"}


def test_explanations_add_a_decode_span_streamed_or_not(traced):
    client, exporter = traced(prefix=True)
    body = {"query": QUERY, "documents": DOCS[:3], "reasoning": {"top_k": 2}}
    assert client.post("/v1/score", json=body).status_code == 200
    with client.stream("POST", "/v1/score", json={**body, "stream": True}) as stream:
        events = stream.read().decode()
    assert "event: done" in events
    spans = spans_by_name(exporter)
    assert len(spans["POST /v1/score"]) == 2
    assert len(spans["decode"]) == 2 and all(s.attributes["afrl.explained_documents"] == 2 for s in spans["decode"])
    for root, decode in zip(spans["POST /v1/score"], spans["decode"], strict=True):
        assert decode.parent.span_id == root.context.span_id
        assert root.attributes["afrl.explained_documents"] == 2
    assert_no_text(exporter, [QUERY, *DOCS])


def test_probes_and_scrapes_are_not_traced_and_failures_are_errors(traced):
    backend = FakeBackend()
    client, exporter = traced(backend=backend)
    for path in ("/health/live", "/health/ready", "/metrics"):
        assert client.get(path).status_code == 200
    assert exporter.get_finished_spans() == ()
    backend.fail = True
    assert client.post("/v1/score", json={"query": QUERY, "documents": DOCS[:2]}).status_code == 500
    (root,) = spans_by_name(exporter)["POST /v1/score"]
    assert root.status.status_code.name == "ERROR" and root.attributes["http.response.status_code"] == 500
    assert client.post("/v1/score", json={"query": QUERY}).status_code == 422
    assert spans_by_name(exporter)["POST /v1/score"][1].status.status_code.name == "UNSET"


def test_the_endpoint_comes_from_afrl_or_the_standard_variable(monkeypatch):
    for name in OTEL_ENV:
        monkeypatch.delenv(name, raising=False)
    assert ServiceSettings().otel_endpoint is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
    assert ServiceSettings().otel_endpoint == "http://collector:4317"
    monkeypatch.setenv("AFRL_OTEL_ENDPOINT", "http://afrl-collector:4317")
    assert ServiceSettings().otel_endpoint == "http://afrl-collector:4317"
    assert ServiceSettings(otel_endpoint="http://given:4317").otel_endpoint == "http://given:4317"


def test_the_exporter_follows_the_standard_protocol_variable(monkeypatch):
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

    monkeypatch.delenv("OTEL_EXPORTER_OTLP_PROTOCOL", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", raising=False)
    assert isinstance(otlp_exporter("http://127.0.0.1:4317"), Grpc)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    exporter = otlp_exporter("http://127.0.0.1:4318")
    assert isinstance(exporter, Http) and exporter._endpoint == "http://127.0.0.1:4318/v1/traces"
    tracing = configure_tracing("http://127.0.0.1:4318")
    assert tracing is not None
    tracing.shutdown()


def test_an_endpoint_without_the_sdk_warns_and_serves_untraced(monkeypatch, caplog, artifact_dir):
    for name in [*sys.modules, "opentelemetry.sdk", "opentelemetry.exporter"]:
        if name.startswith(("opentelemetry.sdk", "opentelemetry.exporter")):
            monkeypatch.setitem(sys.modules, name, None)  # importing it fails, as if it were not installed
    with caplog.at_level(logging.WARNING, logger="service.tracing"):
        app = create_app(ServiceSettings(model=artifact_dir, otel_endpoint="http://127.0.0.1:4317"))
    assert app.state.tracing is None and "afrl[otel]" in caplog.text


def test_without_an_endpoint_the_sdk_is_never_imported(artifact_dir):
    code = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from fastapi.testclient import TestClient
from service_testkit import FakeBackend, wait_ready
from service.app import create_app
from service.settings import ServiceSettings
app = create_app(ServiceSettings(model={str(artifact_dir)!r}), lambda f, m, s: FakeBackend())
with TestClient(app) as client:
    wait_ready(client)
    assert client.post("/v1/rerank", json={{"query": "q", "documents": ["a", "b"]}}).status_code == 200
assert app.state.tracing is None
print(sorted(m for m in sys.modules if m.startswith("opentelemetry.sdk") or m.startswith("opentelemetry.exporter")))
"""
    env = {k: v for k, v in os.environ.items() if k not in OTEL_ENV}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_json_log_lines_carry_the_trace_of_the_request():
    from opentelemetry import trace

    formatter = JsonFormatter()
    record = logging.LogRecord("service.x", logging.WARNING, __file__, 1, "queue at %d", (7,), None)
    line = json.loads(formatter.format(record))
    assert line["level"] == "WARNING" and line["logger"] == "service.x" and line["message"] == "queue at 7"
    assert "trace_id" not in line and line["time"].endswith("Z")
    tracing = configure_tracing(None, InMemorySpanExporter())
    assert tracing is not None
    with tracing.tracer.start_as_current_span("request") as span:
        line = json.loads(formatter.format(record))
    assert line["trace_id"] == f"{span.get_span_context().trace_id:032x}"
    assert line["span_id"] == f"{trace.format_span_id(span.get_span_context().span_id)}"
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    assert "ValueError: boom" in json.loads(formatter.format(record))["exception"]


def test_afrl_log_format_json_makes_every_server_line_json(artifact_dir):
    """`service.app.run` with AFRL_LOG_FORMAT=json: uvicorn's own lines and its access log included."""
    port = free_port()
    script = Path(__file__).parent / "service_fake_server.py"
    env = {**os.environ, "AFRL_LOG_FORMAT": "json", "AFRL_ACCESS_LOG": "true"}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(artifact_dir), str(port), "0", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not _ready(url):
            assert proc.poll() is None and time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.05)
        assert httpx.post(f"{url}/v1/score", json={"query": QUERY, "documents": DOCS[:2]}).status_code == 200
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=15)[0].decode()
    finally:
        proc.kill()
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    loggers = {line["logger"] for line in lines}
    assert {"uvicorn.error", "uvicorn.access"} <= loggers, loggers
    assert any("POST /v1/score" in line["message"] for line in lines if line["logger"] == "uvicorn.access")
    assert not any(d in output for d in [QUERY, *DOCS[:2]])


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
