"""The full AFRL method, end to end, in miniature: what `afrl train pipeline --preset {ci,tiny}` runs.

    1. data        the relevance world (train / dev / test, split by query)
    2. curriculum  teacher SFT in stages: head rules, then the long tail (with head replay)
    3. evolution   error-driven rounds: probe, target the worst rules, mutate, label, filter,
                   train on the evolved hard cases (the curriculum's third stage)
    4. compare     from the same checkpoint, at the same number of optimizer steps and learning rate:
                   SFT alone (batches of P + B_e demonstrations from the natural mix, long tail and
                   evolved cases) | Stepwise-GRPO alone (lambda = 0) | mode-balanced (GRPO + lambda x SFT
                   on B_e expert demonstrations per step: examples a long-tail rule decided, from train
                   and from evolution);
                   head accuracy, long-tail accuracy and label entropy on the test split; wall time too
    5. distill     the mode-balanced teacher -> a smaller student (sequence-level KD + first-token KL)
    6. ship        the student as the checkpoint OUT/NAME, exported to OUT/artifact (what `afrl serve` loads);
                   the teacher is kept in OUT/teacher, the arms' starting point in OUT/base
    7. report      report.json, report.md and figures: comparison, per-rule accuracy, RL curves,
                   evolution rounds, SFT loss

Every figure is measured on the run's own test split (never used for any
choice); the evolution loop probes the dev split plus a slice of train.
Explanations in the report are decoded over the completion vocabulary
(`model_eval.evaluate_model`; same completions as full-vocabulary decoding
on the tiny teacher and student, 3-4x faster); `afrl eval --explain N`
decodes over the full vocabulary.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from afrl.progress import Progress, say
from training.context import TrainingContext, save_checkpoint
from training.curriculum import CurriculumConfig, StageConfig, run_stage
from training.distill import CheckpointTeacher, DistillConfig, EndpointTeacher, run_distillation
from training.evolution import EvolutionConfig, run_evolution
from training.model_eval import evaluate_model, predict_grades
from training.model_factory import TinyQwen3Spec, body_parameters, build_tiny_qwen3
from training.rl import RLConfig, rl_examples, train_rl
from training.world import build_world, save_jsonl

log = logging.getLogger(__name__)

ARMS = ("sft", "grpo", "mbo")
ARM_TITLES = {
    "base": "before (curriculum SFT)",
    "sft": "SFT alone",
    "grpo": "Stepwise-GRPO alone (lambda=0)",
    "mbo": "mode-balanced (GRPO + lambda SFT)",
}


@dataclass
class MethodConfig:
    teacher: TinyQwen3Spec = field(default_factory=TinyQwen3Spec, metadata={"help": "teacher architecture"})
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig, metadata={"help": "SFT stages"})
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig, metadata={"help": "instruction evolution"})
    rl: RLConfig = field(default_factory=RLConfig, metadata={"help": "the mode-balanced RL stage"})
    compare: bool = field(default=True, metadata={"help": "also run SFT alone and GRPO alone at the same budget"})
    distill: DistillConfig = field(default_factory=DistillConfig, metadata={"help": "teacher -> student"})
    probe_train_examples: int = field(default=2000, metadata={"help": "train examples added to dev for the probe"})
    explain_examples: int = field(default=200, metadata={"help": "test examples whose explanation is generated"})
    latency_queries: int = field(default=20, metadata={"help": "queries of 10 documents timed per model"})

    def __post_init__(self) -> None:
        if not any("evolved" in s.mix for s in self.curriculum.stages) and self.evolution.rounds:
            raise ValueError("evolution rounds need a curriculum stage whose mix draws from 'evolved'")
        if self.rl.lam == 0 and (self.rl.lam_final or 0) == 0:
            raise ValueError(
                "the method's RL stage is the mode-balanced one: set rl.lam > 0 "
                "(the lambda = 0 arm runs when compare is on)"
            )


def run_method(config, out_dir: Path, progress: Progress | None = None) -> dict:
    """`config`: a `training.pipeline.PipelineConfig` whose `method` is set. Returns the report."""
    from export.artifact import export_artifact  # export needs onnx; import only when exporting

    method: MethodConfig = config.method
    torch.set_num_threads(config.threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def timed(name: str, t0: float) -> None:
        timings[f"{name}_s"] = time.perf_counter() - t0

    # 1. data -------------------------------------------------------------------------------
    t = time.perf_counter()
    world = build_world(seed=config.world_seed, n_queries=config.n_queries, docs_per_query=config.docs_per_query)
    for split in ("train", "dev", "test"):
        save_jsonl(getattr(world, split), out_dir / "data" / f"{split}.jsonl")
    ctx = TrainingContext.create()
    train_seqs = ctx.encode(world.train)
    pools = {
        "all": train_seqs,
        "head": [s for s, e in zip(train_seqs, world.train, strict=True) if not e.long_tail],
        "long_tail": [s for s, e in zip(train_seqs, world.train, strict=True) if e.long_tail],
        "evolved": [],
    }
    vocab = ctx.vocab(train_seqs)
    test = world.test if config.eval_examples is None else world.test[: config.eval_examples]
    train_grades = [e.grade for e in world.train]
    heldout_queries = frozenset(e.query for e in world.dev + world.test)
    timed("data", t)
    say(
        progress,
        log,
        f"data: {len(world.train)} train ({len(pools['long_tail'])} long-tail) / {len(world.dev)} dev / "
        f"{len(world.test)} test examples",
    )

    # 2. curriculum: the stages before the evolved one -----------------------------------------
    t = time.perf_counter()
    teacher = build_tiny_qwen3(method.teacher, seed=method.curriculum.sft.seed)
    say(
        progress,
        log,
        f"teacher: {body_parameters(teacher) / 1e6:.2f}M body parameters; curriculum "
        + " -> ".join(f"{s.name} ({s.steps} steps)" for s in method.curriculum.stages),
    )
    sft_losses: list[float] = []
    stage_ends: list[tuple[str, int]] = []
    stages = method.curriculum.stages
    evolved_at = next((i for i, s in enumerate(stages) if "evolved" in s.mix), len(stages))
    for i, stage in enumerate(stages[:evolved_at]):
        sft_losses += run_stage(
            teacher, stage, pools, method.curriculum, ctx.labels, ctx.pad_id, vocab, progress, seed=i
        ).losses
        stage_ends.append((stage.name, len(sft_losses)))
    timed("curriculum", t)

    # 3. instruction evolution + the evolved stage ---------------------------------------------
    t = time.perf_counter()
    evolution = None
    evolved_examples: list = []
    if evolved_at < len(stages):
        stage = stages[evolved_at]
        rounds = max(1, method.evolution.rounds)
        round_stage = replace(stage, steps=max(1, stage.steps // rounds))
        probe = world.dev + world.train[: method.probe_train_examples]

        def train_round(examples: list) -> None:
            nonlocal vocab
            evolved_examples[:] = examples
            pools["evolved"] = ctx.encode(examples)
            vocab = torch.unique(torch.cat([vocab, ctx.vocab(pools["evolved"])]))
            sft_losses.extend(
                run_stage(
                    teacher,
                    round_stage,
                    pools,
                    method.curriculum,
                    ctx.labels,
                    ctx.pad_id,
                    vocab,
                    progress,
                    seed=100 + len(stage_ends),
                ).losses
            )
            stage_ends.append((f"{stage.name} r{len(stage_ends) - evolved_at + 1}", len(sft_losses)))

        if method.evolution.rounds:
            evolution = run_evolution(
                method.evolution,
                probe,
                heldout_queries,
                lambda exs: predict_grades(teacher, ctx, exs),
                train_round,
                lambda text: len(ctx.encoder._encode(text)) + 3,
                progress,
            )
        else:  # no evolution: the stage trains on its other pools
            train_round([])
        for stage in stages[evolved_at + 1 :]:
            sft_losses += run_stage(
                teacher, stage, pools, method.curriculum, ctx.labels, ctx.pad_id, vocab, progress, seed=len(stage_ends)
            ).losses
            stage_ends.append((stage.name, len(sft_losses)))
    timed("evolution", t)

    # 4. the comparison: three arms from one checkpoint at one budget ---------------------------
    t = time.perf_counter()
    base_state = copy.deepcopy(teacher.state_dict())
    save_checkpoint(
        teacher, out_dir / "base", ctx, {"method": method}
    )  # rerun an arm: `afrl train rl --model OUT/base`
    evaluations = {"base": evaluate_model(teacher, ctx, test, train_grades, method.explain_examples, vocab)}
    # the expert batch supplies the rare mode: demonstrations a long-tail rule decided (train and evolved)
    expert = pools["long_tail"] + [s for s, e in zip(pools["evolved"], evolved_examples, strict=True) if e.long_tail]
    prompts = rl_examples(world.train, train_seqs)
    arms: dict[str, dict] = {}
    models: dict[str, torch.nn.Module] = {}
    for arm in ARMS if method.compare else ("mbo",):
        model = build_tiny_qwen3(method.teacher, seed=0)
        model.load_state_dict(base_state)
        a = time.perf_counter()
        if arm == "sft":
            sft_arm = StageConfig("sft_arm", {"all": 0.5, "long_tail": 0.25, "evolved": 0.25}, method.rl.steps)
            same = replace(
                method.curriculum,
                sft=replace(
                    method.curriculum.sft,
                    learning_rate=method.rl.learning_rate,
                    batch_size=method.rl.expert_batch_size + method.rl.prompts_per_step,
                ),
            )
            history = [
                {"step": i + 1, "loss": x}
                for i, x in enumerate(
                    run_stage(model, sft_arm, pools, same, ctx.labels, ctx.pad_id, vocab, progress, seed=7).losses
                )
            ]
        else:
            rl = method.rl if arm == "mbo" else replace(method.rl, lam=0.0, lam_final=None)
            tagged = (lambda m, arm=arm: progress(f"[{arm}] {m}")) if progress else None
            history = train_rl(model, prompts, expert, ctx, rl, vocab, tagged).history
        seconds = time.perf_counter() - a
        evaluations[arm] = evaluate_model(model, ctx, test, train_grades, method.explain_examples, vocab)
        arms[arm] = {"seconds": seconds, "steps": method.rl.steps, "history": history}
        models[arm] = model
        e = evaluations[arm]
        say(
            progress,
            log,
            f"{ARM_TITLES[arm]}: head {e['head_accuracy']:.3f}, long-tail {e.get('long_tail_accuracy', 0):.3f}, "
            f"label entropy {e['mean_label_entropy']:.3f} ({seconds:.0f}s)",
        )
    teacher = models["mbo"]
    timed("compare", t)

    # 5. distillation -----------------------------------------------------------------------
    t = time.perf_counter()
    dc = method.distill
    chosen = (
        world.train
        if dc.train_prompts is None or dc.train_prompts >= len(world.train)
        else random.Random(dc.sft.seed).sample(world.train, dc.train_prompts)
    )  # many queries, not the first few
    pairs = [(e.query, e.document) for e in chosen]
    if dc.extra_prompts:
        extra = build_world(
            seed=config.world_seed + 1000,
            n_queries=max(3, dc.extra_prompts // config.docs_per_query + 3),
            docs_per_query=config.docs_per_query,
        )
        fresh = [e for e in extra.train + extra.dev + extra.test if e.query not in heldout_queries]
        pairs += [(e.query, e.document) for e in fresh[: dc.extra_prompts]]
    if dc.teacher_base_url:
        source = EndpointTeacher(dc.teacher_base_url, dc.teacher_model, ctx, max_new_tokens=dc.max_new_tokens)
    else:
        source = CheckpointTeacher(teacher, ctx, vocab, dc.max_new_tokens, name="mode-balanced teacher")
    student = build_tiny_qwen3(dc.student, seed=dc.sft.seed)
    say(
        progress,
        log,
        f"distill: student {body_parameters(student) / 1e6:.2f}M body parameters vs teacher "
        f"{body_parameters(teacher) / 1e6:.2f}M; {len(pairs)} prompts",
    )
    distilled = run_distillation(source, student, pairs, ctx, dc, vocab, progress)
    timed("distill", t)

    # 6. evaluate, save, export ---------------------------------------------------------------
    t = time.perf_counter()
    evaluations["student"] = evaluate_model(student, ctx, test, train_grades, method.explain_examples, vocab)
    evaluations["teacher"] = evaluations["mbo"]
    latency = {
        "teacher": _latency(teacher, ctx, test, method.latency_queries),
        "student": _latency(student, ctx, test, method.latency_queries),
    }
    timed("eval", t)

    t = time.perf_counter()
    teacher_dir = save_checkpoint(teacher, out_dir / "teacher", ctx, {"method": method})
    checkpoint = save_checkpoint(student, out_dir / config.name, ctx, {"method": method, "distill": dc})
    say(progress, log, f"export: {config.export_dtype} student artifact")
    dev_pairs = [(e.query, e.document) for e in world.dev[:64]]
    manifest = export_artifact(
        checkpoint, out_dir / "artifact", dtype=config.export_dtype, validation_pairs=dev_pairs, progress=progress
    )
    timed("export", t)
    timings["total_s"] = time.perf_counter() - started

    sizes = {name: _size(m, d) for name, m, d in (("teacher", teacher, teacher_dir), ("student", student, checkpoint))}
    report = {
        "config": asdict(config),
        "body_parameters": body_parameters(student),
        "sft": {
            "first_loss": sft_losses[0],
            "last_loss": sum(sft_losses[-10:]) / len(sft_losses[-10:]),
            "stages": [{"name": n, "end_step": s} for n, s in stage_ends],
        },
        "test": evaluations["student"],
        "comparison": {arm: _summary(evaluations[arm], arms.get(arm)) for arm in ("base", *arms)},
        "evaluations": {k: v for k, v in evaluations.items() if k != "teacher"},
        "evolution": evolution.rounds if evolution else [],
        "evolved_examples": len(pools["evolved"]),
        "rl_history": {arm: a["history"] for arm, a in arms.items()},
        "distillation": {
            "teacher": _summary(evaluations["teacher"]),
            "student": _summary(evaluations["student"]),
            "accuracy_gap_points": 100 * (evaluations["teacher"]["accuracy"] - evaluations["student"]["accuracy"]),
            "sizes": sizes,
            "latency_ms_per_query_of_10_docs": latency,
            "sequences": distilled.sequences,
            "dropped": distilled.dropped,
            "teacher_seconds": distilled.teacher_seconds,
            "student_seconds": distilled.student_seconds,
            "teacher_source": source.name,
        },
        "export_parity": manifest.parity,
        "timings": timings,
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=str))
    from training.report import write_figures, write_markdown

    write_figures(report, sft_losses, out_dir)
    write_markdown(report, out_dir / "report.md")
    say(progress, log, f"pipeline done in {timings['total_s']:.0f}s: {out_dir} (see report.md)")
    return report


def _summary(e: dict, arm: dict | None = None) -> dict:
    out = {
        k: e.get(k)
        for k in (
            "accuracy",
            "head_accuracy",
            "long_tail_accuracy",
            "macro_f1",
            "quadratic_weighted_kappa",
            "ndcg@10",
            "expected_calibration_error",
            "mean_label_entropy",
            "long_tail_label_entropy",
            "predicted_grade_entropy",
        )
    }
    if "explanations" in e:
        out.update(
            {
                k: e["explanations"][k]
                for k in ("format_validity", "first_token_conclusion_agreement", "decisive_rule_recall")
            }
        )
    if arm is not None:
        out.update({"seconds": arm["seconds"], "steps": arm["steps"]})
    return out


@torch.no_grad()
def _latency(model: torch.nn.Module, ctx: TrainingContext, examples, n_queries: int) -> float:
    """Milliseconds to score one query with 10 documents (full prompts, one batch), median over queries."""
    from training.torch_predict import TorchPredictor

    predictor = TorchPredictor(model, ctx.encoder, ctx.labels, ctx.pad_id)
    by_query: dict[str, list[str]] = {}
    for e in examples:
        by_query.setdefault(e.query, []).append(e.document)
    batches = [(q, (docs * 10)[:10]) for q, docs in list(by_query.items())[:n_queries]]
    predictor(*batches[0])  # warm-up
    times = []
    for q, docs in batches:
        t = time.perf_counter()
        predictor(q, docs)
        times.append(1000 * (time.perf_counter() - t))
    return sorted(times)[len(times) // 2]


def _size(model: torch.nn.Module, folder: Path) -> dict:
    total = sum(p.numel() for p in model.parameters())
    weights = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    return {"parameters": total, "body_parameters": body_parameters(model), "weights_mb": weights / 1e6}
