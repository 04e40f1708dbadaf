"""Model artifact manifest: what export writes and what serving checks.

An artifact is a folder with `manifest.json`, the graphs of afrl/graphs.py
(+ their weights file) and the tokenizer files. `load_manifest` refuses an
artifact whose format version, prompt version, guideline hash or file hashes
do not match, naming the file or field that broke; `load_tokenizer` refuses
a tokenizer.json that is missing, unreadable or spells a label differently
from the manifest. `sha256_file` is the one file hash: `write_manifest`
records it, `verify_files` compares it, and export hashes checkpoints with
the same `digest_file`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field, ValidationError

from afrl.labels import LabelSet
from afrl.prompt import PromptTemplate

if TYPE_CHECKING:
    from _hashlib import HASH  # the type of hashlib's digest objects

    from tokenizers import Tokenizer

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
TOKENIZER_FILE = "tokenizer.json"  # what serving tokenizes with; the other tokenizer files ride along


class ArtifactError(RuntimeError):
    """The artifact folder cannot be served as it is; the message says why."""


class SourceCheckpoint(BaseModel):
    checkpoint: str = Field(description="folder or hub id the graphs were exported from")
    sha256: str = Field(description="sha256 over the checkpoint's weight and config files")


class GraphSpec(BaseModel):
    file: str
    dtype: Literal["fp32", "fp16", "int8"]
    inputs: list[str]
    outputs: list[str]


class Manifest(BaseModel):
    format_version: int = FORMAT_VERSION
    model_name: str
    source: SourceCheckpoint
    prompt: PromptTemplate
    labels: LabelSet
    graphs: dict[str, GraphSpec] = Field(description="'score' is required; 'score_prefix' and 'decode' optional")
    providers_validated: list[str]
    max_sequence_length: int
    parity: dict[str, float] = Field(default_factory=dict, description="figures measured at export time")
    fusions: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description="graph -> fused contrib op -> node count (export/fusion.py); a graph absent: not fused",
    )
    files: dict[str, str] = Field(default_factory=dict, description="relative path -> sha256")
    created_by: str = "afrl"


def digest_file(path: Path, digest: HASH | None = None) -> HASH:
    """Feed a file's bytes into `digest` (a hashlib object; a new sha256 when None) and return it.

    A running digest lets one hash cover several files (export's checkpoint hash).
    """
    running = hashlib.sha256() if digest is None else digest
    with open(path, "rb") as f:
        # file_digest wants a constructor; this one hands back the running digest. It reads in blocks.
        return hashlib.file_digest(f, lambda: running)


def sha256_file(path: Path) -> str:
    return digest_file(path).hexdigest()


def hash_files(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` except the manifest itself."""
    return {
        str(p.relative_to(folder)): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST_NAME
    }


def write_manifest(folder: Path, manifest: Manifest) -> Manifest:
    """Record every file's hash, then write manifest.json."""
    manifest = manifest.model_copy(update={"files": hash_files(folder)})
    (folder / MANIFEST_NAME).write_text(manifest.model_dump_json(indent=2))
    return manifest


def load_manifest(folder: str | Path, verify_hashes: bool = True) -> Manifest:
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise ArtifactError(f"{folder}: no {MANIFEST_NAME}; is this an afrl model artifact (afrl export)?")
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{path}: unreadable manifest: {e}") from e
    version = raw.get("format_version") if isinstance(raw, dict) else None
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: format_version {version!r}, this afrl reads {FORMAT_VERSION}; re-export the model"
        )
    try:
        manifest = Manifest.model_validate(raw)
        manifest.prompt.check()
    except (ValidationError, ValueError) as e:
        raise ArtifactError(f"{path}: invalid manifest: {e}") from e
    if "score" not in manifest.graphs:
        raise ArtifactError(f"{path}: no 'score' graph listed")
    for name, spec in manifest.graphs.items():
        if spec.file not in manifest.files:
            raise ArtifactError(f"{path}: graph {name!r} file {spec.file!r} is not listed in 'files'")
    if verify_hashes:
        verify_files(folder, manifest)
    return manifest


def verify_files(folder: Path, manifest: Manifest) -> None:
    for rel, expected in manifest.files.items():
        p = folder / rel
        if not p.is_file():
            raise ArtifactError(f"{folder}: file {rel!r} listed in the manifest is missing")
        actual = sha256_file(p)
        if actual != expected:
            raise ArtifactError(
                f"{folder}: file {rel!r} is corrupt or was changed: sha256 {actual[:12]}..., "
                f"manifest says {expected[:12]}..."
            )


def load_tokenizer(folder: Path, labels: LabelSet | None = None) -> Tokenizer:
    """The artifact's tokenizer.json; with `labels`, refused unless each label token encodes to its id."""
    from tokenizers import Tokenizer

    path = folder / TOKENIZER_FILE
    if not path.is_file():
        raise ArtifactError(f"{folder}: no {TOKENIZER_FILE}; the artifact must carry its tokenizer")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises a bare Exception on bad files
        raise ArtifactError(f"{path}: unreadable tokenizer: {e}") from e
    if labels is not None:
        try:
            labels.check_tokens(tokenizer)
        except ValueError as e:
            raise ArtifactError(f"{folder}: {e}") from None
    return tokenizer
