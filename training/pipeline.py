"""The training pipeline, end to end: data -> training -> checkpoint -> artifact -> report.

    1. data:   the preset's generated world (deterministic from a seed), or `--data DIR`; the splits are
               written to OUT/data (`training.setup`, the setup every training command shares)
    2. train:  without a method (the `default` preset, the embedded default model): SFT of a small
               Qwen3-architecture model from scratch (or from `--base`) on AFRL completions;
               with a method (presets `ci` and `tiny`): the full AFRL method of `training.method`
               (curriculum, instruction evolution, SFT vs GRPO vs mode-balanced comparison,
               distillation), whose distilled student is what ships
    3. save:   an ordinary Hugging Face checkpoint + tokenizer + afrl.json (guideline, labels) in OUT/NAME
    4. export: the ONNX score-graph artifact that `afrl serve` loads, validated against torch
    5. report: report.json (`training.report.PipelineReport`) and figures; report.md with the method

Presets (`training.presets`) size it: `ci` (the full method, under 3 minutes), `tiny` (the full
method, under 15 minutes on 2 cores), `default` (the embedded default model, a few minutes on 2
cores). Run: `afrl train pipeline --preset tiny --out runs/tiny`.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from afrl.manifest import Manifest
from afrl.progress import Progress, say
from training import presets
from training.model_factory import body_parameters
from training.presets import PipelineConfig
from training.report import Figures, PipelineReport, SFTSummary, write_report
from training.setup import TrainingSetup, load_training_data, starting_model
from training.sft import train_sft
from training.sft_data import SFTSequence
from training.stopwatch import Stopwatch
from training.world import build_world, long_tail_eval_set

log = logging.getLogger(__name__)

LONG_TAIL_EVAL_PER_RULE = 100  # the eval-only long-tail set the README measures (fresh rows avoid its queries)


def run_pipeline(
    config: PipelineConfig,
    out_dir: Path,
    progress: Progress | None = None,
    data: str | None = None,
    base: str | None = None,
    guideline_file: str | None = None,
) -> PipelineReport:
    """Run every stage into `out_dir`; returns the report (also written as report.json).

    data: a dataset folder instead of the preset's generated world; base: a checkpoint to start from
    instead of the preset's architecture at random init (the teacher's start with a method).
    """
    torch.set_num_threads(config.threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    clock = Stopwatch()
    with clock("data"):
        training_data = load_training_data(config, data, guideline_file, progress)
        seed = config.method.curriculum.sft.seed if config.method else config.sft.seed
        start = starting_model(base, config.start_spec(), seed, training_data)
        setup = TrainingSetup.build(training_data, start.ctx, config.eval_examples)
        setup.write_data(out_dir / "data")
    tail = len(setup.pools["long_tail"])
    say(
        progress,
        log,
        f"data: {len(training_data.train)} train ({tail} long-tail) / {len(training_data.dev)} dev / "
        f"{len(training_data.test)} test examples from {training_data.source}",
    )
    if config.method is not None:
        from training.method import run_method

        report = run_method(config, setup, start.model, out_dir, clock, progress)
    else:
        report = _sft_only(config, setup, start.model, out_dir, clock, progress)
    write_report(report, out_dir)
    say(progress, log, f"pipeline done in {report.timings['total_s']:.0f}s: {out_dir}")
    return report


def sft_rows(
    setup: TrainingSetup,
    long_tail_repeats: int,
    fresh: Sequence[SFTSequence] = (),
    fresh_long_tail: Sequence[SFTSequence] = (),
) -> list[SFTSequence]:
    """The rows SFT-only training draws from: the training rows and the `fresh` rows once each, the long-tail
    ones among both (`fresh_long_tail` for the fresh) `long_tail_repeats` times in all.

    The long tail is a tenth of the world's rows, and with more steps a from-scratch model applies the
    head rules over the rare ones that override them (1,400 steps: long-tail test slice 0.34-0.38 over
    two seeds against 0.45-0.51 at 1,000); three copies held it at 0.50.
    """
    tail = list(setup.pools["long_tail"]) + list(fresh_long_tail)
    return list(setup.sequences) + list(fresh) + tail * (long_tail_repeats - 1)


def fresh_rows(
    setup: TrainingSetup, n: int, progress: Progress | None = None
) -> tuple[list[SFTSequence], list[SFTSequence]]:
    """`n` examples from a fresh stream of the generated world, encoded, and the long-tail ones among them.

    None for a data folder. Their queries are in no split of the world and not in its eval-only
    long-tail set (`afrl train data --long-tail-eval 100`), so no figure is measured on a query trained on.
    """
    if n == 0:
        return [], []
    world = setup.data.world
    if world is None:
        log.warning("fresh_examples: %s is not the generated world, so there are none to add", setup.data.source)
        return [], []
    say(progress, log, f"data: generating {n} fresh examples")
    splits = build_world(world.seed, world.n_queries, world.docs_per_query)
    long_tail_eval = long_tail_eval_set(world.seed, LONG_TAIL_EVAL_PER_RULE, splits, world.docs_per_query)
    exclude = frozenset(e.query for e in splits.all_rows()) | frozenset(e.query for e in long_tail_eval)
    examples = world.fresh_examples(n, exclude | setup.heldout_queries)
    rows = setup.ctx.encode(examples)
    return rows, [s for s, e in zip(rows, examples, strict=True) if e.long_tail]


def sft_only_rows(
    config: PipelineConfig, setup: TrainingSetup, progress: Progress | None = None
) -> tuple[list[SFTSequence], torch.Tensor, int]:
    """An SFT-only preset's rows (the training rows, the long tail repeated, the fresh rows), their completion
    vocabulary and how many fresh rows there are: what `afrl train pipeline` and `afrl train sft` train on
    with such a preset."""
    fresh, fresh_long_tail = fresh_rows(setup, config.fresh_examples, progress)
    rows = sft_rows(setup, config.long_tail_repeats, fresh, fresh_long_tail)
    vocab = torch.unique(torch.cat([setup.vocab, setup.ctx.vocab(fresh)])) if fresh else setup.vocab
    return rows, vocab, len(fresh)


def _train(
    config: PipelineConfig, setup: TrainingSetup, model: torch.nn.Module, progress: Progress | None
) -> SFTSummary:
    """Train the SFT-only model on the training rows, the long tail repeated, and the fresh rows."""
    rows, vocab, fresh = sft_only_rows(config, setup, progress)
    mean_len = sum(len(s) for s in rows) / len(rows)
    repeats = f" (long-tail rows x{config.long_tail_repeats})" if config.long_tail_repeats > 1 else ""
    extra = f", {fresh} of them fresh" if fresh else ""
    say(
        progress,
        log,
        f"sft: {body_parameters(model) / 1e6:.2f}M body parameters, {len(rows)} sequences{repeats}{extra} "
        f"of {mean_len:.0f} tokens on average, {config.sft.steps} steps",
    )
    result = train_sft(model, rows, setup.ctx.labels, config.sft, setup.ctx.pad_id, progress, vocab=vocab)
    return SFTSummary(result.losses, seconds=result.seconds)


def _sft_only(
    config: PipelineConfig,
    setup: TrainingSetup,
    model: torch.nn.Module,
    out_dir: Path,
    clock: Stopwatch,
    progress: Progress | None,
) -> PipelineReport:
    with clock("sft"):
        sft = _train(config, setup, model, progress)
    with clock("eval"):
        evaluation = setup.evaluate(model)
    figures = Figures.of(evaluation)
    say(
        progress,
        log,
        f"test accuracy {figures.accuracy:.3f} vs majority baseline {figures.majority_baseline_accuracy:.3f}"
        + (
            f", category heuristic {figures.category_heuristic_accuracy:.3f}"
            if figures.category_heuristic_accuracy is not None
            else ""
        )
        + f" ({figures.examples} examples)",
    )
    with clock("export"):
        _, manifest = ship(config, setup, model, out_dir, {"sft": config.sft}, progress)
    return PipelineReport(
        config=config,
        data=setup.data.source,
        body_parameters=body_parameters(model),
        sft=sft,
        test=figures,
        evaluations={"sft": evaluation},
        export_parity=manifest.parity,
        timings=clock.total(),
    )


def ship(
    config: PipelineConfig,
    setup: TrainingSetup,
    model: torch.nn.Module,
    out_dir: Path,
    configs: dict[str, Any],
    progress: Progress | None = None,
) -> tuple[Path, Manifest]:
    """Save the shipped model as OUT/NAME and export it to OUT/artifact, validated on dev pairs."""
    from export.artifact import export_artifact  # export needs onnx; import only when exporting

    checkpoint = setup.save(model, out_dir / config.name, configs)  # the exporter names the model after this folder
    say(progress, log, f"export: {config.export_dtype} score graph")
    # Dev pairs grouped by query also exercise the prefix graphs; a few dozen keep the default build
    # inside its time budget (the parity limits do not depend on the count).
    held_out = setup.data.dev or setup.data.test
    pairs = [(e.query, e.document) for e in held_out[: config.export_validation_pairs]]
    manifest = export_artifact(
        checkpoint, out_dir / "artifact", dtype=config.export_dtype, validation_pairs=pairs, progress=progress
    )
    return checkpoint, manifest


def build_default_model(target: Path, work_dir: Path, progress: Progress | None = None) -> Path:
    """Train and export the `default` preset, then move its artifact to `target`."""
    if work_dir.exists():
        shutil.rmtree(work_dir)
    run_pipeline(presets.PRESETS["default"], work_dir, progress=progress)
    if target.exists():
        shutil.rmtree(target)
    shutil.move(str(work_dir / "artifact"), str(target))
    shutil.copy(work_dir / "report.json", target.parent / "default_report.json")
    return target
