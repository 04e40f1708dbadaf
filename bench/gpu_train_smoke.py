"""GPU smoke test of the training stack at real size: a few SFT and RL steps on the Qwen3-0.6B architecture.

One call, at most ~5 minutes on one H100/H200. Random init (nothing can be
downloaded), bf16 compute (autocast; fp32 master weights and AdamW state, as
TRL's `bf16=True` does: pure-bf16 weights would round small updates away),
the real dimensions: hidden 1024, 28 layers, 16
heads, 8 KV heads, head_dim 128, intermediate 3072, vocabulary 151,936, tied
embeddings. What it runs, each phase timed and guarded by the time budget:

    1. sft        `training.sft.train_sft` (the plain loop: shared prefix, restricted vocabulary)
    2. rl         `training.rl.train_rl`, mode-balanced (lambda 0.5): rollouts, step rewards,
                  stepwise advantages, clipped loss + expert NLL
    3. trl-grpo   `training.trl_grpo.StepwiseGRPOTrainer` (TRL's GRPOTrainer engine, HF generate),
                  a few steps with lambda 0.5
    4. checks     every phase: finite losses, every trainable parameter moved (the tied
                  embedding on the rows the loss reaches), peak GPU memory, seconds per step

A random model samples text without grades, so its RL rewards are flat and the
policy gradient is near zero; the smoke checks the machinery (shapes, dtypes,
devices, memory, speed), the CPU tests check the algorithm.

    python -m afrl.cli bench gpu-train-smoke          # on the GPU machine; writes $OUT/gpu_train_smoke.json
    afrl bench gpu-train-smoke --tiny                 # CPU, tiny dimensions: checks this command's logic

It lives with the benchmarks (one tree, one way to run them) but checks the
training stack: `training.sft`, `training.rl` and `training.trl_grpo`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from bench.qwen3_0p6b import QWEN3_0P6B as CHECKPOINT_DIMS

if TYPE_CHECKING:
    import torch

# The benchmarks' 0.6B dims with Qwen3's real RoPE base, and positions enough for the smoke's sequences.
QWEN3_0P6B = dict(CHECKPOINT_DIMS, max_position_embeddings=4096, rms_norm_eps=1e-6, rope_theta=1_000_000.0)
TINY = dict(
    QWEN3_0P6B,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    intermediate_size=128,
)


def build_model(dims: dict, device: torch.device):
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(**dims)  # bos, eos and pad ids: Qwen3's, in the dims
    torch.manual_seed(0)
    with torch.device(device):
        return Qwen3ForCausalLM(config)


def snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def unmoved(model, before: dict, rows: torch.Tensor) -> list[str]:
    import torch

    out = []
    for name, p in model.named_parameters():
        now, then = (p[rows], before[name][rows]) if "embed_tokens" in name else (p, before[name])
        if torch.equal(now, then):
            out.append(name)
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tiny", action="store_true", help="CPU, tiny dimensions (checks the command's logic)")
    p.add_argument("--sft-steps", type=int, default=6)
    p.add_argument("--rl-steps", type=int, default=3)
    p.add_argument("--trl-steps", type=int, default=2)
    p.add_argument("--budget-s", type=float, default=270, help="skip phases that would start after this")
    p.add_argument("--out", default=os.environ.get("OUT", "."), help="folder for gpu_train_smoke.json")


def run(args: argparse.Namespace) -> int:
    import torch

    started = time.perf_counter()

    from training.context import TrainingContext
    from training.rl import RLConfig, rl_examples, train_rl
    from training.sft import SFTConfig, train_sft
    from training.world import build_world

    cuda = torch.cuda.is_available() and not args.tiny
    device = torch.device("cuda" if cuda else "cpu")
    dims = TINY if args.tiny else QWEN3_0P6B
    if not cuda and not args.tiny:
        print("no GPU: run with --tiny to check the logic on CPU", file=sys.stderr)
        return 2
    result: dict = {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "precision": "bf16 autocast, fp32 weights" if cuda else "fp32",
        "dims": dims,
        "torch": torch.__version__,
        "phases": {},
    }

    ctx = TrainingContext.create()
    world = build_world(seed=0, n_queries=60, docs_per_query=6)
    sequences = ctx.encode(world.train)
    vocab = ctx.vocab(sequences)
    model = build_model(dims, device)
    result["parameters"] = sum(p.numel() for p in model.parameters())
    result["setup_s"] = time.perf_counter() - started

    def phase(name: str, fn) -> None:
        if time.perf_counter() - started > args.budget_s:
            result["phases"][name] = {"skipped": "time budget"}
            return
        if cuda:
            torch.cuda.reset_peak_memory_stats()
            torch.cuda.synchronize()
        t = time.perf_counter()
        try:
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                info = fn()
            ok = info.pop("ok", True)
        except Exception as e:  # report every phase, even after one fails
            info, ok = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-2000:]}, False
        if cuda:
            torch.cuda.synchronize()
            info["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 1e9
        info["seconds"] = time.perf_counter() - t
        info["ok"] = ok
        result["phases"][name] = info
        print(f"{name}: {json.dumps({k: v for k, v in info.items() if k != 'traceback'})}", flush=True)

    def sft() -> dict:
        before = snapshot(model)
        config = SFTConfig(steps=args.sft_steps, batch_size=8, learning_rate=1e-4, warmup_steps=1, log_every=1)
        r = train_sft(model, sequences, ctx.labels, config, ctx.pad_id, progress=print, vocab=vocab)
        still = unmoved(model, before, vocab.to(device))
        return {
            "losses": r.losses,
            "seconds_per_step": r.seconds / len(r.losses),
            "unmoved": still,
            "ok": all(math.isfinite(x) for x in r.losses) and not still,
        }

    def rl() -> dict:
        before = snapshot(model)
        config = RLConfig(
            steps=args.rl_steps,
            prompts_per_step=4,
            group_size=4,
            learning_rate=1e-5,
            max_new_tokens=48,
            lam=0.5,
            expert_batch_size=4,
            log_every=1,
        )
        r = train_rl(model, rl_examples(world.train, sequences), sequences, ctx, config, vocab, progress=print)
        still = unmoved(model, before, vocab.to(device))
        return {
            "history": r.history,
            "seconds_per_step": r.seconds / len(r.history),
            "unmoved": still,
            "ok": all(math.isfinite(h["loss"]) for h in r.history) and not still,
        }

    def trl_grpo() -> dict:
        from training.trl_grpo import StepwiseGRPOConfig, StepwiseGRPOTrainer, expert_pairs, trl_dataset

        before = snapshot(model)
        out = tempfile.mkdtemp(prefix="afrl-trl-smoke-")
        config = StepwiseGRPOConfig(
            output_dir=out,
            per_device_train_batch_size=8,
            num_generations=4,
            max_completion_length=32,
            max_steps=args.trl_steps,
            learning_rate=1e-5,
            logging_steps=1,
            report_to="none",
            save_strategy="no",
            bf16=cuda,
            use_cpu=not cuda,
            gradient_checkpointing=cuda,
            seed=0,
            disable_tqdm=True,
        )
        trainer = StepwiseGRPOTrainer(
            model=model,
            args=config,
            train_dataset=trl_dataset(world.train[:32], ctx.encoder.template),
            processing_class=ctx.hf_tokenizer,
            rl=RLConfig(lam=0.5, expert_batch_size=4),
            expert=expert_pairs(world.train[:64], ctx.encoder.template, ctx.labels),
        )
        t = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t
        logs = [h for h in trainer.state.log_history if "loss" in h]
        still = unmoved(model, before, vocab.to(device))
        return {
            "logs": logs,
            "seconds_per_step": seconds / args.trl_steps,
            "unmoved": still,
            "ok": bool(logs) and all(math.isfinite(h["loss"]) for h in logs) and not still,
        }

    phase("sft", sft)
    phase("rl", rl)
    phase("trl_grpo", trl_grpo)
    result["total_s"] = time.perf_counter() - started
    result["ok"] = all(p.get("ok") for p in result["phases"].values())
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "gpu_train_smoke.json").write_text(json.dumps(result, indent=2, default=str))
    print(
        json.dumps(
            {
                "ok": result["ok"],
                "total_s": result["total_s"],
                "device": result["device"],
                **{
                    k: {
                        "ok": v.get("ok"),
                        "s/step": v.get("seconds_per_step"),
                        "peak_gb": v.get("peak_memory_gb"),
                        "error": v.get("error"),
                    }
                    for k, v in result["phases"].items()
                },
            },
            indent=2,
        )
    )
    return 0 if result["ok"] else 1
