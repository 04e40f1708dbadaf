"""One setup for every training command: data, tokenizer, template, labels, vocabulary, teacher.

`afrl train pipeline` and the stage commands (`afrl train sft|rl|distill`)
all start here, so they read data, encode prompts and build teachers the
same way:

    data = load_training_data(preset, data_dir, guideline_file)        # TrainingData: train/dev/test + guideline
    start = starting_model(checkpoint, preset.start_spec(), seed, data)  # StartingModel: weights + TrainingContext
    setup = TrainingSetup.build(data, start.ctx, preset.eval_examples)
    setup.pools, setup.vocab, setup.rl_prompts(), setup.expert()         # what the stages train on
    setup.teacher(distill_config, model=...)                             # checkpoint or endpoint teacher
    setup.evaluate(model, explain), setup.save(model, folder, configs)

Data: a `TrainingData` is the generated world (`generated_world`) or a
dataset folder or file read and checked by `afrl.dataset` (`--data`,
through `from_dataset`, which takes any Dataset-like object with `train`,
`dev`, `test` lists of examples and a `guideline`).

Models: `starting_model` builds the preset's tiny Qwen3 from scratch, loads
an afrl checkpoint (a folder with `afrl.json`: its tokenizer, guideline and
label values), or any other Hugging Face causal LM, folder or hub id, through
`training.base_model` (its own tokenizer and chat template, every label checked
to be one token of it, the data's guideline and labels). `lora_rank` wraps the
loaded model in peft adapters; `TrainingSetup.save` merges them, so the saved
checkpoint is a plain one with its `afrl.json`. A plain checkpoint is
pretrained: `pretrained_sft` gives it a learning rate for that when the
preset's (tuned from scratch) is still in place.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from afrl.dataset import SPLITS, Example
from afrl.labels import DEFAULT_GRADES
from afrl.progress import Progress, say
from afrl.sidecar import read_sidecar, sidecar_path
from training.context import TrainingContext, checkpoint_context, save_checkpoint
from training.distill import DistillConfig
from training.model_factory import TinyQwen3Spec, build_tiny_qwen3, load_causal_lm
from training.rl import RLExample, rl_examples
from training.sft import SFTConfig
from training.sft_data import SFTSequence
from training.teachers import CheckpointTeacher, EndpointTeacher, Teacher
from training.world import build_world, guideline_text

log = logging.getLogger(__name__)


# Peak learning rates for a pretrained checkpoint: the presets' 4e-3 is tuned for a tiny Qwen3 from
# scratch and wrecks a pretrained model within a few steps. LoRA adapters start at zero and want more.
PRETRAINED_LEARNING_RATE = 1e-5
PRETRAINED_LORA_LEARNING_RATE = 2e-4


# data -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorldSpec:
    """Where a generated world came from: enough to generate more of it (evolution, extra prompts)."""

    seed: int
    n_queries: int
    docs_per_query: int

    def fresh_examples(self, n: int, exclude_queries: frozenset[str]) -> list[Example]:
        """About `n` examples of a new world (seed + 1000) whose queries are not in `exclude_queries`."""
        extra = build_world(
            seed=self.seed + 1000, n_queries=max(3, n // self.docs_per_query + 3), docs_per_query=self.docs_per_query
        )
        return [e for e in extra.train + extra.dev + extra.test if e.query not in exclude_queries][:n]


@dataclass(frozen=True)
class TrainingData:
    """What every training command reads: three splits of examples and the guideline they are graded by.

    The generated world and `afrl.dataset` both give `afrl.dataset.Example` rows.
    """

    train: list[Example]
    dev: list[Example]  # may be empty (a dataset without one and too few queries to split it off)
    test: list[Example]
    guideline: str
    label_values: tuple[int, ...] = DEFAULT_GRADES
    source: str = ""  # shown in reports: the generated world's parameters, or the data folder
    world: WorldSpec | None = None  # set for the generated world
    summary: tuple[str, ...] = ()  # what the loader found (rows per split, grades, duplicates), one line each

    def __post_init__(self) -> None:
        if not self.train:
            raise ValueError(f"{self.source or 'the data'}: the train split is empty")
        if not self.test:
            raise ValueError(f"{self.source or 'the data'}: the test split is empty")
        if not self.guideline.strip():
            raise ValueError(
                f"{self.source or 'the data'}: no guideline: put guideline.md beside the data or pass --guideline-file"
            )

    def with_guideline(self, guideline: str | None) -> TrainingData:
        return self if guideline is None else replace(self, guideline=guideline)


def generated_world(seed: int, n_queries: int, docs_per_query: int) -> TrainingData:
    world = build_world(seed=seed, n_queries=n_queries, docs_per_query=docs_per_query)
    return TrainingData(
        world.train,
        world.dev,
        world.test,
        guideline_text(),
        source=f"generated world (seed {seed}, {n_queries} queries x {docs_per_query} documents)",
        world=WorldSpec(seed, n_queries, docs_per_query),
    )


def from_dataset(dataset: Any, source: str = "", guideline: str | None = None) -> TrainingData:
    """A Dataset-like object: `train`, `dev`, `test` lists of examples, `guideline` (str or None), and
    optionally `labels.values`, `report.summary_lines()` (as `afrl.dataset.Dataset` has them).

    guideline: replaces the dataset's (`--guideline-file`).
    """
    labels = getattr(dataset, "labels", None)
    report = getattr(dataset, "report", None)
    return TrainingData(
        list(dataset.train),
        list(dataset.dev),
        list(dataset.test),
        guideline or dataset.guideline or "",
        tuple(labels.values) if labels is not None else DEFAULT_GRADES,
        source=source or str(getattr(dataset, "source", "")),
        summary=tuple(report.summary_lines()) if report is not None else (),
    )


def load_training_data(
    preset: Any, data_dir: str | None = None, guideline_file: str | None = None, progress: Progress | None = None
) -> TrainingData:
    """The preset's generated world, or the dataset at `data_dir`; `guideline_file` replaces the guideline.

    A dataset is read and checked by `afrl.dataset.load_dataset` (bad rows: a `DatasetError` listing
    them), and what it holds is said through `progress`.
    """
    from afrl.dataset import load_dataset, read_guideline

    guideline = None
    if guideline_file is not None:
        if not Path(guideline_file).is_file():
            raise FileNotFoundError(f"--guideline-file {guideline_file}: no such file")
        guideline = read_guideline(guideline_file)
    if data_dir is None:
        return generated_world(preset.world_seed, preset.n_queries, preset.docs_per_query).with_guideline(guideline)
    data = from_dataset(load_dataset(data_dir), source=str(data_dir), guideline=guideline)
    for line in data.summary:
        say(progress, log, line)
    return data


# models -----------------------------------------------------------------------------------------


@dataclass
class StartingModel:
    """The model a stage starts from and the context (tokenizer, prompt, labels) that goes with it."""

    model: torch.nn.Module
    ctx: TrainingContext
    source: str  # the checkpoint folder, or "random init (...)"


def is_afrl_checkpoint(checkpoint: str | None) -> bool:
    """A checkpoint folder that afrl training wrote (it has `afrl.json`); None (random init) is not one."""
    return checkpoint is not None and sidecar_path(Path(checkpoint)).is_file()


def starting_context(checkpoint: str | None, data: TrainingData, keep_guideline: bool = False) -> TrainingContext:
    """The context of `checkpoint` (None: Qwen3's tokenizer, for a fresh tiny Qwen3), without loading weights.

    The prompt carries `data.guideline`, except with `keep_guideline` (RL: an afrl checkpoint's own;
    a plain checkpoint has none and takes the data's). A plain checkpoint (folder or hub id without
    afrl.json) brings its own tokenizer and chat template; each grade must be one token of it.
    """
    if checkpoint is None:
        return TrainingContext.create(guideline=data.guideline, label_values=data.label_values)
    if not is_afrl_checkpoint(checkpoint):
        return _plain_context(checkpoint, data)
    sidecar = read_sidecar(Path(checkpoint))
    assert sidecar is not None
    if tuple(sidecar.label_values) != tuple(data.label_values):
        raise ValueError(
            f"{checkpoint} grades {list(sidecar.label_values)} but the data grades {list(data.label_values)}: "
            "give the data a labels.json with the checkpoint's values"
        )
    return checkpoint_context(checkpoint, None if keep_guideline else data.guideline)


def _plain_context(checkpoint: str, data: TrainingData) -> TrainingContext:
    """Tokenizer, chat-template prompt and label set of a plain Hugging Face checkpoint (no weights loaded)."""
    from afrl.prompt import PromptEncoder
    from training.base_model import (
        BaseModelError,
        _check_checkpoint,
        _serving_tokenizer,
        label_set,
        load_tokenizer,
        prompt_template,
    )

    _check_checkpoint(checkpoint)
    folder = Path(checkpoint)
    if folder.is_dir() and not any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        raise BaseModelError(
            f"{checkpoint}: the folder has no tokenizer (tokenizer.json); save the tokenizer beside it"
        )
    tokenizer = load_tokenizer(checkpoint)
    labels = label_set(tokenizer, data.label_values, checkpoint)
    template = prompt_template(tokenizer, data.guideline, checkpoint)
    return TrainingContext(tokenizer, PromptEncoder(template, _serving_tokenizer(tokenizer)), labels, data.guideline)


def starting_model(
    checkpoint: str | None,
    spec: TinyQwen3Spec,
    seed: int,
    data: TrainingData,
    *,
    keep_guideline: bool = False,
    lora_rank: int = 0,
) -> StartingModel:
    """A fresh tiny Qwen3 of `spec` (checkpoint None; `seed` sets its init) or a checkpoint's weights.

    lora_rank > 0: peft adapters of that rank on the checkpoint (only they train); a fresh model
    has nothing pretrained to adapt and is refused.
    """
    check_lora(checkpoint, lora_rank)
    if checkpoint is None:
        ctx = starting_context(None, data)
        return StartingModel(build_tiny_qwen3(spec, seed=seed), ctx, f"random init ({spec.hidden_size}-wide Qwen3)")
    from training.base_model import wrap_lora

    ctx = starting_context(checkpoint, data, keep_guideline)
    if is_afrl_checkpoint(checkpoint):
        model = load_causal_lm(checkpoint).eval()
    else:
        from training.base_model import load_model

        model = load_model(checkpoint).eval()
    if lora_rank:
        model = wrap_lora(model, lora_rank)
    return StartingModel(model, ctx, str(checkpoint))


def check_lora(checkpoint: str | None, lora_rank: int, flag: str = "--base") -> None:
    """LoRA adapts a pretrained checkpoint; a fresh model (checkpoint None) has nothing to adapt."""
    if lora_rank and checkpoint is None:
        raise ValueError(
            f"--lora-rank {lora_rank} adapts a pretrained model: give {flag} CHECKPOINT "
            "(a model trained from scratch trains all its weights)"
        )


def pretrained_sft(sft: SFTConfig, preset_sft: SFTConfig, checkpoint: str | None) -> SFTConfig:
    """`sft` with a pretrained model's learning rate when `checkpoint` is a plain Hugging Face one and
    the learning rate is still the preset's (nothing set it: the preset's is tuned from scratch)."""
    if checkpoint is None or is_afrl_checkpoint(checkpoint) or sft.learning_rate != preset_sft.learning_rate:
        return sft
    lr = PRETRAINED_LORA_LEARNING_RATE if sft.lora_rank else PRETRAINED_LEARNING_RATE
    log.info(
        "%s is pretrained: learning rate %g instead of the preset's %g (--lr sets it)",
        checkpoint,
        lr,
        sft.learning_rate,
    )
    return replace(sft, learning_rate=lr)


# the setup --------------------------------------------------------------------------------------


@dataclass
class TrainingSetup:
    """The data encoded for one model's context, and everything the stages derive from it."""

    data: TrainingData
    ctx: TrainingContext
    sequences: list[SFTSequence]  # data.train, encoded (prompt + reference completion)
    pools: dict[str, list[SFTSequence]]  # curriculum pools: all, head, long_tail, evolved
    vocab: torch.Tensor  # the completion vocabulary: every token a completion may need (labels included)
    test: list  # the evaluated test examples (capped by the preset's eval_examples)
    evolved: list = field(default_factory=list)  # examples from instruction evolution, aligned with pools["evolved"]

    @classmethod
    def build(cls, data: TrainingData, ctx: TrainingContext, eval_examples: int | None = None) -> TrainingSetup:
        sequences = ctx.encode(data.train)
        pools = {
            "all": sequences,
            "head": [s for s, e in zip(sequences, data.train, strict=True) if not e.long_tail],
            "long_tail": [s for s, e in zip(sequences, data.train, strict=True) if e.long_tail],
            "evolved": [],
        }
        test = data.test if eval_examples is None else data.test[:eval_examples]
        return cls(data, ctx, sequences, pools, ctx.vocab(sequences), test)

    def with_guideline(self, guideline: str) -> TrainingSetup:
        """The same data and evaluated test rows, encoded for a prompt with another guideline."""
        other = TrainingSetup.build(self.data.with_guideline(guideline), self.ctx.with_guideline(guideline))
        other.test = self.test
        if self.evolved:
            other.add_evolved(self.evolved)
        return other

    @property
    def train_grades(self) -> list[int]:
        return [e.grade for e in self.data.train]

    @property
    def heldout_queries(self) -> frozenset[str]:
        """Queries of the dev and test splits: nothing generated for training may reuse them."""
        return frozenset(e.query for e in self.data.dev + self.data.test)

    def add_evolved(self, examples: Sequence) -> None:
        """Make `examples` the evolved pool (the curriculum's last stage) and widen the vocabulary to them."""
        self.evolved = list(examples)
        self.pools["evolved"] = self.ctx.encode(self.evolved)
        self.vocab = torch.unique(torch.cat([self.vocab, self.ctx.vocab(self.pools["evolved"])]))

    def expert(self) -> list[SFTSequence]:
        """The expert pool of mode-balanced RL: demonstrations a long-tail rule decided (train and evolved)."""
        evolved = [s for s, e in zip(self.pools["evolved"], self.evolved, strict=True) if e.long_tail]
        return self.pools["long_tail"] + evolved

    def rl_prompts(self) -> list[RLExample]:
        return rl_examples(self.data.train, self.sequences)

    def distill_prompts(self, config: DistillConfig) -> list[tuple[str, str]]:
        """(query, document) pairs the teacher labels: a sample of train, plus fresh world prompts if asked."""
        return [(e.query, e.document) for e in self.distill_examples(config)]

    def distill_examples(self, config: DistillConfig) -> list[Example]:
        """The examples behind `distill_prompts`, gold grades included."""
        train = self.data.train
        chosen = (
            train
            if config.train_prompts is None or config.train_prompts >= len(train)
            else random.Random(config.sft.seed).sample(train, config.train_prompts)
        )  # many queries, not the first few
        examples = list(chosen)
        if config.extra_prompts and self.data.world is None:
            log.warning("distill: no extra prompts (they come from the generated world, not from %s)", self.data.source)
        elif config.extra_prompts and self.data.world is not None:
            examples += self.data.world.fresh_examples(config.extra_prompts, self.heldout_queries)
        return examples

    def teacher(self, config: DistillConfig, model: torch.nn.Module | None = None, name: str = "checkpoint") -> Teacher:
        """The endpoint teacher when `config` names one (its key from `config.teacher_api_key_env`), else `model`."""
        if config.teacher_base_url:
            api_key = os.environ.get(config.teacher_api_key_env)
            if api_key is None:
                log.info(
                    "no %s in the environment: calling the teacher endpoint without a key", config.teacher_api_key_env
                )
            return EndpointTeacher(
                config.teacher_base_url, config.teacher_model or "", self.ctx, api_key, config.max_new_tokens
            )
        if model is None:
            raise ValueError("give a teacher: a checkpoint (--teacher) or an endpoint (--teacher-endpoint)")
        return CheckpointTeacher(model, self.ctx, self.vocab, config.max_new_tokens, name=name)

    def checkpoint_teacher(self, start: StartingModel, config: DistillConfig) -> Teacher:
        """A teacher loaded from a checkpoint, prompted through its own context (its tokenizer and guideline)."""
        same = start.ctx.hf_tokenizer.get_vocab() == self.ctx.hf_tokenizer.get_vocab()
        vocab = self.vocab if same else start.ctx.vocab(start.ctx.encode(self.data.train))
        return CheckpointTeacher(start.model, start.ctx, vocab, config.max_new_tokens, name=start.source)

    def evaluate(self, model: torch.nn.Module, explain: int = 0) -> dict:
        """Test figures (`evaluate_model`); explanations are decoded over the completion vocabulary."""
        from training.evaluate.torch_model import evaluate_model

        report = evaluate_model(model, self.ctx, self.test, self.train_grades, explain, self.vocab)
        report.update(self.heuristics)
        return report

    @cached_property
    def heuristics(self) -> dict[str, float]:
        """The one-cue heuristics on the evaluated test rows (empty when the data is not written like the world)."""
        from training.evaluate.baselines import category_baselines

        return category_baselines(self.data.train, self.test) or {}

    def save(self, model: torch.nn.Module | None, folder: Path, configs: dict[str, Any]) -> Path:
        """The checkpoint folder with its afrl.json; LoRA adapters are merged first (`merged` gives the model)."""
        return save_checkpoint(None if model is None else merged(model), folder, self.ctx, configs)

    def write_data(self, folder: Path) -> None:
        """What the run trained and was measured on, as a dataset folder (`--data` reads it back)."""
        from afrl.dataset import DatasetLabels, write_dataset

        labels = DatasetLabels.default(self.data.label_values)
        write_dataset(folder, {split: getattr(self.data, split) for split in SPLITS}, self.data.guideline, labels)


def merged(model: torch.nn.Module) -> torch.nn.Module:
    """`model` with any LoRA adapters folded into its weights (the peft wrapper is spent afterwards)."""
    from training.base_model import merge_lora

    return merge_lora(model)
