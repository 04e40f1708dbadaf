"""optimum's ORTModelForCausalLM: the checkpoint exported by optimum's `main_export` (FP32, task
text-generation: one forward pass, no KV cache, which is all scoring needs) and run on onnxruntime's
CPU provider, one forward pass over the left-padded batch; optimum's graph returns logits at every
position over the whole vocabulary, and the grade is read from the last one.

Two things in optimum-onnx 0.1.0 fail on the Qwen3-0.6B architecture, measured here, and are avoided:
`from_pretrained(export=True)`'s post-processing (deduplicating the tied embedding and LM-head
weights) raises "The post-processing of the ONNX export failed ... --no-post-process", so the
export skips it as the message suggests (the tied matrix is stored twice: a bigger file, the same
compute); and the KV-cache model sizes its empty cache as hidden_size / heads = 64 where Qwen3-0.6B's
head_dim is 128 ("Got invalid dimensions for input: past_key_values.9.value ... Got: 64 Expected:
128"), hence the graph without a cache. The export is kept in OUT/<model>/optimum with the
checkpoint's sha256 beside it, so reruns skip it.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from afrl.progress import Progress, say
from bench.compare.inputs import CompareInputs

logger = logging.getLogger(__name__)

SOURCE_FILE = "afrl_source.json"  # {"checkpoint", "sha256", "task"} of what was exported
TASK = "text-generation"


def export_optimum(checkpoint: Path, sha: str, folder: Path, progress: Progress | None = None) -> float:
    """Export unless `folder` holds this checkpoint's export already; returns the seconds spent (0 when cached)."""
    marker = folder / SOURCE_FILE
    saved = json.loads(marker.read_text()) if marker.is_file() else {}
    if saved.get("sha256") == sha and saved.get("task") == TASK:
        return 0.0
    from optimum.exporters.onnx import main_export

    from export.logs import quiet_exporters

    say(progress, logger, f"exporting {checkpoint} with optimum to {folder}")
    start = time.perf_counter()
    shutil.rmtree(folder, ignore_errors=True)
    with warnings.catch_warnings(), quiet_exporters():
        warnings.simplefilter("ignore")  # the tracer's warnings about Python control flow, dozens per export
        main_export(str(checkpoint), output=folder, task=TASK, do_validation=False, no_post_process=True)
    marker.write_text(json.dumps({"checkpoint": str(checkpoint), "sha256": sha, "task": TASK}))
    return round(time.perf_counter() - start, 1)


def optimum_call(folder: Path, inputs: CompareInputs, threads: int) -> Callable[[], np.ndarray]:
    import onnxruntime as ort
    import torch
    from optimum.onnxruntime import ORTModelForCausalLM

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    model = ORTModelForCausalLM.from_pretrained(
        folder, use_cache=False, session_options=options, provider="CPUExecutionProvider"
    )

    def call() -> np.ndarray:
        ids, mask = (torch.from_numpy(a) for a in inputs.batch())  # (B, T)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits  # (B, T, V)
        return logits[:, -1, inputs.label_token_ids].numpy()

    return call
