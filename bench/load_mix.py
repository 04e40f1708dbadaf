"""The request mix of `afrl bench load`: what the locust users send, written once as JSON for them.

    size (documents)   1      10     50     200
    share of requests  55%    30%    12%    3%      (skewed toward small requests)

`STREAM_SHARE` of each size is sent with `{"stream": true, "reasoning":
{"top_k": 1}}`: the grades as server-sent events, then the best document's
explanation. Each request kind has its own name in locust's statistics, so
latency is reported per size and mode. Queries and documents come from the
generated world (bench.world_requests), the same for every run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.world_requests import world_requests

SIZES = {1: 0.55, 10: 0.30, 50: 0.12, 200: 0.03}  # documents per request -> share of requests
STREAM_SHARE = 0.1
STREAM_FIELDS = {"stream": True, "reasoning": {"top_k": 1}}
QUERIES = 20
REJECTED = " [429]"  # suffix of a kind's name for its requests the server refused with 429 (admission)
RETRY_AFTER_CAP_S = 5.0  # a refused user waits Retry-After seconds, at most this, before its next request


@dataclass(frozen=True)
class RequestKind:
    name: str  # locust's request name, e.g. "10 docs" or "10 docs stream+reasoning"
    documents: int
    weight: float  # share of all requests
    extra: dict = field(default_factory=dict)  # body fields beyond query and documents

    @property
    def stream(self) -> bool:
        return bool(self.extra.get("stream"))


def request_kinds(sizes: dict[int, float] = SIZES, stream_share: float = STREAM_SHARE) -> list[RequestKind]:
    kinds = []
    for documents, share in sizes.items():
        kinds.append(RequestKind(f"{documents} docs", documents, share * (1 - stream_share)))
        if stream_share > 0:
            kinds.append(
                RequestKind(f"{documents} docs stream+reasoning", documents, share * stream_share, STREAM_FIELDS)
            )
    return kinds


def write_mix(path: Path, kinds: list[RequestKind] | None = None, queries: int = QUERIES, seed: int = 0) -> Path:
    """{"kinds": [...], "requests": [{"query", "documents"}]}: every query carries the largest size's documents."""
    kinds = kinds or request_kinds()
    largest = max(k.documents for k in kinds)
    requests = [{"query": q, "documents": docs} for q, docs in world_requests(queries, largest, seed)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"kinds": [asdict(k) for k in kinds], "requests": requests}))
    return path


def read_kinds(path: Path) -> list[RequestKind]:
    return [RequestKind(**k) for k in json.loads(Path(path).read_text())["kinds"]]
