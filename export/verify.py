"""Check an artifact folder before anything runs it: the refusals serving needs, in one call.

    verify_artifact(folder) -> Manifest        raises afrl.manifest.ArtifactError naming what broke

1. `load_manifest`: format and prompt versions, guideline hash, every file's
   sha256 (a corrupt or missing file, weights included);
2. every graph the manifest lists: its names are the contract's
   (`afrl.graphs.check_graph_io`), all graphs agree on the layer count, and
   the .onnx file really is that graph (`afrl.graphs.check_graph`, the check
   export validation runs, on the file read without its weights):
   `label_logits` K wide, the cache typed as the manifest's dtype says; and
   every external data file it points at is in the manifest;
3. the labels: each label token encodes to its manifest id with the
   artifact's own tokenizer.json (`afrl.manifest.load_tokenizer`, as serving
   loads it).

It needs `onnx` and `tokenizers`, not torch or onnxruntime. Serving, which
has onnxruntime sessions anyway, checks them with the same `afrl.graphs`
functions.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from afrl import graphs
from afrl.manifest import ArtifactError, GraphSpec, Manifest, load_manifest, load_tokenizer


def verify_artifact(folder: str | Path, verify_hashes: bool = True) -> Manifest:
    folder = Path(folder)
    manifest = load_manifest(folder, verify_hashes=verify_hashes)
    layers = None
    for name, spec in manifest.graphs.items():
        if name not in graphs.GRAPHS:
            raise ArtifactError(f"{folder}: manifest lists an unknown graph {name!r}; the graphs are {graphs.GRAPHS}")
        try:
            found = graphs.check_graph_io(name, spec.inputs, spec.outputs, layers)
        except ValueError as e:
            raise ArtifactError(f"{folder}: manifest entry of the {e}") from e
        layers = found if name != graphs.SCORE else layers
        _check_graph_file(folder, name, spec, manifest, found)
    load_tokenizer(folder, manifest.labels)
    return manifest


def _check_graph_file(folder: Path, name: str, spec: GraphSpec, manifest: Manifest, layers: int) -> None:
    path = folder / spec.file
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as e:  # protobuf raises DecodeError and friends
        raise ArtifactError(f"{path}: not a readable ONNX graph: {e}") from e
    try:
        graphs.check_graph(name, model, manifest.labels.size, spec.dtype, layers)
    except graphs.GraphContractError as e:
        raise ArtifactError(f"{path}: {e}") from None
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if (
                entry.key == "location"
                and str(Path(spec.file).parent / entry.value).removeprefix("./") not in manifest.files
            ):
                raise ArtifactError(f"{path}: weights file {entry.value!r} is not listed in the manifest")
