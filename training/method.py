"""The full AFRL method, end to end, in miniature: what `afrl train pipeline --preset {ci,tiny}` runs.

    1. data        the training data (`training.setup`: the generated world's train / dev / test, split by query)
    2. curriculum  teacher SFT in stages: head rules, then the long tail (with head replay)
    3. evolution   error-driven rounds: probe, target the worst rules, mutate, label, filter,
                   train on the evolved hard cases (the curriculum's third stage)
   3b. guideline   guideline edits aimed at the rules the model gets wrong most on dev (a rule-based
                   or an LLM proposer), each trained against an unchanged control from the same model
                   and kept only when held-out dev agreement rises by the margin, else rolled back;
                   every edit is logged in guideline_evolution.json; everything after (the arms,
                   the distilled student, the shipped checkpoint and artifact) uses the evolved guideline
    4. compare     from the same checkpoint, with the same data at every step (P train prompts and
                   B_e expert demonstrations: examples a long-tail rule decided, from train and from
                   evolution; `training.rl.step_data`), the same optimizer and the same number of
                   updates, so the arms differ in objective only: SFT alone (the P prompts' references
                   and the B_e demonstrations, `training.sft_arm`) | Stepwise-GRPO alone (lambda = 0;
                   the B_e batch is only measured) | mode-balanced (GRPO + lambda x SFT on the B_e batch);
                   head accuracy, long-tail accuracy and label entropy on the test split; wall time too
    5. distill     the mode-balanced teacher -> a smaller student (sequence-level KD + first-token KL)
    6. ship        the student as the checkpoint OUT/NAME, exported to OUT/artifact (what `afrl serve` loads);
                   the teacher is kept in OUT/teacher, the arms' starting point in OUT/base
    7. report      report.json, report.md and figures: comparison, per-rule accuracy, RL curves,
                   evolution rounds, SFT loss

Every figure is measured on the run's own test split (never used for any
choice); the evolution loop probes the dev split plus a slice of train.
Explanations in the report are decoded over the completion vocabulary
(`TrainingSetup.evaluate`; same completions as full-vocabulary decoding on
the tiny teacher and student, 3-4x faster); `afrl eval --explain N` decodes
over the full vocabulary.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import replace
from pathlib import Path

import torch

from afrl.progress import Progress, say
from training.curriculum import StageConfig, curriculum_trainer, train_stage
from training.distill import run_distillation
from training.evaluate.torch_model import latency_ms, model_size, predict_grades
from training.evolution import LOG_FILE as GUIDELINE_LOG
from training.evolution import (
    EvolutionResult,
    GuidelineEvolution,
    make_proposer,
    run_evolution,
    run_guideline_evolution,
    split_dev,
)
from training.guideline_trials import SFTGuidelineTrials
from training.model_factory import body_parameters, build_tiny_qwen3
from training.presets import MethodConfig, PipelineConfig
from training.report import ArmResult, DistillationSummary, Figures, PipelineReport, SFTSummary, StageEnd
from training.rl import train_rl
from training.setup import TrainingSetup
from training.sft import SFTTrainer
from training.sft_arm import train_sft_arm
from training.stopwatch import Stopwatch
from training.world.rules import RULES

log = logging.getLogger(__name__)

ARMS = ("sft", "grpo", "mbo")
ARM_TITLES = {
    "base": "before (curriculum SFT)",
    "sft": "SFT alone",
    "grpo": "Stepwise-GRPO alone (lambda=0)",
    "mbo": "mode-balanced (teacher)",
}


def run_method(
    config: PipelineConfig,
    setup: TrainingSetup,
    teacher: torch.nn.Module,
    out_dir: Path,
    clock: Stopwatch,
    progress: Progress | None = None,
) -> PipelineReport:
    """Steps 2-7 from the setup and the teacher's starting weights (`training.pipeline.run_pipeline` does step 1)."""
    from training.pipeline import ship  # the pipeline's save-and-export step; it imports this module

    method = config.method
    if method is None:
        raise ValueError("run_method needs a config with a method; the SFT-only path is training.pipeline")
    if method.evolution.rounds and setup.data.world is None:
        say(progress, log, "evolution: skipped (it generates examples of the generated world, not of this data)")
        method = replace(method, evolution=replace(method.evolution, rounds=0))

    # one optimizer and schedule for every curriculum stage and evolution round
    trainer = curriculum_trainer(teacher, method.curriculum, setup.ctx.labels, setup.ctx.pad_id, _planned_steps(method))
    with clock("curriculum"):
        sft = _curriculum(method, setup, trainer, progress)
    with clock("evolution"):
        evolution = _evolution(config, method, setup, trainer, sft, progress)
    with clock("guideline"):
        setup, teacher, guideline = _guideline_evolution(method, setup, teacher, sft, out_dir, progress)

    # the comparison: three arms from one checkpoint at one budget
    with clock("compare"):
        setup.save(teacher, out_dir / "base", {"method": method})  # rerun an arm: `afrl train rl --model OUT/base`
        evaluations = {"base": setup.evaluate(teacher, method.explain_examples)}
        comparison = {"base": ArmResult(ARM_TITLES["base"], Figures.of(evaluations["base"]))}
        base = copy.deepcopy(teacher)
        models: dict[str, torch.nn.Module] = {}
        for arm in ARMS if method.compare else ("mbo",):
            models[arm], history, seconds = _train_arm(arm, method, setup, copy.deepcopy(base), progress)
            evaluations[arm] = setup.evaluate(models[arm], method.explain_examples)
            figures = Figures.of(evaluations[arm])
            comparison[arm] = ArmResult(ARM_TITLES[arm], figures, seconds, method.rl.steps, history)
            say(
                progress,
                log,
                f"{ARM_TITLES[arm]}: head {figures.head_accuracy or 0:.3f}, "
                f"long-tail {figures.long_tail_accuracy or 0:.3f}, "
                f"label entropy {figures.mean_label_entropy:.3f} ({seconds:.0f}s)",
            )
    teacher = models["mbo"]

    with clock("distill"):
        dc = method.distill
        examples = setup.distill_examples(dc)
        pairs = [(e.query, e.document) for e in examples]
        source = setup.teacher(dc, model=teacher, name="mode-balanced teacher")
        student = build_tiny_qwen3(dc.student, seed=dc.sft.seed)
        say(
            progress,
            log,
            f"distill: student {body_parameters(student) / 1e6:.2f}M body parameters vs teacher "
            f"{body_parameters(teacher) / 1e6:.2f}M; {len(pairs)} prompts",
        )
        gold = [e.grade for e in examples]
        distilled = run_distillation(source, student, pairs, setup.ctx, dc, setup.vocab, progress, gold)

    with clock("eval"):
        evaluations["student"] = setup.evaluate(student, method.explain_examples)
        latency = {
            "teacher": latency_ms(teacher, setup.ctx, setup.test, method.latency_queries),
            "student": latency_ms(student, setup.ctx, setup.test, method.latency_queries),
        }

    with clock("export"):
        teacher_dir = setup.save(teacher, out_dir / "teacher", {"method": method})
        checkpoint, manifest = ship(config, setup, student, out_dir, {"method": method, "distill": dc}, progress)

    student_figures = Figures.of(evaluations["student"])
    report = PipelineReport(
        config=config,
        data=setup.data.source,
        body_parameters=body_parameters(student),
        sft=sft,
        test=student_figures,
        evaluations=evaluations,
        export_parity=manifest.parity,
        timings=clock.total(),
        comparison=comparison,
        evolution=evolution.rounds if evolution else [],
        evolved_examples=len(setup.pools["evolved"]),
        guideline_evolution=guideline,
        distillation=DistillationSummary(
            teacher=comparison["mbo"].figures,
            student=student_figures,
            teacher_source=source.name,
            sizes={"teacher": model_size(teacher, teacher_dir), "student": model_size(student, checkpoint)},
            latency_ms_per_query_of_10_docs=latency,
            sequences=distilled.sequences,
            dropped=distilled.dropped,
            teacher_seconds=distilled.teacher_seconds,
            student_seconds=distilled.student_seconds,
        ),
    )
    return report


def _curriculum(
    method: MethodConfig, setup: TrainingSetup, trainer: SFTTrainer, progress: Progress | None
) -> SFTSummary:
    """The curriculum stages before the evolved one (the rest run in `_evolution`)."""
    stages = method.curriculum.stages
    say(
        progress,
        log,
        f"teacher: {body_parameters(trainer.model) / 1e6:.2f}M body parameters; curriculum "
        + " -> ".join(f"{s.name} ({s.steps} steps)" for s in stages),
    )
    sft = SFTSummary(losses=[])
    for i, stage in enumerate(stages[: _evolved_at(method)]):
        _run_stage(setup, trainer, stage, sft, progress, seed=i)
    return sft


def _evolution(
    config: PipelineConfig,
    method: MethodConfig,
    setup: TrainingSetup,
    trainer: SFTTrainer,
    sft: SFTSummary,
    progress: Progress | None,
) -> EvolutionResult | None:
    """Instruction evolution rounds, each training the evolved stage's share; then the stages after it."""
    stages = method.curriculum.stages
    evolved_at = _evolved_at(method)
    if evolved_at == len(stages):
        return None
    stage = stages[evolved_at]
    round_stage = _round_stage(method, stage)

    def train_round(examples: list) -> None:
        setup.add_evolved(examples)
        round_name = f"{stage.name} r{len(sft.stages) - evolved_at + 1}"
        _run_stage(setup, trainer, round_stage, sft, progress, seed=100 + len(sft.stages), name=round_name)

    evolution = None
    if method.evolution.rounds:
        probe = setup.data.dev + setup.data.train[: method.probe_train_examples]
        evolution = run_evolution(
            method.evolution,
            probe,
            setup.heldout_queries,
            lambda exs: predict_grades(trainer.model, setup.ctx, exs),  # the full table between rounds
            train_round,
            lambda text: len(setup.ctx.encoder._encode(text)) + 3,
            progress,
        )
    else:  # no evolution: the stage trains on its other pools
        train_round([])
    for later in stages[evolved_at + 1 :]:
        _run_stage(setup, trainer, later, sft, progress, seed=len(sft.stages))
    return evolution


def _guideline_evolution(
    method: MethodConfig,
    setup: TrainingSetup,
    teacher: torch.nn.Module,
    sft: SFTSummary,
    out_dir: Path,
    progress: Progress | None,
) -> tuple[TrainingSetup, torch.nn.Module, GuidelineEvolution | None]:
    """Guideline edit rounds: (the setup with the evolved guideline, the teacher it trained, the log or None)."""
    config = method.evolution
    if not config.guideline_rounds:
        return setup, teacher, None
    try:
        choosing, accepting = split_dev(setup.data.dev, config.guideline_accept_share)
    except ValueError as e:
        say(progress, log, f"guideline evolution: skipped ({e})")
        return setup, teacher, None
    # the world's rulebook gives rule ids their meaning; another dataset's R-numbers mean something else
    rulebook = RULES if setup.data.world is not None else None
    proposer = make_proposer(config, setup.data.train, rulebook)
    trials = SFTGuidelineTrials(
        setup, teacher, method.curriculum, config.guideline_steps, choosing, accepting, progress
    )
    say(
        progress,
        log,
        f"guideline evolution: {config.guideline_rounds} rounds by the {proposer.name} proposer, "
        f"{config.guideline_steps} steps per arm; {len(choosing)} dev examples pick rules, {len(accepting)} accept",
    )
    record = run_guideline_evolution(
        config, setup.ctx.guideline, proposer, trials, (len(choosing), len(accepting)), progress
    )
    for trial, row in zip(trials.adopted, (r for r in record.rounds if r.edit_agreement is not None), strict=True):
        sft.losses += trial.losses
        sft.stages.append(StageEnd(f"guideline r{row.round} {'edit' if row.accepted else 'control'}", len(sft.losses)))
    record.write(out_dir / GUIDELINE_LOG)
    say(progress, log, f"guideline evolution: {record.accepted} of {len(record.rounds)} edits kept -> {GUIDELINE_LOG}")
    return trials.setup, trials.model, record


def _evolved_at(method: MethodConfig) -> int:
    stages = method.curriculum.stages
    return next((i for i, s in enumerate(stages) if "evolved" in s.mix), len(stages))


def _round_stage(method: MethodConfig, stage: StageConfig) -> StageConfig:
    """The evolved stage's share of one evolution round."""
    return replace(stage, steps=max(1, stage.steps // max(1, method.evolution.rounds)))


def _planned_steps(method: MethodConfig) -> int:
    """Every curriculum step the method plans, the evolved stage as its rounds (the schedule's length)."""
    stages = method.curriculum.stages
    evolved_at = _evolved_at(method)
    if evolved_at == len(stages):
        return method.curriculum.total_steps
    rounds = max(1, method.evolution.rounds) * _round_stage(method, stages[evolved_at]).steps
    return method.curriculum.total_steps - stages[evolved_at].steps + rounds


def _run_stage(
    setup: TrainingSetup,
    trainer: SFTTrainer,
    stage: StageConfig,
    sft: SFTSummary,
    progress: Progress | None,
    seed: int,
    name: str | None = None,
) -> None:
    result = train_stage(trainer, stage, setup.pools, setup.vocab, progress, seed)
    sft.losses += result.losses
    sft.stages.append(StageEnd(name or stage.name, len(sft.losses)))


def _train_arm(
    arm: str, method: MethodConfig, setup: TrainingSetup, model: torch.nn.Module, progress: Progress | None
) -> tuple[torch.nn.Module, list[dict], float]:
    """One arm of the comparison on its own copy of the base model: (model, per-step history, seconds)."""
    start = time.perf_counter()
    rl = method.rl
    tagged = (lambda m: progress(f"[{arm}] {m}")) if progress else None
    if arm == "sft":
        result = train_sft_arm(model, setup.rl_prompts(), setup.expert(), setup.ctx, rl, setup.vocab, tagged)
    else:
        config = rl if arm == "mbo" else replace(rl, lam=0.0, lam_final=None)
        result = train_rl(model, setup.rl_prompts(), setup.expert(), setup.ctx, config, setup.vocab, tagged)
    return model, result.history, time.perf_counter() - start
