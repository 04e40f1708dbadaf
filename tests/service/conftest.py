"""Fixtures for the service tests: a torch-free model artifact, a fake backend, app clients.

The artifact is real apart from its weights: the Qwen3 tokenizer.json, a
manifest with the Qwen3 chat layout, and a tiny ONNX score graph built with
onnx.helper, so the same folder serves the fake-backend and onnxruntime tests.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from service_testkit import FakeBackend, qwen3_template, wait_ready, write_tiny_score_graph

from afrl.labels import LabelSet
from afrl.manifest import GraphSpec, Manifest, SourceCheckpoint, write_manifest
from afrl.prompt import PromptEncoder
from afrl.tokenizer_files import qwen3_tokenizer_dir
from service.app import create_app
from service.settings import ServiceSettings


@pytest.fixture(scope="session")
def tokenizer():
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(qwen3_tokenizer_dir() / "tokenizer.json"))


@pytest.fixture(scope="session")
def artifact_dir(tmp_path_factory, tokenizer) -> Path:
    folder = tmp_path_factory.mktemp("artifact")
    shutil.copy(qwen3_tokenizer_dir() / "tokenizer.json", folder / "tokenizer.json")
    labels = LabelSet.from_tokenizer(tokenizer)
    assert labels.token_ids == [15, 16, 17, 18, 19]
    write_tiny_score_graph(folder / "score.onnx", labels.size)
    write_manifest(
        folder,
        Manifest(
            model_name="afrl-test-tiny",
            source=SourceCheckpoint(checkpoint="tests/tiny", sha256="0" * 64),
            prompt=qwen3_template(),
            labels=labels,
            graphs={
                "score": GraphSpec(
                    file="score.onnx", dtype="fp32", inputs=["input_ids", "attention_mask"], outputs=["label_logits"]
                )
            },
            providers_validated=["CPUExecutionProvider"],
            max_sequence_length=1024,
        ),
    )
    return folder


@pytest.fixture(scope="session")
def encoder(tokenizer) -> Callable[[int], PromptEncoder]:
    """The serving prompt encoder, for computing expected rows independently of the engine."""
    return lambda max_document_tokens=512: PromptEncoder(qwen3_template(), tokenizer, max_document_tokens)


@pytest.fixture
def make_client(artifact_dir) -> Iterator[Callable[..., tuple[TestClient, FakeBackend]]]:
    """make_client(backend=None, onnx=False, wait=True, **settings) -> (started TestClient, backend)."""
    stack = ExitStack()

    def make(backend: FakeBackend | None = None, onnx: bool = False, wait: bool = True,
             raise_server_exceptions: bool = True, **overrides):  # fmt: skip
        settings = ServiceSettings(model=artifact_dir, **overrides)
        backend = backend if backend is not None or onnx else FakeBackend()
        factory = None if onnx else (lambda folder, manifest, s: backend)
        app = create_app(settings, backend_factory=factory)
        client = stack.enter_context(TestClient(app, raise_server_exceptions=raise_server_exceptions))
        if wait:
            wait_ready(client)
        return client, backend

    with stack:
        yield make


@pytest.fixture(scope="module")
def shared(artifact_dir) -> Iterator[tuple[TestClient, FakeBackend]]:
    """One default app for the many tests that only need a working service."""
    backend = FakeBackend()
    app = create_app(ServiceSettings(model=artifact_dir), backend_factory=lambda f, m, s: backend)
    with TestClient(app) as client:
        wait_ready(client)
        yield client, backend
