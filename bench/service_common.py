"""Shared by the serving benchmarks (latency, overhead, stream, overload, soak): the request, lean
HTTP clients, the raw engine call, percentiles.

The request is one query of the world's test split with its ten candidates
(repeated with a suffix for more documents). The server is `afrl serve` in
its own process (bench.server_process). The clients are deliberately thin
(http.client; a few lines of asyncio streams) so that what is measured is
the server, not the client library: httpx costs about a millisecond of
client CPU per request, as much as a whole tiny-model request, and
saturates long before the server does under overload. numpy and the
service are imported inside the engine calls: `afrl` imports every
benchmark module to build its parser.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import numpy as np

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


def documents(n: int) -> list[str]:
    return [DOCUMENTS[i % len(DOCUMENTS)] + ("" if i < len(DOCUMENTS) else f" #{i}") for i in range(n)]


def score_body(n: int, **extra) -> dict:
    return {"query": QUERY, "documents": documents(n), **extra}


class SyncClient:
    """One keep-alive connection (http.client): POST JSON, get (status, headers, body)."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)

    def post(self, path: str, body: dict) -> tuple[int, dict[str, str], bytes]:
        self.conn.request("POST", path, json.dumps(body).encode(), {"content-type": "application/json"})
        r = self.conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data

    def close(self) -> None:
        self.conn.close()


class AsyncClient:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams, for open-loop load: POST -> status.

    Content-Length responses only (what /v1/score answers); -1 for a connection that failed. Like
    any pooling client it retries once on a fresh connection when a pooled one turns out to have
    been closed by the server (uvicorn closes keep-alive connections idle for 5 s).
    """

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self, path: str, body: bytes) -> int:
        request = (
            b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % (path.encode(), self.host.encode(), len(body))
            + body
        )
        while True:
            pooled = bool(self._idle)
            try:
                reader, writer = self._idle.pop() if pooled else await asyncio.open_connection(self.host, self.port)
            except OSError:
                return -1
            try:
                writer.write(request)
                status_line = await reader.readline()
                if not status_line and pooled:
                    writer.close()
                    continue  # a stale pooled connection: retry on another
                status = int(status_line.split()[1])
                length, close = 0, False
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"connection" and value.strip().lower() == b"close":
                        close = True
                await reader.readexactly(length)
            except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
                writer.close()
                if pooled:
                    continue
                return -1
            if close:
                writer.close()
            else:
                self._idle.append((reader, writer))
            return status

    def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary(values_ms: list[float]) -> dict[str, float]:
    if not values_ms:
        return {"n": 0}
    return {
        "n": len(values_ms),
        "p50_ms": statistics.median(values_ms),
        "p95_ms": percentile(values_ms, 95),
        "p99_ms": percentile(values_ms, 99),
        "mean_ms": statistics.fmean(values_ms),
    }


def env_settings(items: list[str]) -> dict[str, str]:
    """`--env AFRL_NAME=value ...` as a dict."""
    bad = [item for item in items if "=" not in item]
    if bad:
        raise ValueError(f"{bad[0]!r}: write server settings as AFRL_NAME=value")
    return dict(item.split("=", 1) for item in items)


def service_settings(model: str, env: dict[str, str]):
    """ServiceSettings for `model` and the AFRL_* settings of `env`, as the server reads them from its environment."""
    from service.settings import ServiceSettings

    return ServiceSettings(model=model, **{k.removeprefix("AFRL_").lower(): v for k, v in env.items()})


def raw_engine_call(model: str, n_documents: int, env: dict[str, str]) -> Callable[[], np.ndarray]:
    """What serving one request costs at the least, in-process: tokenize, then the backend's forward
    passes on the same padded shapes the service uses (shared prefix when the artifact has it)."""
    import numpy as np

    from afrl.padding import left_pad
    from service.artifact_loader import load_artifact
    from service.backend import supports_prefix
    from service.batching import bucket_length

    loaded = load_artifact(service_settings(model, env))
    backend, encoder, pad = loaded.backend, loaded.encoder, loaded.pad_id
    docs = documents(n_documents)

    def call() -> np.ndarray:
        pairs = encoder.encode(QUERY, docs)
        if supports_prefix(backend):
            prefix = backend.prefix_cache(np.asarray([pairs[0].prefix_ids]))
            rows = [p.document_ids for p in pairs]
            ids, mask = left_pad(rows, pad, bucket_length(max(map(len, rows))))
            return backend.score_with_prefix(prefix, ids, mask)[0]
        rows = [p.input_ids for p in pairs]
        ids, mask = left_pad(rows, pad, bucket_length(max(map(len, rows))))
        return backend.label_logits(ids, mask)

    return call


def engine_call(model: str, n_documents: int, env: dict[str, str]) -> tuple[Callable[[], object], Callable[[], None]]:
    """ScoringEngine.score in-process (service.blocking): the engine with its queue and threads, no HTTP.

    Returns the call and what closes the engine."""
    from service.artifact_loader import load_artifact
    from service.blocking import BlockingScorer
    from service.engine import ScoringEngine
    from service.metrics import ServiceMetrics

    settings = service_settings(model, env)
    scorer = BlockingScorer(
        ScoringEngine(load_artifact(settings), settings.max_batch_tokens, ServiceMetrics(), settings)
    )
    docs = documents(n_documents)
    return (lambda: scorer.score(QUERY, docs)), scorer.close


def time_calls(call: Callable[[], object], n: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        call()
    out = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        out.append((time.perf_counter() - start) * 1000)
    return out


def print_table(title: str, rows: dict[str, dict[str, float]]) -> None:
    print(title)
    for name, figures in rows.items():
        shown = "  ".join(f"{k} {v:8.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items())
        print(f"  {name:28s} {shown}")
