"""The report of a training run: typed records (`schema`), figures (`figures`) and `report.md` (`markdown`)."""

from __future__ import annotations

from pathlib import Path

from training.report.schema import (
    ArmResult,
    DistillationSummary,
    Figures,
    PipelineReport,
    SFTSummary,
    StageEnd,
    StageReport,
)

__all__ = [
    "ArmResult",
    "DistillationSummary",
    "Figures",
    "PipelineReport",
    "SFTSummary",
    "StageEnd",
    "StageReport",
    "write_report",
]


def write_report(report: PipelineReport, out_dir: Path) -> None:
    """report.json, the figures, and report.md when the method ran."""
    from training.report.figures import write_figures  # matplotlib: only when writing
    from training.report.markdown import write_markdown

    report.write(out_dir / "report.json")
    write_figures(report, out_dir)
    if report.comparison:
        write_markdown(report, out_dir / "report.md")
