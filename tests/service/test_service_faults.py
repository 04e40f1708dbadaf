"""Faults in the model backend: a forward pass that hangs once, and a backend that keeps hanging.

A raising backend is covered in test_service_errors.py (generic 500, next request fine); client
disconnects and SIGTERM in test_service_admission.py.
"""

from __future__ import annotations

import threading
import time

from service_testkit import DOCS, FakeBackend, metric_value

GOOD = {"query": "water bottle", "documents": DOCS[:3]}
TIMEOUT_MS = 300


class HangingBackend(FakeBackend):
    """The next `hang_next` forward passes block until `release` is set (as a stuck GPU call would)."""

    def __init__(self) -> None:
        super().__init__()
        self.hang_next = 0
        self.release = threading.Event()
        self._hang_lock = threading.Lock()

    def label_logits(self, input_ids, attention_mask):
        with self._hang_lock:
            hang, self.hang_next = self.hang_next > 0, max(0, self.hang_next - 1)
        if hang:
            self.release.wait(30)
        return super().label_logits(input_ids, attention_mask)


def timed_post(client, body=GOOD):
    start = time.perf_counter()
    r = client.post("/v1/score", json=body)
    return r, time.perf_counter() - start


def wait_status(client, path: str, status: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while client.get(path).status_code != status:
        assert time.monotonic() < deadline, f"{path} never answered {status}"
        time.sleep(0.02)


def test_a_hung_forward_pass_gets_504_and_the_next_request_is_served(make_client):
    backend = HangingBackend()
    client, _ = make_client(backend=backend, inference_timeout_ms=TIMEOUT_MS)
    backend.hang_next = 1
    try:
        r, elapsed = timed_post(client)
        assert r.status_code == 504 and r.json()["error"]["type"] == "inference_timeout", r.text
        assert f"{TIMEOUT_MS} ms" in r.json()["error"]["message"]
        assert TIMEOUT_MS / 1000 <= elapsed < 3
        # Degraded while the call is stuck: not ready (traffic goes elsewhere), still live, still serving.
        ready = client.get("/health/ready")
        assert ready.status_code == 503 and "stuck" in ready.json()["error"]["message"]
        assert client.get("/health/live").status_code == 200
        r, elapsed = timed_post(client)
        assert r.status_code == 200 and len(r.json()["results"]) == 3 and elapsed < 2
        text = client.get("/metrics").text
        assert metric_value(text, "afrl_stuck_inference_calls") == 1
    finally:
        backend.release.set()
    wait_status(client, "/health/ready", 200)
    text = client.get("/metrics").text
    assert metric_value(text, "afrl_stuck_inference_calls") == 0
    assert metric_value(text, "afrl_inference_timeouts_total") == 1
    assert metric_value(text, 'afrl_requests_rejected_total{reason="inference_timeout"}') == 1


def test_a_backend_that_keeps_hanging_fails_liveness_and_recovers_when_calls_return(make_client):
    backend = HangingBackend()
    client, _ = make_client(backend=backend, inference_timeout_ms=TIMEOUT_MS)
    backend.hang_next = 10
    try:
        for _ in range(2):
            assert timed_post(client)[0].status_code == 504
        calls = len(backend.calls)
        live = client.get("/health/live")
        assert live.status_code == 503 and live.json()["error"]["type"] == "backend_stuck"
        r, elapsed = timed_post(client)
        assert r.status_code == 503 and r.json()["error"]["type"] == "backend_stuck" and elapsed < 1
        assert len(backend.calls) == calls, "no new thread is started while the backend is wedged"
    finally:
        backend.hang_next = 0
        backend.release.set()
    wait_status(client, "/health/live", 200)
    wait_status(client, "/health/ready", 200)
    assert timed_post(client)[0].status_code == 200


def test_a_hung_pass_fails_an_event_stream_before_it_starts(make_client):
    backend = HangingBackend()
    client, _ = make_client(backend=backend, inference_timeout_ms=TIMEOUT_MS)
    backend.hang_next = 1
    try:
        r = client.post("/v1/score", json={**GOOD, "stream": True})
        assert r.status_code == 504 and r.json()["error"]["type"] == "inference_timeout"
        r = client.post("/v1/score", json={**GOOD, "stream": True})
        assert r.status_code == 200 and r.text.count("event: score") == 3 and "event: done" in r.text
    finally:
        backend.release.set()


def test_no_inference_timeout_waits_for_a_slow_pass(make_client):
    backend = FakeBackend()
    client, _ = make_client(backend=backend, inference_timeout_ms=0)
    backend.delay = 0.5
    r, elapsed = timed_post(client)
    assert r.status_code == 200 and elapsed >= 0.5


def test_a_stuck_call_does_not_keep_the_process_from_exiting():
    import subprocess
    import sys

    code = (
        "import asyncio, time\n"
        "from service.inference_thread import InferenceThread, InferenceTimeout\n"
        "async def main():\n"
        "    thread = InferenceThread(timeout_s=0.1)\n"
        "    try:\n"
        "        await thread.run(time.sleep, 60)\n"
        "    except InferenceTimeout:\n"
        "        print('timed out', thread.stuck)\n"
        "    print(await thread.run(lambda: 'next call ran'))\n"
        "asyncio.run(main())\n"
    )
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["timed out 1", "next call ran"]
    assert time.perf_counter() - start < 10, "the abandoned thread was waited for at exit"
