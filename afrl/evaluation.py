"""`afrl eval`: measure a model artifact exactly as it is served.

Scores go through the service's own loader and engine (ONNX Runtime, the
artifact's tokenizer and prompt), so the figures describe what `afrl serve`
returns; the metrics come from `training.metrics`, which needs no torch.
"""

from __future__ import annotations

import asyncio
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


def evaluate_artifact(
    model_dir: Path, data: str, out_dir: Path | None = None, seed: int = 0, limit: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    from service.artifact_loader import load_artifact
    from service.engine import ScoringEngine
    from service.metrics import ServiceMetrics
    from service.settings import ServiceSettings

    examples, train_grades = load_examples(data, seed)
    if limit is not None:
        examples = examples[:limit]
    settings = ServiceSettings(model=model_dir)
    model = load_artifact(settings)
    engine = ScoringEngine(model, settings.max_batch_tokens, ServiceMetrics())
    loop = asyncio.new_event_loop()
    done = 0

    def predict(query: str, documents: list[str]) -> list[GradeResult]:
        nonlocal done
        results = loop.run_until_complete(engine.score(query, documents)).results
        done += len(documents)
        if progress and done // 500 != (done - len(documents)) // 500:
            progress(f"eval: {done}/{len(examples)} examples")
        return results

    start = time.perf_counter()
    try:
        results = predict_examples(examples, predict)
    finally:
        engine.close()
        loop.close()
    report = {"model": model.name, "data": data, **grade_report(examples, results, train_grades,
                                                                model.manifest.labels.values)}
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
