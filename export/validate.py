"""Check an exported score graph against the torch model: names, then shapes, then values.

(The cache graphs, prefix / score_prefix / decode, are checked by
`export/validate_cache.py` with the same errors, tolerances and figures.)

A graph with the wrong inputs or outputs fails before any number is compared,
with the error of `afrl.graphs.check_graph` (the check artifact verification
runs too: `InputNameError`, `OutputNameError`, `OutputShapeError`,
`OutputTypeError`, re-exported here); an output whose actual shape or type is
not the one asked for fails with those too, and a value check with
`ParityError` naming the figure that broke and its tolerance.

The reference is the Hugging Face model itself run on each prompt alone,
unpadded, with the full LM head at the last position (`logits_to_keep=1`),
label columns picked out. So one comparison covers the wrapper (positions,
mask, label rows), the export and left padding together.

Figures (all returned, the ones with a tolerance gated):

    max_abs_diff        max |onnx - torch| over the label logits of a left-padded batch
    batch_max_abs_diff  max |onnx(row in the batch) - onnx(row alone)|
    grade_agreement     fraction of prompts with the same argmax grade
    expected_grade_mae  mean |expected grade onnx - expected grade torch|, in grade units
    prompts             how many prompts were compared

The figures of the other graphs carry their graph's name: `score_prefix.max_abs_diff`,
`decode.token_agreement`, ... (`validate_cache.py`); the score graph's keep their plain names.

Default tolerances (`TOLERANCES`), for the score graph and the matching figures of the others:

    fp32  label logits max abs diff <= 1e-4 (vs torch, batched vs alone, prefix path vs the
          score graph); decode logits <= 1e-4 and the same greedy tokens as torch
          (seen: ~1e-7 on tiny models)
    fp16  the same figures <= 2e-2; decode tokens reported, not gated (a near tie may flip)
    int8  grade_agreement >= 0.99, expected_grade_mae <= 0.05 (1.25% of a 0..4 scale), for the
          score graph and the prefix path; meaningful on a trained model and its dev split
          (`validation_pairs=`): a random model's near-uniform grades flip on noise, so tests on
          random models pass a looser `Tolerance`. Logit differences are reported, not gated:
          INT8 moves logits by ~1e-2 and, with dynamic activation scales, by batch composition too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import torch

from afrl import graphs
from afrl.graphs import InputNameError as InputNameError
from afrl.graphs import OutputNameError as OutputNameError
from afrl.graphs import OutputShapeError as OutputShapeError
from afrl.graphs import OutputTypeError as OutputTypeError
from afrl.labels import LabelSet
from afrl.padding import left_pad
from afrl.scoring import grade_results
from export.onnx_export import OUTPUT_NAMES

if TYPE_CHECKING:
    from transformers import PreTrainedModel


class ExportValidationError(RuntimeError):
    """The exported graph does not match the model it came from."""


class ParityError(ExportValidationError):
    pass


@dataclass(frozen=True)
class Tolerance:
    """Limits on the validation figures; None means measured and reported, not gated."""

    max_abs_diff: float | None = None  # label logits, any graph vs torch
    batch_max_abs_diff: float | None = None  # score graph, a row in a batch vs alone
    min_grade_agreement: float | None = None  # score graph and prefix path vs torch
    max_expected_grade_mae: float | None = None  # score graph and prefix path vs torch
    prefix_vs_score_max_abs_diff: float | None = None  # prefix + score_prefix vs the score graph
    decode_max_abs_diff: float | None = None  # decode logits vs torch, teacher-forced steps
    min_decode_token_agreement: float | None = None  # decode argmax vs torch's greedy tokens


TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(
        max_abs_diff=1e-4,
        batch_max_abs_diff=1e-4,
        prefix_vs_score_max_abs_diff=1e-4,
        decode_max_abs_diff=1e-4,
        min_decode_token_agreement=1.0,
    ),
    "fp16": Tolerance(
        max_abs_diff=2e-2, batch_max_abs_diff=2e-2, prefix_vs_score_max_abs_diff=2e-2, decode_max_abs_diff=2e-2
    ),
    "int8": Tolerance(min_grade_agreement=0.99, max_expected_grade_mae=0.05),
}


def validate_score_graph(
    onnx_path: str | Path,
    model: PreTrainedModel,
    labels: LabelSet,
    sequences: Sequence[Sequence[int]],
    tolerance: Tolerance = TOLERANCES["fp32"],
    pad_token_id: int = 0,
    providers: Sequence[str] = ("CPUExecutionProvider",),
    reference: np.ndarray | None = None,
) -> dict[str, float]:
    """Compare the graph at `onnx_path` with `model` (HF causal LM) on prompts of different lengths.

    `reference`: the (N, K) torch label logits of `sequences` when the caller has them already
    (`reference_label_logits`).
    """
    if len(sequences) < 2 or len({len(s) for s in sequences}) < 2:
        raise ValueError("validation needs at least 2 prompts of different lengths, so padding is exercised")
    session = open_session(onnx_path, providers)
    graphs.check_graph(graphs.SCORE, session, labels.size)

    input_ids, attention_mask = left_pad(sequences, pad_token_id)  # (N, T), (N, T)
    batch = run_score(session, input_ids, attention_mask)  # (N, K)
    check_output(batch, (len(sequences), labels.size))
    alone = np.concatenate([run_score(session, *left_pad([s], pad_token_id)) for s in sequences])  # (N, K)
    expected = reference_label_logits(model, labels.token_ids, sequences) if reference is None else reference  # (N, K)

    agreement, mae = grade_figures(batch, expected, labels.values)
    figures = {
        "max_abs_diff": float(np.abs(batch - expected).max()),
        "batch_max_abs_diff": float(np.abs(batch - alone).max()),
        "grade_agreement": agreement,
        "expected_grade_mae": mae,
        "prompts": float(len(sequences)),
    }
    check_figures(figures, tolerance)
    return figures


def open_session(path: str | Path, providers: Sequence[str]) -> ort.InferenceSession:
    """An onnxruntime session on `providers`; refuses onnxruntime's silent fall back to another provider."""
    session = ort.InferenceSession(str(path), providers=list(providers))
    if session.get_providers()[0] != providers[0]:
        raise ExportValidationError(
            f"asked onnxruntime for {providers[0]}, it runs {Path(path).name} on {session.get_providers()}; "
            f"available here: {ort.get_available_providers()}"
        )
    return session


def check_output(
    value: np.ndarray, shape: tuple[int, ...], name: str = graphs.LABEL_LOGITS, dtype: npt.DTypeLike = np.float32
) -> None:
    """The actual shape and type of one output, and that it is finite."""
    if value.shape != tuple(shape):
        raise OutputShapeError(f"{name} has shape {value.shape}, expected {tuple(shape)}")
    if value.dtype != dtype:
        raise OutputTypeError(f"{name} is {value.dtype}, expected {np.dtype(dtype).name}")
    if not np.isfinite(value).all():
        raise ParityError(f"{name} contains NaN or inf")


def check_figures(figures: dict[str, float], tolerance: Tolerance) -> None:
    """Raise ParityError for the first figure outside its tolerance (figures absent from `figures` are skipped)."""
    limits = [
        ("max_abs_diff", "label_logits max abs diff", tolerance.max_abs_diff, ">"),
        ("batch_max_abs_diff", "label_logits batched vs alone max abs diff", tolerance.batch_max_abs_diff, ">"),
        ("expected_grade_mae", "expected grade MAE", tolerance.max_expected_grade_mae, ">"),
        ("grade_agreement", "grade agreement", tolerance.min_grade_agreement, "<"),
        ("score_prefix.max_abs_diff", "score_prefix label_logits max abs diff", tolerance.max_abs_diff, ">"),
        (
            "score_prefix.vs_score_max_abs_diff",
            "prefix + score_prefix vs score graph label_logits max abs diff",
            tolerance.prefix_vs_score_max_abs_diff,
            ">",
        ),
        ("score_prefix.expected_grade_mae", "score_prefix expected grade MAE", tolerance.max_expected_grade_mae, ">"),
        ("score_prefix.grade_agreement", "score_prefix grade agreement", tolerance.min_grade_agreement, "<"),
        ("decode.max_abs_diff", "decode logits max abs diff", tolerance.decode_max_abs_diff, ">"),
        ("decode.token_agreement", "decode greedy token agreement", tolerance.min_decode_token_agreement, "<"),
    ]
    for key, what, limit, bad in limits:
        if limit is None or key not in figures:
            continue
        value = figures[key]
        if (value > limit) if bad == ">" else (value < limit):
            graph = key.split(".")[0] if "." in key else graphs.SCORE
            unit = "steps" if graph == "decode" else "prompts"  # decode figures count teacher-forced steps
            count = figures.get(f"{graph}.{unit}", figures.get(unit, 0))
            raise ParityError(f"{what} {value:.4g} {bad} tolerance {limit:.4g} (over {count:.0f} {unit})")


def grade_figures(logits: np.ndarray, reference: np.ndarray, values: Sequence[int]) -> tuple[float, float]:
    """(grade agreement, expected-grade MAE) of (N, K) label logits against the reference's (N, K)."""
    ours, ref = grade_results(logits, values), grade_results(reference, values)
    agreement = float(np.mean([a.grade == b.grade for a, b in zip(ours, ref, strict=True)]))
    return agreement, float(np.mean([abs(a.expected - b.expected) for a, b in zip(ours, ref, strict=True)]))


def run_score(session: ort.InferenceSession, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """(B, T), (B, T) -> (B, K) label logits from the graph."""
    return session.run(OUTPUT_NAMES, {"input_ids": input_ids, "attention_mask": attention_mask})[0]


@torch.no_grad()
def reference_label_logits(
    model: PreTrainedModel, label_token_ids: Sequence[int], sequences: Sequence[Sequence[int]]
) -> np.ndarray:
    """Each prompt alone through the full HF model; label columns of the last position. -> (N, K)."""
    device = next(model.parameters()).device
    columns = torch.tensor(list(label_token_ids), device=device)
    rows = []
    for seq in sequences:
        ids = torch.tensor([list(seq)], dtype=torch.long, device=device)  # (1, T)
        logits = model(input_ids=ids, logits_to_keep=1).logits[0, -1]  # (V,)
        rows.append(logits.index_select(0, columns).float().cpu().numpy())  # (K,)
    return np.stack(rows)
