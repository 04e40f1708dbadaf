"""What every training stage shares about a model: tokenizer, prompt encoder, label set, checkpoint folders.

A checkpoint is an ordinary Hugging Face folder (weights, config, tokenizer)
plus the `afrl.json` sidecar (`afrl.sidecar`: guideline and label values,
what export reads) and the effective `*Config` of every stage that produced
it, each as `<stage>_config.json` (readable back with `--config`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, is_dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from transformers import AutoTokenizer

from afrl.labels import DEFAULT_GRADES, LabelSet
from afrl.prompt import PromptEncoder, PromptTemplate
from afrl.sidecar import SIDECAR_NAME, Sidecar, read_sidecar
from afrl.tokenizer_files import qwen3_tokenizer_dir
from training.configs import save_config
from training.rollout import Rollouts, generate
from training.sft_data import SFTSequence, common_prefix, completion_vocab, encode_examples
from training.world import guideline_text


@dataclass
class TrainingContext:
    hf_tokenizer: Any
    encoder: PromptEncoder
    labels: LabelSet
    guideline: str
    _pieces: dict[int, str] = field(default_factory=dict, repr=False)

    @classmethod
    def create(
        cls,
        tokenizer_dir: str | Path | None = None,
        guideline: str | None = None,
        label_values: Sequence[int] = DEFAULT_GRADES,
    ) -> TrainingContext:
        """The context of a tokenizer folder (default: Qwen3's, offline) with a guideline (default: the world's)."""
        folder = Path(tokenizer_dir) if tokenizer_dir else qwen3_tokenizer_dir()
        hf = AutoTokenizer.from_pretrained(str(folder), fix_mistral_regex=False)  # the warning is false (STACK.md)
        guideline = guideline or guideline_text()
        template = PromptTemplate.from_chat_template(hf, guideline)
        fast = Tokenizer.from_file(str(folder / "tokenizer.json"))
        return cls(hf, PromptEncoder(template, fast), LabelSet.from_tokenizer(hf, label_values), guideline)

    def with_guideline(self, guideline: str) -> TrainingContext:
        """The same tokenizer, template and labels with another guideline in the system turn."""
        template = PromptTemplate.from_chat_template(self.hf_tokenizer, guideline)
        encoder = PromptEncoder(template, self.encoder.tokenizer, self.encoder.max_document_tokens)
        return TrainingContext(self.hf_tokenizer, encoder, self.labels, guideline)

    @property
    def sidecar(self) -> Sidecar:
        return Sidecar(guideline=self.guideline, label_values=self.labels.values)

    @property
    def pad_id(self) -> int:
        return self.hf_tokenizer.pad_token_id

    @property
    def eos_id(self) -> int:
        return self.hf_tokenizer.convert_tokens_to_ids(self.encoder.template.completion_end)

    @cached_property
    def prefix_len(self) -> int:
        """Tokens every prompt shares: the system turn with the guideline, up to the user turn's text.

        The user turn opens with "<|im_start|>user\n" and its text with a letter ("Query: "), and
        pre-tokenization never merges a newline with a letter, so the boundary is stable.
        """
        head = self.encoder.template.prefix.split("Query: {query}")[0]
        n = len(self.encoder._encode(head))
        probes = [self.encoder.encode_prefix(q) for q in ("alpha", "4k tv", "(x) y", "-")]
        shared = len(common_prefix([SFTSequence(p, [0], 0) for p in probes]))
        if shared < n:
            raise ValueError(f"prompts share only {shared} tokens, the system turn has {n}")
        return n

    def encode(self, examples) -> list[SFTSequence]:
        return encode_examples(examples, self.encoder, self.labels)

    def prompt_ids(self, query: str, document: str) -> list[int]:
        return self.encoder.encode(query, [document])[0].input_ids

    def decode(self, ids: list[int]) -> str:
        """Completion text without the end-of-turn token."""
        return self.hf_tokenizer.decode([i for i in ids if i != self.eos_id])

    def piece(self, token_id: int) -> str:
        """The text of one token (cached: step assignment decodes every sampled token)."""
        if token_id not in self._pieces:
            self._pieces[token_id] = self.hf_tokenizer.decode([token_id])
        return self._pieces[token_id]

    def greedy(
        self,
        model: torch.nn.Module,
        pairs: Sequence[tuple[str, str]],
        max_new_tokens: int,
        vocab: torch.Tensor | None = None,
        with_label_probs: bool = False,
        batch_size: int = 64,
    ) -> Rollouts:
        """Greedy completions of (query, document) prompts (vocab None: the full vocabulary)."""
        return generate(
            model,
            [self.prompt_ids(q, d) for q, d in pairs],
            prefix_len=self.prefix_len,
            eos_id=self.eos_id,
            max_new_tokens=max_new_tokens,
            vocab=vocab,
            greedy=True,
            label_ids=self.labels.token_ids if with_label_probs else None,
            batch_size=batch_size,
        )

    def vocab(self, *sequence_lists) -> torch.Tensor:
        """The completion vocabulary of all given sequence lists (labels always included)."""
        return completion_vocab([s for seqs in sequence_lists for s in seqs], self.labels)


def save_checkpoint(model: torch.nn.Module | None, path: Path, ctx: TrainingContext, configs: dict[str, Any]) -> Path:
    """Weights + tokenizer + afrl.json + `<stage>_config.json` for each config given.

    model None: the weights are already there (a TRL trainer's `save_model` wrote them).
    """
    path.mkdir(parents=True, exist_ok=True)
    if model is not None:
        model.save_pretrained(path)
    ctx.hf_tokenizer.save_pretrained(path)
    ctx.sidecar.write(path)
    for stage, config in configs.items():
        if not is_dataclass(config):
            raise TypeError(f"the {stage} config must be a config dataclass, got {type(config).__name__}")
        save_config(config, path / f"{stage}_config.json")
    return path


def checkpoint_context(path: str | Path, guideline: str | None = None) -> TrainingContext:
    """The tokenizer, prompt and labels of a checkpoint written by `save_checkpoint` (no weights loaded).

    guideline: replaces the text in its afrl.json (None: keep it).
    """
    path = Path(path)
    sidecar = read_sidecar(path)
    if sidecar is None:
        raise FileNotFoundError(f"{path} has no {SIDECAR_NAME}: not an afrl training checkpoint")
    tokenizer_dir = path if (path / "tokenizer.json").is_file() else None
    return TrainingContext.create(tokenizer_dir, guideline or sidecar.guideline, sidecar.label_values)


def load_checkpoint(path: str | Path, dtype: torch.dtype = torch.float32) -> tuple[torch.nn.Module, TrainingContext]:
    """A checkpoint written by `save_checkpoint` (or any HF causal LM folder with an afrl.json)."""
    from training.model_factory import load_causal_lm

    ctx = checkpoint_context(path)
    return load_causal_lm(path, dtype=dtype).eval(), ctx
