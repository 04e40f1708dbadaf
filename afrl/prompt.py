"""Prompt contract: the model's own chat template, split at the shared prefix.

    [system: guideline] [user: "Query: {q}\\n" + "Document: {d}"] [assistant prefix, thinking off]

Everything up to and including the query line is the shared prefix of all
documents of one request. The template is rendered once through the
tokenizer's chat template with sentinels and stored as three literal pieces
in the manifest, so serving needs neither jinja nor transformers, and
training and serving tokenize through the same `PromptEncoder`.

Splitting is safe for Qwen-style BPE: the prefix ends in a newline and the
next piece starts with a letter, and pre-tokenization never merges across
that boundary (tests check joint == piecewise tokenization).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

TEMPLATE_VERSION = "afrl-prompt-v1"

_SYSTEM, _QUERY, _DOCUMENT = "\x00AFRL_SYSTEM\x00", "\x00AFRL_QUERY\x00", "\x00AFRL_DOCUMENT\x00"


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class PromptTemplate(BaseModel):
    """Literal prompt pieces; `{query}` / `{document}` are substituted, nothing else."""

    version: str = TEMPLATE_VERSION
    guideline: str
    guideline_sha256: str
    prefix: str  # system turn + user turn up to and including "Query: {query}\n"
    document: str  # "Document: {document}"
    suffix: str  # end of the user turn + assistant prefix (thinking disabled)
    completion_end: str  # appended after the explanation when training (eos of the turn)

    @classmethod
    def from_chat_template(cls, tokenizer: Any, guideline: str) -> PromptTemplate:
        """Render the tokenizer's own chat template once, with sentinels, and split it."""
        messages = [
            {"role": "system", "content": _SYSTEM},
            {"role": "user", "content": f"Query: {_QUERY}\nDocument: {_DOCUMENT}"},
        ]
        text = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, enable_thinking=False
        )
        head, rest = text.split(f"Query: {_QUERY}\n", 1)
        doc_piece, suffix = rest.split(_DOCUMENT, 1)
        if not doc_piece.startswith("Document: "):
            raise ValueError(f"unexpected chat template layout around the document: {doc_piece!r}")
        eos = getattr(tokenizer, "eos_token", None)
        if not eos:
            raise ValueError("the tokenizer has no eos token to end the assistant turn")
        prefix = head.replace(_SYSTEM, guideline) + "Query: {query}\n"
        return cls(
            guideline=guideline,
            guideline_sha256=sha256_text(guideline),
            prefix=prefix,
            document=doc_piece + "{document}",
            suffix=suffix,
            completion_end=eos,
        )

    def check(self) -> None:
        if sha256_text(self.guideline) != self.guideline_sha256:
            raise ValueError("prompt guideline text does not match its recorded sha256")
        if self.version != TEMPLATE_VERSION:
            raise ValueError(f"prompt template version {self.version!r}, this build reads {TEMPLATE_VERSION!r}")

    def prefix_text(self, query: str) -> str:
        return self.prefix.replace("{query}", query)

    def document_text(self, document: str) -> str:
        return self.document.replace("{document}", document)

    def full_text(self, query: str, document: str) -> str:
        return self.prefix_text(query) + self.document_text(document) + self.suffix

    def completion_text(self, grade_token: str, explanation: str) -> str:
        """What the model is trained to generate: the grade first, then the reasons."""
        return f"{grade_token}\n{explanation}{self.completion_end}"


@dataclass(frozen=True)
class EncodedPair:
    """Token ids of one (query, document) prompt, split at the shared prefix."""

    prefix_ids: list[int]
    document_ids: list[int]  # document piece + suffix, after truncation
    truncated: bool

    @property
    def input_ids(self) -> list[int]:
        return self.prefix_ids + self.document_ids


class PromptEncoder:
    """Tokenizes prompts piecewise; the prefix once per query.

    `tokenizer` is a `tokenizers.Tokenizer` (serving) or anything with
    `encode(text, add_special_tokens=False)` returning ids or an Encoding.
    """

    def __init__(self, template: PromptTemplate, tokenizer: Any, max_document_tokens: int = 512):
        self.template = template
        self.tokenizer = tokenizer
        self.max_document_tokens = max_document_tokens
        self.suffix_ids = self._encode(template.suffix)

    def _encode(self, text: str) -> list[int]:
        out = self.tokenizer.encode(text, add_special_tokens=False)
        return list(getattr(out, "ids", out))

    def _encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        batch = getattr(self.tokenizer, "encode_batch", None)
        if batch is not None:
            return [list(e.ids) for e in batch(list(texts), add_special_tokens=False)]
        return [self._encode(t) for t in texts]

    def encode_prefix(self, query: str) -> list[int]:
        return self._encode(self.template.prefix_text(query))

    def encode_documents(self, documents: Sequence[str]) -> list[tuple[list[int], bool]]:
        """Document piece ids (truncated to max_document_tokens) + suffix ids, and whether truncated."""
        out = []
        for ids in self._encode_batch([self.template.document_text(d) for d in documents]):
            truncated = len(ids) > self.max_document_tokens
            out.append((ids[: self.max_document_tokens] + self.suffix_ids, truncated))
        return out

    def encode(self, query: str, documents: Sequence[str]) -> list[EncodedPair]:
        prefix = self.encode_prefix(query)
        return [EncodedPair(prefix, ids, trunc) for ids, trunc in self.encode_documents(documents)]
