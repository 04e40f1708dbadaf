"""Check an exported score graph against the torch model: names, then shapes, then values.

A graph with the wrong inputs or outputs fails before any number is compared,
each with its own error type; a value check fails with `ParityError` naming
the figure that broke and its tolerance.

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

Default tolerances (`TOLERANCES`):

    fp32  max_abs_diff <= 1e-4, batch_max_abs_diff <= 1e-4 (seen: ~1e-7 on tiny models)
    int8  grade_agreement >= 0.9, expected_grade_mae <= 0.1 (2.5% of a 0..4 scale);
          logit differences are reported, not gated: INT8 moves logits by ~1e-2
          and, with dynamic activation scales, by batch composition too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from afrl.labels import LabelSet
from afrl.padding import left_pad
from afrl.scoring import grade_results
from export.onnx_export import INPUT_NAMES, OUTPUT_NAMES


class ExportValidationError(RuntimeError):
    """The exported graph does not match the model it came from."""


class InputNameError(ExportValidationError):
    pass


class OutputNameError(ExportValidationError):
    pass


class OutputShapeError(ExportValidationError):
    pass


class OutputTypeError(ExportValidationError):
    pass


class ParityError(ExportValidationError):
    pass


@dataclass(frozen=True)
class Tolerance:
    """Limits on the validation figures; None means measured and reported, not gated."""

    max_abs_diff: float | None = None
    batch_max_abs_diff: float | None = None
    min_grade_agreement: float | None = None
    max_expected_grade_mae: float | None = None


TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(max_abs_diff=1e-4, batch_max_abs_diff=1e-4),
    "int8": Tolerance(min_grade_agreement=0.9, max_expected_grade_mae=0.1),
}


def validate_score_graph(
    onnx_path: str | Path,
    model: nn.Module,
    labels: LabelSet,
    sequences: Sequence[Sequence[int]],
    tolerance: Tolerance = TOLERANCES["fp32"],
    pad_token_id: int = 0,
    providers: Sequence[str] = ("CPUExecutionProvider",),
) -> dict[str, float]:
    """Compare the graph at `onnx_path` with `model` (HF causal LM) on prompts of different lengths."""
    if len(sequences) < 2 or len({len(s) for s in sequences}) < 2:
        raise ValueError("validation needs at least 2 prompts of different lengths, so padding is exercised")
    session = ort.InferenceSession(str(onnx_path), providers=list(providers))
    check_signature(session, labels.size)

    input_ids, attention_mask = left_pad(sequences, pad_token_id)  # (N, T), (N, T)
    batch = run_score(session, input_ids, attention_mask)  # (N, K)
    check_output(batch, (len(sequences), labels.size))
    alone = np.concatenate([run_score(session, *left_pad([s], pad_token_id)) for s in sequences])  # (N, K)
    expected = reference_label_logits(model, labels.token_ids, sequences)  # (N, K)

    ours, ref = grade_results(batch, labels.values), grade_results(expected, labels.values)
    figures = {
        "max_abs_diff": float(np.abs(batch - expected).max()),
        "batch_max_abs_diff": float(np.abs(batch - alone).max()),
        "grade_agreement": float(np.mean([a.grade == b.grade for a, b in zip(ours, ref)])),
        "expected_grade_mae": float(np.mean([abs(a.expected - b.expected) for a, b in zip(ours, ref)])),
        "prompts": float(len(sequences)),
    }
    check_figures(figures, tolerance)
    return figures


def check_signature(session: ort.InferenceSession, num_labels: int) -> None:
    """Input and output names, then the declared output shape (batch, K)."""
    inputs = [i.name for i in session.get_inputs()]
    if inputs != INPUT_NAMES:
        raise InputNameError(f"graph inputs are {inputs}, expected {INPUT_NAMES}")
    outputs = [o.name for o in session.get_outputs()]
    if outputs != OUTPUT_NAMES:
        raise OutputNameError(f"graph outputs are {outputs}, expected {OUTPUT_NAMES}")
    shape = session.get_outputs()[0].shape
    if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != num_labels):
        raise OutputShapeError(f"label_logits declared with shape {shape}, expected [batch, {num_labels}]")


def check_output(label_logits: np.ndarray, shape: tuple[int, int]) -> None:
    if label_logits.shape != shape:
        raise OutputShapeError(f"label_logits has shape {label_logits.shape}, expected {shape}")
    if label_logits.dtype != np.float32:
        raise OutputTypeError(f"label_logits is {label_logits.dtype}, expected float32")
    if not np.isfinite(label_logits).all():
        raise ParityError("label_logits contain NaN or inf")


def check_figures(figures: dict[str, float], tolerance: Tolerance) -> None:
    """Raise ParityError for the first figure outside its tolerance."""
    limits = [
        ("max_abs_diff", "label_logits max abs diff", tolerance.max_abs_diff, ">"),
        ("batch_max_abs_diff", "label_logits batched vs alone max abs diff", tolerance.batch_max_abs_diff, ">"),
        ("expected_grade_mae", "expected grade MAE", tolerance.max_expected_grade_mae, ">"),
        ("grade_agreement", "grade agreement", tolerance.min_grade_agreement, "<"),
    ]
    for key, what, limit, bad in limits:
        if limit is None:
            continue
        value = figures[key]
        if (value > limit) if bad == ">" else (value < limit):
            raise ParityError(f"{what} {value:.2g} {bad} tolerance {limit:.2g} (over {figures['prompts']:.0f} prompts)")


def run_score(session: ort.InferenceSession, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """(B, T), (B, T) -> (B, K) label logits from the graph."""
    return session.run(OUTPUT_NAMES, {"input_ids": input_ids, "attention_mask": attention_mask})[0]


@torch.no_grad()
def reference_label_logits(
    model: nn.Module, label_token_ids: Sequence[int], sequences: Sequence[Sequence[int]]
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
