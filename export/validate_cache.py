"""Check the cache graphs against torch: prefix + score_prefix, then decode, the way serving chains them.

    validate_cache_graphs(paths, model, labels, groups, tolerance) -> figures

`groups` are (prefix ids, [document ids + suffix]) per query, encoded as
serving encodes them. For each group:

1. `prefix` on the prefix ids -> the prefix cache (1, Hkv, P, D) per layer;
2. `score_prefix` on the group's documents, left-padded, with that cache ->
   label logits, compared with torch on each full prompt alone (unpadded,
   full LM head at the last position) and with the score graph on the same
   prompts: sharing the prefix must not change a score;
3. `decode` (the first `decode_rows` documents of the query with the most,
   `decode_steps` steps each): the cache is the prefix
   cache tiled ++ each document's own `present` (holes where its padding
   was), the first input the grade token torch picks; each later step is fed
   torch's greedy token (teacher forcing, so one flip does not cascade), and
   the logits are compared with torch's greedy continuation from the same
   prompt + grade token.

Names and declared shapes of every graph come first, read without the weights
(`afrl.graphs.check_graph`, as in `export/validate.py`), then the actual shapes
and types of every output, then values, with the errors and tolerances of
`export/validate.py`. Figures, all prefixed with the graph:

    score_prefix.max_abs_diff            label logits vs torch
    score_prefix.vs_score_max_abs_diff   label logits vs the score graph (when given)
    score_prefix.grade_agreement, score_prefix.expected_grade_mae, score_prefix.prompts
    decode.max_abs_diff                  logits vs torch, every step and row
    decode.token_agreement               argmax vs torch's greedy token
    decode.steps                         rows x steps compared
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
import onnxruntime as ort
import torch

from afrl import graphs
from afrl.labels import LabelSet
from afrl.padding import left_pad
from export.validate import (
    TOLERANCES,
    ExportValidationError,
    OutputShapeError,
    Tolerance,
    check_figures,
    check_output,
    grade_figures,
    open_session,
    reference_label_logits,
    run_score,
)

if TYPE_CHECKING:
    from transformers import PreTrainedModel

Group = tuple[list[int], list[list[int]]]  # prefix ids, documents' ids (document piece + suffix)


def validate_cache_graphs(
    paths: Mapping[str, str | Path],
    model: PreTrainedModel,
    labels: LabelSet,
    groups: Sequence[Group],
    tolerance: Tolerance = TOLERANCES["fp32"],
    pad_token_id: int = 0,
    decode_steps: int = 4,
    decode_rows: int = 4,
    providers: Sequence[str] = ("CPUExecutionProvider",),
    reference: np.ndarray | None = None,
) -> dict[str, float]:
    """Validate whichever of prefix / score_prefix / decode are in `paths` (decode needs the other two).

    `paths` may also hold the score graph: the prefix path is then compared with it too.
    `reference`: torch's (N, K) label logits of the groups' full prompts, in group order, if known.
    """
    if graphs.SCORE_PREFIX in paths and graphs.PREFIX not in paths:
        raise ValueError("score_prefix is validated from the prefix graph's cache: export both")
    if graphs.DECODE in paths and not {graphs.PREFIX, graphs.SCORE_PREFIX} <= set(paths):
        raise ValueError("decode is validated from the cache of prefix + score_prefix: export all three")
    if not groups or not any(len({len(d) for d in docs}) > 1 for _, docs in groups):
        raise ValueError("validation needs a query with documents of different lengths, so padding is exercised")
    layers = int(model.config.num_hidden_layers)
    for name in graphs.GRAPHS:  # names and declared shapes of every graph before any value
        if name in paths:
            graphs.check_graph(name, onnx.load(str(paths[name]), load_external_data=False), labels.size, layers=layers)

    figures: dict[str, float] = {}
    if graphs.SCORE_PREFIX not in paths:
        return figures

    full = [prefix + doc for prefix, docs in groups for doc in docs]
    expected = reference_label_logits(model, labels.token_ids, full) if reference is None else reference  # (N, K)
    # One session at a time: each loads all the weights (GBs at 0.6B).
    if graphs.SCORE in paths:
        scored = run_score(open_session(paths[graphs.SCORE], providers), *left_pad(full, pad_token_id))  # (N, K)
    session = open_session(paths[graphs.PREFIX], providers)
    caches = [run_prefix(session, prefix, layers) for prefix, _ in groups]
    session = open_session(paths[graphs.SCORE_PREFIX], providers)
    ours, own = [], []
    for (_, docs), cache in zip(groups, caches, strict=True):
        logits, present = run_score_prefix(session, cache, docs, pad_token_id, labels.size)
        ours.append(logits)
        own.append(present)
    del session
    ours_all = np.concatenate(ours)  # (N, K)
    agreement, mae = grade_figures(ours_all, expected, labels.values)
    figures.update(
        {
            "score_prefix.max_abs_diff": float(np.abs(ours_all - expected).max()),
            "score_prefix.grade_agreement": agreement,
            "score_prefix.expected_grade_mae": mae,
            "score_prefix.prompts": float(len(full)),
        }
    )
    if graphs.SCORE in paths:
        figures["score_prefix.vs_score_max_abs_diff"] = float(np.abs(ours_all - scored).max())
    check_figures(figures, tolerance)

    if graphs.DECODE in paths:
        # The query with the most documents (its first `decode_rows`), padding included.
        g = max(range(len(groups)), key=lambda i: len(groups[i][1]))
        prefix, docs = groups[g][0], groups[g][1][:decode_rows]
        first = sum(len(d) for _, d in groups[:g])
        grades = [labels.token_ids[int(row.argmax())] for row in expected[first : first + len(docs)]]
        present = [p[: len(docs)] for p in own[g]]
        figures.update(
            compare_decode(
                open_session(paths[graphs.DECODE], providers),
                model,
                caches[g],
                present,
                prefix,
                docs,
                grades,
                pad_token_id,
                decode_steps,
            )
        )
        check_figures(figures, tolerance)
    return figures


def run_prefix(session: ort.InferenceSession, prefix: Sequence[int], layers: int) -> list[np.ndarray]:
    """(P,) prefix ids -> 2L arrays (1, Hkv, P, D)."""
    ids = np.asarray([list(prefix)], dtype=np.int64)  # (1, P)
    cache = session.run(graphs.present_names(layers), {graphs.INPUT_IDS: ids})
    for name, value in zip(graphs.present_names(layers), cache, strict=True):
        if value.ndim != 4 or value.shape[0] != 1 or value.shape[2] != len(prefix):
            raise OutputShapeError(
                f"prefix {name} has shape {value.shape}, expected (1, kv_heads, {len(prefix)}, head_dim)"
            )
        if not np.isfinite(value).all():
            raise ExportValidationError(f"prefix {name} contains NaN or inf")
    return cache


def run_score_prefix(
    session: ort.InferenceSession,
    cache: list[np.ndarray],
    documents: Sequence[Sequence[int]],
    pad_token_id: int,
    num_labels: int,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Documents left-padded against the prefix cache -> (B, K) label logits and 2L (B, Hkv, T, D) own caches."""
    ids, doc_mask = left_pad(documents, pad_token_id)  # (B, T), (B, T)
    b, t = ids.shape
    p = cache[0].shape[2]
    mask = np.concatenate([np.ones((b, p), dtype=np.int64), doc_mask], axis=1)  # (B, P + T)
    layers = len(cache) // 2
    feeds = {
        graphs.INPUT_IDS: ids,
        graphs.ATTENTION_MASK: mask,
        **dict(zip(graphs.past_names(layers), cache, strict=True)),
    }
    logits, *present = session.run([graphs.LABEL_LOGITS, *graphs.present_names(layers)], feeds)
    check_output(logits, (b, num_labels))
    for name, value in zip(graphs.present_names(layers), present, strict=True):
        check_output(value, (b, *cache[0].shape[1:2], t, cache[0].shape[3]), f"score_prefix {name}", cache[0].dtype)
    return logits, present


def compare_decode(
    session: ort.InferenceSession,
    model: PreTrainedModel,
    prefix_cache: list[np.ndarray],
    own: list[np.ndarray],
    prefix: list[int],
    documents: Sequence[Sequence[int]],
    grade_tokens: Sequence[int],
    pad_token_id: int,
    steps: int,
) -> dict[str, float]:
    """Decode `steps` tokens after each document's grade token, teacher-forced with torch's greedy tokens."""
    b = len(documents)
    tokens, expected = reference_greedy(
        model, [prefix + list(d) + [g] for d, g in zip(documents, grade_tokens, strict=True)], steps
    )
    _, doc_mask = left_pad(documents, pad_token_id, own[0].shape[2])  # (B, T): as wide as the own cache
    mask = np.concatenate([np.ones((b, len(prefix)), dtype=np.int64), doc_mask], axis=1)  # (B, P + T)
    past = [
        np.concatenate([np.repeat(p, b, axis=0), o], axis=2) for p, o in zip(prefix_cache, own, strict=True)
    ]  # (B, Hkv, P + T, D)
    layers = len(past) // 2
    inputs = np.asarray(grade_tokens, dtype=np.int64)[:, None]  # (B, 1)
    diffs, agree = [], []
    for step in range(steps):
        mask = np.concatenate([mask, np.ones((b, 1), dtype=np.int64)], axis=1)  # (B, S + 1)
        feeds = {
            graphs.INPUT_IDS: inputs,
            graphs.ATTENTION_MASK: mask,
            **dict(zip(graphs.past_names(layers), past, strict=True)),
        }
        logits, *past = session.run([graphs.LOGITS, *graphs.present_names(layers)], feeds)
        check_output(logits, (b, expected.shape[-1]), graphs.LOGITS)
        for name, value in zip(graphs.present_names(layers), past, strict=True):
            want = (b, prefix_cache[0].shape[1], mask.shape[1], prefix_cache[0].shape[3])
            check_output(value, want, f"decode {name}", prefix_cache[0].dtype)
        diffs.append(np.abs(logits - expected[:, step]).max())
        agree += list(logits.argmax(-1) == tokens[:, step])
        inputs = tokens[:, step : step + 1]  # teacher forcing: torch's greedy token
    return {
        "decode.max_abs_diff": float(max(diffs)),
        "decode.token_agreement": float(np.mean(agree)),
        "decode.steps": float(len(agree)),
    }


@torch.no_grad()
def reference_greedy(
    model: PreTrainedModel, sequences: Sequence[Sequence[int]], steps: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each sequence alone through the HF model with its own cache, greedy: (N, steps) tokens, (N, steps, V) logits."""
    device = next(model.parameters()).device
    all_tokens, all_logits = [], []
    for seq in sequences:
        ids = torch.tensor([list(seq)], dtype=torch.long, device=device)  # (1, T)
        out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        tokens, logits = [], []
        for _ in range(steps):
            last = out.logits[0, -1].float()  # (V,)
            logits.append(last.cpu().numpy())
            tokens.append(int(last.argmax()))
            nxt = torch.tensor([[tokens[-1]]], dtype=torch.long, device=device)
            out = model(input_ids=nxt, past_key_values=out.past_key_values, use_cache=True)
        all_tokens.append(tokens)
        all_logits.append(np.stack(logits))
    return np.asarray(all_tokens, dtype=np.int64), np.stack(all_logits)
