"""`afrl eval`: measure a model artifact exactly as it is served, or a training checkpoint.

An artifact's grades go through the service's own loader and engine (ONNX
Runtime, the artifact's tokenizer and prompt), so the figures describe what
`afrl serve` returns; the metrics come from `training.metrics`, which needs
no torch. A training checkpoint (a folder with afrl.json) is scored with
torch (`training.model_eval`).

Explanation figures (format validity, first-token vs conclusion agreement,
decisive-rule recall) need generated text: greedy decoding with torch from
the checkpoint, for a checkpoint, or for an artifact whose manifest names a
source checkpoint that is still on disk (`--explain N` examples, 0 = skip).

`--data` is a split of the generated world, a dataset folder (its `--split`,
default test; the majority baseline answers its train split's most frequent
grade) or a .jsonl file (every row; the baseline comes from those rows). A
folder or file is read and checked by `afrl.dataset` before any model loads,
against the model's label set. Rows without rule ids or long-tail marks are
measured all the same; the slices they lack read "n/a" over 0 rows.

Writes eval.json, confusion.png and eval.png (calibration, per-rule accuracy).
Nothing of `training/` (or torch) is imported until a command needs it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from afrl.dataset import SPLITS, Example, load_dataset
from afrl.scoring import GradeResult

log = logging.getLogger(__name__)

NOT_AVAILABLE = "n/a"


@dataclass(frozen=True)
class EvalData:
    """The rows to evaluate, the grades the majority baseline is taken from, and where both came from."""

    examples: list[Example]
    baseline_grades: list[int]
    baseline_from: str
    dataset: dict[str, Any] | None = None  # afrl.dataset's report, for a folder or a file
    baseline_examples: list[Example] | None = None  # the rows the one-cue heuristics are fitted on

    def heuristics(self) -> dict[str, float] | None:
        """The category and pair-table heuristics' accuracy on these rows (None: the data is not world-like)."""
        if self.baseline_examples is None:
            return None
        try:
            from training.evaluate.baselines import category_baselines
        except ImportError:  # a serving-only install: the majority baseline alone
            return None
        return category_baselines(self.baseline_examples, self.examples)


def load_eval_data(
    data: str,
    seed: int = 0,
    labels: Sequence[int] | None = None,
    split: str = "test",
    progress: Callable[[str], None] | None = None,
) -> EvalData:
    """A split of the generated world, a split of a dataset folder, or every row of a .jsonl file.

    The majority baseline answers the most frequent grade of the dataset's train split; a single file
    is evaluated whole, so its baseline is the most frequent grade of the evaluated rows.
    """
    if data in SPLITS:
        from training.world import build_world

        world = build_world(seed=seed)
        return EvalData(
            world.split(data),
            [e.grade for e in world.train],
            f"train split of the world (seed {seed})",
            baseline_examples=world.train,
        )
    path = Path(data)
    if not path.exists():
        raise FileNotFoundError(
            f"--data {data!r} is neither a split ({', '.join(SPLITS)}) nor a dataset folder or file"
        )
    ds = load_dataset(path, labels, split_missing=path.is_dir())
    if progress:
        for line in ds.report.summary_lines():
            progress(line)
    if path.is_dir():
        rows = ds.split(split)
        how = f"; {split} was {ds.report.split_off[split]}" if split in ds.report.split_off else ""
        return EvalData(
            rows,
            [e.grade for e in ds.train],
            f"train split of {path} ({len(ds.train)} rows){how}",
            ds.report.to_dict(),
            ds.train,
        )
    rows = ds.train  # the whole file, in its order
    return EvalData(
        rows, [e.grade for e in rows], f"the evaluated rows ({path} has no separate train split)", ds.report.to_dict()
    )


def model_label_values(model_dir: Path) -> list[int] | None:
    """The grade values an artifact's manifest or a checkpoint's afrl.json declares (None: unreadable)."""
    from afrl.manifest import MANIFEST_NAME

    try:
        if (model_dir / MANIFEST_NAME).is_file():
            return list(json.loads((model_dir / MANIFEST_NAME).read_text())["labels"]["values"])
        return list(json.loads((model_dir / "afrl.json").read_text())["label_values"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # the model's own loader says what is wrong with it


def evaluate(
    model_dir: Path,
    data: str,
    out_dir: Path | None = None,
    seed: int = 0,
    limit: int | None = None,
    explain: int = 0,
    progress: Callable[[str], None] | None = None,
    split: str = "test",
) -> dict:
    """An artifact (manifest.json) or a training checkpoint (afrl.json): grade figures, then explanations.

    The data is read and checked before any model loads, so bad rows fail in a second, not after the load.
    """
    from afrl.manifest import MANIFEST_NAME

    is_artifact = (model_dir / MANIFEST_NAME).is_file()
    if not is_artifact and not (model_dir / "afrl.json").is_file():
        raise FileNotFoundError(
            f"{model_dir} is neither a model artifact ({MANIFEST_NAME}) nor a training checkpoint (afrl.json)"
        )
    rows = load_eval_data(data, seed, model_label_values(model_dir), split, progress)
    if limit is not None:
        rows = replace(rows, examples=rows.examples[:limit])
    report: dict | None = None
    checkpoint: Path | None = model_dir
    if is_artifact:
        report = evaluate_artifact(model_dir, rows, progress)
        source = Path(json.loads((model_dir / MANIFEST_NAME).read_text())["source"]["checkpoint"])
        checkpoint = source if (source / "afrl.json").is_file() else None
    if report is None or explain:
        from training.context import load_checkpoint
        from training.evaluate.torch_model import evaluate_model

        if checkpoint is None:
            assert report is not None
            report["explanations"] = {
                "skipped": "the artifact's source checkpoint is not on disk; "
                "pass the checkpoint folder to measure explanations"
            }
        else:
            model, ctx = load_checkpoint(checkpoint)
            start = time.perf_counter()
            measured = evaluate_model(model, ctx, rows.examples, rows.baseline_grades, explain)
            if report is None:
                report = {"model": str(model_dir), **measured, "seconds": time.perf_counter() - start}
            if explain:
                report["explanations"] = {**measured["explanations"], "from_checkpoint": str(checkpoint)}
    assert report is not None
    _fill_missing_slices(report)
    report = {"model": report.pop("model"), **_data_figures(data, split, rows), **report}
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "eval.json").write_text(json.dumps(report, indent=2))
        _plot_confusion(report, out_dir / "confusion.png")
        _plot_details(report, out_dir / "eval.png")
        if progress:
            progress(f"wrote {out_dir / 'eval.json'}, {out_dir / 'confusion.png'} and {out_dir / 'eval.png'}")
    return report


def evaluate_artifact(model_dir: Path, rows: EvalData, progress: Callable[[str], None] | None = None) -> dict:
    """Grade figures of an artifact, scored by the service's own loader and engine."""
    from service.artifact_loader import load_artifact
    from service.blocking import BlockingScorer
    from service.engine import ScoringEngine
    from service.metrics import ServiceMetrics
    from service.settings import ServiceSettings
    from training.evaluate import grade_report, predict_examples

    examples = rows.examples
    settings = ServiceSettings(model=model_dir)
    model = load_artifact(settings)
    scorer = BlockingScorer(ScoringEngine(model, settings.max_batch_tokens, ServiceMetrics()))
    done = 0

    def predict(query: str, documents: list[str]) -> list[GradeResult]:
        nonlocal done
        results = scorer.score(query, documents).results
        done += len(documents)
        if progress and done // 500 != (done - len(documents)) // 500:
            progress(f"eval: {done}/{len(examples)} examples")
        return results

    start = time.perf_counter()
    try:
        results = predict_examples(examples, predict)
    finally:
        scorer.close()
    report = {
        "model": model.name,
        **grade_report(examples, results, rows.baseline_grades, model.manifest.labels.values),
    }
    report["seconds"] = time.perf_counter() - start
    return report


def _data_figures(data: str, split: str, rows: EvalData) -> dict[str, Any]:
    """What was evaluated, where the majority baseline's grades came from, and how much the rows say."""
    examples = rows.examples
    evaluated = data if data in SPLITS else split if Path(data).is_dir() else "all rows"
    figures: dict[str, Any] = {
        "data": data,
        "split": evaluated,
        "majority_baseline_from": rows.baseline_from,
        "rows_with_rule_ids": sum(e.has_rule_ids for e in examples),
        "rows_with_explanation": sum(e.has_explanation for e in examples),
        "long_tail_rules": _long_tail_rules(examples),
    }
    if rows.dataset is not None:
        figures["dataset"] = rows.dataset
    figures.update(rows.heuristics() or {})
    return figures


def _long_tail_rules(examples: Sequence[Example]) -> list[str]:
    """Rules that decided only long-tail rows: the plot marks them, whatever rulebook the dataset follows."""
    head = {r for e in examples if not e.long_tail for r in e.decisive_rule_ids}
    return sorted({r for e in examples if e.long_tail for r in e.decisive_rule_ids} - head, key=lambda r: int(r[1:]))


def _figure(report: dict, key: str) -> str:
    value = report.get(key)
    return f"{value:.3f}" if isinstance(value, int | float) else str(value or NOT_AVAILABLE)


def _fill_missing_slices(report: dict) -> None:
    """Per-rule and long-tail figures on data without rule ids or long-tail rows read 'n/a' over 0 rows."""
    if not report.get("per_rule"):
        report["per_rule"] = {}
        report["per_rule_accuracy"] = f"{NOT_AVAILABLE}: no evaluated row has rule_ids"
    if "long_tail_accuracy" not in report:
        report["long_tail_examples"] = 0
        report["long_tail_accuracy"] = NOT_AVAILABLE
        report["long_tail_label_entropy"] = NOT_AVAILABLE
    if "head_accuracy" not in report:
        report["head_examples"] = 0
        report["head_accuracy"] = NOT_AVAILABLE


def _plot_confusion(report: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no confusion plot")
        return
    values = report["confusion"]["rows_gold_cols_predicted"]
    counts = report["confusion"]["counts"]
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(counts, cmap="Blues")
    for i, row in enumerate(counts):
        for j, n in enumerate(row):
            ax.text(j, i, str(n), ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(values)), values)
    ax.set_yticks(range(len(values)), values)
    ax.set_xlabel("predicted grade")
    ax.set_ylabel("gold grade")
    ax.set_title(f"accuracy {report['accuracy']:.3f} (majority {report['majority_baseline_accuracy']:.3f})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_details(report: dict, path: Path) -> None:
    """Reliability diagram and per-rule accuracy (long-tail rules marked *)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    tail = set(report.get("long_tail_rules", []))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [1, 2.4]})
    bins = report.get("reliability", [])
    ax1.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax1.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o")
    ax1.set_xlabel("confidence (max label probability)")
    ax1.set_ylabel("accuracy")
    ax1.set_title(f"calibration, ECE {_figure(report, 'expected_calibration_error')}")
    rules = report.get("per_rule", {})
    names = list(rules)
    ax2.bar(
        range(len(names)),
        [rules[r]["accuracy"] for r in names],
        color=["tab:orange" if r in tail else "tab:blue" for r in names],
    )
    ax2.set_xticks(range(len(names)), [r + ("*" if r in tail else "") for r in names], fontsize=8)
    ax2.set_ylim(0, 1)
    ax2.set_title(
        f"accuracy by deciding rule (* long tail: {_figure(report, 'long_tail_accuracy')}, "
        f"head: {_figure(report, 'head_accuracy')})"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
