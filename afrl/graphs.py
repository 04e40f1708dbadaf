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

`graph_io(name, layers)` is this table in code; `check_graph_io` is what
export validation and artifact loading refuse a graph with.
"""

from __future__ import annotations

SCORE = "score"
PREFIX = "prefix"
SCORE_PREFIX = "score_prefix"
DECODE = "decode"

INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
LABEL_LOGITS = "label_logits"
LOGITS = "logits"
GRAPHS = (SCORE, PREFIX, SCORE_PREFIX, DECODE)


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
    """Raise ValueError unless (inputs, outputs) are graph `name`'s contract; returns its layer count.

    `layers=None` takes the count from the names themselves (a graph from an artifact whose
    layer count is known only through its graphs); pass it to also check that count (the
    score graph, which has no cache, ignores it).
    """
    if layers is None or name == SCORE:
        layers = max(layers_of(inputs), layers_of(outputs))
    if name != SCORE and layers < 1:
        raise ValueError(f"{name} graph has no past/present names: inputs {_short(inputs)}, outputs {_short(outputs)}")
    want_in, want_out = graph_io(name, layers)
    if list(inputs) != want_in:
        raise ValueError(f"{name} graph inputs are {_short(inputs)}, the contract says {_short(want_in)}")
    if list(outputs) != want_out:
        raise ValueError(f"{name} graph outputs are {_short(outputs)}, the contract says {_short(want_out)}")
    return layers


def _short(names: list[str], keep: int = 6) -> str:
    return str(names) if len(names) <= keep else f"{names[: keep - 1]}... ({len(names)} names, last {names[-1]!r})"
