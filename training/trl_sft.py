"""SFT on TRL's SFTTrainer with completion-only loss: the real-size path (GPUs, accelerate).

The objective is `training.sft`'s without its two CPU speed tricks: NLL of
the completion tokens only ("<grade>\\n<explanation><|im_end|>", prompt tokens
masked: `completion_only_loss=True` on a prompt/completion data set), over the
full vocabulary, the grade token weighted `SFTConfig.grade_weight`
(`losses.grade_weighted_lm_loss`; at weight 1 TRL's own fused loss). On a GPU
the LM head is not the bottleneck, and SFTTrainer brings accelerate (DDP,
FSDP, ZeRO-3), packing and checkpointing. The stage's config is the same
`SFTConfig` the plain loop reads; `sft_args` derives TRL's arguments from it.

Under `accelerate launch --num_processes N`, `batch_size` is per process
(TRL's `per_device_train_batch_size`): a step sees N x batch_size sequences.
Build the arguments (`sft_args`) before loading the model: they start the
process group, which `from_pretrained` consults (`training.stages`).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

import torch

from training.context import TrainingContext
from training.losses import grade_weighted_lm_loss
from training.sft import SFTConfig

log = logging.getLogger(__name__)


def prompt_completion_dataset(examples, ctx: TrainingContext):
    from datasets import Dataset

    token_of = dict(zip(ctx.labels.values, ctx.labels.tokens, strict=True))
    return Dataset.from_list(
        [
            {
                "prompt": ctx.encoder.template.full_text(e.query, e.document),
                "completion": f"{token_of[e.grade]}\n{e.explanation}",
            }
            for e in examples
        ]
    )


def sft_args(config: SFTConfig, ctx: TrainingContext, out: Path, steps: int):
    """TRL's SFTConfig for the stage's `SFTConfig` (steps given: a curriculum sums its stages)."""
    from trl import SFTConfig as TRLSFTConfig

    if config.grade_objective != "vocab":
        raise ValueError(
            f"grade_objective {config.grade_objective!r} is the plain engine's: use --engine plain, "
            "or grade_objective 'vocab' with the trl engine"
        )
    if config.compact_vocab:
        log.info("compact vocabulary: off with the trl engine (TRL trains the full table)")

    cuda = torch.cuda.is_available()
    return TRLSFTConfig(
        output_dir=str(out),  # save_strategy "no": written only by save_model, the one checkpoint
        max_steps=steps,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup_steps,
        lr_scheduler_type="cosine",
        weight_decay=config.weight_decay,
        max_grad_norm=config.grad_clip,
        gradient_checkpointing=config.gradient_checkpointing is not False,  # TRL's default: on
        # non-reentrant: works under DDP and with frozen (LoRA) embeddings; transformers' default is reentrant
        gradient_checkpointing_kwargs={"use_reentrant": False},
        completion_only_loss=True,
        eos_token=ctx.encoder.template.completion_end,
        max_length=1024,
        bf16=cuda,
        use_cpu=not cuda,
        logging_steps=config.log_every,
        report_to="none",
        save_strategy="no",
        seed=config.seed,
    )


def trl_sft(model, args, examples, ctx: TrainingContext, config: SFTConfig):
    """Train `model` for `args.max_steps` steps (`args` from `sft_args`); returns the trainer."""
    from trl import SFTTrainer

    def weighted(outputs, labels, num_items_in_batch=None):
        return grade_weighted_lm_loss(outputs.logits, labels, config.grade_weight, num_items_in_batch)

    if not args.distributed_state.is_main_process:
        import datasets

        datasets.disable_progress_bars()  # every process tokenizes the data; one progress bar is enough
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=prompt_completion_dataset(examples, ctx),
        processing_class=ctx.hf_tokenizer,
        compute_loss_func=weighted if config.grade_weight != 1.0 else None,
    )
    return run_trainer(trainer)


def run_trainer(trainer):
    """`trainer.train()` with its log lines on stderr: a command's stdout holds its result alone."""
    with contextlib.redirect_stdout(sys.stderr):  # transformers' ProgressCallback writes each log dict to stdout
        trainer.train()
    return trainer
