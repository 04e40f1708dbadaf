"""Latency of POST /v1/score at concurrency 1: 1 query x N documents, live server.

Starts `afrl serve` in its own process (default model unless --model), sends
sequential requests over one keep-alive connection and prints p50/p95/p99 of
the client-side latency next to the server's own x-inference-time-ms, so the
HTTP overhead is visible. A benchmark prints figures; it asserts nothing.

    python -m loadtest.bench_latency [--model DIR] [--documents 10] [--requests 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import httpx

from loadtest.server_process import running_server

# One query of the world's test split with its ten candidates (grades 4,4,3,2,2,2,1,0,0,0).
QUERY = "white samsung galaxy buds2 earbuds"
DOCUMENTS = [
    "Samsung Galaxy Buds2 Earbuds, White. In-ear, with charging case. Price $110.99. Category: electronics > earbuds.",
    "Galaxy Buds2 Earbuds, White. In-ear, with charging case. Price $110.99. Category: electronics > earbuds.",
    "Samsung Galaxy Buds2 Earbuds, Black. In-ear, with charging case. Price $110.99. Category: electronics > earbuds.",
    "Apple AirPods Pro Earbuds, White. In-ear, with charging case. Price $63.99. Category: electronics > earbuds.",
    "Sony WF-1000XM4 Earbuds, White. In-ear, with charging case. Price $94.99. Category: electronics > earbuds.",
    "Sony WH-1000XM4 Wireless Headphones, Blue. Over-ear, noise cancelling. Price $110.99. "
    "Category: electronics > headphones.",
    "Comply Ear Tips for Galaxy Buds2, Size S, Pack of 6. Foam, noise isolating. Price $21.99. "
    "Category: electronics > ear tips.",
    "Apple iPad Air Tablet, 256 GB, Blue. 10-inch display, Wi-Fi. Price $369.99. Category: electronics > tablet.",
    "Canon PIXMA TS3350 Printer, White. Wireless, prints from your phone. Price $101.99. Category: office > printer.",
    "Kong Stainless Steel Pet Bowl for Dry Dog Food and Dry Cat Food, Pink. Non-slip base. Price $10.99. "
    "Category: pet > pet bowl.",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def measure(url: str, documents: int, requests: int, warmup: int) -> dict[str, float]:
    docs = [DOCUMENTS[i % len(DOCUMENTS)] + ("" if i < len(DOCUMENTS) else f" #{i}") for i in range(documents)]
    body = {"query": QUERY, "documents": docs}
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


def main(model: str | None = None, documents: int = 10, requests: int = 200, warmup: int = 20) -> int:
    print(f"starting afrl serve ({model or 'embedded default model'}) ...", file=sys.stderr, flush=True)
    with running_server(model) as url:
        figures = measure(url, documents, requests, warmup)
    print(f"POST /v1/score, 1 query x {documents} documents, concurrency 1, {requests} requests:")
    for name, value in figures.items():
        print(f"  {name:18s} {value:8.2f}")
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model")
    ap.add_argument("--documents", type=int, default=10)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    a = ap.parse_args()
    sys.exit(main(a.model, a.documents, a.requests, a.warmup))
