"""Admission under stress, over real sockets where it matters: overload, deadlines, disconnects, SIGTERM."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from service_testkit import DOCS, FakeBackend, LiveServer, free_port, metric_value

from service.app import create_app
from service.settings import ServiceSettings

GOOD = {"query": "water bottle", "documents": DOCS[:3]}


def blocked(client, backend) -> threading.Thread:
    """A request whose forward pass holds the model until backend.gate is set."""
    backend.reset()
    backend.gate, backend.entered = threading.Event(), threading.Event()
    worker = threading.Thread(target=lambda: client.post("/v1/score", json=GOOD))
    worker.start()
    assert backend.entered.wait(5)
    return worker


def test_overload_beyond_the_queued_token_bound_is_a_quick_429(make_client):
    client, backend = make_client(max_queue_tokens=1000)
    running = blocked(client, backend)
    queued: list = []
    waiting = threading.Thread(target=lambda: queued.append(client.post("/v1/score", json=GOOD)))
    waiting.start()  # 3 rows x 128 tokens wait behind the running request
    for _ in range(500):
        if "afrl_queue_tokens 384.0" in client.get("/metrics").text:
            break
        time.sleep(0.01)
    start = time.perf_counter()
    r = client.post("/v1/score", json={"query": "water bottle", "documents": DOCS[:6]})  # 768 more: over 1000
    assert time.perf_counter() - start < 0.5
    assert r.status_code == 429 and r.json()["error"]["type"] == "queue_full"
    assert int(r.headers["retry-after"]) >= 1 and "limit is 1000" in r.json()["error"]["message"]
    backend.gate.set()
    running.join(10), waiting.join(10)
    assert queued[0].status_code == 200
    metrics = client.get("/metrics").text
    assert metric_value(metrics, 'afrl_requests_rejected_total{reason="queue_full"}') == 1
    assert metric_value(metrics, "afrl_queue_tokens") == 0


def test_a_wait_past_the_queue_delay_bound_is_refused_before_the_body_is_read(make_client):
    client, backend = make_client(max_queue_delay_ms=50)
    backend.delay = 0.1
    assert client.post("/v1/score", json=GOOD).status_code == 200  # measures the throughput: ~0.1 s a pass
    backend.delay = 0.0
    running = blocked(client, backend)
    time.sleep(0.15)  # the running pass is now overdue: its expected rest counts as 0
    queued: list = []
    waiting = threading.Thread(target=lambda: queued.append(client.post("/v1/score", json=GOOD)))
    waiting.start()  # admitted; its ~0.1 s of work then waits behind the running pass
    for _ in range(500):
        if "afrl_queue_tokens 384.0" in client.get("/metrics").text:
            break
        time.sleep(0.01)
    try:
        r = client.post("/v1/score", content=b"{not json", headers={"content-type": "application/json"})
    finally:
        backend.gate.set()
        running.join(10), waiting.join(10)
    assert r.status_code == 429, f"refused before parsing, the body never read: {r.status_code} {r.text}"
    assert "limit is 50 ms" in r.json()["error"]["message"] and int(r.headers["retry-after"]) >= 1
    assert queued[0].status_code == 200
    assert client.post("/v1/score", json=GOOD).status_code == 200  # drained: admitted again


def test_deadline_gives_504_while_the_model_is_still_busy(make_client):
    client, backend = make_client()
    running = blocked(client, backend)
    start = time.perf_counter()
    r = client.post("/v1/score", json={**GOOD, "timeout_ms": 100})
    assert r.status_code == 504 and "100 ms" in r.json()["error"]["message"]
    assert time.perf_counter() - start < 1.0 and not backend.gate.is_set()
    backend.gate.set()
    running.join(10)
    assert len(backend.calls) == 1, "the expired request never reached the model"


def raw_post(port: int, body: bytes, path: str = "/v1/score") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    sock.sendall(head.encode() + body)
    return sock


def wait_metric(url: str, sample: str, value: float, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while metric_value(httpx.get(f"{url}/metrics").text, sample) != value:
        assert time.monotonic() < deadline, f"{sample} never reached {value}"
        time.sleep(0.02)


def test_a_client_that_disconnects_cancels_its_queued_work(artifact_dir):
    backend = FakeBackend()
    app = create_app(ServiceSettings(model=artifact_dir), backend_factory=lambda f, m, s: backend)
    with LiveServer(app) as server:
        backend.reset()
        backend.gate = threading.Event()
        first = threading.Thread(target=lambda: httpx.post(f"{server.url}/v1/score", json=GOOD, timeout=10))
        first.start()
        assert backend.entered.wait(5)
        sock = raw_post(server.port, b'{"query": "water bottle", "documents": ["zebra-striped bottle 77"]}')
        wait_metric(server.url, "afrl_queue_depth", 2)
        sock.close()  # gone while queued behind the running request
        wait_metric(server.url, 'afrl_requests_rejected_total{reason="client_disconnected"}', 1)
        assert metric_value(httpx.get(f"{server.url}/metrics").text, "afrl_queue_tokens") == 0
        backend.gate.set()
        first.join(10)
        wait_metric(server.url, "afrl_queue_depth", 0)
    assert len(backend.calls) == 1, "only the first request reached the model"


def test_a_stream_client_that_disconnects_stops_the_decoding(make_client, prefix_artifact_dir):
    _, backend = make_client(prefix=True)  # builds the gated onnx backend factory once
    factory_backend: dict = {}

    def factory(folder, manifest, s):
        from service_testkit import GatedBackend

        from service.artifact_loader import onnx_backend_factory

        factory_backend["b"] = GatedBackend(onnx_backend_factory(folder, manifest, s))
        return factory_backend["b"]

    app = create_app(ServiceSettings(model=prefix_artifact_dir, intra_op_threads=1), backend_factory=factory)
    with LiveServer(app) as server:
        gated = factory_backend["b"]
        gated.reset()
        gated.decode_delay = 0.15  # the explanation is 13 steps: about 2 s of decoding
        body = {"query": "water bottle", "documents": DOCS[:3], "stream": True, "reasoning": True}
        start = time.perf_counter()
        with httpx.stream("POST", f"{server.url}/v1/score", json=body, timeout=10) as r:
            first_score = None
            for line in r.iter_lines():
                if line == "event: score" and first_score is None:
                    first_score = time.perf_counter() - start
                if line == "event: reasoning":
                    break
        time.sleep(0.6)
        decoded = gated.methods().count("decode")
        time.sleep(0.5)
        assert gated.methods().count("decode") == decoded, "decoding went on after the client left"
        assert decoded < 8
        assert first_score < 0.5  # the scores came first, long before the explanation would end
        wait_metric(server.url, "afrl_queue_depth", 0)
        gated.decode_delay = 0.0
        after = httpx.post(f"{server.url}/v1/score", json={**body, "stream": False}, timeout=10)
        assert after.status_code == 200 and all(r["reasoning"] for r in after.json()["results"]), "still serving"


def start_server(artifact_dir: Path, delay: float, grace: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    script = Path(__file__).parent / "service_fake_server.py"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(artifact_dir), str(port), str(delay), str(grace)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, proc.stdout.read().decode()
        try:
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "server did not become ready"
        time.sleep(0.05)


def test_sigterm_drains_in_flight_requests_then_exits(artifact_dir):
    proc, url = start_server(artifact_dir, delay=0.8, grace=10)
    try:
        answers: list = []
        clients = [  # under load: several requests running or queued when the signal comes
            threading.Thread(target=lambda: answers.append(httpx.post(f"{url}/v1/score", json=GOOD, timeout=10)))
            for _ in range(4)
        ]
        for client in clients:
            client.start()
        time.sleep(0.3)  # in the model now
        start = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        try:
            refused = httpx.get(f"{url}/health/ready", timeout=1).status_code != 200
        except httpx.HTTPError:
            refused = True  # the listening socket is closed: no new connections
        for client in clients:
            client.join(10)
        code = proc.wait(10)
        elapsed = time.perf_counter() - start
    finally:
        proc.kill()
    assert refused
    assert [r.status_code for r in answers] == [200] * 4, "every in-flight request was answered"
    assert code in (0, -signal.SIGTERM) and elapsed < 5


def test_sigterm_exits_within_the_grace_period_when_work_runs_long(artifact_dir):
    proc, url = start_server(artifact_dir, delay=30, grace=1)
    try:
        cut: list = []

        def long_request() -> None:
            try:
                httpx.post(f"{url}/v1/score", json=GOOD, timeout=60)
            except httpx.HTTPError as e:  # cut off when the grace period ends
                cut.append(e)

        waiter = threading.Thread(target=long_request)
        waiter.start()
        time.sleep(0.3)
        start = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        elapsed = time.perf_counter() - start
        waiter.join(10)
    finally:
        proc.kill()
    assert elapsed < 4, f"took {elapsed:.1f} s with a 1 s grace period"
    assert cut, "the request that outlived the grace period was cut off"
