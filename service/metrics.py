"""Prometheus metrics (DESIGN section 6), one `CollectorRegistry` per app.

No module-level collectors: every `create_app` gets its own registry, so
many apps can live in one process (tests) without duplicate-name errors.
Beyond DESIGN's list: `afrl_queue_tokens` (padded tokens waiting, the other
bound of admission), `afrl_reasoning_tokens_total` (explanation tokens decoded),
`afrl_inference_timeouts_total` and `afrl_stuck_inference_calls` (forward passes
past AFRL_INFERENCE_TIMEOUT_MS, and those of them not returned yet),
`afrl_decode_batch_size` (explanation rows per decode pass, across requests),
`afrl_result_cache_hits_total` / `afrl_result_cache_misses_total`
(AFRL_RESULT_CACHE_SIZE).
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# 0.1 ms .. 10 s: a grade takes milliseconds on a GPU, seconds on a CPU.
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
SIZE_BUCKETS = tuple(float(2**i) for i in range(11))  # 1 .. 1024 rows
TOKEN_BUCKETS = tuple(float(2**i) for i in range(5, 18))  # 32 .. 131072 tokens
RATIO_BUCKETS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServiceMetrics:
    """The service's collectors, registered in a private registry."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.request_duration = Histogram(
            "afrl_request_duration_seconds",
            "HTTP request duration",
            ["endpoint", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_duration = Histogram(
            "afrl_queue_duration_seconds",
            "time a request's work waited for the model",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokenize_duration = Histogram(
            "afrl_tokenize_duration_seconds",
            "time to tokenize one request",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_duration = Histogram(
            "afrl_inference_duration_seconds",
            "duration of one forward pass (one batch)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram("afrl_batch_size", "rows in one forward pass", buckets=SIZE_BUCKETS, registry=r)
        self.batch_tokens = Histogram(
            "afrl_batch_tokens",
            "padded tokens (rows x length) in one forward pass",
            buckets=TOKEN_BUCKETS,
            registry=r,
        )
        self.padding_ratio = Histogram(
            "afrl_padding_ratio", "share of pad tokens in one forward pass", buckets=RATIO_BUCKETS, registry=r
        )
        self.time_to_first_reasoning_token = Histogram(
            "afrl_time_to_first_reasoning_token_seconds",
            "request arrival to the first decoded explanation token",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.prefix_tokens_saved = Counter(
            "afrl_prefix_tokens_saved",
            "prefix tokens not computed: per document its whole prefix, less what its request computed once "
            "(its query alone, on the guideline cache)",
            registry=r,
        )
        self.reasoning_tokens = Counter("afrl_reasoning_tokens", "explanation tokens decoded", registry=r)
        self.decode_batch_size = Histogram(
            "afrl_decode_batch_size",
            "explanation rows (of every request decoding) stepped together in one decode pass",
            buckets=SIZE_BUCKETS,
            registry=r,
        )
        self.result_cache_hits = Counter(
            "afrl_result_cache_hits", "(query, document) pairs answered from the result cache", registry=r
        )
        self.result_cache_misses = Counter(
            "afrl_result_cache_misses", "(query, document) pairs looked up in the result cache and scored", registry=r
        )
        self.queue_depth = Gauge("afrl_queue_depth", "requests admitted and not yet answered", registry=r)
        self.queue_tokens = Gauge("afrl_queue_tokens", "padded tokens waiting for the model", registry=r)
        self.inference_timeouts = Counter(
            "afrl_inference_timeouts", "forward passes abandoned past the inference timeout", registry=r
        )
        self.stuck_inference_calls = Gauge(
            "afrl_stuck_inference_calls", "abandoned forward passes that have not returned yet", registry=r
        )
        self.requests_rejected = Counter(
            "afrl_requests_rejected", "requests refused, by reason", ["reason"], registry=r
        )

    def render(self) -> bytes:
        """Prometheus text exposition of this registry."""
        return generate_latest(self.registry)
