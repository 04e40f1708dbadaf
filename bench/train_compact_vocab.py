"""SFT with a compact vocabulary (training/compact_vocab.py) against the full 151,936-row table.

    afrl bench train-compact-vocab speed  [--blocks 8 --block-steps 6] [--threads N] [--compare precision|attention]
    afrl bench train-compact-vocab recipe --table compact [--steps 800] [--threads N]
    afrl bench train-compact-vocab unseen CHECKPOINT [--policies init mean zero]
    afrl bench train-compact-vocab heuristic

(or `python -m bench.train_compact_vocab ...`)

Everything uses the `default` preset (training/presets.py) set up as
`afrl train pipeline` sets it up (`training.setup`: the generated world, the
fresh tiny Qwen3 with the preset's seed, the encoded training rows and the
completion vocabulary), and the preset's SFTConfig.

`speed`: the preset's SFT before and after the loop's compact vocabulary,
side by side: one from-scratch model, copied; both copies run the same
blocks of `train_sft` calls on the full-table model, one arm with
`SFTConfig.compact_vocab=False` ("full", before), the other with the default
`True` ("compact", after: the loop shrinks the table and scatters it back
in every call). Block b uses seed b, so both see the same batches; the arms
alternate which goes first. Per-step wall and process CPU times come from
the loop's progress callback (the first step of a block, which allocates
AdamW state, is left out); each whole call (optimizer, shrink and scatter
back included) is timed too. Reports steps/min per arm (median step, and
whole calls), the paired per-block ratio of median step times (wall and
CPU: on a loaded box CPU time is the steadier measure of work), the load
average, the largest loss difference between the arms at any step, the
largest parameter difference at the end, and the first-batch loss under a
full-vocabulary softmax on the full and on a compact table (where the two
objectives would differ, and why the loop compacts only with the restricted
softmax). The box is shared: compare the ratio, not the times.
`speed --compare precision` runs the same pairing with both arms on the
compact table, `SFTConfig.precision` "fp32" (before) against "bf16" (after:
autocast, training/precision.py); the loss and parameter differences then
measure what bfloat16 changes. `speed --compare attention` pairs the
attention kernels the loop trains with (`SFTConfig.attention` "sdpa" before,
"eager" after: training/attention.py), both on the compact table in the
preset's precision.

`recipe`: the default recipe's SFT (data, model, config; `--steps` overrides
the step count) with `--table full` or `compact`, the checkpoint saved and
reloaded as export reads it, test figures (`TrainingSetup.evaluate`, as the
pipeline reports them) beside the majority and category baselines, and the
unseen-token probe: test documents with five words the world never uses
inserted before the price (the grade cannot change: the judge reads the
product, not the text), and the test examples holding a token no training
row has, graded with unseen rows = init and, for the compact arm, = the mean
of the trained rows.

`unseen`: a saved default-preset checkpoint (its untrained rows must still be
the preset's init) with each policy for the rows training never changed
(`CompactVocab.expand`: init, mean of the trained rows, zero): accuracy on
the clean test slice, on it with unseen words inserted, on the test-only-token
examples, and the format validity of completions decoded greedily over the
full vocabulary (the tied head's unseen rows change with the policy too).

`heuristic`: the category heuristic on the test split. The query's product
type (its longest query noun, else the model it names) against the
document's printed `Category:` line, as their relation (same, sibling,
complement, unrelated; brand-only queries apart), each relation predicting
its most common training grade (the issue's 0.649); and the finer table of
(query type, category) pairs, falling back to the relation.

Writes a JSON report (`--out-json`) and asserts nothing.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import random
import re
import statistics
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

log = logging.getLogger("bench.train_compact_vocab")
RESULTS = Path(__file__).resolve().parent / "results"


def setup(threads: int | None = None):
    """The default preset, its training setup and fresh model (as the pipeline builds them), and the compact
    vocabulary of every split."""
    import torch

    from training.compact_vocab import CompactVocab
    from training.presets import PRESETS
    from training.setup import TrainingSetup, load_training_data, starting_model

    config = PRESETS["default"]
    torch.set_num_threads(threads or config.threads)
    data = load_training_data(config)
    start = starting_model(None, config.start_spec(), config.sft.seed, data)
    training = TrainingSetup.build(data, start.ctx, config.eval_examples)
    ctx = start.ctx
    vocab = CompactVocab.for_training(ctx, start.model, training.sequences, ctx.encode(data.dev), ctx.encode(data.test))
    return config, training, start.model, vocab


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# speed ----------------------------------------------------------------------


# before and after of each `speed --compare`: the SFTConfig fields each arm sets
SPEED_ARMS: dict[str, dict[str, dict]] = {
    "table": {"full": {"compact_vocab": False}, "compact": {"compact_vocab": True}},
    "precision": {"fp32": {"precision": "fp32"}, "bf16": {"precision": "bf16"}},
    "attention": {"sdpa": {"attention": "sdpa"}, "eager": {"attention": "eager"}},
}


def speed(args: argparse.Namespace) -> dict:
    import torch

    from training.compact_vocab import CompactVocab
    from training.sft import train_sft

    config, training, model, vocab = setup(args.threads)
    ctx, train = training.ctx, training.sequences
    loop_rows = len(  # what the loop keeps: the training rows' tokens, the completion vocabulary, pad and labels
        CompactVocab.from_sequences(
            train, special_ids=[ctx.pad_id, *ctx.labels.token_ids, *training.vocab.tolist()], full_size=vocab.full_size
        )
    )
    objective = full_softmax_losses(model, training, vocab, args.block_steps, config.sft.grade_weight)
    arms = SPEED_ARMS[args.compare]  # before, after
    before, after = arms
    models = {before: model, after: copy.deepcopy(model)}
    wall: dict[str, list[float]] = {name: [] for name in arms}
    cpu: dict[str, list[float]] = {name: [] for name in arms}
    calls: dict[str, list[float]] = {name: [] for name in arms}
    losses: dict[str, list[float]] = {name: [] for name in arms}
    ratios: dict[str, list[float]] = {"wall": [], "cpu": []}
    load_before = load()
    for block in range(args.blocks):
        sft = replace(config.sft.with_steps(args.block_steps), warmup_steps=1, seed=block, log_every=1)
        order = (before, after) if block % 2 == 0 else (after, before)
        medians: dict[str, dict[str, float]] = {"wall": {}, "cpu": {}}
        for name in order:
            stamps: list[tuple[float, float]] = []
            started = time.perf_counter()
            result = train_sft(
                models[name],
                train,
                ctx.labels,
                replace(sft, **arms[name]),
                ctx.pad_id,
                progress=lambda _line, s=stamps: s.append((time.perf_counter(), time.process_time())),
                vocab=training.vocab,
            )
            calls[name].append(time.perf_counter() - started)
            pairs = list(zip(stamps, stamps[1:], strict=False))  # steps 2..K
            for clock, i, store in (("wall", 0, wall), ("cpu", 1, cpu)):
                times = [b[i] - a[i] for a, b in pairs]
                store[name] += times
                medians[clock][name] = statistics.median(times)
            losses[name] += result.losses
        for clock, rs in ratios.items():
            rs.append(medians[clock][before] / medians[clock][after])
        log.info(
            "block %d (%s first): %s/%s median step time %.2f wall, %.2f cpu; load %s",
            block,
            order[0],
            before,
            after,
            ratios["wall"][-1],
            ratios["cpu"][-1],
            load(),
        )
    state_before, state_after = models[before].state_dict(), models[after].state_dict()
    per_arm = {
        name: {
            **arms[name],
            "timed_steps": len(wall[name]),
            "median_step_s": statistics.median(wall[name]),
            "mean_step_s": statistics.mean(wall[name]),
            "median_step_cpu_s": statistics.median(cpu[name]),
            "steps_per_min": 60 / statistics.median(wall[name]),
            "median_call_s": statistics.median(calls[name]),
            "steps_per_min_whole_calls": 60 * args.block_steps / statistics.median(calls[name]),
        }
        for name in wall
    }
    return {
        "threads": torch.get_num_threads(),
        "load_before": load_before,
        "load_after": load(),
        "compact_rows": loop_rows,
        "full_rows": vocab.full_size,
        "blocks": args.blocks,
        "block_steps": args.block_steps,
        "arms": per_arm,
        "speedup_per_block": {clock: [round(r, 3) for r in rs] for clock, rs in ratios.items()},
        "speedup_median": {clock: statistics.median(rs) for clock, rs in ratios.items()},
        "compare": args.compare,
        "speedup_whole_calls": statistics.median(calls[before]) / statistics.median(calls[after]),
        "table_share_of_step": {clock: 1 - 1 / statistics.median(rs) for clock, rs in ratios.items()},
        "max_abs_loss_difference": max(abs(a - b) for a, b in zip(losses[before], losses[after], strict=True)),
        "max_abs_parameter_difference": max(
            (state_before[k] - state_after[k]).abs().max().item() for k in state_before
        ),
        "first_batch_loss": objective,
    }


def full_softmax_losses(model, training, vocab, batch_size: int, grade_weight: float) -> dict:
    """The loss of one batch, softmax over the completion vocabulary and over the whole table, on the full
    table and on a compact copy (the restricted softmax is the same on both; the whole-table one is not)."""
    import torch

    from training.sft import sft_loss
    from training.sft_data import collate, common_prefix

    ctx = training.ctx
    compact = copy.deepcopy(model)
    out = {}
    with vocab.compacted(compact):
        arms = {
            "full": (model, training.sequences, ctx.pad_id, training.vocab),
            "compact": (
                compact,
                vocab.encode(training.sequences[:batch_size]),
                vocab.id(ctx.pad_id),
                vocab.ids_to_compact(training.vocab),
            ),
        }
        for name, (m, seqs, pad, subset) in arms.items():
            prefix = torch.tensor(common_prefix(seqs))
            batch = collate(list(seqs[:batch_size]), pad, skip_prefix=len(prefix))
            with torch.no_grad():
                out[f"{name}_restricted_softmax"] = sft_loss(m, batch, subset, grade_weight, prefix).item()
                out[f"{name}_whole_table_softmax"] = sft_loss(m, batch, None, grade_weight, prefix).item()
    return out


# recipe ---------------------------------------------------------------------


def recipe(args: argparse.Namespace) -> dict:
    from training.evaluate.torch_model import evaluate_model
    from training.model_factory import load_causal_lm
    from training.sft import train_sft

    config, training, model, vocab = setup(args.threads)
    ctx = training.ctx
    # the table by hand (the compact arm keeps the rows of every split): the loop's own compaction off
    sft = replace(config.sft.with_steps(args.steps or config.sft.steps), compact_vocab=False)
    load_before = load()
    models = {}
    if args.table == "compact":
        table = vocab.shrink(model)
        result = train_sft(
            model,
            vocab.encode(training.sequences),
            vocab.labels(ctx.labels),
            sft,
            vocab.id(ctx.pad_id),
            progress=log.info,
            vocab=vocab.ids_to_compact(training.vocab),
        )
        models["mean"] = copy.deepcopy(model)
        vocab.expand(models["mean"], table, unseen="mean")
        vocab.expand(model, table, unseen="init")
    else:
        result = train_sft(
            model, training.sequences, ctx.labels, sft, ctx.pad_id, progress=log.info, vocab=training.vocab
        )
    load_after_sft = load()
    checkpoint = training.save(model, Path(args.out) / config.name, {"sft": sft})
    models["init"] = load_causal_lm(checkpoint).eval()  # what export reads
    evaluation = training.evaluate(models["init"])
    train_grades = training.train_grades
    clean = training.test[: args.probe_examples]
    probe_examples, unseen_fraction = unseen_probe(clean, training, vocab)
    probe = {"clean": evaluate_model(models["init"], ctx, clean, train_grades)["accuracy"]}
    for policy, m in sorted(models.items()):
        probe[f"unseen_words_{policy}"] = evaluate_model(m, ctx, probe_examples, train_grades)["accuracy"]
    test_only = test_only_token_examples(training)
    if test_only:
        for policy, m in sorted(models.items()):
            probe[f"test_only_tokens_{policy}"] = evaluate_model(m, ctx, test_only, train_grades)["accuracy"]
    return {
        "table": args.table,
        "steps": sft.steps,
        "threads": config.threads if args.threads is None else args.threads,
        "compact_rows": len(vocab),
        "load_before": load_before,
        "load_after_sft": load_after_sft,
        "sft_seconds": result.seconds,
        "sft_steps_per_min": 60 * sft.steps / result.seconds,
        "first_loss": result.losses[0],
        "last_loss": statistics.mean(result.losses[-10:]),
        "test": {
            k: evaluation[k]
            for k in ("examples", "accuracy", "majority_baseline_accuracy", "head_accuracy", "long_tail_accuracy")
            if k in evaluation
        },
        "category_heuristic": category_heuristic(training.data.train, training.test),
        "unseen_token_probe": {
            "examples": len(probe_examples),
            "test_only_token_examples": len(test_only),
            "inserted_tokens_unseen_fraction": unseen_fraction,
            "accuracy": probe,
        },
        "checkpoint": str(checkpoint),
        "sft_config": asdict(sft),
    }


def unseen_probe(examples: list, training, vocab, words_per_doc: int = 5) -> tuple[list, float]:
    """The examples with `words_per_doc` words of no world text inserted before the price sentence."""
    kept = set(vocab.kept.tolist())
    ctx = training.ctx
    candidates = sorted(
        token
        for token, i in ctx.hf_tokenizer.get_vocab().items()
        if i not in kept and re.fullmatch("\u0120[a-z]{4,}", token)  # "Ġword": a lowercase word after a space
    )
    rng = random.Random(0)
    out, inserted, unseen = [], 0, 0
    for e in examples:
        words = " ".join(t[1:] for t in rng.sample(candidates, words_per_doc))
        out.append(replace(e, document=e.document.replace(" Price $", f" {words}. Price $", 1)))
        ids = ctx.encoder._encode(f" {words}")
        inserted += len(ids)
        unseen += sum(i not in kept for i in ids)
    return out, unseen / max(1, inserted)


def test_only_token_examples(training) -> list:
    """Test examples whose prompt holds a token that no training prompt or completion has."""
    seen = {i for s in training.sequences for i in s.prompt_ids + s.completion_ids}
    ctx = training.ctx
    return [e for e in training.test if set(ctx.prompt_ids(e.query, e.document)) - seen]


# unseen ---------------------------------------------------------------------


def unseen(args: argparse.Namespace) -> dict:
    """Each policy for rows training never changed, applied to a saved checkpoint and measured."""
    from training.evaluate.torch_model import evaluate_model, predict_grades
    from training.model_factory import build_tiny_qwen3, load_causal_lm

    if not (Path(args.checkpoint) / "config.json").is_file():
        raise SystemExit(f"{args.checkpoint}: not a checkpoint folder (no config.json)")
    config, training, init_model, vocab = setup(args.threads)
    ctx = training.ctx
    init_table = vocab.shrink(init_model)  # the from-scratch rows, as the checkpoint's run started from them
    trained = load_causal_lm(args.checkpoint).eval()
    if not torch_equal_init(trained, build_tiny_qwen3(config.model, seed=config.sft.seed), vocab):
        raise SystemExit(f"{args.checkpoint}: its untrained rows are not the preset's init; give a default-preset run")
    vocab.shrink(trained)
    clean = training.test[: args.probe_examples]
    probe_examples, unseen_fraction = unseen_probe(clean, training, vocab)
    test_only = test_only_token_examples(training)
    out: dict = {"checkpoint": args.checkpoint, "examples": len(clean), "test_only_token_examples": len(test_only)}
    out["inserted_tokens_unseen_fraction"] = unseen_fraction
    gold = [e.grade for e in probe_examples]
    right: dict[str, list[bool]] = {}
    for policy in args.policies:
        model = copy.deepcopy(trained)
        vocab.expand(model, init_table, unseen=policy)
        explained = evaluate_model(model, ctx, clean, training.train_grades, explain=args.explain)
        right[policy] = [p == g for p, g in zip(predict_grades(model, ctx, probe_examples), gold, strict=True)]
        first = args.policies[0]
        out[policy] = {
            "clean_accuracy": explained["accuracy"],
            "unseen_words_accuracy": sum(right[policy]) / len(gold),
            # paired against the first policy: examples only this one gets right / only the first one does
            f"unseen_words_vs_{first}": {
                "wins": sum(a and not b for a, b in zip(right[policy], right[first], strict=True)),
                "losses": sum(b and not a for a, b in zip(right[policy], right[first], strict=True)),
            },
            "test_only_tokens_accuracy": evaluate_model(model, ctx, test_only, training.train_grades)["accuracy"],
            "explanations_full_vocabulary": {
                k: explained["explanations"][k]
                for k in ("explained_examples", "format_validity", "first_token_accuracy")
            },
        }
        log.info("%s: %s", policy, out[policy])
    return out


def torch_equal_init(trained, fresh, vocab) -> bool:
    """Whether the rows of tokens outside the compact vocabulary are still the fresh model's init."""
    import torch

    outside = torch.ones(vocab.full_size, dtype=torch.bool)
    outside[vocab.kept] = False
    a, b = trained.get_input_embeddings().weight[outside], fresh.get_input_embeddings().weight[outside]
    return bool(torch.equal(a, b))


# heuristic ------------------------------------------------------------------


def category_heuristic(train: list, test: list) -> dict:
    """Accuracy of the grade predicted from the query's type against the document's Category line."""
    from training.evaluate.baselines import category_baselines

    found = category_baselines(train, test) or {}
    return {
        "relation_accuracy": found.get("category_heuristic_accuracy"),
        "pair_table_accuracy": found.get("pair_table_heuristic_accuracy"),
        "examples": len(test),
    }


def heuristic(_args: argparse.Namespace) -> dict:
    from training.presets import PRESETS
    from training.setup import load_training_data

    data = load_training_data(PRESETS["default"])
    return category_heuristic(data.train, data.test)


# command ----------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("speed", help="steps/min of the preset's SFT, compact_vocab off vs on, side by side")
    s.add_argument("--blocks", type=int, default=8)
    s.add_argument("--block-steps", type=int, default=6)
    s.add_argument(
        "--compare",
        choices=sorted(SPEED_ARMS),
        default="table",
        help="table: full vs compact vocabulary; precision: fp32 vs bf16 autocast (both compact); "
        "attention: sdpa vs eager attention kernel (both compact, the preset's precision)",
    )
    r = sub.add_parser("recipe", help="the default recipe's SFT, test accuracy, unseen-token probe")
    r.add_argument("--table", choices=("full", "compact"), default="compact")
    r.add_argument("--steps", type=int, default=None, help="SFT steps (default: the preset's)")
    r.add_argument("--out", default="/tmp/afrl-compact-vocab")
    r.add_argument("--probe-examples", type=int, default=1000)
    u = sub.add_parser("unseen", help="rows training never changed: init, mean or zero, on a saved checkpoint")
    u.add_argument("checkpoint", help="a default-preset checkpoint (OUT/afrl-default-tiny-qwen3)")
    u.add_argument("--policies", nargs="+", default=["init", "mean", "zero"])
    u.add_argument("--probe-examples", type=int, default=2000)
    u.add_argument("--explain", type=int, default=100, help="completions decoded over the full vocabulary")
    h = sub.add_parser("heuristic", help="the category heuristic on the test split")
    for q in (s, r, u):
        q.add_argument("--threads", type=int, default=None, help="torch threads (default: the preset's)")
    for q in (s, r, u, h):
        q.add_argument("--out-json", default=None, help="report path (default: bench/results/...)")


def run(args: argparse.Namespace) -> int:
    report = {"speed": speed, "recipe": recipe, "unseen": unseen, "heuristic": heuristic}[args.what](args)
    compare = "" if report.get("compare", "table") == "table" else f"_{report['compare']}"
    speed_tag = f"speed_loop{compare}_{report.get('threads')}threads"
    tag = {"speed": speed_tag, "unseen": "unseen", "heuristic": "heuristic"}.get(
        args.what, f"recipe_{report.get('table')}_{report.get('steps')}"
    )
    path = Path(args.out_json) if args.out_json else RESULTS / f"train_compact_vocab_{tag}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
