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
        ids[row, width - len(seq) :], mask[row, width - len(seq) :] = seq, 1
    return session.run(["label_logits"], {"input_ids": ids, "attention_mask": mask})[0]


@torch.no_grad()
def torch_label_logits(model: torch.nn.Module, sequences: list[list[int]], label_ids: list[int]) -> np.ndarray:
    """Each prompt alone, full vocabulary logits of the last position, label columns. (B, K)."""
    return np.stack([model(torch.tensor([seq])).logits[0, -1, label_ids].numpy() for seq in sequences])


def sessions(artifact: Path, manifest: Manifest) -> dict[str, ort.InferenceSession]:
    return {
        name: ort.InferenceSession(str(artifact / spec.file), providers=["CPUExecutionProvider"])
        for name, spec in manifest.graphs.items()
    }


def shared_prefix_score(
    prefix_session: ort.InferenceSession,
    score_prefix_session: ort.InferenceSession,
    prefix: list[int],
    documents: list[list[int]],
    pad: int = 151643,
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Serving's shared-prefix path: prefix once, then all documents left-padded.

    -> (B, K) label logits, the prefix cache, the documents' own caches, the (B, P + T) mask.
    """
    cache = prefix_session.run(None, {"input_ids": np.asarray([prefix], dtype=np.int64)})
    width = max(map(len, documents))
    ids = np.full((len(documents), width), pad, dtype=np.int64)
    mask = np.zeros((len(documents), len(prefix) + width), dtype=np.int64)
    mask[:, : len(prefix)] = 1
    for row, doc in enumerate(documents):
        ids[row, width - len(doc) :] = doc
        mask[row, mask.shape[1] - len(doc) :] = 1
    past = {i.name: c for i, c in zip(score_prefix_session.get_inputs()[2:], cache, strict=True)}
    logits, *own = score_prefix_session.run(None, {"input_ids": ids, "attention_mask": mask, **past})
    return logits, cache, own, mask


def greedy_decode(
    decode_session: ort.InferenceSession,
    cache: list[np.ndarray],
    own: list[np.ndarray],
    mask: np.ndarray,
    first_tokens: list[int],
    steps: int,
) -> np.ndarray:
    """Greedy continuation on the decode graph from prefix cache ++ own caches, feeding its own argmax. (B, steps)."""
    b = mask.shape[0]
    past = [np.concatenate([np.repeat(c, b, axis=0), o], axis=2) for c, o in zip(cache, own, strict=True)]
    names = [i.name for i in decode_session.get_inputs()[2:]]
    tokens = np.asarray(first_tokens, dtype=np.int64)[:, None]  # (B, 1)
    out = []
    for _ in range(steps):
        mask = np.concatenate([mask, np.ones((b, 1), dtype=np.int64)], axis=1)
        logits, *past = decode_session.run(
            None, {"input_ids": tokens, "attention_mask": mask, **dict(zip(names, past, strict=True))}
        )
        tokens = logits.argmax(-1)[:, None]
        out.append(tokens[:, 0])
    return np.stack(out, axis=1)


@torch.no_grad()
def torch_greedy(model: torch.nn.Module, sequence: list[int], steps: int) -> list[int]:
    """transformers' own greedy generation after `sequence`."""
    ids = torch.tensor([sequence])
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=steps,
        min_new_tokens=steps,
        do_sample=False,
        pad_token_id=0,
        eos_token_id=None,
    )
    return out[0, len(sequence) :].tolist()


def prompt_groups(artifact: Path, manifest: Manifest) -> list[tuple[list[int], list[list[int]]]]:
    """PAIRS grouped by query: (prefix ids, [document ids + suffix]), encoded as serving would."""
    encoder = PromptEncoder(manifest.prompt, Tokenizer.from_file(str(artifact / "tokenizer.json")))
    queries: dict[str, list[str]] = {}
    for q, d in PAIRS:
        queries.setdefault(q, []).append(d)
    return [
        (encoder.encode_prefix(q), [ids for ids, _ in encoder.encode_documents(docs)]) for q, docs in queries.items()
    ]
