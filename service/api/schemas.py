"""Request and response bodies of the HTTP API (DESIGN section 4).

Unknown optional fields are ignored; responses never carry null fields
(serialise with `exclude_none=True`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator

_DOCUMENT_SHAPE = 'a string or an object {"text": string, "id"?: string}'


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    text: StrictStr
    id: StrictStr | None = None


class ReasoningOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    top_k: StrictInt = Field(ge=1)


class ScoreRequest(BaseModel):
    """`POST /v1/score`: grade every document against the query."""

    model_config = ConfigDict(extra="ignore")

    query: StrictStr
    documents: list[StrictStr | DocumentIn]
    top_n: StrictInt | None = Field(None, ge=1, description="return only the best n, best first")
    timeout_ms: StrictInt | None = Field(None, gt=0, description="give up (504) if compute has not started by then")
    reasoning: StrictBool | ReasoningOptions = False
    stream: StrictBool = False

    @field_validator("query")
    @classmethod
    def _query_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be a non-empty string")
        return value

    @field_validator("documents", mode="before")
    @classmethod
    def _documents_shape(cls, value: Any) -> Any:
        # One clear message per bad item instead of pydantic's one-error-per-union-member.
        if not isinstance(value, list):
            raise ValueError(f"must be a non-empty list of documents, each {_DOCUMENT_SHAPE}")
        if not value:
            raise ValueError("must contain at least one document")
        for i, item in enumerate(value):
            if isinstance(item, str):
                continue
            if isinstance(item, dict) and isinstance(item.get("text"), str) and (
                item.get("id") is None or isinstance(item.get("id"), str)
            ):
                continue
            raise ValueError(f"item {i} must be {_DOCUMENT_SHAPE}, got {_json_type(item)}")
        return value

    def texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]

    def ids(self) -> list[str | None]:
        return [None if isinstance(d, str) else d.id for d in self.documents]

    @property
    def wants_reasoning(self) -> bool:
        return self.reasoning is not False


class ScoreResult(BaseModel):
    index: int = Field(description="position of the document in the request")
    id: str | None = None
    grade: int
    probs: list[float] = Field(description="probability of each grade, in the order of the label set")
    score: float = Field(description="expected grade scaled to [0, 1]")
    truncated: bool | None = Field(None, description="present and true when the document was cut to fit")


class ScoreUsage(BaseModel):
    prompt_tokens: int
    truncated_documents: int = 0


class ScoreResponse(BaseModel):
    model: str
    results: list[ScoreResult]
    usage: ScoreUsage


class LabelInfo(BaseModel):
    values: list[int]
    tokens: list[str]


class LimitsInfo(BaseModel):
    max_documents: int
    max_document_tokens: int
    max_document_chars: int
    max_request_bytes: int
    max_batch_tokens: int
    max_queue: int
    max_sequence_length: int


class InfoResponse(BaseModel):
    model: str
    prompt_version: str
    labels: LabelInfo
    limits: LimitsInfo
    reasoning: bool = False
    stream: bool = False


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        if not isinstance(value.get("text"), str):
            return "an object without a string 'text'"
        return "an object whose 'id' is not a string"
    return type(value).__name__
