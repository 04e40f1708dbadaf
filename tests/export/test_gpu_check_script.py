"""The CPU-side logic of `afrl bench gpu-export-check` (bench/gpu_export_check.py; its CUDA run is done on a
lent GPU machine). Here beside the export tests for their fp32 and fp16 artifacts."""

from __future__ import annotations

import onnxruntime as ort
import pytest

from bench import gpu_export_check


def test_refuses_early_without_the_gpu_parts(tmp_path):
    with pytest.raises(SystemExit, match="ortgpu_site.py: send onnxruntime-gpu first"):
        gpu_export_check.activate_onnxruntime(["CUDAExecutionProvider"], tmp_path)
    assert gpu_export_check.activate_onnxruntime(["CPUExecutionProvider"], tmp_path) is ort
    with pytest.raises(SystemExit, match="has no tokenizer.json"):
        gpu_export_check.tokenizer_folder(str(tmp_path))


def test_norm_overflow_check_runs(fp32_plain_artifact, tmp_path):
    # The script checks a plain export_graph output (unfused norms), as its main does.
    figures = gpu_export_check.norm_overflow(
        fp32_plain_artifact / "score.onnx", tmp_path, ort, ["CPUExecutionProvider"]
    )
    assert figures["ours16_max_abs_diff"] <= 2e-2
    assert "plain16_max_abs_diff" in figures  # small on CPU too: its provider computes fp16 norms in fp32


def test_score_graph_timing_with_io_binding(fp16_artifact):
    timings = gpu_export_check.time_score_graph(
        fp16_artifact / "score.onnx", ort, ["CPUExecutionProvider"], [(2, 16)], 2
    )
    assert timings["providers"][0] == "CPUExecutionProvider" and timings["2x16_ms"] > 0
