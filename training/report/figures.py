"""Figures of a pipeline run (`training.report.schema.PipelineReport`).

sft_loss.png     the SFT loss (with the method: the teacher's curriculum, stage boundaries marked)
comparison.png   head / long-tail accuracy and label entropy: before, SFT alone, GRPO alone,
                 mode-balanced, and the distilled student
per_rule.png     accuracy per deciding rule for the three arms (long-tail rules marked *)
rl_curves.png    per-step rewards and sampled-grade accuracy of the two RL arms
evolution.png    per round: error on the targeted rules before / after
"""

from __future__ import annotations

import logging
from pathlib import Path

from training.evolution import EvolutionRound
from training.report.schema import ArmResult, Figures, PipelineReport, StageEnd
from training.world.rules import RULES

log = logging.getLogger(__name__)

STUDENT_TITLE = "distilled student"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_figures(report: PipelineReport, out_dir: Path) -> None:
    plt = _plt()
    title = "teacher SFT loss through the curriculum" if report.comparison else "SFT loss"
    _sft_loss(plt, report.sft.losses, report.sft.stages, title, out_dir / "sft_loss.png")
    if report.comparison:
        _comparison(plt, report, out_dir / "comparison.png")
        _per_rule(plt, report.comparison, out_dir / "per_rule.png")
        rl_arms = {arm: a.history for arm, a in report.comparison.items() if arm in ("grpo", "mbo")}
        if rl_arms:
            _rl_curves(plt, report.comparison, rl_arms, out_dir / "rl_curves.png")
    if report.evolution:
        _evolution(plt, report.evolution, out_dir / "evolution.png")


def rows(report: PipelineReport) -> list[tuple[str, Figures, ArmResult | None]]:
    """(title, figures, arm) of every compared model, the distilled student last."""
    out: list[tuple[str, Figures, ArmResult | None]] = [(a.title, a.figures, a) for a in report.comparison.values()]
    if report.distillation is not None:
        out.append((STUDENT_TITLE, report.distillation.student, None))
    return out


def _comparison(plt, report: PipelineReport, path: Path) -> None:
    table = rows(report)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    x = range(len(table))
    w = 0.38
    head = [f.head_accuracy or 0 for _, f, _ in table]
    tail = [f.long_tail_accuracy or 0 for _, f, _ in table]
    ax1.bar([i - w / 2 for i in x], head, w, label="head accuracy")
    ax1.bar([i + w / 2 for i in x], tail, w, label="long-tail accuracy")
    for i, (h, t) in enumerate(zip(head, tail, strict=True)):
        ax1.text(i - w / 2, h + 0.01, f"{h:.2f}", ha="center", fontsize=7)
        ax1.text(i + w / 2, t + 0.01, f"{t:.2f}", ha="center", fontsize=7)
    titles = [t for t, _, _ in table]
    ax1.set_xticks(list(x), titles, rotation=20, ha="right", fontsize=8)
    ax1.set_ylim(0, 1.05)
    ax1.set_title("test accuracy (same number of steps per arm)")
    ax1.legend(fontsize=8)
    ent = [f.mean_label_entropy for _, f, _ in table]
    tail_ent = [f.long_tail_label_entropy or 0 for _, f, _ in table]
    ax2.bar([i - w / 2 for i in x], ent, w, label="all test examples")
    ax2.bar([i + w / 2 for i in x], tail_ent, w, label="long-tail examples")
    ax2.set_xticks(list(x), titles, rotation=20, ha="right", fontsize=8)
    ax2.set_title("mean label entropy (nats; max ln 5 = 1.61)")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _per_rule(plt, arms: dict[str, ArmResult], path: Path) -> None:
    rules = sorted({r for a in arms.values() for r in a.figures.per_rule_accuracy}, key=lambda r: int(r[1:]))
    fig, ax = plt.subplots(figsize=(12, 4))
    w = 0.8 / len(arms)
    for j, arm in enumerate(arms.values()):
        table = arm.figures.per_rule_accuracy
        ax.bar([i + j * w for i in range(len(rules))], [table.get(r, 0) for r in rules], w, label=arm.title)
    ax.set_xticks(
        [i + 0.4 - w / 2 for i in range(len(rules))],
        [r + ("*" if r in RULES and RULES[r].long_tail else "") for r in rules],
        fontsize=8,
    )
    ax.set_ylabel("accuracy where the rule decided")
    ax.set_title("per-rule test accuracy (* long-tail rule)")
    ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _rl_curves(plt, arms: dict[str, ArmResult], histories: dict[str, list[dict]], path: Path) -> None:
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
                ax.plot(range(1, len(ys) + 1), smooth, label=arms[arm].title)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _evolution(plt, rounds: list[EvolutionRound], path: Path) -> None:
    labels, before, after, v_before, v_after = [], [], [], [], []
    for r in rounds:
        for rule, row in r.targets.items():
            labels.append(f"r{r.round} {rule}")
            before.append(row.probe_error_before)
            after.append(row.probe_error_after or 0)
            v_before.append(row.variant_error_before or 0)
            v_after.append(row.variant_error_after or 0)
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


def _sft_loss(plt, losses: list[float], stages: list[StageEnd], title: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(range(1, len(losses) + 1), losses, lw=0.8)
    for s in stages:
        ax.axvline(s.end_step, color="grey", lw=0.6, ls="--")
        ax.text(s.end_step, max(losses) * 0.95, s.name, rotation=90, fontsize=7, ha="right", va="top")
    ax.set_xlabel("step")
    ax.set_ylabel("completion NLL (weighted)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
