"""Figures and a readable summary of a method run (`training.method.run_method`).

comparison.png   head / long-tail accuracy and label entropy: before, SFT alone, GRPO alone,
                 mode-balanced, and the distilled student
per_rule.png     accuracy per deciding rule for the three arms (long-tail rules marked *)
rl_curves.png    per-step rewards and sampled-grade accuracy of the two RL arms
evolution.png    per round: error on the targeted rules before / after
sft_loss.png     the teacher's curriculum loss with stage boundaries
report.md        the same figures as tables
"""

from __future__ import annotations

import logging
from pathlib import Path

from training.world.rules import RULES

log = logging.getLogger(__name__)

ROWS = (
    ("base", "before (curriculum SFT)"),
    ("sft", "SFT alone"),
    ("grpo", "Stepwise-GRPO alone (lambda=0)"),
    ("mbo", "mode-balanced (teacher)"),
    ("student", "distilled student"),
)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_figures(report: dict, sft_losses: list[float], out_dir: Path) -> None:
    plt = _plt()
    _comparison(plt, report, out_dir / "comparison.png")
    _per_rule(plt, report, out_dir / "per_rule.png")
    if report["rl_history"]:
        _rl_curves(plt, report["rl_history"], out_dir / "rl_curves.png")
    if report["evolution"]:
        _evolution(plt, report["evolution"], out_dir / "evolution.png")
    _sft_loss(plt, sft_losses, report["sft"]["stages"], out_dir / "sft_loss.png")


def _rows(report: dict) -> list[tuple[str, str, dict]]:
    summaries = {**report["comparison"], "student": report["distillation"]["student"]}
    return [(key, title, summaries[key]) for key, title in ROWS if key in summaries]


def _comparison(plt, report: dict, path: Path) -> None:
    rows = _rows(report)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    x = range(len(rows))
    w = 0.38
    head = [r[2]["head_accuracy"] or 0 for r in rows]
    tail = [r[2]["long_tail_accuracy"] or 0 for r in rows]
    ax1.bar([i - w / 2 for i in x], head, w, label="head accuracy")
    ax1.bar([i + w / 2 for i in x], tail, w, label="long-tail accuracy")
    for i, (h, t) in enumerate(zip(head, tail, strict=True)):
        ax1.text(i - w / 2, h + 0.01, f"{h:.2f}", ha="center", fontsize=7)
        ax1.text(i + w / 2, t + 0.01, f"{t:.2f}", ha="center", fontsize=7)
    ax1.set_xticks(list(x), [r[1] for r in rows], rotation=20, ha="right", fontsize=8)
    ax1.set_ylim(0, 1.05)
    ax1.set_title("test accuracy (same number of steps per arm)")
    ax1.legend(fontsize=8)
    ent = [r[2]["mean_label_entropy"] for r in rows]
    tail_ent = [r[2]["long_tail_label_entropy"] or 0 for r in rows]
    ax2.bar([i - w / 2 for i in x], ent, w, label="all test examples")
    ax2.bar([i + w / 2 for i in x], tail_ent, w, label="long-tail examples")
    ax2.set_xticks(list(x), [r[1] for r in rows], rotation=20, ha="right", fontsize=8)
    ax2.set_title("mean label entropy (nats; max ln 5 = 1.61)")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _per_rule(plt, report: dict, path: Path) -> None:
    arms = [k for k in ("base", "sft", "grpo", "mbo") if k in report["evaluations"]]
    rules = sorted({r for k in arms for r in report["evaluations"][k].get("per_rule", {})}, key=lambda r: int(r[1:]))
    fig, ax = plt.subplots(figsize=(12, 4))
    w = 0.8 / len(arms)
    for j, arm in enumerate(arms):
        table = report["evaluations"][arm].get("per_rule", {})
        ax.bar(
            [i + j * w for i in range(len(rules))],
            [table.get(r, {}).get("accuracy", 0) for r in rules],
            w,
            label=dict(ROWS)[arm],
        )
    ax.set_xticks(
        [i + 0.4 - w / 2 for i in range(len(rules))],
        [r + ("*" if RULES[r].long_tail else "") for r in rules],
        fontsize=8,
    )
    ax.set_ylabel("accuracy where the rule decided")
    ax.set_title("per-rule test accuracy (* long-tail rule)")
    ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _rl_curves(plt, histories: dict, path: Path) -> None:
    keys = (
        ("reward_grade", "grade reward"),
        ("reward_rules", "rules reward"),
        ("sample_grade_accuracy", "sampled-grade accuracy"),
        ("expert_nll", "expert NLL (measured in both arms)"),
    )
    fig, axes = plt.subplots(1, len(keys), figsize=(14, 3.2))
    for ax, (key, title) in zip(axes, keys, strict=True):
        for arm, history in histories.items():
            if history and key in history[0] and all(h[key] == h[key] for h in history):  # skip NaN series
                ys = [h[key] for h in history]
                k = max(1, len(ys) // 8)  # moving average: rollouts are noisy
                smooth = [
                    sum(ys[max(0, i - k + 1) : i + 1]) / len(ys[max(0, i - k + 1) : i + 1]) for i in range(len(ys))
                ]
                ax.plot(range(1, len(ys) + 1), smooth, label=dict(ROWS).get(arm, arm))
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _evolution(plt, rounds: list[dict], path: Path) -> None:
    labels, before, after, v_before, v_after = [], [], [], [], []
    for r in rounds:
        for rule, row in r.get("targets", {}).items():
            labels.append(f"r{r['round']} {rule}")
            before.append(row["probe_error_before"])
            after.append(row["probe_error_after"] or 0)
            v_before.append(row["variant_error_before"] or 0)
            v_after.append(row["variant_error_after"] or 0)
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(labels)), 3.5))
    w = 0.2
    x = range(len(labels))
    for j, (ys, name) in enumerate(
        (
            (before, "probe error before"),
            (after, "probe error after"),
            (v_before, "held-out variants before"),
            (v_after, "held-out variants after"),
        )
    ):
        ax.bar([i + (j - 1.5) * w for i in x], ys, w, label=name)
    ax.set_xticks(list(x), labels, fontsize=8, rotation=30, ha="right")
    ax.set_ylabel("error on the targeted rule")
    ax.set_title("instruction evolution: targeted rules per round")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _sft_loss(plt, losses: list[float], stages: list[dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(range(1, len(losses) + 1), losses, lw=0.8)
    for s in stages:
        ax.axvline(s["end_step"], color="grey", lw=0.6, ls="--")
        ax.text(s["end_step"], max(losses) * 0.95, s["name"], rotation=90, fontsize=7, ha="right", va="top")
    ax.set_xlabel("step")
    ax.set_ylabel("completion NLL (weighted)")
    ax.set_title("teacher SFT loss through the curriculum")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _f(x, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def write_markdown(report: dict, path: Path) -> None:
    lines = [
        "# AFRL method run",
        "",
        "## SFT alone vs Stepwise-GRPO alone vs mode-balanced (test split)",
        "",
        "Same base checkpoint (after the curriculum), same number of optimizer steps per arm.",
        "",
        "Label entropy: mean entropy (nats) of each example's grade distribution; grade-histogram entropy: "
        "entropy of the predicted grades over the split (low = collapsed onto few grades).",
        "",
        "| model | accuracy | head acc | long-tail acc | label entropy | long-tail entropy | grade-histogram "
        "entropy | QWK | NDCG@10 | ECE | format valid | agree | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, title, s in _rows(report):
        lines.append(
            f"| {title} | {_f(s['accuracy'])} | {_f(s['head_accuracy'])} | {_f(s['long_tail_accuracy'])} "
            f"| {_f(s['mean_label_entropy'])} | {_f(s['long_tail_label_entropy'])} "
            f"| {_f(s['predicted_grade_entropy'])} | {_f(s['quadratic_weighted_kappa'])} | {_f(s['ndcg@10'])} "
            f"| {_f(s['expected_calibration_error'])} "
            f"| {_f(s.get('format_validity'))} | {_f(s.get('first_token_conclusion_agreement'))} "
            f"| {_f(s.get('seconds'), 0)} |"
        )
    d = report["distillation"]
    lines += [
        "",
        "## Distillation",
        "",
        f"Teacher ({d['teacher_source']}) accuracy {_f(d['teacher']['accuracy'])}, student "
        f"{_f(d['student']['accuracy'])}: gap {d['accuracy_gap_points']:.1f} points.",
        "",
        "| model | parameters | body parameters | weights (MB) | ms per query of 10 docs (torch, full prompts) |",
        "|---|---|---|---|---|",
    ]
    for name in ("teacher", "student"):
        s = d["sizes"][name]
        lines.append(
            f"| {name} | {s['parameters']:,} | {s['body_parameters']:,} | {s['weights_mb']:.1f} "
            f"| {d['latency_ms_per_query_of_10_docs'][name]:.1f} |"
        )
    if report["evolution"]:
        lines += [
            "",
            "## Instruction evolution",
            "",
            "| round | rule | support | probe error before | after | held-out variants before | after | variants |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in report["evolution"]:
            for rule, row in r.get("targets", {}).items():
                lines.append(
                    f"| {r['round']} | {rule}{'*' if RULES[rule].long_tail else ''} | {row['support']} "
                    f"| {_f(row['probe_error_before'])} | {_f(row['probe_error_after'])} "
                    f"| {_f(row['variant_error_before'])} | {_f(row['variant_error_after'])} "
                    f"| {row['variants']} |"
                )
            lines.append(
                f"| {r['round']} | accepted per operator: {r.get('accepted_per_operator')}; "
                f"rejected: {r.get('rejected')} | | | | | | |"
            )
    lines += ["", "## Timings (s)", "", " ".join(f"{k}={v:.0f}" for k, v in report["timings"].items()), ""]
    path.write_text("\n".join(lines))
