"""Locust's final statistics -> the load test's figures: one row per request kind and one for all, a plot.

    load.csv   kind, documents, stream, requests, failures, rejected, requests_per_s, pairs_per_s,
               p50_ms, p95_ms, p99_ms
    load.png   latency percentiles per kind (left), throughput second by second (right)

Read from locust's `--json-file` output, written once at shutdown with
every request (its `--csv` files are snapshots written each second and can
miss the last ones). Response times are locust's (rounded to two significant
digits above 100 ms); requests/s is requests answered per second of the
run (requests cut off by its end are not counted); pairs/s is requests/s times the documents of each request:
the work done, whatever the mix. "all" pools every request.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from bench.load_mix import REJECTED, RequestKind


@dataclass(frozen=True)
class LoadRow:
    kind: str
    documents: int | None  # None for the "all" row
    stream: bool | None
    requests: int  # answered (not refused with 429)
    failures: int  # answered with an error
    rejected: int  # refused with 429
    requests_per_s: float
    pairs_per_s: float
    p50_ms: float | None  # None: no request of this kind finished
    p95_ms: float | None
    p99_ms: float | None


def percentile(histogram: dict[float, int], q: float) -> float | None:
    """The smallest response time at or above which lies a share `1 - q` of the requests (locust's way)."""
    total = sum(histogram.values())
    if not total:
        return None
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= q * total:
            return value
    return max(histogram)


def _merge(histograms: list[dict[float, int]]) -> dict[float, int]:
    merged: dict[float, int] = {}
    for histogram in histograms:
        for value, count in histogram.items():
            merged[value] = merged.get(value, 0) + count
    return merged


def _row(
    kind: str,
    documents: int | None,
    stream: bool | None,
    entry: dict,
    rejected: int,
    histogram: dict[float, int],
    seconds: float,
) -> LoadRow:
    rps = entry["num_requests"] / seconds if seconds > 0 else 0.0
    return LoadRow(
        kind,
        documents,
        stream,
        entry["num_requests"],
        entry["num_failures"],
        rejected,
        rps,
        rps * (documents or 0),
        percentile(histogram, 0.50),
        percentile(histogram, 0.95),
        percentile(histogram, 0.99),
    )


def read_stats(stats_json: Path, kinds: list[RequestKind], seconds: float) -> list[LoadRow]:
    """Rows in the mix's order (kinds that never ran included, with zeros), then "all"; `seconds`: the run's."""
    entries = {e["name"]: e for e in json.loads(Path(stats_json).read_text())}
    if not entries:
        raise ValueError(f"{stats_json}: locust recorded no request")
    none = {"num_requests": 0, "num_failures": 0, "response_times": {}}
    answered = {k.name: entries.get(k.name, none) for k in kinds}
    histograms = {name: {float(t): n for t, n in e["response_times"].items()} for name, e in answered.items()}
    rows = [
        _row(
            k.name,
            k.documents,
            k.stream,
            answered[k.name],
            entries.get(k.name + REJECTED, none)["num_requests"],
            histograms[k.name],
            seconds,
        )
        for k in kinds
    ]
    total = {key: sum(e[key] for e in answered.values()) for key in ("num_requests", "num_failures")}
    row = _row("all", None, None, total, sum(r.rejected for r in rows), _merge(list(histograms.values())), seconds)
    rows.append(LoadRow(**{**asdict(row), "pairs_per_s": sum(r.pairs_per_s for r in rows)}))
    return rows


def read_history(stats_json: Path) -> list[tuple[int, int, int, int]]:
    """(seconds since the first request, answered, failed, refused) second by second, all kinds together."""
    entries = json.loads(Path(stats_json).read_text())

    def per_second(key: str, refused: bool) -> dict[int, int]:
        chosen = [e for e in entries if e["name"].endswith(REJECTED) == refused]
        return _merge([{int(t): n for t, n in e[key].items()} for e in chosen])

    answered, failed, refused = (
        per_second("num_reqs_per_sec", False),
        per_second("num_fail_per_sec", False),
        per_second("num_reqs_per_sec", True),
    )
    seconds = set(answered) | set(refused)
    if not seconds:
        return []
    first = min(seconds)
    return [
        (t - first, answered.get(t, 0), failed.get(t, 0), refused.get(t, 0)) for t in range(first, max(seconds) + 1)
    ]


def write_csv(rows: list[LoadRow], path: Path) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[f.name for f in fields(LoadRow)])
        writer.writeheader()
        writer.writerows({k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(r).items()} for r in rows)
    return path


def plot(rows: list[LoadRow], history: list[tuple[int, int, int, int]], path: Path, title: str) -> Path:
    from afrl.plotting import log_axis, pyplot, save

    shown = [r for r in rows if r.p50_ms is not None]
    fig, (left, right) = pyplot().subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    width = 0.27
    for i, (name, values) in enumerate(
        (
            ("p50", [r.p50_ms for r in shown]),
            ("p95", [r.p95_ms or 0 for r in shown]),
            ("p99", [r.p99_ms or 0 for r in shown]),
        )
    ):
        left.bar([x + (i - 1) * width for x in range(len(shown))], values, width, label=name)
    left.set_xticks(range(len(shown)), [r.kind.replace(" stream+", "\nstream+") for r in shown], fontsize=7)
    log_axis(left, "y")
    left.set_ylabel("latency (ms, log scale)")
    left.legend()
    left.set_title("latency per request kind")
    if history:
        seconds = [h[0] for h in history]
        for column, label in ((1, "answered/s"), (2, "failed/s"), (3, "refused (429)/s")):
            right.plot(seconds, [h[column] for h in history], label=label)
        right.set_xlabel("seconds")
        right.legend()
    total = rows[-1]
    right.set_title(
        f"{total.requests_per_s:.1f} req/s, {total.pairs_per_s:.0f} pairs/s, {total.failures} failed, "
        f"{total.rejected} refused (429)",
        fontsize=9,
    )
    fig.suptitle(title, fontsize=10)
    return save(fig, path)


def format_table(rows: list[LoadRow]) -> str:
    def ms(value: float | None) -> str:
        return f"{value:8.0f}" if value is not None else "       -"

    lines = [
        f"{'kind':28s} {'answered':>8s} {'fail':>5s} {'429':>5s} {'req/s':>7s} {'pairs/s':>8s} "
        f"{'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s}"
    ]
    for r in rows:
        lines.append(
            f"{r.kind:28s} {r.requests:8d} {r.failures:5d} {r.rejected:5d} {r.requests_per_s:7.2f} "
            f"{r.pairs_per_s:8.1f} {ms(r.p50_ms)} {ms(r.p95_ms)} {ms(r.p99_ms)}"
        )
    return "\n".join(lines)
