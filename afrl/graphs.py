"""Names and shapes of the ONNX graphs in a model artifact: export writes them, serving runs them.

B documents, T new tokens, P shared-prefix tokens, S cached tokens, L layers,
Hkv key/value heads, D head dim, K labels, V vocabulary. Every graph derives
position ids from its attention mask (cumsum - 1), so left padding and holes
in the cache are handled inside the graph.

    score         in:  input_ids (B, T), attention_mask (B, T)               left-padded full prompts
                  out: label_logits (B, K) float32                          last position, label rows only

    prefix        in:  input_ids (1, P)                                       guideline + query, once per request
                  out: present.{l}.key / present.{l}.value (1, Hkv, P, D)

    score_prefix  in:  input_ids (B, T)                                       document + suffix, left-padded
                       attention_mask (B, P + T)                             ones over the prefix, then the row's mask
                       past.{l}.key / past.{l}.value (1, Hkv, P, D)         the prefix cache, broadcast to B inside
                  out: label_logits (B, K) float32
                       present.{l}.key / present.{l}.value (B, Hkv, T, D)   the documents' own cache, for reasoning

    decode        in:  input_ids (B, T), attention_mask (B, S + T)
                       past.{l}.key / past.{l}.value (B, Hkv, S, D)
                  out: logits (B, V) float32                                last position, full vocabulary
                       present.{l}.key / present.{l}.value (B, Hkv, S + T, D)

Reasoning continues from the score's cache: past = prefix cache (tiled) ++
the document's `present` from score_prefix, the first decode input is the
grade token itself, so nothing is prefilled twice.

Types: ids and masks int64; `label_logits` and `logits` float32 in every
graph; past/present in the graph's compute type (float32 for fp32 and int8
graphs, float16 for fp16 graphs: the cache only travels between graphs of
one artifact, and converting it at every step would cost more than the
step on a GPU).

`graph_io(name, layers)` is this table's names in code, `check_graph_io` refuses
a list of names that is not it (a manifest entry), and `check_graph` refuses a
graph itself (an onnxruntime session, or an onnx model read without its
weights) whose names, ranks or types are not it: export validation, artifact
verification and serving all refuse a graph through these two functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SCORE = "score"
PREFIX = "prefix"
SCORE_PREFIX = "score_prefix"
DECODE = "decode"

INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
LABEL_LOGITS = "label_logits"
LOGITS = "logits"
GRAPHS = (SCORE, PREFIX, SCORE_PREFIX, DECODE)

# ONNX element type names (onnx.TensorProto.DataType), as `Port.type` spells them.
FLOAT, FLOAT16 = "FLOAT", "FLOAT16"
CACHE_TYPES = {"fp32": FLOAT, "int8": FLOAT, "fp16": FLOAT16}  # past/present by artifact dtype


class GraphContractError(ValueError):
    """A graph's names, ranks or types are not this module's table; the message names the graph and the value."""


class InputNameError(GraphContractError):
    pass


class OutputNameError(GraphContractError):
    pass


class OutputShapeError(GraphContractError):
    pass


class OutputTypeError(GraphContractError):
    pass


@dataclass(frozen=True)
class Port:
    """One declared input or output of a graph."""

    name: str
    shape: list[int | str | None] | None  # int a fixed dim, str a named one, None unknown; None: rank unknown
    type: str  # ONNX element type name: FLOAT, FLOAT16, INT64, ...


def past_names(layers: int) -> list[str]:
    return [f"past.{layer}.{kind}" for layer in range(layers) for kind in ("key", "value")]


def present_names(layers: int) -> list[str]:
    return [f"present.{layer}.{kind}" for layer in range(layers) for kind in ("key", "value")]


def graph_io(name: str, layers: int) -> tuple[list[str], list[str]]:
    """Input and output names of graph `name` for a model with `layers` layers, in order."""
    if name == SCORE:
        return [INPUT_IDS, ATTENTION_MASK], [LABEL_LOGITS]
    if name == PREFIX:
        return [INPUT_IDS], present_names(layers)
    if name == SCORE_PREFIX:
        return [INPUT_IDS, ATTENTION_MASK, *past_names(layers)], [LABEL_LOGITS, *present_names(layers)]
    if name == DECODE:
        return [INPUT_IDS, ATTENTION_MASK, *past_names(layers)], [LOGITS, *present_names(layers)]
    raise ValueError(f"unknown graph {name!r}; the graphs are {', '.join(GRAPHS)}")


def layers_of(names: list[str]) -> int:
    """How many layers a list of input or output names has a cache for (0 for the score graph)."""
    return sum(1 for n in names if n.endswith(".key") and n.split(".")[0] in ("past", "present"))


def check_graph_io(name: str, inputs: list[str], outputs: list[str], layers: int | None = None) -> int:
    """Raise a GraphContractError unless (inputs, outputs) are graph `name`'s names; returns its layer count.

    `layers=None` takes the count from the names themselves (a graph from an artifact whose
    layer count is known only through its graphs); pass it to also check that count (the
    score graph, which has no cache, ignores it).
    """
    if layers is None or name == SCORE:
        layers = max(layers_of(inputs), layers_of(outputs))
    if name != SCORE and layers < 1:
        raise GraphContractError(
            f"{name} graph has no past/present names: inputs {_short(inputs)}, outputs {_short(outputs)}"
        )
    want_in, want_out = graph_io(name, layers)
    if list(inputs) != want_in:
        raise InputNameError(f"{name} graph inputs are {_short(inputs)}, the contract says {_short(want_in)}")
    if list(outputs) != want_out:
        raise OutputNameError(f"{name} graph outputs are {_short(outputs)}, the contract says {_short(want_out)}")
    return layers


def check_graph(
    name: str, graph: Any, num_labels: int | None = None, dtype: str | None = None, layers: int | None = None
) -> int:
    """Raise a GraphContractError unless `graph` is graph `name` of the table; returns its layer count.

    `graph`: an onnxruntime InferenceSession or an onnx ModelProto (`onnx.load(path,
    load_external_data=False)` is enough). Names first (`check_graph_io`), then each declared
    output: its rank, `label_logits` `num_labels` wide (when given and the width is fixed),
    `label_logits` and `logits` FLOAT, `present.*` the cache type of artifact `dtype` (when given).
    """
    inputs, outputs = graph_ports(graph)
    names_in, names_out = [p.name for p in inputs], [p.name for p in outputs]
    try:
        layers = check_graph_io(name, names_in, names_out, layers)
    except GraphContractError as e:
        raise type(e)(f"the {name} graph has inputs {_short(names_in)} and outputs {_short(names_out)}: {e}") from None
    for port in outputs:
        _check_output(name, port, num_labels, dtype)
    return layers


def graph_ports(graph: Any) -> tuple[list[Port], list[Port]]:
    """Declared inputs and outputs of an onnxruntime InferenceSession or an onnx ModelProto."""
    if hasattr(graph, "get_inputs"):
        return [_session_port(a) for a in graph.get_inputs()], [_session_port(a) for a in graph.get_outputs()]
    return [_model_port(v) for v in graph.graph.input], [_model_port(v) for v in graph.graph.output]


def _session_port(arg: Any) -> Port:
    # onnxruntime spells types "tensor(float16)"; upper-cased, that is the ONNX name.
    kind = str(arg.type)
    kind = kind[len("tensor(") : -1] if kind.startswith("tensor(") else kind
    return Port(arg.name, list(arg.shape), kind.upper())


def _model_port(value: Any) -> Port:
    from onnx import TensorProto  # only reached with an onnx model in hand

    tensor = value.type.tensor_type
    shape = None
    if tensor.HasField("shape"):
        shape = [
            d.dim_value if d.HasField("dim_value") else d.dim_param if d.HasField("dim_param") else None
            for d in tensor.shape.dim
        ]
    return Port(value.name, shape, TensorProto.DataType.Name(tensor.elem_type))


def _check_output(graph: str, port: Port, num_labels: int | None, dtype: str | None) -> None:
    """One declared output against the table: rank, label width, element type."""
    dims: tuple[str, ...]
    want: str | None  # None: not checked (the cache's type is the artifact's choice)
    if port.name == LABEL_LOGITS:
        dims, want = ("batch", str(num_labels) if num_labels is not None else "labels"), FLOAT
    elif port.name == LOGITS:
        dims, want = ("batch", "vocabulary"), FLOAT
    else:  # present.*, the names being checked already
        dims, want = ("batch", "kv_heads", "sequence", "head_dim"), CACHE_TYPES.get(dtype or "")
    expected = f"[{', '.join(dims)}]"
    if port.shape is not None and len(port.shape) != len(dims):
        raise OutputShapeError(f"{graph} graph: {port.name} declared with shape {port.shape}, expected {expected}")
    width = port.shape[-1] if port.shape else None
    if port.name == LABEL_LOGITS and isinstance(width, int) and num_labels is not None and width != num_labels:
        raise OutputShapeError(
            f"{graph} graph: label_logits is {width} wide, the manifest lists {num_labels} labels "
            f"(declared shape {port.shape}, expected {expected})"
        )
    if want is None or port.type == want:
        return
    if port.name in (LABEL_LOGITS, LOGITS):
        raise OutputTypeError(f"{graph} graph: {port.name} is {port.type}, the contract says {want} in every graph")
    raise OutputTypeError(f"{graph} graph: {port.name} is {port.type}, a {dtype} artifact's cache is {want}")


def _short(names: list[str], keep: int = 6) -> str:
    return str(names) if len(names) <= keep else f"{names[: keep - 1]}... ({len(names)} names, last {names[-1]!r})"
