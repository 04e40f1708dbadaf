"""Which weights `afrl bench compare` runs: one checkpoint, and the FP32 and INT8 artifacts exported from it.

    --model default   the embedded default model (built on first use); its source checkpoint,
                      which the default build keeps beside it (AFRL_HOME/builds/default/...)
    --model 0.6b      the Qwen3-0.6B architecture with seeded random weights, built in OUT/0.6b/checkpoint
    --model DIR       a checkpoint folder (config.json, afrl.json) or an artifact folder (manifest.json),
                      whose source checkpoint must still be on disk

The torch and optimum paths load the checkpoint; the engine paths load
artifacts whose manifest records that checkpoint's sha256, so every path
runs the same weights. An artifact is reused when it has the scoring graphs
(score, prefix, score_prefix) in the wanted dtype and was exported from
this checkpoint: the one given as DIR, else OUT/<name>/<dtype>; anything
missing is exported there (each graph to FP32 once for both dtypes) and
kept, so reruns skip it. INT8 is exported without gating its parity (a
random model's near-uniform grades flip on noise); the compare measures the
agreement itself.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from afrl.manifest import MANIFEST_NAME, Manifest, load_manifest
from afrl.progress import Progress, say

logger = logging.getLogger(__name__)

SCORING_GRAPHS = ("score", "prefix", "score_prefix")
DTYPES = ("fp32", "int8")


@dataclass
class ComparedModel:
    name: str  # "default", "0.6b" or the folder's name: the cache folder under OUT
    checkpoint: Path
    sha256: str  # of the checkpoint (export.artifact.checkpoint_sha256)
    artifacts: dict[str, Path]  # dtype -> artifact folder
    build_s: dict[str, float] = field(default_factory=dict)  # what this run had to build, in seconds


def resolve_model(
    spec: str, out: Path, progress: Progress | None = None, validation_pairs: list[tuple[str, str]] | None = None
) -> ComparedModel:
    """The checkpoint and both artifacts of `spec`, building what is missing under `out`."""
    from export.artifact import checkpoint_sha256

    build_s: dict[str, float] = {}
    given = None  # an artifact folder named by the caller
    if spec == "default":
        from afrl.default_model import ensure_default_model

        name, given = "default", ensure_default_model(progress=progress)
        checkpoint = _source_checkpoint(
            given,
            hint="the default build keeps it; rebuild with `afrl train pipeline "
            "--preset default --out DIR` and pass --model DIR/artifact",
        )
    elif spec == "0.6b":
        from bench.qwen3_0p6b import make_checkpoint

        name, checkpoint = "0.6b", out / "0.6b" / "checkpoint"
        if not (checkpoint / "config.json").is_file():
            say(progress, logger, f"writing the random-weight Qwen3-0.6B checkpoint to {checkpoint}")
            start = time.perf_counter()
            make_checkpoint(checkpoint)
            build_s["checkpoint"] = round(time.perf_counter() - start, 1)
    else:
        folder = Path(spec).expanduser()
        if (folder / MANIFEST_NAME).is_file():
            name, given = folder.resolve().name, folder
            checkpoint = _source_checkpoint(folder, hint="pass the checkpoint folder as --model instead")
        elif (folder / "config.json").is_file():
            name, checkpoint = folder.resolve().name, folder
        else:
            raise FileNotFoundError(
                f"--model {spec}: not 'default', '0.6b', a checkpoint folder (config.json) "
                f"or an artifact folder ({MANIFEST_NAME})"
            )
    say(progress, logger, f"hashing the checkpoint {checkpoint}")
    sha = checkpoint_sha256(checkpoint)
    if given is not None and load_manifest(given, verify_hashes=False).source.sha256 != sha:
        raise ValueError(f"{given} was exported from other weights than {checkpoint} holds now (sha256 differs)")
    cache = out / name
    artifacts = {}
    for dtype in DTYPES:
        candidates = [c for c in (given, cache / dtype) if c is not None]
        artifacts[dtype] = next((c for c in candidates if _reusable(c, sha, dtype)), cache / dtype)
    missing = [d for d in DTYPES if not _reusable(artifacts[d], sha, d)]
    if missing:
        build_s.update(_export(checkpoint, sha, {d: artifacts[d] for d in missing}, cache, progress, validation_pairs))
    for dtype, folder in artifacts.items():
        say(progress, logger, f"{dtype} artifact: {folder}")
    return ComparedModel(name, Path(checkpoint), sha, artifacts, build_s)


def _source_checkpoint(artifact: Path, hint: str) -> Path:
    manifest = load_manifest(artifact, verify_hashes=False)
    checkpoint = Path(manifest.source.checkpoint)
    if not (checkpoint / "config.json").is_file():
        raise FileNotFoundError(
            f"{artifact} was exported from {checkpoint}, which is not on disk; the torch paths "
            f"need that checkpoint ({hint})"
        )
    return checkpoint


def _reusable(folder: Path, sha: str, dtype: str) -> bool:
    if not (folder / MANIFEST_NAME).is_file():
        return False
    manifest: Manifest = load_manifest(folder, verify_hashes=False)
    graphs = manifest.graphs
    return (
        manifest.source.sha256 == sha
        and set(SCORING_GRAPHS) <= graphs.keys()
        and all(graphs[g].dtype == dtype for g in SCORING_GRAPHS)
    )


def _export(
    checkpoint: Path,
    sha: str,
    targets: dict[str, Path],
    cache: Path,
    progress: Progress | None,
    validation_pairs: list[tuple[str, str]] | None,
) -> dict[str, float]:
    """Export the artifacts of `targets` (dtype -> folder), each graph to FP32 once; returns seconds per dtype."""
    from bench.fp32_exports import reuse_fp32_exports
    from export.artifact import export_artifact
    from export.validate import Tolerance

    seconds = {}
    scratch = cache / f".fp32-graphs-{sha[:16]}"  # GBs for a 0.6B model: removed once both dtypes are out
    with reuse_fp32_exports(scratch):
        for dtype, folder in targets.items():
            say(progress, logger, f"exporting the {dtype} artifact ({', '.join(SCORING_GRAPHS)}) to {folder}")
            start = time.perf_counter()
            tolerance = Tolerance() if dtype == "int8" else None  # measured and reported, not gated: see above
            export_artifact(
                checkpoint,
                folder,
                dtype=dtype,
                graphs=SCORING_GRAPHS,
                tolerance=tolerance,
                validation_pairs=validation_pairs,
                progress=progress,
            )
            seconds[f"export_{dtype}"] = round(time.perf_counter() - start, 1)
    shutil.rmtree(scratch, ignore_errors=True)
    return seconds
