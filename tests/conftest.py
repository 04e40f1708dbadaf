"""Markers every test folder shares: tests/e2e is `e2e`; `gpu` tests skip without a CUDA device."""

from __future__ import annotations

from pathlib import Path

import pytest

_E2E = Path(__file__).parent / "e2e"


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_gpu = None
    for item in items:
        if _E2E in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)
        if item.get_closest_marker("gpu") is not None:
            if skip_gpu is None:
                skip_gpu = pytest.mark.skip(reason="needs a CUDA device") if not _cuda_available() else False
            if skip_gpu:
                item.add_marker(skip_gpu)
