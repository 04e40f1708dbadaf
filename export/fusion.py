"""Fused graphs: RMSNorm, rotary embedding and attention as onnxruntime contrib ops, the graph contract unchanged.

    fuse_graph(src, dst, max_positions, attention=True) -> {"GroupQueryAttention": 2, "RotaryEmbedding": 4, ...}

An exported FP32 graph (`onnx_export.export_graph`) spells every layer out
in elementwise ops: RMSNorm as Pow / ReduceMean / Add / Sqrt / Reciprocal /
Mul (x3 per layer with Qwen3's q/k norms), rotary embedding as Slice / Neg /
Concat / Mul / Add on q and k, attention as a repeat of the KV heads
(Unsqueeze / Expand / Reshape), MatMul, Mul, Add mask, Softmax, MatMul.
This pass rewrites them into onnxruntime contrib ops, one kernel each:

    SimplifiedLayerNormalization       RMSNorm (final norm, Qwen3's q/k norms)
    SkipSimplifiedLayerNormalization   residual Add + the next RMSNorm
    RotaryEmbedding                    rotary on q and k, from the graph's own position ids
    GroupQueryAttention                KV cache concat + grouped attention, one node per layer

The norm and rotary fusions are onnxscript's (`onnxscript.rewriter.ort_fusions`,
the fusions written for `torch.onnx.export(dynamo=True)` graphs of Hugging
Face decoders); onnxruntime's own `transformers.optimizer` (model type
"qwen3", onnxruntime 1.32) fused the norms of our graphs but neither rotary
nor attention. The attention rule is ours (`MaskedGroupQueryAttention`,
onnxscript's GQA pattern with another rewrite): onnxscript's GQA rewrite
drops the attention mask and derives each row's length from its position
ids, which assumes right padding, so on our left-padded rows it was wrong by
0.3 in label logits (measured on a tiny Qwen3). Ours keeps the graph's
additive 4-D mask as GroupQueryAttention's `attention_bias` and declares
every row full length (`seqlens_k` = total - 1, `query_seqlens` = T), so the
op's own causal mask is the plain one and the bias adds the padding, holes
in the cache and the self-attending padded rows, exactly as before. Rotary
stays a separate RotaryEmbedding node fed with the graph's position ids
(cumsum of the mask) and constant cos/sin tables of `max_position_embeddings`
rows (`_constant_cos_sin_rules` says why): GroupQueryAttention's own rotary
would take positions from `seqlens_k`, right-padded again. Measured on
onnxruntime 1.32 CPU: GroupQueryAttention with `query_seqlens` accepts
batch > 1 with a past and several new tokens (score_prefix; without it the
op refuses), and matched a numpy reference to 4e-7 with holes in the cache.

GPUs: onnxruntime's CUDA GroupQueryAttention refuses `attention_bias`
("attention_bias is not supported in GroupQueryAttention cuda kernel", in
onnxruntime's contrib_ops/cuda/bert/group_query_attention.cc), so a graph
meant for CUDA (the FP16 artifacts) is fused with `attention=False`: the
norms and rotary, which have CUDA kernels, and the plain attention. A fused
attention for CUDA (MultiHeadAttention with the KV heads repeated, or ONNX's
Attention-23) is for a session with a GPU to measure
(`afrl bench gpu-export-check`); none was lent to this change. A fused FP32 or
INT8 artifact would fail on CUDA when it runs, so serving keeps it off CUDA
(service/providers.py: on the CPU under AFRL_PROVIDERS=auto, refused with
CUDA named); `afrl export --no-fuse` makes one that runs there.

Measured (bench/fused_graphs_cpu.py; the Qwen3-0.6B width with 4 layers,
random weights, onnxruntime 1.32 CPU, 2 threads; median ms, plain -> fused),
once at a 1-minute load of 0.5-1.5 and again, now in
bench/results/fused_graphs_cpu.json, at 3.0-3.9 (a shared box: compare the
ratios within a run):

                                                load 0.5-1.5                  load 3.0-3.9
                                                FP32          INT8            FP32          INT8
    prefix, 170 tokens                          78.8 -> 75.4  43.4 -> 46.8    177 -> 163    91.8 -> 84.2
    score_prefix, 10 documents x 60 after 170   255 -> 238    134 -> 118      598 -> 532    335 -> 266
    score, the same 10 prompts in full (230)    850 -> 814    400 -> 333      1863 -> 1788  930 -> 762

Label logits fused vs plain: 1.6e-6 (FP32). MatMuls are 73-76% of the FP32
score_prefix time either way (onnxruntime's profiler), which bounds what
fusion buys on a CPU; GroupQueryAttention is then ~20% of it (FP32), ~30%
(INT8). ONNX's own Attention op (opset 23), swapped in node for node, was
5-8% faster again on score_prefix (busy box: 1243 vs 1344 ms FP32, 735 vs
780 INT8): not adopted here, as it needs the whole graph at opset 23; a
follow-up, and a candidate for CUDA (onnxruntime has a CUDA kernel for it;
whether it takes this mask was not checked).

What is left unfused: the MLP (MatMuls + SiLU), the embedding Gather, the
label head. The graph's inputs and outputs (names, element types, shapes)
are checked unchanged after the rewrite (`FusionError` otherwise), so
serving loads a fused graph exactly like an unfused one; `fused_op_counts`
is what the manifest records per graph.
"""

from __future__ import annotations

import collections
import logging
import time
from pathlib import Path
from typing import Any

import onnx
import onnx_ir as ir

from export.logs import quiet_exporters
from export.onnx_export import EXTERNAL_DATA_THRESHOLD_BYTES

logger = logging.getLogger(__name__)

MS_DOMAIN = "com.microsoft"
FUSED_OPS = (
    "SimplifiedLayerNormalization",
    "SkipSimplifiedLayerNormalization",
    "RotaryEmbedding",
    "GroupQueryAttention",
)


class FusionError(RuntimeError):
    """The fused graph would not honour the graph contract; the message says what changed."""


def fuse_graph(
    src: str | Path,
    dst: str | Path,
    max_positions: int,
    attention: bool = True,
    external_data: bool | None = None,
) -> dict[str, int]:
    """Fuse the FP32 graph at `src` into `dst`; returns the fused ops' counts (`fused_op_counts`).

    `max_positions`: rows of the rotary cos/sin tables (the model's `max_position_embeddings`).
    `attention=False` fuses the norms and rotary only (graphs for CUDA, see the module docstring).
    `external_data=None` keeps the weights inline unless they exceed `EXTERNAL_DATA_THRESHOLD_BYTES`.
    """
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    model = ir.load(src)
    before = _ports(model)
    with quiet_exporters():
        applied = fuse_model(model, max_positions, attention)
    after = _ports(model)
    if after != before:
        raise FusionError(f"fusing {src.name} changed its inputs/outputs: {before} -> {after}")
    if external_data is None:
        weights = sum(v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None)
        external_data = weights > EXTERNAL_DATA_THRESHOLD_BYTES
    counts = fused_op_counts(model)
    if external_data:
        ir.save(model, dst, external_data=dst.name + ".data")
    else:
        ir.save(model, dst)
    elapsed = time.perf_counter() - start
    logger.info("fused %s -> %s in %.1f s: rules %s, ops %s", src.name, dst, elapsed, applied, counts)
    return counts


def fuse_model(model: ir.Model, max_positions: int, attention: bool = True) -> dict[str, int]:
    """Rewrite `model` in place; returns how often each fusion rule applied."""
    import onnx_ir.passes.common as common_passes
    from onnxscript import optimizer
    from onnxscript.rewriter.ort_fusions import shape_optimization
    from onnxscript.rewriter.ort_fusions.rms_normalization import fuse_rms_normalization
    from onnxscript.rewriter.ort_fusions.rotary_embedding import fuse_rotary_embedding
    from onnxscript.rewriter.ort_fusions.sdpa import fuse_sdpa
    from onnxscript.rewriter.ort_fusions.skip_normalization import fuse_skip_rms_normalization

    # What onnxscript's fuse_xformers runs first: shapes known, constants folded, Shape ops simplified.
    common_passes.ShapeInferencePass()(model)
    optimizer.optimize(model)
    shape_optimization.rules.apply_to_model(model)
    optimizer.optimize(model)

    applied = {
        "rms_normalization": fuse_rms_normalization(model),
        "skip_rms_normalization": fuse_skip_rms_normalization(model),
        "rotary_embedding": fuse_rotary_embedding(model),
        "cos_sin_cache": _constant_cos_sin_rules(max_positions).apply_to_model(model),
    }
    common_passes.CommonSubexpressionEliminationPass()(model)
    if attention:
        applied["sdpa"] = fuse_sdpa(model, apply_shape_inference=True)
        applied["masked_gqa"] = _masked_gqa_rules().apply_to_model(model)
    # Intermediate fusion ops no later rule consumed are inlined back; unused nodes go.
    optimizer.optimize(model)
    # Large constants (the cos/sin tables) as initializers, so weights.data stores them once for all graphs.
    common_passes.LiftConstantsToInitializersPass(lift_all_constants=False, size_limit=1024)(model)
    return applied


def fused_op_counts(model: onnx.ModelProto | ir.Model) -> dict[str, int]:
    """How many nodes of each fused contrib op the graph holds (zeros included)."""
    nodes = model.graph.node if isinstance(model, onnx.ModelProto) else model.graph
    # SimplifiedLayerNormalization lives in onnxruntime's default-domain registry, the others in com.microsoft.
    counts = collections.Counter(n.op_type for n in nodes if n.domain in ("", MS_DOMAIN))
    return {op: counts.get(op, 0) for op in FUSED_OPS}


def _ports(model: ir.Model) -> list[tuple[str, str, str]]:
    """(name, element type, shape) of every graph input and output, in order."""
    return [
        (v.name or "", str(v.dtype), str(list(v.shape) if v.shape is not None else None))
        for v in [*model.graph.inputs, *model.graph.outputs]
    ]


def _constant_cos_sin_rules(max_positions: int) -> Any:
    """onnxscript's cos/sin cache rules with constant tables of `max_positions` rows.

    Left alone, they compute the tables in the graph up to max(position_ids) + 1 rows, and
    onnxruntime's RotaryEmbedding refuses a table shorter than the sequence ("Updating cos_cache
    and sin_cache ... is not currently supported"): every batch whose rows are all left-padded,
    as serving's length buckets make them. Constant tables also save computing them per run.
    """
    from onnxscript.rewriter import pattern
    from onnxscript.rewriter.ort_fusions.cos_sin_cache import CosSinCacheFusion

    class ConstantCosSinCache(CosSinCacheFusion):
        def __init__(self, name: str, **kw: bool):
            super().__init__(name, **kw)
            self.max_pos_id = max_positions - 1

    variants = {
        "cast": (True, False),
        "cast_const_freqs": (True, True),
        "const_freqs": (False, True),
        "": (False, False),
    }
    return pattern.RewriteRuleSet(
        [
            ConstantCosSinCache.rule(f"ConstantCosSinCache_{name}", cast=cast, const_freqs=const)
            for name, (cast, const) in variants.items()
        ]
    )


def _masked_gqa_rules() -> Any:
    """onnxscript's GQA pattern, rewritten into a GroupQueryAttention that keeps the graph's mask."""
    import numpy as np
    from onnxscript.rewriter import _fusion_utils, _ir_utils, pattern
    from onnxscript.rewriter.ort_fusions.gqa import GroupQueryAttention

    class MaskedGroupQueryAttention(GroupQueryAttention):
        def check(  # type: ignore[override]
            self,
            context: Any,
            query_BSD: ir.Value,
            key_BSDkv: ir.Value,
            value_BSDkv: ir.Value,
            past_key: ir.Value | None,
            past_value: ir.Value | None,
            query_BHSDh_rope: ir.Value,
            key_BHkvSDh_rope: ir.Value,
            query_BSHDh: ir.Value,
            key_BSHkvDh: ir.Value,
            mask: ir.Value,
            query_BSHDh_normalized: ir.Value | None = None,
            query_BHSDh_normalized: ir.Value | None = None,
            key_BSHkvDh_normalized: ir.Value | None = None,
            key_BHkvSDh_normalized: ir.Value | None = None,
            **_: Any,
        ) -> Any:
            result = pattern.MatchResult()
            if query_BHSDh_normalized is not None or key_BHkvSDh_normalized is not None:
                return result.fail("q/k norm after the transpose (Gemma) is not handled", query_BHSDh_normalized)
            bindings: dict[str, Any] = {}
            for value, dims in (
                (query_BSD, ["B", "S", "D"]),
                (key_BSDkv, ["B", "S", "Dkv"]),
                (value_BSDkv, ["B", "S", "Dkv"]),
            ):
                if not _fusion_utils.check_shape_bool(bindings, value, dims):
                    return result.fail("q/k/v shapes do not agree", value)
            for past in (past_key, past_value):
                if past is not None and not _ir_utils.has_rank(past, 4):
                    return result.fail("past is not (B, Hkv, P, D)", past)
            if not _ir_utils.has_rank(mask, 4) or mask.dtype not in (ir.DataType.FLOAT, ir.DataType.FLOAT16):
                return result.fail("mask is not an additive (B, 1, T, S) float mask", mask)
            num_heads, kv_num_heads = _ir_utils.get_dim(query_BSHDh, 2), _ir_utils.get_dim(key_BSHkvDh, 2)
            if not isinstance(num_heads, int) or not isinstance(kv_num_heads, int):
                return result.fail("unknown head counts", [query_BSHDh, key_BSHkvDh])
            rotary = [query_BHSDh_rope.producer(), key_BHkvSDh_rope.producer()]
            if any(node is None or node.domain != MS_DOMAIN for node in rotary):
                return result.fail("rotary embedding is not the contrib op", query_BHSDh_rope)
            interleaved = {node.attributes.get_int("interleaved", 0) for node in rotary if node is not None}
            if len(interleaved) != 1:
                return result.fail("q and k rotary differ", query_BHSDh_rope)
            sdpa = [u.node for u in query_BHSDh_rope.uses() if u.node.op_type == "SDPA"]
            if len(sdpa) != 1:
                return result.fail("no single SDPA reads the rotated query", query_BHSDh_rope)
            scale = sdpa[0].attributes.get_float("scale", None)
            self.num_heads, self.kv_num_heads, self._interleaved, self._scale = (
                num_heads,
                kv_num_heads,
                interleaved.pop(),
                scale,
            )
            return result

        def rewrite(  # type: ignore[override]
            self,
            op: Any,
            query_BSD: ir.Value,
            key_BSDkv: ir.Value,
            value_BSDkv: ir.Value,
            past_key: ir.Value | None,
            past_value: ir.Value | None,
            position_ids: ir.Value,
            cos: ir.Value,
            sin: ir.Value,
            mask: ir.Value,
            query_BSHDh: ir.Value,
            key_BSHkvDh: ir.Value,
            query_BSHDh_normalized: ir.Value | None = None,
            key_BSHkvDh_normalized: ir.Value | None = None,
            **_: Any,
        ) -> Any:
            to_bsd = op.Constant(value_ints=[0, 0, -1])

            def normalized(flat: ir.Value, heads: ir.Value, norm: ir.Value | None) -> ir.Value:
                # Qwen3's q/k norm over head_dim, applied before the heads are flattened back to (B, S, D).
                if norm is None:
                    return flat
                node = norm.producer()
                assert node is not None  # bound by the pattern
                return op.Reshape(op.SimplifiedLayerNormalization(heads, node.inputs[1], **node.attributes), to_bsd)

            def rotated(x: ir.Value, heads: int) -> ir.Value:
                return op.RotaryEmbedding(
                    x, position_ids, cos, sin, interleaved=self._interleaved, num_heads=heads, _domain=MS_DOMAIN
                )

            query = rotated(normalized(query_BSD, query_BSHDh, query_BSHDh_normalized), self.num_heads)
            key = rotated(normalized(key_BSDkv, key_BSHkvDh, key_BSHkvDh_normalized), self.kv_num_heads)
            # Every row is declared full length: keys 0 .. S-1 exist, the T queries are the last T positions.
            # The op's causal mask is then the plain one; the graph's additive mask does the padding and holes.
            total = op.Cast(op.Shape(mask, start=3, end=4), to=ir.DataType.INT32)  # (1,)
            batch = op.Shape(query_BSD, start=0, end=1)  # (1,)
            new = op.Cast(op.Shape(query_BSD, start=1, end=2), to=ir.DataType.INT32)  # (1,)
            one = op.Constant(value=ir.tensor(np.array([1], dtype=np.int32)))
            seqlens_k = op.Expand(op.Sub(total, one), batch)  # (B,)
            # query_seqlens lifts the op's "batch 1 when a past and several new tokens" limit; it wants a past.
            query_seqlens = None if past_key is None else op.Expand(new, batch)  # (B,)
            total_scalar = op.Squeeze(total)  # ()
            attributes: dict[str, Any] = {"num_heads": self.num_heads, "kv_num_heads": self.kv_num_heads}
            if self._scale is not None:
                attributes["scale"] = self._scale
            return op.GroupQueryAttention(
                query,
                key,
                value_BSDkv,
                past_key,
                past_value,
                seqlens_k,
                total_scalar,
                None,  # cos_cache: rotary is done above, from the graph's position ids
                None,  # sin_cache
                None,  # position_ids
                mask,  # attention_bias
                None,  # head_sink
                None,  # k_scale
                None,  # v_scale
                None,  # q_norm_weight
                None,  # k_norm_weight
                query_seqlens,
                **attributes,
                _domain=MS_DOMAIN,
                _outputs=3,
            )

    return pattern.RewriteRuleSet([MaskedGroupQueryAttention.rule()])
