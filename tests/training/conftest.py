"""Shared fixtures for the training tests: one tokenizer context, one small world, one warmed-up tiny model.

Everything is sized to keep tests/training fast on 2 shared CPU cores.
"""

from __future__ import annotations

import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import torch

from training.context import TrainingContext
from training.model_factory import TinyQwen3Spec, build_tiny_qwen3
from training.sft import SFTConfig, train_sft
from training.world import build_world

SMALL = TinyQwen3Spec(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1
)


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """One intra-op thread: the box is shared, and tiny ops only pay for thread synchronisation."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def ctx() -> TrainingContext:
    return TrainingContext.create()


@pytest.fixture(scope="session")
def small_world():
    return build_world(seed=3, n_queries=40, docs_per_query=4)


@pytest.fixture(scope="session")
def sequences(ctx, small_world):
    return ctx.encode(small_world.train)


@pytest.fixture(scope="session")
def vocab(ctx, sequences):
    return ctx.vocab(sequences)


@pytest.fixture(scope="session")
def _warm(ctx, sequences, vocab):
    model = build_tiny_qwen3(SMALL, seed=0)
    train_sft(
        model,
        sequences,
        ctx.labels,
        SFTConfig(steps=40, batch_size=8, warmup_steps=3, learning_rate=1e-2),
        ctx.pad_id,
        vocab=vocab,
    )
    return model


@pytest.fixture
def warm_model(_warm):
    """A tiny model after 40 SFT steps: it answers with a grade first, so rollouts earn varied rewards."""
    return copy.deepcopy(_warm)


@pytest.fixture(scope="session")
def small_spec() -> TinyQwen3Spec:
    return SMALL


@pytest.fixture
def chat_endpoint():
    """Start a local OpenAI-compatible `/chat/completions`: `start(reply_for)` -> (base url, requests seen).

    `reply_for(body)` gives the assistant message's content; each request is recorded as
    (path, JSON body, authorization header). Servers stop when the test ends.
    """
    servers = []

    def start(reply_for):
        seen = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                seen.append((self.path, body, self.headers.get("authorization")))
                message = {"role": "assistant", "content": reply_for(body)}
                reply = json.dumps({"choices": [{"message": message}]}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        server = HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}/v1", seen

    yield start
    for server in servers:
        server.shutdown()
