"""Checkpoint -> model artifact: score graph, tokenizer files, manifest.

    export_artifact(checkpoint, out_dir, dtype="fp32" | "int8")

1. `load_checkpoint`: the HF causal LM (fp32, eval) and tokenizer from a
   folder or hub id, the prompt template and label set; the guideline and
   grade values come from the checkpoint's `afrl.json` (written by training),
   `guideline=` replacing the text;
2. copy the tokenizer files byte for byte;
3. export the score graph (int8: export fp32 to a scratch file, then quantize;
   only the final graph lands in the artifact, as `score.onnx`);
4. validate it against the torch model on prompts encoded exactly as serving
   encodes them: `PromptEncoder` over `tokenizers.Tokenizer` loaded from the
   artifact's own tokenizer.json;
5. write the manifest (every file's sha256, parity figures).

Everything is written into a scratch folder beside `out_dir` and renamed into
place at the end, so a failed export never leaves a half artifact.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from afrl.labels import DEFAULT_GRADES, LabelSet
from afrl.manifest import MANIFEST_NAME, GraphSpec, Manifest, SourceCheckpoint, write_manifest
from afrl.progress import say
from afrl.prompt import PromptEncoder, PromptTemplate
from export.onnx_export import INPUT_NAMES, OUTPUT_NAMES, export_score_onnx
from export.quantize import quantize_score_int8
from export.validate import TOLERANCES, Tolerance, validate_score_graph

logger = logging.getLogger(__name__)

AFRL_CONFIG = "afrl.json"  # {"guideline": str, "label_values": [0, 1, 2, 3, 4]}, written by training
SCORE_GRAPH = "score.onnx"
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.json", "merges.txt", "tokenizer.model", "chat_template.jinja",
)
CHECKPOINT_FILE_SUFFIXES = (".safetensors", ".bin", ".json")  # weights, index, configs
CHECKPOINT_SKIP = frozenset(TOKENIZER_FILES)
SAMPLE_PAIRS: list[tuple[str, str]] = [
    ("wireless earbuds", "Bluetooth 5.3 wireless earbuds with charging case, 30 h battery, IPX5."),
    ("wireless earbuds", "Silicone ear tips replacement set, sizes S/M/L, fits most earbuds."),
    ("500ml water bottle stainless", "Insulated stainless steel bottle, 0.5 l, keeps drinks cold 24 h."),
    ("500ml water bottle stainless", "Plastic sports bottle 1 l, BPA free."),
    ("iphone 15 case", "Clear shockproof case compatible with iPhone 15, raised camera edges."),
    ("iphone 15 case", "Apple iPhone 15, 128 GB, black, refurbished."),
    ("running shoes men size 42", "Men's road running shoes, breathable mesh, EU 42."),
    ("running shoes men size 42", "Women's trail running shoes, EU 38."),
    ("dog food grain free", "Grain-free adult dog food with salmon and sweet potato, 12 kg bag."),
    ("dog food grain free", "Chicken and rice puppy food, 3 kg."),
    ("usb c cable 2m", "USB-C to USB-C cable, 2 m, 100 W fast charging, braided."),
    ("usb c cable 2m", "HDMI cable 2 m."),
]


class CheckpointError(ValueError):
    """The checkpoint lacks something export needs; the message says what and how to fix it."""


@dataclass
class LoadedCheckpoint:
    name: str  # folder or hub id, as given
    folder: Path  # local folder holding its config.json (the hub cache for a hub id)
    model: Any  # HF causal LM, fp32, eval
    tokenizer: Any  # HF tokenizer
    template: PromptTemplate
    labels: LabelSet


def export_artifact(
    checkpoint: str | Path,
    out_dir: Path,
    dtype: Literal["fp32", "int8"] = "fp32",
    guideline: str | None = None,
    validation_pairs: list[tuple[str, str]] | None = None,
    max_sequence_length: int = 2048,
    progress: Callable[[str], None] | None = None,
    tolerance: Tolerance | None = None,
) -> Manifest:
    """Export `checkpoint` (HF folder or hub id) as a servable artifact in `out_dir`.

    `tolerance` overrides the validation limits of `dtype` (export.validate.TOLERANCES).
    """
    if dtype not in TOLERANCES:
        raise ValueError(f"dtype {dtype!r} is not exported here; choose one of {sorted(TOLERANCES)}")
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)

    def step(message: str) -> None:
        say(progress, logger, message)

    from tokenizers import Tokenizer

    step(f"loading {checkpoint}")
    ckpt = load_checkpoint(str(checkpoint), guideline)
    limit = getattr(ckpt.model.config, "max_position_embeddings", None)
    if limit is not None and max_sequence_length > limit:
        raise ValueError(f"max_sequence_length {max_sequence_length} exceeds the model's {limit} positions")

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.", dir=out_dir.parent) as scratch:
        staging = Path(scratch) / "artifact"
        staging.mkdir()
        _copy_tokenizer_files(ckpt, staging)
        served = Tokenizer.from_file(str(staging / "tokenizer.json"))  # what serving will load
        if LabelSet.from_tokenizer(served, ckpt.labels.values) != ckpt.labels:
            raise CheckpointError(f"{checkpoint}: tokenizer.json spells the grades differently from the HF tokenizer")

        step(f"exporting the score graph ({dtype}, {ckpt.labels.size} label rows)")
        graph = staging / SCORE_GRAPH
        if dtype == "int8":
            fp32 = export_score_onnx(ckpt.model, ckpt.labels.token_ids, Path(scratch) / "fp32" / SCORE_GRAPH)
            step("quantizing to int8")
            quantize_score_int8(fp32, graph)
        else:
            export_score_onnx(ckpt.model, ckpt.labels.token_ids, graph)

        step("validating against torch")
        encoder = PromptEncoder(ckpt.template, served)
        sequences = [encoder.encode(q, [d])[0].input_ids for q, d in validation_pairs or SAMPLE_PAIRS]
        parity = validate_score_graph(
            graph, ckpt.model, ckpt.labels, sequences,
            tolerance=tolerance or TOLERANCES[dtype],
            pad_token_id=_pad_token_id(ckpt.tokenizer),
        )
        step("parity " + ", ".join(f"{k}={v:.3g}" for k, v in parity.items()))

        local = Path(ckpt.name).is_dir()
        manifest = write_manifest(staging, Manifest(
            model_name=ckpt.folder.resolve().name if local else ckpt.name,
            source=SourceCheckpoint(
                checkpoint=str(ckpt.folder.resolve()) if local else ckpt.name,
                sha256=checkpoint_sha256(ckpt.folder),
            ),
            prompt=ckpt.template,
            labels=ckpt.labels,
            graphs={"score": GraphSpec(file=SCORE_GRAPH, dtype=dtype, inputs=INPUT_NAMES, outputs=OUTPUT_NAMES)},
            providers_validated=["CPUExecutionProvider"],
            max_sequence_length=max_sequence_length,
            parity=parity,
        ))
        _publish(staging, out_dir)
    step(f"wrote {out_dir}")
    return manifest


def load_checkpoint(checkpoint: str, guideline: str | None = None) -> LoadedCheckpoint:
    """Model (fp32, eval), tokenizer, prompt template and label set of a training checkpoint.

    The guideline and grade values come from the checkpoint's afrl.json;
    `guideline=` replaces its text (and is required when there is no afrl.json).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = _checkpoint_folder(checkpoint)
    path = _checkpoint_file(checkpoint, AFRL_CONFIG)
    saved = json.loads(Path(path).read_text()) if path else {}
    if guideline is None:
        guideline = saved.get("guideline")
    elif saved.get("guideline") not in (None, guideline):
        logger.warning("guideline= differs from the one in %s's %s; exporting with guideline=", checkpoint, AFRL_CONFIG)
    if not guideline:
        raise CheckpointError(
            f"{checkpoint}: no guideline: the checkpoint has no {AFRL_CONFIG} with one "
            "(training writes it); pass guideline= with the text the model was trained with"
        )
    # fix_mistral_regex=False: serving tokenizes with tokenizer.json as is, so must we (this also
    # silences transformers 4.57.6's false warning on folders it saved itself).
    tokenizer = AutoTokenizer.from_pretrained(checkpoint, fix_mistral_regex=False)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    if "sliding_attention" in (getattr(model.config, "layer_types", None) or []):
        raise CheckpointError(
            f"{checkpoint}: sliding-window layers are not exported yet (the score graph's mask is full causal)"
        )
    return LoadedCheckpoint(
        name=checkpoint,
        folder=folder,
        model=model,
        tokenizer=tokenizer,
        template=PromptTemplate.from_chat_template(tokenizer, guideline),
        labels=LabelSet.from_tokenizer(tokenizer, saved.get("label_values") or DEFAULT_GRADES),
    )


def _checkpoint_folder(checkpoint: str) -> Path:
    """The local folder with the checkpoint's config.json; a clear error for a wrong path or hub id."""
    from transformers.utils import cached_file

    reason = ""
    try:
        config = cached_file(checkpoint, "config.json")  # None for a local folder without one
    except (OSError, ValueError) as e:  # HFValidationError is a ValueError
        config, reason = None, f" ({e})"
    if config is None:
        raise CheckpointError(
            f"{checkpoint}: neither a checkpoint folder with config.json nor a reachable hub id{reason}"
        )
    return Path(config).parent


def _checkpoint_file(checkpoint: str, filename: str) -> str | None:
    """Local path of one file of a checkpoint folder or hub id, None when it has no such file."""
    from transformers.utils import cached_file

    return cached_file(
        checkpoint, filename,
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
    )


def _copy_tokenizer_files(ckpt: LoadedCheckpoint, dest: Path) -> None:
    """Copy the checkpoint's tokenizer files byte for byte; write tokenizer.json from the fast tokenizer if absent."""
    for filename in TOKENIZER_FILES:
        path = _checkpoint_file(ckpt.name, filename)
        if path:
            shutil.copyfile(path, dest / filename)
    if not (dest / "tokenizer.json").is_file():
        backend = getattr(ckpt.tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise CheckpointError(f"{ckpt.name}: no tokenizer.json and no fast tokenizer to write one from")
        backend.save(str(dest / "tokenizer.json"))


def checkpoint_sha256(folder: Path) -> str:
    """sha256 over a checkpoint folder's weight and config files (name and bytes of each, sorted by name)."""
    h = hashlib.sha256()
    for path in sorted(Path(folder).iterdir()):
        if path.is_file() and path.suffix in CHECKPOINT_FILE_SUFFIXES and path.name not in CHECKPOINT_SKIP:
            h.update(path.name.encode() + b"\0")
            with open(path, "rb") as f:
                while block := f.read(1 << 20):
                    h.update(block)
    return h.hexdigest()


def _pad_token_id(tokenizer: Any) -> int:
    # Any id will do under the mask; the tokenizer's own keeps the graph's inputs realistic.
    for attr in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, attr, None)
        if isinstance(value, int):
            return value
    return 0


def _check_out_dir(out_dir: Path) -> None:
    """Refuse to replace a non-empty folder that is not an artifact."""
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / MANIFEST_NAME).is_file())):
        raise FileExistsError(f"{out_dir} exists and is not an afrl artifact; choose another --out or remove it")


def _publish(staging: Path, out_dir: Path) -> None:
    """Move the finished artifact into place, replacing an older artifact only once the new one is complete."""
    _check_out_dir(out_dir)
    old = staging.parent / "previous"
    if out_dir.exists():
        out_dir.rename(old)
    staging.rename(out_dir)
    logger.debug("published %s (replaced: %s)", out_dir, old.exists())
