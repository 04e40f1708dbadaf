"""Request and response bodies of the HTTP API (DESIGN section 4).

Unknown optional fields are ignored; responses never carry null fields
(serialise with `exclude_none=True`).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator
from pydantic.json_schema import JsonDict

# Checked by the validators below (which word the errors); repeated in the JSON schema so that
# clients and schema-driven fuzzers know a query needs a non-blank character and documents one item.
_QUERY_SCHEMA: JsonDict = {"pattern": r"\S"}
DOCUMENTS_SCHEMA: JsonDict = {"minItems": 1}


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must be a non-empty string")
    return value


QueryText = Annotated[StrictStr, AfterValidator(_not_blank), Field(json_schema_extra=_QUERY_SCHEMA)]


class TextDocument(BaseModel):
    """The object form of a document: its text, and whatever else the endpoint's form adds."""

    text: StrictStr


D = TypeVar("D", bound=TextDocument)


class DocumentsRequest(BaseModel, Generic[D]):
    """What every endpoint that grades documents against a query takes, validated once here: a query
    with a non-blank character and a non-empty list of documents, each a string or a `D` object.

    The subclass (ScoreRequest, RerankRequest) names its object form `D`, and how errors describe it.
    """

    model_config = ConfigDict(extra="ignore")

    document_shape: ClassVar[str]  # one document, as the errors describe it
    document_ids: ClassVar[bool] = False  # the object form has an optional `id`, which must be a string

    query: QueryText
    documents: list[StrictStr | D] = Field(json_schema_extra=DOCUMENTS_SCHEMA)

    @field_validator("documents", mode="before")
    @classmethod
    def _documents_shape(cls, value: Any) -> Any:
        # One clear message per bad item instead of pydantic's one-error-per-union-member.
        if not isinstance(value, list):
            raise ValueError(f"must be a non-empty list of documents, each {cls.document_shape}")
        if not value:
            raise ValueError("must contain at least one document")
        for i, item in enumerate(value):
            if not (isinstance(item, str) or cls._document_object(item)):
                raise ValueError(f"item {i} must be {cls.document_shape}, got {json_type(item)}")
        return value

    @classmethod
    def _document_object(cls, item: Any) -> bool:
        if not (isinstance(item, dict) and isinstance(item.get("text"), str)):
            return False
        return not cls.document_ids or item.get("id") is None or isinstance(item.get("id"), str)

    def texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]


class DocumentIn(TextDocument):
    model_config = ConfigDict(extra="ignore")

    id: StrictStr | None = None


class ReasoningOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    top_k: StrictInt = Field(ge=1)


class ScoreRequest(DocumentsRequest[DocumentIn]):
    """`POST /v1/score`: grade every document against the query.

    `reasoning: true` explains every returned document (all, or the `top_n` best);
    `reasoning: {"top_k": k}` the k best. With `stream: true` the answer is an
    event stream: a `score` event per document (every document: `top_n` only
    picks what `reasoning: true` explains), then `reasoning` deltas, then `done`.
    """

    document_shape = 'a string or an object {"text": string, "id"?: string}'
    document_ids = True

    top_n: StrictInt | None = Field(None, ge=1, description="return only the best n, best first")
    timeout_ms: StrictInt | None = Field(
        None, gt=0, description="give up (504) if some scoring has not started by then; explanations are not timed"
    )
    reasoning: StrictBool | ReasoningOptions = False
    stream: StrictBool = False

    def ids(self) -> list[str | None]:
        return [None if isinstance(d, str) else d.id for d in self.documents]

    @property
    def wants_reasoning(self) -> bool:
        return self.reasoning is not False

    def explain_count(self) -> int:
        """How many of the best documents to explain (0: none)."""
        n = len(self.documents)
        if self.reasoning is False:
            return 0
        if self.reasoning is True:
            return min(n, self.top_n) if self.top_n is not None else n
        return min(n, self.reasoning.top_k)


class ScoreResult(BaseModel):
    index: int = Field(description="position of the document in the request")
    id: str | None = None
    grade: int
    probs: list[float] = Field(description="probability of each grade, in the order of the label set")
    score: float = Field(description="expected grade scaled to [0, 1]")
    truncated: bool | None = Field(None, description="present and true when the document was cut to fit")
    reasoning: str | None = Field(None, description="the explanation, for the documents explained")


class ScoreUsage(BaseModel):
    prompt_tokens: int
    truncated_documents: int = 0


class ScoreResponse(BaseModel):
    model: str
    results: list[ScoreResult]
    usage: ScoreUsage


class ReasoningEvent(BaseModel):
    """SSE `reasoning` event: the next piece of one document's explanation."""

    index: int
    delta: str


class DoneEvent(BaseModel):
    """SSE `done` event: the stream is complete."""

    model: str
    usage: ScoreUsage


class ErrorBody(BaseModel):
    type: str = Field(description="stable error kind, e.g. invalid_request, queue_full, inference_timeout")
    message: str = Field(description="what went wrong, naming the field for invalid input")


class ErrorResponse(BaseModel):
    """Every non-2xx answer."""

    error: ErrorBody


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
    max_queue_tokens: int
    max_queue_delay_ms: float
    max_wait_ms: float
    max_sequence_length: int
    max_new_tokens: int
    max_reasoning_documents: int


class RecipeInfo(BaseModel):
    preset: str
    fingerprint: str = Field(description="hash of the preset's config and recipe version (afrl.recipe)")


class InfoResponse(BaseModel):
    model: str
    prompt_version: str
    labels: LabelInfo
    limits: LimitsInfo
    recipe: RecipeInfo | None = Field(
        None, description="what built the model, when its artifact records it (the embedded default model)"
    )
    reasoning: bool = Field(False, description="explanations available (the artifact has a decode graph)")
    stream: bool = True
    shared_prefix: bool = Field(False, description="the prefix is computed once per request (prefix graphs)")
    providers: list[str] = Field(default_factory=list)


def json_type(value: Any) -> str:
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
