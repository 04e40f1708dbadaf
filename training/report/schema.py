"""The typed report of a training run: what `report.json` and `stage_report.json` hold.

Evaluation documents (`training.evaluate.reports.grade_report`, the same
layout `afrl eval` writes) are read by key in one place, `Figures.of`;
everything else reads the typed fields.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from training.evaluate.torch_model import ModelSize
from training.evolution import EvolutionRound, GuidelineEvolution


@dataclass(frozen=True)
class Figures:
    """The headline figures of one model on one split."""

    examples: int
    accuracy: float
    majority_baseline_accuracy: float
    macro_f1: float
    quadratic_weighted_kappa: float
    expected_calibration_error: float
    mean_label_entropy: float
    predicted_grade_entropy: float
    ndcg_at_10: float | None = None
    category_heuristic_accuracy: float | None = None  # the one-cue baselines (training.evaluate.baselines)
    pair_table_heuristic_accuracy: float | None = None
    head_accuracy: float | None = None
    long_tail_accuracy: float | None = None
    long_tail_label_entropy: float | None = None
    format_validity: float | None = None  # the explanation figures: None when none were generated
    first_token_conclusion_agreement: float | None = None
    decisive_rule_recall: float | None = None
    per_rule_accuracy: dict[str, float] = field(default_factory=dict)  # by deciding rule

    @classmethod
    def of(cls, evaluation: Mapping[str, Any]) -> Figures:
        """From an evaluation document (`grade_report`, with `explanations` when generated)."""
        explained = evaluation.get("explanations") or {}
        return cls(
            examples=evaluation["examples"],
            accuracy=evaluation["accuracy"],
            majority_baseline_accuracy=evaluation["majority_baseline_accuracy"],
            macro_f1=evaluation["macro_f1"],
            quadratic_weighted_kappa=evaluation["quadratic_weighted_kappa"],
            expected_calibration_error=evaluation["expected_calibration_error"],
            mean_label_entropy=evaluation["mean_label_entropy"],
            predicted_grade_entropy=evaluation["predicted_grade_entropy"],
            ndcg_at_10=evaluation.get("ndcg@10"),
            category_heuristic_accuracy=evaluation.get("category_heuristic_accuracy"),
            pair_table_heuristic_accuracy=evaluation.get("pair_table_heuristic_accuracy"),
            head_accuracy=evaluation.get("head_accuracy"),
            long_tail_accuracy=evaluation.get("long_tail_accuracy"),
            long_tail_label_entropy=evaluation.get("long_tail_label_entropy"),
            format_validity=explained.get("format_validity"),
            first_token_conclusion_agreement=explained.get("first_token_conclusion_agreement"),
            decisive_rule_recall=explained.get("decisive_rule_recall"),
            per_rule_accuracy={r: row["accuracy"] for r, row in evaluation.get("per_rule", {}).items()},
        )


@dataclass(frozen=True)
class StageEnd:
    name: str
    end_step: int  # the last step of the stage on the concatenated loss curve


@dataclass
class SFTSummary:
    losses: list[float]  # every step, stages concatenated
    stages: list[StageEnd] = field(default_factory=list)
    seconds: float | None = None

    @property
    def first_loss(self) -> float:
        return self.losses[0]

    @property
    def last_loss(self) -> float:
        """Mean of the last 10 steps (single steps are noisy)."""
        tail = self.losses[-10:]
        return sum(tail) / len(tail)


@dataclass
class ArmResult:
    """One model of the method's comparison: its test figures and how it was trained."""

    title: str
    figures: Figures
    seconds: float | None = None  # None: the shared starting point, not trained here
    steps: int | None = None
    history: list[dict[str, float]] = field(default_factory=list)  # one row per step (loss, rewards, ...)


@dataclass
class DistillationSummary:
    teacher: Figures
    student: Figures
    teacher_source: str
    sizes: dict[str, ModelSize]  # "teacher", "student"
    latency_ms_per_query_of_10_docs: dict[str, float]
    sequences: int  # teacher outputs the student learned from
    dropped: dict[str, int]  # teacher outputs left out, per reason
    teacher_seconds: float
    student_seconds: float

    @property
    def accuracy_gap_points(self) -> float:
        return 100 * (self.teacher.accuracy - self.student.accuracy)


@dataclass
class PipelineReport:
    """`afrl train pipeline`: what was trained on what, how it scored on the test split, what was shipped."""

    config: Any  # the PipelineConfig that ran
    data: str  # the data source
    body_parameters: int  # of the shipped model
    sft: SFTSummary
    test: Figures  # the shipped model (the distilled student when the method ran)
    evaluations: dict[str, dict]  # model -> its full evaluation document
    export_parity: dict[str, float]
    timings: dict[str, float]
    comparison: dict[str, ArmResult] = field(default_factory=dict)  # the method: base, sft, grpo, mbo
    evolution: list[EvolutionRound] = field(default_factory=list)
    evolved_examples: int = 0
    guideline_evolution: GuidelineEvolution | None = None  # the edit log (also guideline_evolution.json)
    distillation: DistillationSummary | None = None

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["sft"].update(first_loss=self.sft.first_loss, last_loss=self.sft.last_loss)
        if self.distillation is not None:
            body["distillation"]["accuracy_gap_points"] = self.distillation.accuracy_gap_points
        return body

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps(self.to_json(), indent=2, default=str))
        return path


@dataclass
class StageReport:
    """`afrl train sft|rl|distill`: `stage_report.json` beside the checkpoint."""

    stage: str
    engine: str
    checkpoint: str
    data: str
    start: str  # what the stage started from (a checkpoint, or a random init)
    test: Figures | None  # None: a sharded (FSDP, ZeRO-3) run; measure the folder with `afrl eval`
    evaluation: dict | None = None  # the full evaluation document
    losses: list[float] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    teacher: str | None = None  # distill: the teacher's name
    sequences: int | None = None  # distill: teacher outputs learned from
    dropped: dict[str, int] = field(default_factory=dict)  # distill: teacher outputs left out, per reason
    seconds: float = 0.0
    processes: int = 1  # training processes (`accelerate launch --num_processes`; the trl engine)

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps(asdict(self), indent=2, default=str))
        return path
