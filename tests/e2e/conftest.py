"""One small pipeline run (the `ci` preset) shared by the end-to-end tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.pipeline import run_pipeline
from training.presets import preset
from training.report import PipelineReport


@pytest.fixture(scope="session")
def ci_run(tmp_path_factory) -> tuple[Path, PipelineReport]:
    out = tmp_path_factory.mktemp("pipeline-ci")
    report = run_pipeline(preset("ci"), out)
    return out, report
