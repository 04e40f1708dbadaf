"""Randomly initialised Qwen3-architecture models of a chosen size.

Tests and the embedded default model build their own small models (nothing
can be downloaded at run time); real runs load a checkpoint by path or hub id
through `load_causal_lm`, which is the same code path users take.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel, Qwen3Config, Qwen3ForCausalLM

log = logging.getLogger(__name__)

QWEN3_EMBEDDING_ROWS = 151_936  # Qwen3's embedding table (the tokenizer uses 151,669 of them)


@dataclass(frozen=True)
class TinyQwen3Spec:
    """Architecture of a small Qwen3 built from scratch (real vocabulary, small body)."""

    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 2048
    vocab_size: int = QWEN3_EMBEDDING_ROWS

    def __post_init__(self) -> None:
        if min(self.hidden_size, self.intermediate_size, self.num_hidden_layers, self.num_key_value_heads) < 1:
            raise ValueError(f"every size must be >= 1, got {asdict(self)}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must be a multiple of num_attention_heads {self.num_attention_heads}; "
                f"try num_attention_heads={max(1, self.hidden_size // 32)}"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads {self.num_attention_heads} must be a multiple of num_key_value_heads "
                f"{self.num_key_value_heads} (grouped-query attention); try num_key_value_heads=1"
            )
        if self.vocab_size < QWEN3_EMBEDDING_ROWS:
            raise ValueError(f"vocab_size {self.vocab_size} is below the Qwen3 tokenizer's {QWEN3_EMBEDDING_ROWS} rows")

    def config(self) -> Qwen3Config:
        return Qwen3Config(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads,
            head_dim=self.hidden_size // self.num_attention_heads,
            max_position_embeddings=self.max_position_embeddings,
            tie_word_embeddings=True,
            bos_token_id=151643,
            eos_token_id=151645,
            pad_token_id=151643,
        )


def build_tiny_qwen3(spec: TinyQwen3Spec, seed: int) -> Qwen3ForCausalLM:
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(spec.config())
    body = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n)
    log.info("built Qwen3 %s: %.2fM body parameters (+ tied embeddings)", asdict(spec), body / 1e6)
    return model


def load_causal_lm(checkpoint: str | Path, dtype: torch.dtype = torch.float32) -> PreTrainedModel:
    """A checkpoint folder or hub id, as users pass it."""
    return AutoModelForCausalLM.from_pretrained(str(checkpoint), dtype=dtype)


def body_parameters(model: PreTrainedModel) -> int:
    emb = model.get_input_embeddings().weight.numel()
    return sum(p.numel() for p in model.parameters()) - emb
