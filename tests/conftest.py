"""Markers every test folder shares: tests/e2e is `e2e`; `gpu` tests skip without a CUDA device.

The suite runs in two pytest-xdist workers (`--dist loadgroup`, pyproject's addopts). Each test folder is one
group, so a folder's session fixtures (the export tests' artifacts, the end-to-end pipeline run) are built once,
on the worker that runs the folder; tests/training, whose files are long and share only cheap fixtures, is one
group per file, so its long files spread over both workers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_TESTS = Path(__file__).parent
_E2E = _TESTS / "e2e"
_GROUP_PER_FILE = {"training"}


def _xdist_group(path: Path) -> str:
    folder = path.relative_to(_TESTS).parts[0]
    return str(path.relative_to(_TESTS)) if folder in _GROUP_PER_FILE else folder


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_gpu = None
    for item in items:
        path = Path(str(item.fspath))
        if _E2E in path.parents:
            item.add_marker(pytest.mark.e2e)
        if _TESTS in path.parents:
            item.add_marker(pytest.mark.xdist_group(_xdist_group(path)))
        if item.get_closest_marker("gpu") is not None:
            if skip_gpu is None:
                skip_gpu = pytest.mark.skip(reason="needs a CUDA device") if not _cuda_available() else False
            if skip_gpu:
                item.add_marker(skip_gpu)
