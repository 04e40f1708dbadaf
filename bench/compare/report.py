"""The comparison as a table (stdout), JSON (compare.json) and a bar plot (compare.png)."""

from __future__ import annotations

import math
from importlib import metadata
from pathlib import Path

from bench.compare.timing import PathResult

PACKAGES = ("torch", "transformers", "onnxruntime", "optimum-onnx", "optimum", "llama_cpp_python")


def versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def rows(results: list[PathResult], reference: str) -> list[dict]:
    """One dict per path: figures, ratio to the reference path's pairs/s."""
    base = next((r.pairs_per_s for r in results if r.key == reference and r.seconds), math.nan)
    out = []
    for r in results:
        row = {"key": r.key, "label": r.label, "dtype": r.dtype}
        if r.seconds:
            row.update(
                p50_ms=round(r.p50_ms, 2),
                mean_ms=round(sum(r.seconds) / len(r.seconds) * 1000, 2),
                pairs_per_s=round(r.pairs_per_s, 3),
                vs_naive_fp32=round(r.pairs_per_s / base, 2),
                seconds=[round(s, 6) for s in r.seconds],
            )
        row.update(r.checks)
        if r.note:
            row["note"] = r.note
        if r.error:
            row["error"] = r.error
        out.append(row)
    return out


def format_table(table: list[dict]) -> str:
    lines = [f"{'path':48s} {'dtype':5s} {'p50 ms':>9s} {'pairs/s':>8s} {'x naive':>8s} {'grades =':>9s}"]
    for row in table:
        if "error" in row:
            lines.append(f"{row['label']:48s} {row['dtype']:5s} failed: {row['error']}")
            continue
        agree = row.get("grade_agreement")
        lines.append(
            f"{row['label']:48s} {row['dtype']:5s} {row['p50_ms']:9.1f} {row['pairs_per_s']:8.2f} "
            f"{row['vs_naive_fp32']:7.2f}x {'' if agree is None else f'{agree:9.2f}'}"
        )
    return "\n".join(lines)


def plot(report: dict, path: Path) -> Path:
    """compare.png from what compare.json holds (so a saved run can be drawn again)."""
    from afrl.plotting import log_axis, pyplot, save

    request, threads = report["request"], report["threads"]["onnxruntime_intra_op"]
    title = (
        f"{report['model']['name']}: 1 query x {request['documents']} documents, guideline "
        f"{request['guideline_tokens']} tokens, {threads} threads, median of {report['config']['repeats']}"
    )
    shown = [r for r in report["table"] if "pairs_per_s" in r][::-1]  # first path on top
    rates = [r["pairs_per_s"] for r in shown]
    fig, ax = pyplot().subplots(figsize=(9, 0.45 * len(shown) + 1.6))
    colors = ["tab:blue" if r["key"].startswith("engine") else "tab:gray" for r in shown]
    ax.barh([f"{r['label']} ({r['dtype']})" for r in shown], rates, color=colors)
    for y, r in enumerate(shown):
        ax.text(r["pairs_per_s"], y, f" {r['pairs_per_s']:.2f}/s ({r['vs_naive_fp32']:.1f}x)", va="center", fontsize=8)
    ax.set_xlim(min(rates) / 2, max(rates) * 3)  # the slowest bar visible; room for the labels on the right
    log_axis(ax, "x")
    ax.set_xlabel("(query, document) pairs per second, log scale (higher is better)")
    ax.tick_params(axis="y", labelsize=8)
    ax.set_title(title, fontsize=9)
    return save(fig, path)
