"""A tiny random Qwen3 checkpoint and its FP32 artifact (all four graphs), shared by the load and benchmark tests.

Every graph of the checkpoint is exported to FP32 once per session into
`fp32_graph_cache`; tests that export again (the compare's INT8 artifact,
the GPU script's FP16 one) take `reused_fp32_graphs` and convert those same
graphs. The patch lasts one test, so no other test directory sees it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.fp32_exports import reuse_fp32_exports
from bench.qwen3_0p6b import TINY, make_checkpoint
from export.artifact import export_artifact


@pytest.fixture(scope="session")
def fp32_graph_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fp32-graphs")


@pytest.fixture
def reused_fp32_graphs(fp32_graph_cache):
    with reuse_fp32_exports(fp32_graph_cache):
        yield


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """The 0.6B builder at tiny dims: Qwen3's tokenizer and vocabulary, the 188-token guideline."""
    return make_checkpoint(tmp_path_factory.mktemp("tiny") / "checkpoint", TINY)


@pytest.fixture(scope="session")
def tiny_artifact(tiny_checkpoint, fp32_graph_cache, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny-artifact") / "fp32"
    with reuse_fp32_exports(fp32_graph_cache):
        export_artifact(tiny_checkpoint, out, dtype="fp32")
    return out
