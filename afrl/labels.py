"""The label set: grade values and the vocabulary token that spells each one.

The set lives in the artifact manifest; this module only builds and checks it
(`from_tokenizer`, `check_tokens`: export, artifact verification and serving
check the artifact's tokenizer with the same call), so no other code hard-codes
grade tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from pydantic import BaseModel, model_validator

DEFAULT_GRADES: tuple[int, ...] = (0, 1, 2, 3, 4)
GRADE_MEANINGS: dict[int, str] = {
    4: "exact",
    3: "relevant with a minor mismatch",
    2: "partial or substitute",
    1: "complement or accessory",
    0: "irrelevant",
}


class TokenEncoder(Protocol):
    """What label building needs from a tokenizer (HF or `tokenizers`)."""

    def encode(self, text: str, add_special_tokens: bool = ...) -> Any: ...


class LabelSet(BaseModel):
    """Grades in ascending order and the single token id that spells each."""

    values: list[int]
    tokens: list[str]
    token_ids: list[int]

    @model_validator(mode="after")
    def _check(self) -> LabelSet:
        k = len(self.values)
        if k < 2:
            raise ValueError(f"a label set needs at least 2 grades, got {k}")
        if len(self.tokens) != k or len(self.token_ids) != k:
            raise ValueError(
                f"label set lengths differ: {k} values, {len(self.tokens)} tokens, {len(self.token_ids)} token ids"
            )
        if sorted(self.values) != self.values or len(set(self.values)) != k:
            raise ValueError(f"grade values must be strictly ascending, got {self.values}")
        if len(set(self.token_ids)) != k:
            raise ValueError(f"label token ids must be distinct, got {self.token_ids}")
        return self

    @property
    def size(self) -> int:
        return len(self.values)

    @classmethod
    def from_tokenizer(cls, tokenizer: TokenEncoder, values: Sequence[int] = DEFAULT_GRADES) -> LabelSet:
        """Look up each grade's token id; refuse grades that are not one token."""
        tokens, ids = [], []
        for value in values:
            text = str(value)
            encoded = _ids(tokenizer.encode(text, add_special_tokens=False))
            if len(encoded) != 1:
                raise ValueError(
                    f"grade {value!r} tokenizes to {len(encoded)} tokens {encoded}; "
                    "every grade must be a single vocabulary token"
                )
            tokens.append(text)
            ids.append(encoded[0])
        return cls(values=list(values), tokens=tokens, token_ids=ids)

    def check_tokens(self, tokenizer: TokenEncoder) -> None:
        """Raise ValueError unless every label token encodes, alone, to its recorded id with `tokenizer`."""
        for value, token, token_id in zip(self.values, self.tokens, self.token_ids, strict=True):
            ids = _ids(tokenizer.encode(token, add_special_tokens=False))
            if ids != [token_id]:
                raise ValueError(
                    f"label {value} token {token!r} encodes to {ids} with the artifact's tokenizer, "
                    f"the manifest says [{token_id}]"
                )


def _ids(encoded: Any) -> list[int]:
    # transformers returns a list, `tokenizers` an Encoding with `.ids`.
    return list(getattr(encoded, "ids", encoded))
