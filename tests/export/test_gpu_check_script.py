"""The CPU-side logic of scripts/gpu_export_check.py (its CUDA run is done on a lent GPU machine)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import onnxruntime as ort
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_export_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_export_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_refuses_early_without_the_gpu_parts(gpu_check, tmp_path):
    with pytest.raises(SystemExit, match="ortgpu_site.py: send onnxruntime-gpu first"):
        gpu_check.activate_onnxruntime(["CUDAExecutionProvider"], tmp_path)
    assert gpu_check.activate_onnxruntime(["CPUExecutionProvider"], tmp_path) is ort
    with pytest.raises(SystemExit, match="has no tokenizer.json"):
        gpu_check.tokenizer_folder(str(tmp_path))


def test_norm_overflow_check_runs(gpu_check, fp32_artifact, tmp_path):
    figures = gpu_check.norm_overflow(fp32_artifact / "score.onnx", tmp_path, ort, ["CPUExecutionProvider"])
    assert figures["ours16_max_abs_diff"] <= 2e-2
    assert "plain16_max_abs_diff" in figures  # small on CPU too: its provider computes fp16 norms in fp32


def test_score_graph_timing_with_io_binding(gpu_check, fp16_artifact):
    timings = gpu_check.time_score_graph(fp16_artifact / "score.onnx", ort, ["CPUExecutionProvider"], [(2, 16)], 2)
    assert timings["providers"][0] == "CPUExecutionProvider" and timings["2x16_ms"] > 0
