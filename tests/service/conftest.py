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
from service_testkit import (
    FakeBackend,
    GatedBackend,
    chain_ids,
    qwen3_template,
    wait_ready,
    write_tiny_prefix_graphs,
    write_tiny_score_graph,
)

from afrl.labels import LabelSet
from afrl.manifest import GraphSpec, Manifest, SourceCheckpoint, write_manifest
from afrl.prompt import PromptEncoder
from afrl.tokenizer_files import qwen3_tokenizer_dir
from service.app import create_app
from service.artifact_loader import onnx_backend_factory
from service.settings import ServiceSettings

SCORE_SPEC = GraphSpec(
    file="score.onnx", dtype="fp32", inputs=["input_ids", "attention_mask"], outputs=["label_logits"]
)


@pytest.fixture(scope="session")
def tokenizer():
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(qwen3_tokenizer_dir() / "tokenizer.json"))


def write_artifact(folder: Path, tokenizer, graphs: dict[str, GraphSpec]) -> Path:
    shutil.copy(qwen3_tokenizer_dir() / "tokenizer.json", folder / "tokenizer.json")
    labels = LabelSet.from_tokenizer(tokenizer)
    assert labels.token_ids == [15, 16, 17, 18, 19]
    write_tiny_score_graph(folder / "score.onnx", labels.size)
    if len(graphs) > 1:
        vocab = tokenizer.get_vocab_size()
        write_tiny_prefix_graphs(folder, labels.size, vocab, chain_ids(tokenizer), labels.token_ids)
    write_manifest(
        folder,
        Manifest(
            model_name="afrl-test-tiny",
            source=SourceCheckpoint(checkpoint="tests/tiny", sha256="0" * 64),
            prompt=qwen3_template(),
            labels=labels,
            graphs=graphs,
            providers_validated=["CPUExecutionProvider"],
            max_sequence_length=1024,
        ),
    )
    return folder


@pytest.fixture(scope="session")
def artifact_dir(tmp_path_factory, tokenizer) -> Path:
    """Score graph only: what the walking skeleton's export writes."""
    return write_artifact(tmp_path_factory.mktemp("artifact"), tokenizer, {"score": SCORE_SPEC})


@pytest.fixture(scope="session")
def prefix_artifact_dir(tmp_path_factory, tokenizer) -> Path:
    """Score, prefix, score_prefix and decode graphs (afrl/graphs.py), tiny and deterministic."""
    from afrl import graphs

    past, present = graphs.past_names(2), graphs.present_names(2)
    specs = {
        "score": SCORE_SPEC,
        "prefix": GraphSpec(file="prefix.onnx", dtype="fp32", inputs=["input_ids"], outputs=present),
        "score_prefix": GraphSpec(
            file="score_prefix.onnx",
            dtype="fp32",
            inputs=["input_ids", "attention_mask", *past],
            outputs=["label_logits", *present],
        ),
        "decode": GraphSpec(
            file="decode.onnx",
            dtype="fp32",
            inputs=["input_ids", "attention_mask", *past],
            outputs=["logits", *present],
        ),
    }
    return write_artifact(tmp_path_factory.mktemp("prefix_artifact"), tokenizer, specs)


@pytest.fixture(scope="session")
def encoder(tokenizer) -> Callable[[int], PromptEncoder]:
    """The serving prompt encoder, for computing expected rows independently of the engine."""
    return lambda max_document_tokens=512: PromptEncoder(qwen3_template(), tokenizer, max_document_tokens)


@pytest.fixture
def make_client(artifact_dir, prefix_artifact_dir) -> Iterator[Callable[..., tuple[TestClient, FakeBackend]]]:
    """make_client(backend=None, onnx=False, prefix=False, wait=True, **settings) -> (started TestClient, backend).

    Default: the fake backend. onnx=True: onnxruntime over the score-only artifact. prefix=True:
    onnxruntime over the artifact with prefix/score_prefix/decode graphs, wrapped in a GatedBackend
    (returned as the backend).
    """
    stack = ExitStack()

    def make(
        backend: FakeBackend | None = None,
        onnx: bool = False,
        prefix: bool = False,
        wait: bool = True,
        raise_server_exceptions: bool = True,
        **overrides,
    ):
        overrides.setdefault("intra_op_threads", 1)
        settings = ServiceSettings(model=prefix_artifact_dir if prefix else artifact_dir, **overrides)
        if prefix:
            holder: dict = {}

            def factory(folder, manifest, s):
                holder["backend"] = GatedBackend(onnx_backend_factory(folder, manifest, s))
                return holder["backend"]
        else:
            backend = backend if backend is not None or onnx else FakeBackend()
            factory = None if onnx else (lambda folder, manifest, s: backend)
        app = create_app(settings, backend_factory=factory)
        client = stack.enter_context(TestClient(app, raise_server_exceptions=raise_server_exceptions))
        if wait:
            wait_ready(client)
        if prefix:
            backend = holder.get("backend")
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
