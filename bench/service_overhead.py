"""Service overhead: p50 of POST /v1/score at concurrency 1 versus the raw engine call for the same request.

    raw engine call   in-process: tokenize + the backend's forward passes (prefix + score_prefix when
                      the artifact has them, else score), on the shapes the service pads to
    engine.score      in-process ScoringEngine.score: the same plus its thread pool, batcher and
                      inference thread (everything but HTTP)
    /v1/score         `afrl serve` in its own process, one keep-alive connection (http.client),
                      sequential requests

Both run the same artifact with the same AFRL_* settings, one after the
other (never at once, so they do not share the CPU). Prints figures and
asserts nothing.

    afrl bench overhead --model DIR [--documents 10] [--requests 200] [--env AFRL_X=v ...]
"""

from __future__ import annotations

import argparse
import time

from bench.server_process import running_server
from bench.service_common import (
    SyncClient,
    engine_call,
    env_settings,
    print_table,
    raw_engine_call,
    score_body,
    summary,
    time_calls,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="artifact folder")
    p.add_argument("--documents", type=int, default=10)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--env", nargs="*", default=[], help="AFRL_NAME=value settings for both sides")


def measure_http(url: str, body: dict, requests: int, warmup: int) -> tuple[list[float], list[float]]:
    client_ms, inference_ms = [], []
    client = SyncClient(url)
    for i in range(warmup + requests):
        start = time.perf_counter()
        status, headers, _ = client.post("/v1/score", body)
        elapsed = (time.perf_counter() - start) * 1000
        if status != 200:
            raise RuntimeError(f"POST /v1/score answered {status}")
        if i >= warmup:
            client_ms.append(elapsed)
            inference_ms.append(float(headers["x-inference-time-ms"]))
    client.close()
    return client_ms, inference_ms


def run(a: argparse.Namespace) -> int:
    env = env_settings(a.env)

    raw = summary(time_calls(raw_engine_call(a.model, a.documents, env), a.requests, a.warmup))
    call, close = engine_call(a.model, a.documents, env)
    engine = summary(time_calls(call, a.requests, a.warmup))
    close()
    with running_server(a.model, env=env) as url:
        http_ms, inference_ms = measure_http(url, score_body(a.documents), a.requests, a.warmup)
    http = summary(http_ms)
    print_table(
        f"{a.model}: 1 query x {a.documents} documents, concurrency 1, {a.requests} requests, env {env or '{}'}",
        {
            "raw engine call": raw,
            "engine.score (in-process)": engine,
            "POST /v1/score (client)": http,
            "x-inference-time-ms (server)": summary(inference_ms),
        },
    )
    print(f"  overhead ratio p50(/v1/score) / p50(raw engine call) = {http['p50_ms'] / raw['p50_ms']:.3f}")
    print(f"  overhead ratio p50(/v1/score) / p50(engine.score)    = {http['p50_ms'] / engine['p50_ms']:.3f}")
    return 0
