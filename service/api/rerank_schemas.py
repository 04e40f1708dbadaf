"""Bodies of the rerank protocols (DESIGN section 4): Cohere/Jina/vLLM/Infinity, and TEI's.

`RerankRequest` is Cohere's (v1 and v2) and, on `POST /rerank`, Jina's,
vLLM's and Infinity's: string documents, or Cohere v1 objects whose
`rank_fields` name what is ranked. Parameters other servers know and this
one cannot honour are accepted and named in `meta.warnings`; `priority`
only orders a queue, so it is accepted without a word. `TeiRerankRequest`
is text-embeddings-inference's `/rerank` (`texts`, a bare array back).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    RootModel,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from service.api.schemas import DOCUMENTS_SCHEMA, DocumentsRequest, QueryText, TextDocument, json_type

_NOT_SUPPORTED = "accepted and not supported: named in meta.warnings when it would change the answer"

# Parameters of other rerank servers that would change their answer and do not change ours: each one
# a request uses is named in meta.warnings with the reason.
UNSUPPORTED = {
    "max_chunks_per_doc": "long documents are truncated (max_tokens_per_doc, or the server's limit), not chunked",
    "relevant_spans": "no spans are returned",
    "instruction": "the model grades with the guideline it was trained with",
    "truncate_prompt_tokens": "documents are truncated with max_tokens_per_doc; the query never is",
    "truncation_side": "documents are truncated at their end",
    "max_tokens_per_query": "the query is never truncated (too long: 413)",
    "raw_scores": "relevance_score is the afrl score in [0, 1]",
}


def _in_use(name: str, value: Any) -> bool:
    """Whether a request's value of an unsupported parameter would change the answer."""
    if value is None or value is False:
        return False
    if name == "relevant_spans":
        return not (isinstance(value, dict) and value.get("mode") == "disabled")
    if name == "truncation_side":
        return not (isinstance(value, str) and value.lower() == "right")
    return True


class RerankDocument(TextDocument):
    """A Cohere v1 object document: the fields `rank_fields` names are ranked, else `text`; every field
    rides along and comes back in `document`."""

    # The schema asks for `text`, which an object needs unless it has one of the rank_fields: a
    # condition across fields that JSON Schema generators and clients handle badly, so it is described.
    model_config = ConfigDict(extra="allow", json_schema_extra={"required": ["text"]})

    text: StrictStr = Field("", description="ranked when the object has none of the rank_fields")

    def fields(self) -> dict[str, Any]:
        """The object as the client sent it."""
        return self.model_dump(exclude_unset=True)


def _render(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def ranked_text(document: str | RerankDocument, rank_fields: list[str] | None) -> str:
    """What the model reads for one document: a string as it is; for an object, the `rank_fields` it
    has, in that order, as `key: value` lines each ending in a newline (for plain string values the
    YAML that langchain-cohere flattens a dict document into, so both ways of ranking an object read
    the same text), or its `text` when it has none of them."""
    if isinstance(document, str):
        return document
    fields = document.fields()
    named = [key for key in rank_fields or () if key in fields]
    if not named:
        return document.text
    return "".join(f"{key}: {_render(fields[key])}\n" for key in named)


class RerankRequest(DocumentsRequest[RerankDocument]):
    """`POST /v1/rerank`, `/v2/rerank`, and `/rerank` with `documents`: unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    document_shape = 'a string or an object of fields (a string "text", or the fields named in rank_fields)'

    model: StrictStr | None = Field(None, description="accepted and ignored: one model is served")
    top_n: StrictInt | None = Field(None, ge=1, description="return only the best n")
    return_documents: StrictBool | None = Field(
        None, description="echo each document (default false): an object document comes back whole"
    )
    rank_fields: list[StrictStr] | None = Field(
        None,
        description="object documents: the fields ranked, in this order, each rendered as a 'key: value' line; "
        "an object with none of them is ranked on its 'text' (default: 'text' alone)",
    )
    max_tokens_per_doc: StrictInt | None = Field(
        None, ge=1, description="truncate documents to this many tokens (never above the server's limit)"
    )
    timeout_ms: StrictInt | None = Field(None, gt=0, description="give up (504) if scoring has not started by then")
    priority: JsonValue = Field(None, description="accepted and ignored: it orders a queue, the answer is the same")
    max_chunks_per_doc: JsonValue = Field(None, description=_NOT_SUPPORTED)
    relevant_spans: JsonValue = Field(None, description=_NOT_SUPPORTED)
    instruction: JsonValue = Field(None, description=_NOT_SUPPORTED)
    truncate_prompt_tokens: JsonValue = Field(None, description=_NOT_SUPPORTED)
    truncation_side: JsonValue = Field(None, description=_NOT_SUPPORTED)
    max_tokens_per_query: JsonValue = Field(None, description=_NOT_SUPPORTED)
    raw_scores: JsonValue = Field(None, description=_NOT_SUPPORTED)

    @classmethod
    def _document_object(cls, item: Any) -> bool:
        # Which fields an object needs depends on rank_fields: checked once both are parsed, below.
        return isinstance(item, dict) and isinstance(item.get("text", ""), str)

    @model_validator(mode="after")
    def _objects_have_ranked_fields(self) -> RerankRequest:
        for i, doc in enumerate(self.documents):
            if isinstance(doc, str):
                continue
            fields = doc.fields()
            if "text" in fields or any(key in fields for key in self.rank_fields or ()):
                continue
            if self.rank_fields:
                raise ValueError(f"documents: item {i} has no 'text' and none of the rank_fields {self.rank_fields}")
            raise ValueError(
                f"documents: item {i} is an object without a string 'text'; name the fields to rank in rank_fields"
            )
        return self

    def texts(self) -> list[str]:
        return [ranked_text(d, self.rank_fields) for d in self.documents]

    def echoed(self, index: int) -> RerankDocumentOut:
        """Document `index` as `return_documents` gives it back: a string as `{"text"}`, an object whole."""
        doc = self.documents[index]
        return RerankDocumentOut(text=doc) if isinstance(doc, str) else RerankDocumentOut(**doc.fields())

    def warnings(self) -> list[str]:
        """One line per parameter used that this server accepts and does not honour."""
        return [
            f"{name} is not supported and was ignored: {why}"
            for name, why in UNSUPPORTED.items()
            if _in_use(name, getattr(self, name))
        ]


class RerankDocumentOut(BaseModel):
    """The document as sent: `{"text"}` for a string, every field of an object."""

    model_config = ConfigDict(extra="allow")

    text: str | None = None


class RerankResult(BaseModel):
    index: int
    relevance_score: float = Field(description="the afrl score: expected grade scaled to [0, 1]")
    document: RerankDocumentOut | None = None


class ApiVersion(BaseModel):
    version: str


class RerankTokens(BaseModel):
    input_tokens: int


class RerankMeta(BaseModel):
    """Cohere's `meta`."""

    api_version: ApiVersion
    tokens: RerankTokens
    warnings: list[str] | None = None


class RerankUsage(BaseModel):
    """Jina's `usage`."""

    prompt_tokens: int
    total_tokens: int


class RerankResponse(BaseModel):
    id: str
    model: str
    results: list[RerankResult]
    meta: RerankMeta
    usage: RerankUsage


class TeiRerankRequest(BaseModel):
    """`POST /rerank` with `texts`: text-embeddings-inference's rerank (what litellm's `huggingface/` sends)."""

    model_config = ConfigDict(extra="ignore")

    query: QueryText
    texts: list[StrictStr] = Field(json_schema_extra=DOCUMENTS_SCHEMA)
    return_text: StrictBool = Field(False, description="echo each text")
    raw_scores: StrictBool = Field(
        False, description="score is the expected grade on the label scale (e.g. 0 to 4) instead of [0, 1]"
    )
    truncate: StrictBool | None = Field(
        None, description="false: a text longer than the server's limit gets 413; unset or true: it is truncated"
    )
    truncation_direction: StrictStr = Field(
        "Right", pattern="^[Rr]ight$", description="'Right' only: texts are truncated at their end"
    )
    top_n: StrictInt | None = Field(None, ge=1, description="return only the best n (not TEI's; litellm sends it)")

    @field_validator("texts", mode="before")
    @classmethod
    def _texts_shape(cls, value: Any) -> Any:
        # One clear message per bad item, as for `documents`.
        if not isinstance(value, list) or not value:
            raise ValueError("must be a non-empty list of strings")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                got = "an object" if isinstance(item, dict) else json_type(item)
                raise ValueError(f"item {i} must be a string, got {got}")
        return value

    @field_validator("truncation_direction", mode="before")
    @classmethod
    def _right_only(cls, value: Any) -> Any:
        if isinstance(value, str) and value.lower() == "left":
            raise ValueError("'Left' is not supported: texts are truncated at their end ('Right')")
        return value


class TeiRerankResult(BaseModel):
    index: int
    score: float = Field(description="the afrl score in [0, 1]; with raw_scores the expected grade")
    text: str | None = None


class TeiRerankResponse(RootModel[list[TeiRerankResult]]):
    """TEI answers a bare array, best first."""
