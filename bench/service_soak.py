"""Soak and overload: does one server stay correct, fast and bounded in memory for a long run?

    1. capacity   unloaded latency (concurrency 1), then answered requests/s in a closed loop at
                  --concurrency (bench.service_overload.measure_capacity)
    2. soak       open loop, Poisson arrivals at --load x capacity for --duration seconds: every
                  answer's status and latency, and the server process's resident memory (RSS,
                  /proc) every --sample seconds; RSS growth = median of the last 10% of samples
                  against the first 10% (after warmup), so one allocation spike does not count
    3. overload   the same server, open loop at --factor x capacity for --overload-seconds: 429
                  count, 5xx count (must be 0), p99 of the accepted answers against unloaded

Prints the figures; writes OUT/soak.json (settings, figures, per-window series) and OUT/soak.png
(RSS, then p50/p99 of accepted answers, then answers per second by status, over time). The
server is `afrl serve` in its own process (bench.server_process); --env passes AFRL_* settings.

    afrl bench soak [--model DIR] [--duration 600] [--load 0.7] [--factor 4] [--out runs/soak]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections import Counter
from pathlib import Path

from bench.server_process import running_server_process
from bench.service_common import AsyncClient, env_settings, print_table, score_body, summary
from bench.service_overload import measure_capacity, open_loop


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="artifact folder (default: the embedded default model)")
    p.add_argument("--documents", type=int, default=10)
    p.add_argument("--concurrency", type=int, default=4, help="closed-loop clients when measuring capacity")
    p.add_argument("--capacity-seconds", type=float, default=15.0)
    p.add_argument("--duration", type=float, default=600.0, help="soak length in seconds")
    p.add_argument("--load", type=float, default=0.7, help="soak arrival rate as a fraction of capacity")
    p.add_argument("--factor", type=float, default=4.0, help="overload arrival rate as a multiple of capacity")
    p.add_argument("--overload-seconds", type=float, default=60.0)
    p.add_argument("--sample", type=float, default=1.0, help="seconds between RSS samples")
    p.add_argument("--window", type=float, default=10.0, help="seconds per point of the latency series")
    p.add_argument("--env", nargs="*", default=[], help="AFRL_NAME=value settings for the server")
    p.add_argument("--out", type=Path, default=Path("runs/soak"))


class RecordingClient:
    """An AsyncClient that remembers (seconds since `start`, status, latency ms) of every request."""

    def __init__(self, url: str, start: float):
        self.inner = AsyncClient(url)
        self.start = start
        self.answers: list[tuple[float, int, float]] = []

    async def post(self, path: str, body: bytes) -> int:
        sent = time.perf_counter()
        status = await self.inner.post(path, body)
        self.answers.append((sent - self.start, status, (time.perf_counter() - sent) * 1000))
        return status

    def close(self) -> None:
        self.inner.close()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024  # kB -> MiB
    raise RuntimeError(f"no VmRSS for process {pid}")


async def sample_rss(pid: int, start: float, every_s: float, out: list[tuple[float, float]]) -> None:
    while True:
        out.append((time.perf_counter() - start, rss_mib(pid)))
        await asyncio.sleep(every_s)


async def run_phases(url: str, pid: int, a: argparse.Namespace, capacity: float) -> dict:
    """Soak, then overload, on one server, sampling its RSS throughout."""
    start = time.perf_counter()
    body = json.dumps(score_body(a.documents)).encode()
    rss: list[tuple[float, float]] = []
    sampler = asyncio.create_task(sample_rss(pid, start, a.sample, rss))
    soak, overload = RecordingClient(url, start), RecordingClient(url, start)
    await open_loop(soak, body, a.load * capacity, a.duration, seed=1)
    soak_end = time.perf_counter() - start
    await open_loop(overload, body, a.factor * capacity, a.overload_seconds, seed=2)
    sampler.cancel()
    soak.close(), overload.close()
    return {
        "rss": rss,
        "soak": soak.answers,
        "overload": overload.answers,
        "soak_end_s": soak_end,
        "end_s": soak_end + a.overload_seconds,
    }


def rss_growth(samples: list[tuple[float, float]], until_s: float) -> dict[str, float]:
    values = [mib for t, mib in samples if t <= until_s]
    tenth = max(1, len(values) // 10)
    first, last = statistics.median(values[:tenth]), statistics.median(values[-tenth:])
    return {
        "rss_first_mib": first,
        "rss_last_mib": last,
        "rss_max_mib": max(values),
        "rss_growth_pct": 100 * (last - first) / first,
    }


def phase_figures(answers: list[tuple[float, int, float]], seconds: float) -> dict:
    statuses = Counter(status for _, status, _ in answers)
    return {
        "requests": len(answers),
        "requests_per_s": len(answers) / seconds,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},  # -1: connection failed
        "errors": sum(n for status, n in statuses.items() if status != 200),
        "server_errors": sum(n for status, n in statuses.items() if status >= 500),
        "refused_429": statuses.get(429, 0),
        "accepted": summary([ms for _, status, ms in answers if status == 200]),
    }


def windows(answers: list[tuple[float, int, float]], width_s: float, end_s: float) -> list[dict]:
    """Per window of `width_s` (by send time, the last one cut at `end_s`): answers per second by
    status class, p50/p99 of the accepted ones."""
    buckets: dict[int, list[tuple[int, float]]] = {}
    for t, status, ms in answers:
        buckets.setdefault(int(t // width_s), []).append((status, ms))
    out = []
    for index in sorted(buckets):
        items, span = buckets[index], min(width_s, end_s - index * width_s)
        accepted = summary([ms for status, ms in items if status == 200])
        out.append(
            {
                "t_s": (index + 0.5) * width_s,
                "ok_per_s": sum(s == 200 for s, _ in items) / span,
                "refused_per_s": sum(s == 429 for s, _ in items) / span,
                "failed_per_s": sum(s != 200 and s != 429 for s, _ in items) / span,
                "p50_ms": accepted.get("p50_ms"),
                "p99_ms": accepted.get("p99_ms"),
            }
        )
    return out


def plot(report: dict, path: Path) -> None:
    from afrl.plotting import log_axis, pyplot, save

    series = report["series"]
    fig, axes = pyplot().subplots(3, 1, figsize=(10, 9), sharex=True)
    t, mib = zip(*series["rss"], strict=True)
    axes[0].plot(t, mib, color="tab:purple")
    axes[0].set_ylabel("server RSS (MiB)")
    axes[0].set_title(
        f"soak at {report['settings']['load']:g}x capacity, then overload at "
        f"{report['settings']['factor']:g}x; RSS growth {report['soak']['rss_growth_pct']:+.1f}%"
    )
    points = [w for w in series["windows"] if w["p50_ms"] is not None]
    axes[1].plot([w["t_s"] for w in points], [w["p50_ms"] for w in points], label="p50 (200)")
    axes[1].plot([w["t_s"] for w in points], [w["p99_ms"] for w in points], label="p99 (200)")
    log_axis(axes[1], "y")
    axes[1].set_ylabel("latency (ms)")
    axes[1].legend()
    for key, label in (("ok_per_s", "200"), ("refused_per_s", "429"), ("failed_per_s", "other (5xx, failed)")):
        axes[2].plot([w["t_s"] for w in series["windows"]], [w[key] for w in series["windows"]], label=label)
    axes[2].set_ylabel("answers / s")
    axes[2].set_xlabel("seconds since the soak began")
    axes[2].legend()
    for ax in axes:
        ax.axvline(report["series"]["soak_end_s"], color="grey", linestyle="--")
    save(fig, path)


def run(a: argparse.Namespace) -> int:
    env = env_settings(a.env)
    with running_server_process(a.model, env=env) as (url, server):
        unloaded, capacity = asyncio.run(
            measure_capacity(
                url, argparse.Namespace(documents=a.documents, seconds=a.capacity_seconds, concurrency=a.concurrency)
            )
        )
        print(
            f"capacity {capacity:.1f} req/s; soak at {a.load * capacity:.1f} req/s for {a.duration:g} s, "
            f"then {a.factor * capacity:.1f} req/s for {a.overload_seconds:g} s",
            flush=True,
        )
        series = asyncio.run(run_phases(url, server.pid, a, capacity))
    soak = {**phase_figures(series["soak"], a.duration), **rss_growth(series["rss"], series["soak_end_s"])}
    overload = phase_figures(series["overload"], a.overload_seconds)
    base = summary(unloaded)
    if overload["accepted"].get("n"):
        overload["p99_ratio_to_unloaded"] = overload["accepted"]["p99_ms"] / base["p99_ms"]
    report = {
        "settings": {
            "model": a.model or "default",
            "documents": a.documents,
            "load": a.load,
            "factor": a.factor,
            "duration_s": a.duration,
            "overload_s": a.overload_seconds,
            "env": env,
        },
        "capacity_req_per_s": capacity,
        "unloaded": base,
        "soak": soak,
        "overload": overload,
        "series": {
            "rss": series["rss"],
            "windows": windows(series["soak"] + series["overload"], a.window, series["end_s"]),
            "soak_end_s": series["soak_end_s"],
        },
    }
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "soak.json").write_text(json.dumps(report, indent=1))
    plot(report, a.out / "soak.png")
    print_table(
        f"{report['settings']['model']}: 1 query x {a.documents} documents, capacity {capacity:.1f} req/s",
        {
            "unloaded (concurrency 1)": base,
            f"soak {a.load:g}x: accepted": soak["accepted"],
            f"overload {a.factor:g}x: accepted": overload["accepted"],
        },
    )
    print(
        f"  soak: {soak['requests']} requests, statuses {soak['statuses']}, errors {soak['errors']}; RSS "
        f"{soak['rss_first_mib']:.1f} -> {soak['rss_last_mib']:.1f} MiB ({soak['rss_growth_pct']:+.2f}%), "
        f"max {soak['rss_max_mib']:.1f} MiB"
    )
    print(
        f"  overload: {overload['requests']} requests, statuses {overload['statuses']}, 429s "
        f"{overload['refused_429']}, 5xx {overload['server_errors']}, p99 accepted / unloaded "
        f"{overload.get('p99_ratio_to_unloaded', float('nan')):.2f}"
    )
    print(f"  wrote {a.out / 'soak.json'} and {a.out / 'soak.png'}")
    return 0
