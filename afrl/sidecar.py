"""`afrl.json`: what a training checkpoint records beside its Hugging Face files.

A checkpoint folder is an ordinary Hugging Face causal LM (weights, config,
tokenizer) plus this sidecar: the guideline the model was trained with (the
system prompt's text) and the grade values its label tokens spell. Training
writes it; export, evaluation and the next training stage read it. This
module is the only code that knows its name and layout.

    {"guideline": "...", "label_values": [0, 1, 2, 3, 4]}
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ValidationError, field_validator

SIDECAR_NAME = "afrl.json"


class SidecarError(ValueError):
    """The sidecar exists but cannot be read; the message names the file and the field."""


class Sidecar(BaseModel):
    guideline: str
    label_values: list[int]

    @field_validator("guideline")
    @classmethod
    def _guideline_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the guideline is empty")
        return value

    @field_validator("label_values")
    @classmethod
    def _ascending(cls, values: list[int]) -> list[int]:
        if len(values) < 2 or sorted(set(values)) != values:
            raise ValueError(f"label_values must be at least 2 distinct ascending grades, got {values}")
        return values

    def write(self, folder: Path) -> Path:
        """Write `folder/afrl.json`; returns its path."""
        path = Path(folder) / SIDECAR_NAME
        path.write_text(json.dumps({"guideline": self.guideline, "label_values": self.label_values}, indent=2))
        return path

    @classmethod
    def read_file(cls, path: Path) -> Sidecar:
        try:
            return cls.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))
        except json.JSONDecodeError as e:
            raise SidecarError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
        except ValidationError as e:
            first = e.errors()[0]
            field = ".".join(str(x) for x in first["loc"]) or "(top level)"
            raise SidecarError(f"{path}: {field}: {first['msg']}") from None


def sidecar_path(folder: Path) -> Path:
    return Path(folder) / SIDECAR_NAME


def read_sidecar(folder: Path) -> Sidecar | None:
    """The sidecar of a checkpoint folder, or None when the folder has none (a plain Hugging Face checkpoint)."""
    path = sidecar_path(folder)
    return Sidecar.read_file(path) if path.is_file() else None
