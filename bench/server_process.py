"""Start `afrl serve` as its own process on a free loopback port, for benchmarks and e2e tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(
    model: str | Path | None = None,
    env: dict[str, str] | None = None,
    ready_timeout_s: float = 600.0,
    log_path: Path | None = None,
):
    """Yields the base URL once /health/ready answers 200; terminates the server afterwards."""
    with running_server_process(model, env, ready_timeout_s, log_path) as (url, _):
        yield url


@contextmanager
def running_server_process(
    model: str | Path | None = None,
    env: dict[str, str] | None = None,
    ready_timeout_s: float = 600.0,
    log_path: Path | None = None,
):
    """running_server, yielding (base URL, the server's Popen) for callers that watch the process."""
    import httpx  # here, not at the top: `afrl` imports the benchmark modules to build its parser

    port = free_port()
    cmd = [sys.executable, "-m", "afrl.cli", "serve", "--port", str(port)]
    if model is not None:
        cmd += ["--model", str(model)]
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with code {proc.returncode} before it was ready"
                    + (f"; see {log_path}" if log_path else "")
                )
            try:
                if httpx.get(f"{url}/health/ready", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"server not ready after {ready_timeout_s:.0f}s")
            time.sleep(0.2)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        if log_path:
            log.close()
