"""Export the graphs of `afrl/graphs.py` to ONNX with `torch.onnx.export(dynamo=True)`.

    export_graph(name, model, label_token_ids, path)     name: score | prefix | score_prefix | decode
    export_score_onnx(model, label_token_ids, path)       the score graph alone

    score         input_ids, attention_mask (batch, sequence) int64, left-padded -> label_logits (batch, K) float32
    prefix        input_ids (1, prefix_sequence) -> present.{l}.key/value (1, Hkv, prefix_sequence, D)
    score_prefix  input_ids (batch, sequence), attention_mask (batch, past_sequence + sequence),
                  past.{l}.key/value (1, Hkv, past_sequence, D) -> label_logits (batch, K),
                  present.{l}.key/value (batch, Hkv, sequence, D)
    decode        input_ids (batch, sequence), attention_mask (batch, past_sequence + sequence),
                  past.{l}.key/value (batch, Hkv, past_sequence, D) -> logits (batch, V),
                  present.{l}.key/value (batch, Hkv, past_sequence + sequence, D)

The wrappers are `score_graph.LabelScoreModel` and `cache_graphs.*Model`.

Why the dynamo exporter (measured on the tests' tiny Qwen3, hidden 32, 2 layers,
151,936-row embedding, 2 CPU cores): it exports with dynamic batch and
sequence dims in about 4.5 s warm (6.5 s cold), parity 5e-8. The TorchScript
exporter (`dynamo=False`) took 0.6 s with parity 4e-8 on the same wrapper,
but it is deprecated since PyTorch 2.9 and bakes Python-level decisions on
traced values into constants (it warns about transformers' `is_causal`
check). Most of those seconds are torch.export tracing and decomposition,
nearly independent of size: all four graphs of the tiny model take ~22 s
(score 5.7, prefix 3.6, score_prefix 5.9, decode 5.4 s); of the Qwen3-0.6B
architecture 97 / 120 / 116 / 178 s on 2 busy cores (74 s for score alone on
an idle machine, STACK.md). `export_artifact(graphs=...)` exports fewer.

Decode graph: which exporter, by measurement (`bench/export_decode_choice.py`;
random-init Qwen3, FP32, onnxruntime 1.32 CPU provider, 2 threads, median time
of one new token after a 256-token cache; 2 cores shared with other jobs, so
compare within a column):

                               tiny (hidden 32, 2 layers)      Qwen3-0.6B architecture
                               export  size    b=1     b=4     export  size      b=1     b=4
    wrapper (this module)      7.0 s   19.9 MB  2.0 ms  2.1 ms  102 s   2.39 GB   261 ms  469 ms
    optimum-onnx 0.1.0         3.4 s   19.6 MB  1.1 ms  2.6 ms   70 s*  ~3.0 GB*  272 ms  439 ms
    onnxruntime-genai 0.11.4   4.9 s   22.2 MB  2.1 ms  -        12 s   2.41 GB   220 ms  -

    * optimum's post-processing (tied-weight dedup) serialises one proto and fails over
      2 GB (EncodeError), so at 0.6B it ran with no_post_process: embedding and LM head
      stored twice. genai 0.18's builder needs transformers 5, hence 0.11.4; it was timed
      through its own Generator (batch 1), in a separate venv.

Choice: the wrapper. Per step it is within measurement noise of optimum and
~20% behind genai's builder at batch 1 (genai fuses attention into
GroupQueryAttention and the norms into SkipSimplifiedLayerNormalization: the
same fusions would speed our graphs, see STACK.md); neither off-the-shelf
graph meets the contract: optimum takes `position_ids` as an input and
returns logits at every position ((B, T, V)); genai's graph derives
positions from per-row sequence lengths (right-aligned caches, a
past/present buffer of max length shared in place), runs through its own
generator, and has no label-row or shared-prefix variants. The wrapper
gives positions from the mask inside the graph (left padding and holes in
the cache just work), logits at the last position only, the contract's
names, and the same decoder code path as prefix/score_prefix, whose cache
it continues (validated equal to torch's greedy continuation).

Weights are written inline (one `<graph>.onnx`) for small models and as
external data (`<graph>.onnx.data` beside it) above
`EXTERNAL_DATA_THRESHOLD_BYTES`, well below protobuf's 2 GB limit; an artifact
with several graphs then moves them into one shared `weights.data`
(`export/weights.py`).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import onnx
import torch
from torch import nn

from afrl import graphs
from export.cache_graphs import DecodeModel, PrefixModel, ScorePrefixModel
from export.logs import quiet_exporters
from export.score_graph import LabelScoreModel

if TYPE_CHECKING:
    import onnx_ir
    from transformers import PreTrainedModel

logger = logging.getLogger(__name__)

INPUT_NAMES = [graphs.INPUT_IDS, graphs.ATTENTION_MASK]  # of the score graph
OUTPUT_NAMES = [graphs.LABEL_LOGITS]
DEFAULT_OPSET = 20  # the dynamo exporter's own default: no version conversion pass
EXTERNAL_DATA_THRESHOLD_BYTES = 1 << 30
TOTAL_SEQUENCE = "past_sequence + sequence"  # the name of the attention mask's second dim in the cache graphs


def export_score_onnx(
    model: PreTrainedModel,
    label_token_ids: Sequence[int],
    path: str | Path,
    opset: int = DEFAULT_OPSET,
    external_data: bool | None = None,
) -> Path:
    """Export `model` (an HF causal LM) as a score graph; returns the .onnx path."""
    return export_graph(graphs.SCORE, model, label_token_ids, path, opset=opset, external_data=external_data)


def export_graph(
    name: str,
    model: PreTrainedModel,
    label_token_ids: Sequence[int],
    path: str | Path,
    opset: int = DEFAULT_OPSET,
    external_data: bool | None = None,
) -> Path:
    """Export graph `name` of `model` (an HF causal LM); returns the .onnx path.

    `external_data=None` decides by size (see module docstring).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper, args, dynamic_shapes = _graph_case(name, model, label_token_ids)
    inputs, outputs = graphs.graph_io(name, int(model.config.num_hidden_layers))
    if external_data is None:
        external_data = state_bytes(wrapper) > EXTERNAL_DATA_THRESHOLD_BYTES

    start = time.perf_counter()
    with torch.no_grad(), warnings.catch_warnings(), quiet_exporters():
        # Harmless: inputs share the same Dim objects; pytree deprecation noise.
        warnings.filterwarnings("ignore", message=r".*axis name.*will not be used.*")
        warnings.filterwarnings("ignore", category=FutureWarning)
        program = torch.onnx.export(
            wrapper,
            args,
            input_names=inputs,
            output_names=outputs,
            opset_version=opset,
            dynamo=True,
            dynamic_shapes=dynamic_shapes,
            verbose=False,
        )
        if program is None:  # only the TorchScript exporter (dynamo=False) returns none
            raise RuntimeError("torch.onnx.export returned no ONNX program")
        if name in (graphs.SCORE_PREFIX, graphs.DECODE):
            _name_total_sequence(program.model)
        program.save(path, external_data=external_data)
    logger.info(
        "exported %s graph %s (external data: %s) in %.1f s", name, path, external_data, time.perf_counter() - start
    )
    return path


def _graph_case(name: str, model: PreTrainedModel, label_token_ids: Sequence[int]) -> tuple[nn.Module, tuple, tuple]:
    """The wrapper, example inputs and dynamic shapes of graph `name`.

    Example sizes are above 1 (batch 2, 3 new tokens, 5 cached) so torch.export
    does not specialise them, and the example masks have left padding, which
    is then no special case in the graph.
    """
    config = model.config
    layers = int(config.num_hidden_layers)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    dim = torch.export.Dim
    batch, sequence, past_sequence = dim("batch"), dim("sequence"), dim("past_sequence")

    def ids(b: int, t: int) -> torch.Tensor:
        return torch.full((b, t), 1, dtype=torch.long, device=device)  # (B, T)

    def mask(b: int, t: int) -> torch.Tensor:
        m = torch.ones((b, t), dtype=torch.long, device=device)  # (B, T)
        m[0, : t // 3] = 0
        return m

    def past(b: int, s: int) -> tuple[torch.Tensor, ...]:
        return tuple(torch.zeros((b, kv_heads, s, head_dim), dtype=dtype, device=device) for _ in range(2 * layers))

    if name == graphs.SCORE:
        rows = {0: batch, 1: sequence}
        return LabelScoreModel(model, label_token_ids).eval(), (ids(2, 8), mask(2, 8)), (rows, rows)
    if name == graphs.PREFIX:
        return PrefixModel(model).eval(), (ids(1, 8),), ({1: dim("prefix_sequence")},)
    # The mask's width is past + new tokens, a sum torch.export cannot name up front: it infers it.
    new, total = {0: batch, 1: sequence}, {0: batch, 1: dim.DYNAMIC}
    if name == graphs.SCORE_PREFIX:
        shapes = (new, total, tuple({2: past_sequence} for _ in range(2 * layers)))
        return ScorePrefixModel(model, label_token_ids).eval(), (ids(2, 3), mask(2, 8), *past(1, 5)), shapes
    if name == graphs.DECODE:
        shapes = (new, total, tuple({0: batch, 2: past_sequence} for _ in range(2 * layers)))
        return DecodeModel(model).eval(), (ids(2, 3), mask(2, 8), *past(2, 5)), shapes
    raise ValueError(f"unknown graph {name!r}; the graphs are {graphs.GRAPHS}")


def _name_total_sequence(model: onnx_ir.Model) -> None:
    """Give the attention mask's inferred width (a symbol like 's53') its meaning, everywhere it appears."""
    mask = next(v for v in model.graph.inputs if v.name == graphs.ATTENTION_MASK)
    shape = mask.shape
    if shape is None:  # not seen: the exporter declares every input's shape
        return
    symbol = shape[1]
    if not isinstance(symbol, int):
        mask.shape = type(shape)([shape[0], TOTAL_SEQUENCE])
        logger.debug("renamed mask width %s to %r", symbol, TOTAL_SEQUENCE)


def state_bytes(module: nn.Module) -> int:
    """Bytes of parameters and buffers: what becomes initializers in the graph."""
    tensors = list(module.parameters()) + [b for b in module.buffers() if b is not None]
    unique = {t.data_ptr(): t for t in tensors}  # tied weights count once
    return sum(t.numel() * t.element_size() for t in unique.values())


def graph_bytes(path: str | Path) -> int:
    """The .onnx file plus the external data files it names: close enough to the weights' size."""
    path = Path(path)
    files = {path.name}
    for tensor in onnx.load(path, load_external_data=False).graph.initializer:
        files.update(e.value for e in tensor.external_data if e.key == "location")
    return sum((path.parent / f).stat().st_size for f in files if (path.parent / f).is_file())
