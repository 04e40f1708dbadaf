"""Latency of POST /v1/score at concurrency 1: 1 query x N documents, live server.

Starts `afrl serve` in its own process (default model unless --model), sends
sequential requests over one keep-alive connection and prints p50/p95/p99 of
the client-side latency next to the server's own x-inference-time-ms, so the
HTTP overhead is visible. A benchmark prints figures; it asserts nothing.

    afrl bench latency [--model DIR] [--documents 10] [--requests 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from bench.server_process import running_server
from bench.service_common import percentile, score_body


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="artifact folder (default: the embedded default model)")
    p.add_argument("--documents", type=int, default=10)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)


def measure(url: str, documents: int, requests: int, warmup: int) -> dict[str, float]:
    import httpx

    body = score_body(documents)
    client_ms, server_ms = [], []
    with httpx.Client(base_url=url, timeout=30.0) as client:
        for i in range(warmup + requests):
            t = time.perf_counter()
            r = client.post("/v1/score", json=body)
            elapsed = (time.perf_counter() - t) * 1000
            r.raise_for_status()
            if i >= warmup:
                client_ms.append(elapsed)
                server_ms.append(float(r.headers.get("x-inference-time-ms", "nan")))
    return {
        "p50_ms": statistics.median(client_ms),
        "p95_ms": percentile(client_ms, 95),
        "p99_ms": percentile(client_ms, 99),
        "mean_ms": statistics.fmean(client_ms),
        "inference_p50_ms": statistics.median(server_ms),
    }


def run(a: argparse.Namespace) -> int:
    print(f"starting afrl serve ({a.model or 'embedded default model'}) ...", file=sys.stderr, flush=True)
    with running_server(a.model) as url:
        figures = measure(url, a.documents, a.requests, a.warmup)
    print(f"POST /v1/score, 1 query x {a.documents} documents, concurrency 1, {a.requests} requests:")
    for name, value in figures.items():
        print(f"  {name:18s} {value:8.2f}")
    return 0
