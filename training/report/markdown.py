"""`report.md` of a method run: the comparison, distillation and evolution figures as tables."""

from __future__ import annotations

from pathlib import Path

from training.report.figures import rows
from training.report.schema import PipelineReport
from training.world.rules import RULES


def _f(x, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def write_markdown(report: PipelineReport, path: Path) -> None:
    lines = [
        "# AFRL method run",
        "",
        "## SFT alone vs Stepwise-GRPO alone vs mode-balanced (test split)",
        "",
        "Same base checkpoint (after the curriculum); at every step the same prompts and expert demonstrations, "
        "the same optimizer and number of steps per arm: the arms differ in objective only.",
        "",
        "Label entropy: mean entropy (nats) of each example's grade distribution; grade-histogram entropy: "
        "entropy of the predicted grades over the split (low = collapsed onto few grades).",
        "",
        "| model | accuracy | head acc | long-tail acc | label entropy | long-tail entropy | grade-histogram "
        "entropy | QWK | NDCG@10 | ECE | format valid | agree | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for title, s, arm in rows(report):
        lines.append(
            f"| {title} | {_f(s.accuracy)} | {_f(s.head_accuracy)} | {_f(s.long_tail_accuracy)} "
            f"| {_f(s.mean_label_entropy)} | {_f(s.long_tail_label_entropy)} "
            f"| {_f(s.predicted_grade_entropy)} | {_f(s.quadratic_weighted_kappa)} | {_f(s.ndcg_at_10)} "
            f"| {_f(s.expected_calibration_error)} "
            f"| {_f(s.format_validity)} | {_f(s.first_token_conclusion_agreement)} "
            f"| {_f(arm.seconds if arm else None, 0)} |"
        )
    d = report.distillation
    if d is not None:
        lines += [
            "",
            "## Distillation",
            "",
            f"Teacher ({d.teacher_source}) accuracy {_f(d.teacher.accuracy)}, student "
            f"{_f(d.student.accuracy)}: gap {d.accuracy_gap_points:.1f} points.",
            "",
            "| model | parameters | body parameters | weights (MB) | ms per query of 10 docs (torch, full prompts) |",
            "|---|---|---|---|---|",
        ]
        for name in ("teacher", "student"):
            size = d.sizes[name]
            lines.append(
                f"| {name} | {size.parameters:,} | {size.body_parameters:,} | {size.weights_mb:.1f} "
                f"| {d.latency_ms_per_query_of_10_docs[name]:.1f} |"
            )
    if report.evolution:
        lines += [
            "",
            "## Instruction evolution",
            "",
            "| round | rule | support | probe error before | after | held-out variants before | after | variants |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in report.evolution:
            for rule, row in r.targets.items():
                lines.append(
                    f"| {r.round} | {rule}{'*' if RULES[rule].long_tail else ''} | {row.support} "
                    f"| {_f(row.probe_error_before)} | {_f(row.probe_error_after)} "
                    f"| {_f(row.variant_error_before)} | {_f(row.variant_error_after)} "
                    f"| {row.variants} |"
                )
            lines.append(
                f"| {r.round} | accepted per operator: {r.accepted_per_operator}; rejected: {r.rejected} | | | | | | |"
            )
    g = report.guideline_evolution
    if g is not None:
        lines += [
            "",
            "## Guideline evolution",
            "",
            f"Proposer: {g.proposer}; {g.steps} SFT steps per arm from the same model; {g.choose_examples} dev "
            f"examples pick rules, {g.accept_examples} others measure agreement; an edit is kept when it beats the "
            f"control by more than {g.min_gain:g} + {g.z:g} paired standard errors. {g.accepted} of "
            f"{len(g.rounds)} kept; the shipped model's guideline is the final one (guideline_evolution.json).",
            "",
            "| round | edit | rules | control agreement | edit agreement | difference | margin | kept |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in g.rounds:
            what = f"{row.kind}: {row.description}" if row.kind else "-"
            if row.note:
                what += f" ({row.note})"
            lines.append(
                f"| {row.round} | {what.replace('|', '/')} | {', '.join(row.rules)} | {_f(row.control_agreement)} "
                f"| {_f(row.edit_agreement)} | {_f(row.difference)} | {_f(row.margin)} "
                f"| {'yes' if row.accepted else 'no'} |"
            )
    lines += ["", "## Timings (s)", "", " ".join(f"{k}={v:.0f}" for k, v in report.timings.items()), ""]
    path.write_text("\n".join(lines))
