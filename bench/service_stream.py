"""Streamed reasoning: time to the first `score` event of a stream versus the non-stream latency of the same request.

Alternates, on one live `afrl serve`, a plain POST /v1/score (grades only)
and the same request with `stream: true` and `reasoning: {"top_k": K}`;
for the stream it records the first `score` event, the first `reasoning`
event and `done`. Prints figures and asserts nothing.

    afrl bench stream --model DIR [--documents 10] [--top-k 1] [--requests 50] [--env AFRL_X=v ...]
"""

from __future__ import annotations

import argparse
import json
import time

from bench.server_process import running_server
from bench.service_common import SyncClient, env_settings, print_table, score_body, summary


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="artifact folder")
    p.add_argument("--documents", type=int, default=10)
    p.add_argument("--top-k", type=int, default=1)
    p.add_argument("--requests", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--env", nargs="*", default=[], help="AFRL_NAME=value settings for the server")


def stream_once(client: SyncClient, body: dict) -> dict[str, float]:
    """ms from sending to the first event of each kind, reading the event stream line by line."""
    marks: dict[str, float] = {}
    start = time.perf_counter()
    client.conn.request("POST", "/v1/score", json.dumps(body).encode(), {"content-type": "application/json"})
    r = client.conn.getresponse()
    if r.status != 200:
        raise RuntimeError(f"stream answered {r.status}: {r.read()[:200]!r}")
    while line := r.readline():
        if line.startswith(b"event: "):
            marks.setdefault(line[7:].strip().decode(), (time.perf_counter() - start) * 1000)
    return marks


def run(a: argparse.Namespace) -> int:
    env = env_settings(a.env)
    plain_body = score_body(a.documents)
    stream_body = score_body(a.documents, stream=True, reasoning={"top_k": a.top_k})
    plain_ms: list[float] = []
    marks: dict[str, list[float]] = {"score": [], "reasoning": [], "done": []}
    with running_server(a.model, env=env) as url:
        plain_client, stream_client = SyncClient(url), SyncClient(url)
        for i in range(a.warmup + a.requests):
            start = time.perf_counter()
            if plain_client.post("/v1/score", plain_body)[0] != 200:
                raise RuntimeError("POST /v1/score failed")
            elapsed = (time.perf_counter() - start) * 1000
            got = stream_once(stream_client, stream_body)
            if i >= a.warmup:
                plain_ms.append(elapsed)
                for kind in marks:
                    if kind in got:
                        marks[kind].append(got[kind])
    plain = summary(plain_ms)
    first = summary(marks["score"])
    print_table(
        f"{a.model}: 1 query x {a.documents} documents, reasoning top_k={a.top_k}, {a.requests} requests each",
        {
            "non-stream /v1/score": plain,
            "stream: first score event": first,
            "stream: first reasoning event": summary(marks["reasoning"]),
            "stream: done": summary(marks["done"]),
        },
    )
    print(f"  ratio p50(first score event) / p50(non-stream) = {first['p50_ms'] / plain['p50_ms']:.3f}")
    return 0
