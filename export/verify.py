"""Check an artifact folder before anything runs it: the refusals serving needs, in one call.

    verify_artifact(folder) -> Manifest        raises afrl.manifest.ArtifactError naming what broke

1. `load_manifest`: format and prompt versions, guideline hash, every file's
   sha256 (a corrupt or missing file, weights included);
2. every graph the manifest lists: its names are the contract's
   (`afrl.graphs.check_graph_io`), all graphs agree on the layer count, and
   the .onnx file really has those inputs and outputs (read without its
   weights), `label_logits` K wide, the cache typed as the manifest's dtype
   says, and every external data file it points at is in the manifest;
3. the labels: each label token encodes to its manifest id with the
   artifact's own tokenizer.json.

It needs `onnx` and `tokenizers`, not torch or onnxruntime. Serving, which
has onnxruntime sessions anyway, can run step 2 on `session.get_inputs()` /
`get_outputs()` with the same `check_graph_io`.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from afrl import graphs
from afrl.manifest import ArtifactError, Manifest, load_manifest

CACHE_TYPES = {"fp32": onnx.TensorProto.FLOAT, "int8": onnx.TensorProto.FLOAT, "fp16": onnx.TensorProto.FLOAT16}


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
        _check_graph_file(folder, name, spec.file, spec.dtype, spec.inputs, spec.outputs, manifest)
    _check_labels(folder, manifest)
    return manifest


def _check_graph_file(
    folder: Path, name: str, file: str, dtype: str, inputs: list[str], outputs: list[str], manifest: Manifest
) -> None:
    path = folder / file
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as e:  # protobuf raises DecodeError and friends
        raise ArtifactError(f"{path}: not a readable ONNX graph: {e}") from e
    got_in = [v.name for v in model.graph.input]
    got_out = [v.name for v in model.graph.output]
    if got_in != inputs or got_out != outputs:
        raise ArtifactError(
            f"{path}: the {name} graph has inputs {_short(got_in)} and outputs {_short(got_out)}, "
            f"the manifest says {_short(inputs)} and {_short(outputs)}"
        )
    for value in model.graph.output:
        tensor = value.type.tensor_type
        if value.name == graphs.LABEL_LOGITS:
            width = tensor.shape.dim[-1] if tensor.shape.dim else None
            if width is not None and width.HasField("dim_value") and width.dim_value != manifest.labels.size:
                raise ArtifactError(
                    f"{path}: label_logits is {width.dim_value} wide, the manifest lists {manifest.labels.size} labels"
                )
        elif value.name.startswith("present.") and tensor.elem_type != CACHE_TYPES[dtype]:
            kind = onnx.TensorProto.DataType.Name(tensor.elem_type)
            raise ArtifactError(
                f"{path}: {value.name} is {kind}, a {dtype} artifact's cache is "
                f"{onnx.TensorProto.DataType.Name(CACHE_TYPES[dtype])}"
            )
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if (
                entry.key == "location"
                and str(Path(file).parent / entry.value).removeprefix("./") not in manifest.files
            ):
                raise ArtifactError(f"{path}: weights file {entry.value!r} is not listed in the manifest")


def _check_labels(folder: Path, manifest: Manifest) -> None:
    from tokenizers import Tokenizer

    path = folder / "tokenizer.json"
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises a bare Exception on bad files
        raise ArtifactError(f"{path}: unreadable tokenizer: {e}") from e
    labels = manifest.labels
    for value, token, token_id in zip(labels.values, labels.tokens, labels.token_ids, strict=True):
        ids = tokenizer.encode(token, add_special_tokens=False).ids
        if ids != [token_id]:
            raise ArtifactError(
                f"{folder}: label {value} token {token!r} encodes to {ids} with the artifact's tokenizer, "
                f"the manifest says [{token_id}]"
            )


def _short(names: list[str]) -> str:
    return str(names) if len(names) <= 4 else f"[{names[0]!r}, {names[1]!r}, ... {len(names)} names]"
