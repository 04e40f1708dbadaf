"""Checkpoint -> model artifact: the graphs of afrl/graphs.py, tokenizer files, manifest.

    export_artifact(checkpoint, out_dir, dtype="fp32" | "fp16" | "int8",
                    graphs=("score", "prefix", "score_prefix", "decode"), fuse=True)

1. `load_checkpoint`: the HF causal LM (fp32, eval) and tokenizer from a
   folder or hub id, the prompt template and label set; the guideline and
   grade values come from the checkpoint's `afrl.json` (written by training),
   `guideline=` replacing the text;
2. copy the tokenizer files byte for byte;
3. export each graph in FP32 (`onnx_export.export_graph`), fuse its norms,
   rotary and attention into onnxruntime contrib ops (`fusion.fuse_graph`;
   `fuse=False` keeps the plain graph); fp16 converts it
   (`float16.convert_fp16`), int8 quantizes it (`quantize.quantize_int8`),
   each from a scratch file, so only the final graphs land in the artifact,
   as `<graph>.onnx`;
4. with more than one graph, move their weights into one `weights.data`
   where each distinct tensor is stored once (`weights.share_weights`);
5. validate what was written against the torch model on prompts encoded
   exactly as serving encodes them (`PromptEncoder` over the artifact's own
   tokenizer.json): names and shapes first, then values
   (`validate.validate_score_graph`, `validate_cache.validate_cache_graphs`);
6. write the manifest (every file's sha256, the parity figures of every graph,
   each graph's fused op counts).

Everything is written into a scratch folder beside `out_dir` and renamed into
place at the end, so a failed export never leaves a half artifact.

Time and size, measured on 2 CPU cores shared with other jobs (so upper bounds):

    tiny Qwen3 (hidden 32, 2 layers, 151,936-row embedding), all 4 graphs:
        fp32  ~30 s (exports ~22 s, validation ~3 s); weights.data 19.5 MB + 4 graphs of ~0.3 MB
        fp16 / int8  + conversion; weights.data 9.8 MB
    Qwen3-0.6B architecture (bench/export_qwen3_0p6b.py), all 4 graphs, peak RSS 9-11 GB:
        fp32  982 s: exports 512 s (97-178 s a graph), weights shared 48 s, validation ~6 min;
              2.40 GB (weights.data 2.38 GB; unshared the graphs would hold 9.5 GB)
        fp16  exports + 539 s (conversion, validation on the CPU provider); 1.21 GB
        int8  exports + 320 s (quantization, validation); 1.51 GB (embedding and MLP down
              projections stay FP32: export/quantize.py says why; measured with an earlier
              recipe, all 28 down projections FP32: now as few as the measured agreement
              needs, export/int8_outliers.py, whose ladder quantizes the score graph up to
              4 times, 2 at least)
    Fusion (export/fusion.py) adds ~1 s a graph for the default model (hidden 128, 4 layers,
    idle box), 20-50 s a graph at the 0.6B width with 4 layers (busy box); not measured at 28.

For the embedded default model, whose pipeline has ~30 s for export:
`graphs=("score",)` is the old single-graph export (about a quarter of
the time); each further graph adds one export of ~5 s (tiny) plus validation.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from afrl import graphs as contract
from afrl.labels import DEFAULT_GRADES, LabelSet
from afrl.manifest import MANIFEST_NAME, GraphSpec, Manifest, SourceCheckpoint, digest_file, write_manifest
from afrl.progress import say
from afrl.prompt import PromptEncoder, PromptTemplate
from afrl.sidecar import SIDECAR_NAME, Sidecar
from export.float16 import convert_fp16
from export.fusion import fuse_graph
from export.int8_outliers import OutlierChoice
from export.onnx_export import export_graph
from export.quantize import DOWN_PROJECTIONS, quantize_int8
from export.validate import TOLERANCES, Tolerance, reference_label_logits, validate_score_graph
from export.validate_cache import Group, validate_cache_graphs
from export.verify import verify_artifact
from export.weights import share_weights

logger = logging.getLogger(__name__)

AFRL_CONFIG = SIDECAR_NAME  # {"guideline": str, "label_values": [0, 1, 2, 3, 4]}, written by training
SCORE_GRAPH = "score.onnx"
ALL_GRAPHS = contract.GRAPHS  # score, prefix, score_prefix, decode
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
)
DEFAULT_MAX_POSITIONS = 32768  # rotary table rows for a config that does not say (Qwen3's default)
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
    dtype: Literal["fp32", "fp16", "int8"] = "fp32",
    guideline: str | None = None,
    validation_pairs: list[tuple[str, str]] | None = None,
    max_sequence_length: int = 2048,
    progress: Callable[[str], None] | None = None,
    tolerance: Tolerance | None = None,
    graphs: Sequence[str] = ALL_GRAPHS,
    decode_steps: int = 4,
    providers: Sequence[str] = ("CPUExecutionProvider",),
    fuse: bool = True,
    int8_down: str = "outliers",
) -> Manifest:
    """Export `checkpoint` (HF folder or hub id) as a servable artifact in `out_dir`.

    `graphs`: which graphs of afrl/graphs.py to write ("score" is required;
    "score_prefix" needs "prefix", "decode" needs both). `validation_pairs`:
    (query, document) pairs to validate on, grouped by query for the prefix
    graphs (default: a dozen built-in pairs; pass a dev split for INT8, whose
    tolerance is about grades). `tolerance` overrides the limits of `dtype`
    (export.validate.TOLERANCES). `decode_steps`: greedy steps compared
    with torch per validated document. `fuse`: norms, rotary and attention
    as onnxruntime contrib ops (export/fusion.py), or the plain exported
    graphs; the same contract and tolerances either way. `int8_down`: what
    an INT8 export does with the MLP down projections: "outliers" keeps
    as few FP32 as the agreement with FP32 on the built-in pairs needs,
    widest input range first (export/int8_outliers.py, gated by the
    tolerance's `min_grade_agreement`), or one of
    export.quantize.DOWN_PROJECTIONS for all of them.
    """
    if dtype not in TOLERANCES:
        raise ValueError(f"dtype {dtype!r} is not exported here; choose one of {sorted(TOLERANCES)}")
    if int8_down not in ("outliers", *DOWN_PROJECTIONS):
        raise ValueError(f"int8_down={int8_down!r}: choose outliers or one of {', '.join(DOWN_PROJECTIONS)}")
    graphs = _check_graphs(graphs)
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
        try:
            ckpt.labels.check_tokens(served)  # the labels were read with the HF tokenizer
        except ValueError as e:
            raise CheckpointError(
                f"{checkpoint}: tokenizer.json spells the grades differently from the HF tokenizer: {e}"
            ) from None

        encoder = PromptEncoder(ckpt.template, served)
        pad = _pad_token_id(ckpt.tokenizer)
        tol = tolerance or TOLERANCES[dtype]
        # INT8: which down projections stay FP32, measured on the built-in pairs against the INT8 gate.
        int8 = None
        if dtype == "int8" and int8_down == "outliers":
            calibration = [prefix + doc for prefix, docs in query_groups(encoder, SAMPLE_PAIRS) for doc in docs]
            gate = tol.min_grade_agreement if tol.min_grade_agreement is not None else 1.0
            int8 = OutlierChoice(calibration, pad, gate, ckpt.labels.values)
        files, fusions = {}, {}
        for name in graphs:
            step(f"exporting the {name} graph ({dtype}{', fused' if fuse else ''})")
            scratch_dir = Path(scratch) / "fp32"
            files[name], fusions[name] = _export_one(name, ckpt, dtype, staging, scratch_dir, fuse, int8, int8_down)
        if len(files) > 1:
            step("storing the graphs' shared weights once")
            share_weights(staging, list(files.values()))

        step("validating against torch")
        pairs = validation_pairs or SAMPLE_PAIRS
        groups = query_groups(encoder, pairs)
        full = [prefix + doc for prefix, docs in groups for doc in docs]  # = encoder.encode(q, [d])[0].input_ids
        reference = reference_label_logits(ckpt.model, ckpt.labels.token_ids, full)  # (N, K), computed once
        parity = validate_score_graph(
            staging / files[contract.SCORE],
            ckpt.model,
            ckpt.labels,
            full,
            tolerance=tol,
            pad_token_id=pad,
            providers=providers,
            reference=reference,
        )
        if len(files) > 1:
            parity.update(
                validate_cache_graphs(
                    {name: staging / file for name, file in files.items()},
                    ckpt.model,
                    ckpt.labels,
                    groups,
                    tolerance=tol,
                    pad_token_id=pad,
                    decode_steps=decode_steps,
                    providers=providers,
                    reference=reference,
                )
            )
        if int8 is not None:
            parity.update(int8.figures())
        step("parity " + ", ".join(f"{k}={v:.3g}" for k, v in parity.items()))

        layers = int(ckpt.model.config.num_hidden_layers)
        local = Path(ckpt.name).is_dir()
        manifest = write_manifest(
            staging,
            Manifest(
                model_name=ckpt.folder.resolve().name if local else ckpt.name,
                source=SourceCheckpoint(
                    checkpoint=str(ckpt.folder.resolve()) if local else ckpt.name,
                    sha256=checkpoint_sha256(ckpt.folder),
                ),
                prompt=ckpt.template,
                labels=ckpt.labels,
                graphs={
                    name: GraphSpec(
                        file=file,
                        dtype=dtype,
                        inputs=contract.graph_io(name, layers)[0],
                        outputs=contract.graph_io(name, layers)[1],
                    )
                    for name, file in files.items()
                },
                providers_validated=list(providers),
                max_sequence_length=max_sequence_length,
                parity=parity,
                fusions={name: counts for name, counts in fusions.items() if counts},
            ),
        )
        verify_artifact(staging, verify_hashes=False)  # what serving will check, short of the hashes just written
        _publish(staging, out_dir)
    step(f"wrote {out_dir}")
    return manifest


def _check_graphs(names: Sequence[str]) -> list[str]:
    """The requested graphs in contract order; score is required, and each cache graph needs the one it reads."""
    unknown = set(names) - set(ALL_GRAPHS)
    if unknown:
        raise ValueError(f"unknown graphs {sorted(unknown)}; the graphs are {', '.join(ALL_GRAPHS)}")
    if contract.SCORE not in names:
        raise ValueError("the score graph is required (serving scores with it)")
    if contract.SCORE_PREFIX in names and contract.PREFIX not in names:
        raise ValueError("score_prefix reads the prefix graph's cache: export 'prefix' too")
    if contract.DECODE in names and contract.SCORE_PREFIX not in names:
        raise ValueError("decode continues from score_prefix's cache: export 'prefix' and 'score_prefix' too")
    return [n for n in ALL_GRAPHS if n in names]


def _export_one(
    name: str,
    ckpt: LoadedCheckpoint,
    dtype: str,
    staging: Path,
    scratch: Path,
    fuse: bool,
    int8: OutlierChoice | None = None,
    int8_down: str = "outliers",
) -> tuple[str, dict[str, int]]:
    """Export graph `name` in `dtype` (fused or not) into `staging`; returns its file name there and the fusions."""
    file = f"{name}.onnx"
    fusions: dict[str, int] = {}
    if dtype == "fp32" and not fuse:
        export_graph(name, ckpt.model, ckpt.labels.token_ids, staging / file)
        return file, fusions
    fp32 = export_graph(name, ckpt.model, ckpt.labels.token_ids, scratch / "plain" / file)
    if fuse:
        fused = staging / file if dtype == "fp32" else scratch / "fused" / file
        # FP16 graphs are for CUDA, whose GroupQueryAttention refuses the mask: norms and rotary only there.
        fusions = fuse_graph(fp32, fused, max_positions=_max_positions(ckpt.model), attention=dtype != "fp16")
        fp32 = fused
    if dtype == "fp16":
        convert_fp16(fp32, staging / file)
    elif dtype == "int8" and int8 is not None:
        int8.quantize(fp32, staging / file, name)
    elif dtype == "int8":
        quantize_int8(fp32, staging / file, down=int8_down)
    shutil.rmtree(scratch)  # the FP32 scratch copies can be GBs
    return file, fusions


def _max_positions(model: Any) -> int:
    # The rotary tables' rows; the model's own limit (export refuses a max_sequence_length above it).
    return int(getattr(model.config, "max_position_embeddings", None) or DEFAULT_MAX_POSITIONS)


def query_groups(encoder: PromptEncoder, pairs: Sequence[tuple[str, str]]) -> list[Group]:
    """(query, document) pairs -> (prefix ids, [document ids]) per query, queries in first-seen order."""
    by_query: dict[str, list[str]] = {}
    for query, document in pairs:
        by_query.setdefault(query, []).append(document)
    return [
        (encoder.encode_prefix(query), [ids for ids, _ in encoder.encode_documents(docs)])
        for query, docs in by_query.items()
    ]


def load_checkpoint(checkpoint: str, guideline: str | None = None) -> LoadedCheckpoint:
    """Model (fp32, eval), tokenizer, prompt template and label set of a training checkpoint.

    The guideline and grade values come from the checkpoint's afrl.json;
    `guideline=` replaces its text (and is required when there is no afrl.json).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = _checkpoint_folder(checkpoint)
    path = _checkpoint_file(checkpoint, AFRL_CONFIG)
    saved = Sidecar.read_file(Path(path)) if path else None
    if guideline is None:
        guideline = saved.guideline if saved else None
    elif saved is not None and saved.guideline != guideline:
        logger.warning("guideline= differs from the one in %s's %s; exporting with guideline=", checkpoint, AFRL_CONFIG)
    if not guideline:
        raise CheckpointError(
            f"{checkpoint}: no guideline: the checkpoint has no {AFRL_CONFIG} with one "
            "(training writes it); pass the text the model was trained with: --guideline-file FILE "
            "(guideline= from Python)"
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
        labels=LabelSet.from_tokenizer(tokenizer, saved.label_values if saved else DEFAULT_GRADES),
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
        checkpoint,
        filename,
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
            digest_file(path, h)
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
    if out_dir.exists() and (
        not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / MANIFEST_NAME).is_file())
    ):
        raise FileExistsError(f"{out_dir} exists and is not an afrl artifact; choose another --out or remove it")


def _publish(staging: Path, out_dir: Path) -> None:
    """Move the finished artifact into place, replacing an older artifact only once the new one is complete."""
    _check_out_dir(out_dir)
    old = staging.parent / "previous"
    if out_dir.exists():
        out_dir.rename(old)
    staging.rename(out_dir)
    logger.debug("published %s (replaced: %s)", out_dir, old.exists())
