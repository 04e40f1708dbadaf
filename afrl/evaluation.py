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

Writes eval.json, confusion.png and eval.png (calibration, per-rule accuracy).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from afrl.scoring import GradeResult
from training.evaluate import grade_report, predict_examples

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")


def load_examples(data: str, seed: int = 0) -> tuple[list, list[int]]:
    """Examples of a world split (or a JSONL file) and the training grades for the baseline."""
    from training.world import build_world, load_jsonl

    world = build_world(seed=seed)
    train_grades = [e.grade for e in world.train]
    if data in SPLITS:
        return list(getattr(world, data)), train_grades
    path = Path(data)
    if not path.is_file():
        raise FileNotFoundError(f"--data {data!r} is neither a split ({', '.join(SPLITS)}) nor a JSONL file")
    return load_jsonl(path), train_grades


def evaluate(
    model_dir: Path,
    data: str,
    out_dir: Path | None = None,
    seed: int = 0,
    limit: int | None = None,
    explain: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """An artifact (manifest.json) or a training checkpoint (afrl.json): grade figures, then explanations."""
    from afrl.manifest import MANIFEST_NAME

    if (model_dir / MANIFEST_NAME).is_file():
        report = evaluate_artifact(model_dir, data, None, seed, limit, progress)
        source = Path(json.loads((model_dir / MANIFEST_NAME).read_text())["source"]["checkpoint"])
        checkpoint = source if (source / "afrl.json").is_file() else None
    elif (model_dir / "afrl.json").is_file():
        report, checkpoint = None, model_dir
    else:
        raise FileNotFoundError(
            f"{model_dir} is neither a model artifact ({MANIFEST_NAME}) nor a training checkpoint (afrl.json)"
        )
    if report is None or explain:
        from training.context import load_checkpoint
        from training.evaluate.torch_model import evaluate_model

        examples, train_grades = load_examples(data, seed)
        examples = examples[:limit] if limit is not None else examples
        if checkpoint is None:
            report["explanations"] = {
                "skipped": "the artifact's source checkpoint is not on disk; "
                "pass the checkpoint folder to measure explanations"
            }
        else:
            model, ctx = load_checkpoint(checkpoint)
            start = time.perf_counter()
            measured = evaluate_model(model, ctx, examples, train_grades, explain)
            if report is None:
                report = {"model": str(model_dir), "data": data, **measured, "seconds": time.perf_counter() - start}
            if explain:
                report["explanations"] = {**measured["explanations"], "from_checkpoint": str(checkpoint)}
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "eval.json").write_text(json.dumps(report, indent=2))
        _plot_confusion(report, out_dir / "confusion.png")
        _plot_details(report, out_dir / "eval.png")
        if progress:
            progress(f"wrote {out_dir / 'eval.json'}, {out_dir / 'confusion.png'} and {out_dir / 'eval.png'}")
    return report


def evaluate_artifact(
    model_dir: Path,
    data: str,
    out_dir: Path | None = None,
    seed: int = 0,
    limit: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    from service.artifact_loader import load_artifact
    from service.blocking import BlockingScorer
    from service.engine import ScoringEngine
    from service.metrics import ServiceMetrics
    from service.settings import ServiceSettings

    examples, train_grades = load_examples(data, seed)
    if limit is not None:
        examples = examples[:limit]
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
        "data": data,
        **grade_report(examples, results, train_grades, model.manifest.labels.values),
    }
    report["seconds"] = time.perf_counter() - start
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "eval.json").write_text(json.dumps(report, indent=2))
        _plot_confusion(report, out_dir / "confusion.png")
        if progress:
            progress(f"wrote {out_dir / 'eval.json'} and {out_dir / 'confusion.png'}")
    return report


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
    from training.world.rules import RULES

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [1, 2.4]})
    bins = report.get("reliability", [])
    ax1.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax1.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o")
    ax1.set_xlabel("confidence (max label probability)")
    ax1.set_ylabel("accuracy")
    ax1.set_title(f"calibration, ECE {report.get('expected_calibration_error', float('nan')):.3f}")
    rules = report.get("per_rule", {})
    names = list(rules)
    ax2.bar(
        range(len(names)),
        [rules[r]["accuracy"] for r in names],
        color=["tab:orange" if r in RULES and RULES[r].long_tail else "tab:blue" for r in names],
    )
    ax2.set_xticks(
        range(len(names)), [r + ("*" if r in RULES and RULES[r].long_tail else "") for r in names], fontsize=8
    )
    ax2.set_ylim(0, 1)
    ax2.set_title(
        f"accuracy by deciding rule (* long tail: {report.get('long_tail_accuracy', float('nan')):.3f}, "
        f"head: {report.get('head_accuracy', float('nan')):.3f})"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
