"""Test constants and a serving-side view of an artifact, written independently of export/ so the tests check it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from tokenizers import Tokenizer

from afrl.manifest import Manifest, load_manifest
from afrl.prompt import PromptEncoder

GUIDELINE = "Grade how well the document matches the shopping query: 4 exact ... 0 irrelevant."
VOCAB = 151936  # the Qwen3 models' embedding rows (the tokenizer has 151,669 tokens)
PAIRS = [
    ("red wine glass", "Set of 6 red wine glasses, lead-free crystal, 450 ml."),
    ("red wine glass", "Champagne flutes, 4 pack."),
    ("laptop stand aluminium adjustable for 13 to 16 inch notebooks", "Stand."),
    ("ssd 1tb", "Portable SSD 1 TB, USB 3.2 Gen 2, up to 1050 MB/s read, shock resistant, USB-C and USB-A cables."),
]


def load(artifact: Path) -> tuple[Manifest, ort.InferenceSession, list[list[int]]]:
    """Manifest, a CPU session on score.onnx and the token ids of PAIRS, encoded as serving would."""
    manifest = load_manifest(artifact)
    session = ort.InferenceSession(str(artifact / manifest.graphs["score"].file), providers=["CPUExecutionProvider"])
    encoder = PromptEncoder(manifest.prompt, Tokenizer.from_file(str(artifact / "tokenizer.json")))
    sequences = [encoder.encode(q, [d])[0].input_ids for q, d in PAIRS]
    assert len({len(s) for s in sequences}) == len(sequences), "prompts must differ in length"
    return manifest, session, sequences


def score(session: ort.InferenceSession, sequences: list[list[int]], pad: int = 151643) -> np.ndarray:
    """Left-pad and run: (B, K) label logits."""
    width = max(map(len, sequences))
    ids = np.full((len(sequences), width), pad, dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, seq in enumerate(sequences):
        ids[row, width - len(seq):], mask[row, width - len(seq):] = seq, 1
    return session.run(["label_logits"], {"input_ids": ids, "attention_mask": mask})[0]


@torch.no_grad()
def torch_label_logits(model: torch.nn.Module, sequences: list[list[int]], label_ids: list[int]) -> np.ndarray:
    """Each prompt alone, full vocabulary logits of the last position, label columns. (B, K)."""
    return np.stack([model(torch.tensor([seq])).logits[0, -1, label_ids].numpy() for seq in sequences])
