"""Learning curves of candidate default recipes at equal CPU minutes (shape, learning rate, objective).

    afrl bench default-recipe [--minutes 3] [--arms 128x4:8e-3 256x2:6e-3 ...] [--parallel 2]
    afrl bench default-recipe --steps 1500 --out FILE   (equal steps instead: every arm 1,500 steps)
    afrl bench default-recipe --plot-only     (re-render the figure from the kept JSON)

Each arm is the `default` preset (training/presets.py) with its model shape
(hidden x layers; intermediate 3 x hidden, 4 query and 2 KV heads as the
preset has them), peak learning rate and, optionally, `labels` as the grade
objective (`SFTConfig.grade_objective`). An arm runs in its own process on
one torch thread, `--parallel` arms at a time, so that each arm's budget is
CPU time (`time.process_time`) rather than wall time: on a shared box the
wall clock says how busy the box was, the CPU clock what the arm computed.

The budget becomes steps by a probe: 20 steps of the arm's own model are
timed (CPU), and the schedule (warm-up, cosine) is laid over
`minutes / seconds-per-step` steps. One `SFTTrainer` (one AdamW, one
schedule) trains it in `--points` segments; after each, the dev split
(first `--dev` rows) is scored as serving scores it; evaluation time is not
counted. The test split is scored once at the end. Baselines (majority,
category heuristic, pair table) from `training.evaluate.baselines` on the
same rows.

Results: bench/results/default_recipe_sweep.json and .png (dev accuracy
against CPU minutes per arm, the baselines as lines).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger("bench.default_recipe")
RESULTS = Path(__file__).resolve().parent / "results"
OUT = RESULTS / "default_recipe_sweep.json"
DEFAULT_ARMS = ("128x4:8e-3", "256x2:6e-3", "256x2:6e-3:labels", "192x3:6e-3")


def parse_arm(text: str) -> dict:
    """'HIDDENxLAYERS:LR[:labels]' -> the arm's settings."""
    try:
        shape, lr, *rest = text.split(":")
        hidden, layers = (int(x) for x in shape.split("x"))
        objective = rest[0] if rest else "vocab"
        if objective not in ("vocab", "labels") or len(rest) > 1:
            raise ValueError
        return {"name": text, "hidden": hidden, "layers": layers, "lr": float(lr), "objective": objective}
    except ValueError:
        raise SystemExit(f"--arms {text!r}: write HIDDENxLAYERS:LR[:labels], e.g. 128x4:8e-3") from None


def run_arm(arm: dict, minutes: float, points: int, dev_rows: int, fixed_steps: int | None = None) -> dict:
    """Train one arm for `minutes` of CPU time (or `fixed_steps` steps); its dev curve and final test figures."""
    import copy
    from dataclasses import replace

    import torch

    from training.evaluate.torch_model import evaluate_model
    from training.model_factory import TinyQwen3Spec, body_parameters
    from training.presets import PRESETS
    from training.setup import TrainingSetup, load_training_data, starting_model
    from training.sft import SFTTrainer

    torch.set_num_threads(1)
    config = PRESETS["default"]
    spec = TinyQwen3Spec(  # the preset's 4 query / 2 KV heads at every width
        hidden_size=arm["hidden"], intermediate_size=3 * arm["hidden"], num_hidden_layers=arm["layers"]
    )
    data = load_training_data(config)
    start = starting_model(None, spec, config.sft.seed, data)
    setup = TrainingSetup.build(data, start.ctx, config.eval_examples)
    model, ctx = start.model, setup.ctx
    dev = data.dev[:dev_rows]
    base = replace(config.sft, learning_rate=arm["lr"], grade_objective=arm["objective"], log_every=10**9)

    probe_model = copy.deepcopy(model)
    probe = SFTTrainer(probe_model, base.with_steps(25), ctx.labels, ctx.pad_id)
    probe.train(setup.sequences, 5, vocab=setup.vocab)  # first steps allocate AdamW state: not timed
    t = time.process_time()
    probe.train(setup.sequences, 20, vocab=setup.vocab)
    step_s = (time.process_time() - t) / 20
    del probe, probe_model
    steps = fixed_steps or max(points, round(minutes * 60 / step_s))
    sft = base.with_steps(steps)
    trainer = SFTTrainer(model, sft, ctx.labels, ctx.pad_id)
    curve = []
    cpu = 0.0
    done = 0
    for i in range(points):
        take = round(steps * (i + 1) / points) - done
        t = time.process_time()
        trainer.train(setup.sequences, take, vocab=setup.vocab)
        cpu += time.process_time() - t
        done += take
        figures = evaluate_model(model, ctx, dev, setup.train_grades)
        curve.append({"step": done, "cpu_minutes": cpu / 60, "dev_accuracy": figures["accuracy"]})
        log.info(
            "%s: step %d/%d, %.2f CPU min, dev accuracy %.3f",
            arm["name"],
            done,
            steps,
            cpu / 60,
            curve[-1]["dev_accuracy"],
        )
    test = setup.evaluate(model)
    keys = ("accuracy", "head_accuracy", "long_tail_accuracy", "majority_baseline_accuracy")
    return {
        **arm,
        "steps": steps,
        "cpu_seconds_per_step": step_s,
        "body_parameters": body_parameters(model),
        "curve": curve,
        "test": {k: test[k] for k in keys if k in test} | setup.heuristics,
    }


def sweep(args: argparse.Namespace) -> dict:
    arms = [parse_arm(a) for a in args.arms]
    tmp = Path(args.work)
    tmp.mkdir(parents=True, exist_ok=True)
    running: list[tuple[subprocess.Popen, Path]] = []
    results = []
    loads = [os.getloadavg()[0]]
    start = time.perf_counter()

    def reap(block: bool) -> None:
        for proc, out in list(running):
            if block or proc.poll() is not None:
                if proc.wait() != 0:
                    raise SystemExit(f"arm {out.stem} failed (exit {proc.returncode}); its log: {out}.log")
                results.append(json.loads(out.read_text()))
                running.remove((proc, out))
                loads.append(os.getloadavg()[0])
                block = False

    for arm in arms:
        while len(running) >= args.parallel:
            reap(block=False)
            time.sleep(2)
        out = tmp / (arm["name"].replace(":", "_") + ".json")
        cmd = [sys.executable, "-m", "bench.default_recipe", "--arm", arm["name"], "--arm-out", str(out)]
        cmd += ["--minutes", str(args.minutes), "--points", str(args.points), "--dev", str(args.dev)]
        cmd += ["--steps", str(args.steps)] if args.steps else []
        running.append((subprocess.Popen(cmd, stderr=open(f"{out}.log", "w")), out))
    while running:
        reap(block=True)
    by_name = {r["name"]: r for r in results}
    return {
        "minutes_cpu_per_arm": args.minutes,
        "parallel": args.parallel,
        "wall_seconds": time.perf_counter() - start,
        "load_average_samples": [round(x, 2) for x in loads],
        "arms": [by_name[a["name"]] for a in arms],
    }


def plot(report: dict, path: Path) -> None:
    from afrl.plotting import pyplot, save

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for arm in report["arms"]:
        xs = [0.0] + [p["cpu_minutes"] for p in arm["curve"]]
        ys = [arm["test"]["majority_baseline_accuracy"]] + [p["dev_accuracy"] for p in arm["curve"]]
        ax.plot(xs, ys, marker="o", label=f"{arm['name']} ({arm['steps']} steps; test {arm['test']['accuracy']:.3f})")
    test = report["arms"][0]["test"]
    for key, style in (("category_heuristic_accuracy", "--"), ("pair_table_heuristic_accuracy", ":")):
        if key in test:
            ax.axhline(test[key], color="grey", linestyle=style, label=key.replace("_accuracy", "").replace("_", " "))
    ax.axhline(test["majority_baseline_accuracy"], color="black", linestyle="-.", label="majority")
    ax.set_xlabel("CPU minutes (one thread)")
    ax.set_ylabel("dev accuracy")
    ax.set_title("default recipe candidates at equal CPU time (shape hidden x layers : peak lr)")
    ax.legend(fontsize=7, loc="lower right")
    save(fig, path)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arms", nargs="+", default=list(DEFAULT_ARMS), help="HIDDENxLAYERS:LR[:labels] each")
    p.add_argument("--minutes", type=float, default=3.0, help="CPU minutes of training per arm")
    p.add_argument("--steps", type=int, help="equal steps instead of equal CPU minutes (every arm this many)")
    p.add_argument("--points", type=int, default=6, help="dev evaluations along each curve")
    p.add_argument("--dev", type=int, default=1000, help="dev rows scored at each point")
    p.add_argument("--parallel", type=int, default=2, help="arms at once (one thread each)")
    p.add_argument("--work", default="/tmp/afrl-default-recipe", help="per-arm results and logs")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--plot-only", action="store_true", help="re-render the figure from --out")
    p.add_argument("--arm", help=argparse.SUPPRESS)  # internal: run one arm in this process
    p.add_argument("--arm-out", type=Path, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.arm:
        result = run_arm(parse_arm(args.arm), args.minutes, args.points, args.dev, args.steps)
        args.arm_out.write_text(json.dumps(result))
        return 0
    if not args.plot_only:
        report = sweep(args)
        args.out.write_text(json.dumps(report, indent=1))
    report = json.loads(args.out.read_text())
    plot(report, args.out.with_suffix(".png"))
    for arm in report["arms"]:
        t = arm["test"]
        print(
            f"{arm['name']:>18}: {arm['steps']:5d} steps, test {t['accuracy']:.3f} "
            f"(long tail {t.get('long_tail_accuracy', float('nan')):.3f}), "
            f"final dev {arm['curve'][-1]['dev_accuracy']:.3f}"
        )
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
