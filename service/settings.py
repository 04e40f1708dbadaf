"""Service settings: every knob of `afrl serve`, read from `AFRL_*` environment variables.

`ServiceSettings()` reads the environment; tests and the CLI pass values
directly (`ServiceSettings(model=..., port=...)`). Nothing reads settings at
import time: `create_app(settings)` receives them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


class ServiceSettings(BaseSettings):
    """Limits, batching and runtime options of the scoring service (env prefix `AFRL_`)."""

    # validate_by_name: a field with its own environment names (otel_endpoint) is still set by name in code.
    model_config = SettingsConfigDict(
        env_prefix="AFRL_", extra="ignore", protected_namespaces=(), validate_by_name=True
    )

    # Defaults are passed as `default=`: type checkers read a field's default from that keyword only,
    # so `ServiceSettings(model=...)` type-checks without pydantic's mypy plugin.

    model: Path | None = Field(
        default=None,
        description="model artifact folder (afrl export); unset: the embedded default model "
        "(afrl.paths.default_model_dir())",
    )
    model_name: str | None = Field(
        default=None, description="name reported in responses and /info; unset: the manifest's model_name"
    )
    host: str = Field(default="127.0.0.1", description="interface to listen on")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port to listen on")
    max_documents: int = Field(default=1000, ge=1, description="most documents in one request (more: 413)")
    max_document_tokens: int = Field(
        default=512, ge=1, description="document tokens kept per prompt; longer documents are truncated and reported"
    )
    max_document_chars: int = Field(
        default=100_000, ge=1, description="longest document (and query) accepted in characters (longer: 413)"
    )
    max_request_bytes: int = Field(
        default=4 * MIB, ge=1, description="largest request body, checked from Content-Length and while reading (413)"
    )
    max_batch_tokens: int = Field(
        default=8192,
        ge=1,
        description="padded tokens (rows x length) in one forward pass; a longer single row runs alone",
    )
    cross_request_batching: bool = Field(
        default=True,
        description="let different requests share forward passes on the shared prefix (their document rows "
        "over one past of the guideline and each request's query) and in explanation decoding (every "
        "active explanation steps in one decode pass); false: each request's shared-prefix and decode "
        "work runs in passes of its own (full prompts on the score graph always batch across requests)",
    )
    guideline_cache: bool = Field(
        default=True,
        description="compute the KV cache of the tokens every prompt starts with (the system turn with the "
        "guideline) once per model load, so each request computes only its query on top of it; false: "
        "every request computes its whole prefix",
    )
    result_cache_size: int = Field(
        default=0,
        ge=0,
        description="(query, document) label logits kept in an LRU cache, so repeated pairs skip the model "
        "(requests that ask for explanations are scored, and feed the cache); 0: no result cache",
    )
    max_wait_ms: float = Field(
        default=2.0,
        ge=0,
        description="how long the batcher holds a batch open for requests still being tokenized, "
        "so they can share its forward pass (never waits when nothing is arriving)",
    )
    decode_slice_ms: float = Field(
        default=10.0,
        ge=0,
        description="a decoding request's turn runs decode passes for up to this long (at least one), so an "
        "explanation moves many tokens per turn instead of waiting behind every other request once per "
        "token; 0: one pass per turn",
    )
    max_queue: int = Field(default=256, ge=1, description="requests admitted at once (queued or running); more get 429")
    max_queue_tokens: int = Field(
        default=65536,
        ge=1,
        description="padded tokens waiting for the model across requests; a request that would "
        "pass it gets 429 with Retry-After (a request is always admitted into an empty queue)",
    )
    max_queue_delay_ms: float = Field(
        default=1000.0,
        ge=0,
        description="refuse (429) a request that would wait longer than this before its compute "
        "starts (the work ahead of it at the measured tokens/s); set it to the latency budget left after "
        "compute so accepted requests stay fast under overload; 0: no bound",
    )
    inference_timeout_ms: float = Field(
        default=60_000.0,
        ge=0,
        description="longest one forward pass may take: past it the batch's requests get 504, "
        "the next batches run on a fresh inference thread, and /health/ready answers 503 until the stuck call "
        "returns (two stuck at once: /health/live answers 503 too); 0: no timeout",
    )
    shared_prefix: bool = Field(
        default=True,
        description="score with the 'prefix' + 'score_prefix' graphs when the artifact has them: the "
        "guideline + query prefix runs once per request; false: always the plain 'score' graph",
    )
    max_new_tokens: int = Field(default=256, ge=1, description="longest explanation decoded per document, in tokens")
    max_reasoning_documents: int = Field(
        default=32, ge=1, description="most documents explained in one request (reasoning: true or top_k); more: 413"
    )
    api_key: SecretStr | None = Field(
        default=None,
        description="when set, /v1/*, /v2/* and /info need 'Authorization: Bearer KEY' or 'x-api-key: KEY'",
    )
    cors_origins: str = Field(
        default="",
        description="browser origins allowed to call the API cross-origin, comma-separated (e.g. "
        "'https://search.example.com'; '*' allows any); empty: no CORS headers, browsers block cross-origin calls",
    )
    providers: str = Field(
        default="auto",
        description="ONNX Runtime execution providers, comma-separated, in priority order; 'auto': "
        "CUDAExecutionProvider then CPUExecutionProvider when onnxruntime-gpu is installed, else CPU",
    )
    cuda_device_id: int = Field(default=0, ge=0, description="GPU used by CUDAExecutionProvider")
    cuda_graphs: bool = Field(
        default=False,
        description="CUDA only: capture the score graph as CUDA graphs, one per (rows, length) bucket, "
        "all captured during warmup",
    )
    intra_op_threads: int | None = Field(
        default=None, ge=1, description="ONNX Runtime intra-op threads; unset: onnxruntime's default (all cores)"
    )
    tokenize_workers: int | None = Field(
        default=None, ge=1, description="threads tokenizing requests (overlapping inference); unset: min(4, CPU cores)"
    )
    access_log: bool = Field(default=False, description="log one line per request (uvicorn's access log)")
    grace_period_s: float = Field(
        default=30.0,
        ge=0,
        description="on SIGTERM: stop accepting, let in-flight requests finish for at most this long, then exit",
    )
    otel_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AFRL_OTEL_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
        description="OTLP endpoint traces are sent to, e.g. 'http://collector:4317' (needs the otel extra; "
        "AFRL_OTEL_ENDPOINT, else the standard OTEL_EXPORTER_OTLP_ENDPOINT); unset: no tracing",
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="'json': `afrl serve` logs one JSON object per line (uvicorn's access log too); "
        "'text': plain lines",
    )

    @field_validator("providers")
    @classmethod
    def _providers_not_empty(cls, value: str) -> str:
        if not comma_list(value):
            raise ValueError("providers must name at least one ONNX Runtime execution provider")
        return value

    @property
    def provider_list(self) -> list[str]:
        return comma_list(self.providers)

    @property
    def cors_origin_list(self) -> list[str]:
        return comma_list(self.cors_origins)


def comma_list(value: str) -> list[str]:
    """'a, b,,c' -> ['a', 'b', 'c']: list settings are comma-separated strings, plain in an env file."""
    return [item.strip() for item in value.split(",") if item.strip()]
