"""Overload: latency of accepted requests and speed of refusals at a multiple of the measured capacity.

    1. unloaded     sequential requests (concurrency 1): p50 / p99
    2. capacity     closed loop at --concurrency for --seconds: answered requests per second
    3. overload     open loop, Poisson arrivals at --factor x capacity for --seconds: p99 of the
                    accepted (200) requests against the unloaded p99, how fast 429s come back,
                    and how many answers were 5xx or failed

Steps 1-2 run on a server with --env only (default admission bounds, so
refusals do not distort the capacity); step 3 on a fresh server with --env
plus --admission (the bounds decide how much queueing an accepted request
can meet). Unless --admission names it, the overload server gets
AFRL_MAX_QUEUE_DELAY_MS = --queue-delay x the unloaded p50: an operator who
wants accepted requests within 2x of their unloaded latency lets them wait at
most about one service time. Prints figures and asserts nothing.

    afrl bench overload --model DIR [--documents 10] [--factor 4] \
        [--queue-delay 0.5] [--env AFRL_X=v ...] [--admission AFRL_MAX_QUEUE=2 ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections import Counter

from bench.server_process import running_server
from bench.service_common import AsyncClient, env_settings, print_table, score_body, summary


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="artifact folder")
    p.add_argument("--documents", type=int, default=10)
    p.add_argument("--factor", type=float, default=4.0)
    p.add_argument("--concurrency", type=int, default=4, help="closed-loop clients when measuring capacity")
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--env", nargs="*", default=[], help="AFRL_NAME=value settings for the server")
    p.add_argument("--admission", nargs="*", default=[], help="AFRL_NAME=value for the overload server only")
    p.add_argument(
        "--queue-delay",
        type=float,
        default=0.5,
        help="AFRL_MAX_QUEUE_DELAY_MS of the overload server, as a multiple of the unloaded p50",
    )


async def timed(client: AsyncClient, body: bytes) -> tuple[int, float]:
    start = time.perf_counter()
    status = await client.post("/v1/score", body)
    return status, (time.perf_counter() - start) * 1000


async def closed_loop(client: AsyncClient, body: bytes, concurrency: int, seconds: float) -> list:
    end = time.perf_counter() + seconds
    out: list[tuple[int, float]] = []

    async def worker() -> None:
        while time.perf_counter() < end:
            out.append(await timed(client, body))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return out


async def open_loop(client: AsyncClient, body: bytes, rate: float, seconds: float, seed: int = 0) -> list:
    rng = random.Random(seed)
    tasks = []
    start = time.perf_counter()
    next_at = start
    while next_at < start + seconds:
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        tasks.append(asyncio.create_task(timed(client, body)))
        next_at += rng.expovariate(rate)
    return await asyncio.gather(*tasks)


async def measure_capacity(url: str, a: argparse.Namespace) -> tuple[list[float], float]:
    body, client = json.dumps(score_body(a.documents)).encode(), AsyncClient(url)
    await closed_loop(client, body, 1, 2.0)  # warm the path
    unloaded = [ms for status, ms in await closed_loop(client, body, 1, a.seconds) if status == 200]
    answered = await closed_loop(client, body, a.concurrency, a.seconds)
    client.close()
    return unloaded, sum(1 for status, _ in answered if status == 200) / a.seconds


async def overload(url: str, a: argparse.Namespace, rate: float) -> list[tuple[int, float]]:
    body, client = json.dumps(score_body(a.documents)).encode(), AsyncClient(url)
    await closed_loop(client, body, 1, 1.0)  # warm the path
    out = await open_loop(client, body, rate, a.seconds)
    client.close()
    return out


def run(a: argparse.Namespace) -> int:
    env = env_settings(a.env)
    admission = {**env, **env_settings(a.admission)}
    with running_server(a.model, env=env) as url:
        unloaded, capacity = asyncio.run(measure_capacity(url, a))
    rate = a.factor * capacity
    if "AFRL_MAX_QUEUE_DELAY_MS" not in admission:
        admission["AFRL_MAX_QUEUE_DELAY_MS"] = f"{a.queue_delay * summary(unloaded)['p50_ms']:.1f}"
    with running_server(a.model, env=admission) as url:
        loaded = asyncio.run(overload(url, a, rate))
    statuses = Counter(status for status, _ in loaded)
    accepted = summary([ms for status, ms in loaded if status == 200])
    base = summary(unloaded)
    print_table(
        f"{a.model}: 1 query x {a.documents} documents; capacity {capacity:.1f} req/s (closed loop, "
        f"concurrency {a.concurrency}); overload at {a.factor:g}x = {rate:.1f} req/s for {a.seconds:g} s",
        {
            "unloaded (concurrency 1)": base,
            "overload: accepted (200)": accepted,
            "overload: refused (429)": summary([ms for status, ms in loaded if status == 429]),
        },
    )
    print(f"  statuses under overload: {dict(sorted(statuses.items()))}  (-1: connection error)")
    print(f"  5xx answers: {sum(n for s, n in statuses.items() if s >= 500)}")
    if accepted.get("n"):
        print(f"  ratio p99(accepted under overload) / p99(unloaded) = {accepted['p99_ms'] / base['p99_ms']:.3f}")
    print(f"  settings: capacity server {env or 'defaults'}; overload server {admission or 'defaults'}")
    return 0
