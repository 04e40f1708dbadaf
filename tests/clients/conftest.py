"""Fixtures for the client compatibility suite: the service under uvicorn, keyless, on a real socket.

The server runs onnxruntime over the tiny score-only artifact that the service tests build
(tests/service/conftest.py's `write_artifact`, loaded here by path: test folders share no package),
without an API key: every client is given some key anyway, since they refuse to start without one.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SERVICE_TESTS = Path(__file__).parents[1] / "service"
sys.path.insert(0, str(SERVICE_TESTS))  # service_testkit: DOCS, LiveServer

from client_testkit import Server  # noqa: E402
from service_testkit import LiveServer  # noqa: E402

from service.app import create_app  # noqa: E402
from service.settings import ServiceSettings  # noqa: E402

# No network from the clients: litellm fetches a price list from GitHub on import unless told to use
# the copy it ships; huggingface_hub and haystack would reach out too.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # haystack would post usage events


def _service_conftest():
    spec = importlib.util.spec_from_file_location("service_tests_conftest", SERVICE_TESTS / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def artifact(tmp_path_factory) -> Path:
    """The service tests' tiny score-only artifact (real tokenizer, tiny ONNX graph)."""
    from tokenizers import Tokenizer

    from afrl.tokenizer_files import qwen3_tokenizer_dir

    service = _service_conftest()
    tokenizer = Tokenizer.from_file(str(qwen3_tokenizer_dir() / "tokenizer.json"))
    return service.write_artifact(tmp_path_factory.mktemp("client_artifact"), tokenizer, {"score": service.SCORE_SPEC})


@pytest.fixture(scope="session")
def server(artifact) -> Iterator[Server]:
    app = create_app(ServiceSettings(model=artifact, intra_op_threads=1, tokenize_workers=1))
    with LiveServer(app) as live:
        yield Server(live.url)
