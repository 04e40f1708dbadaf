"""The KV-cache graphs of `afrl/graphs.py`: prefix, score_prefix and decode, as torch wrappers.

    prefix        input_ids (1, P)                                    -> present (1, Hkv, P, D) per layer
    score_prefix  input_ids (B, T), attention_mask (B, P + T),
                  past (1, Hkv, P, D) per layer, expanded to B here    -> label_logits (B, K),
                                                                          present (B, Hkv, T, D) (the documents' cache)
    decode        input_ids (B, T), attention_mask (B, S + T),
                  past (B, Hkv, S, D) per layer                        -> logits (B, V) at the last position,
                                                                          present (B, Hkv, S + T, D)

All three run the checkpoint's own decoder (`get_decoder()`) with a
transformers `DynamicCache` built from the graph's past inputs, so any
Hugging Face causal LM whose decoder takes `past_key_values` works (Qwen3,
Llama, ...). As in the score graph (`score_graph.py`), position ids and the
4-D additive mask are derived from the attention mask inside the graph:

    position_ids = clamp(cumsum(mask) - 1, 0)[:, -T:]    a row's holes (left padding of its document) shift nothing
    query t may see key k  iff  k <= S + t and mask[k] = 1, or k = S + t

so serving never computes positions, and a cache with holes in it (prefix,
then a document's left padding, then the document) decodes exactly like the
unpadded prompt.

Why wrappers rather than an off-the-shelf decoder export: the contract wants
positions derived from the mask inside the graph and logits at the last
position only ((B, V), not (B, T, V)); optimum-onnx's text-generation graph
takes `position_ids` as an input and returns logits at every position, and
onnxruntime-genai's builder owns its own cache layout. The measured
comparison is in `export/onnx_export.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from export.score_graph import LabelHead, additive_attention_mask

if TYPE_CHECKING:
    from transformers import PreTrainedModel


class CachedDecoder(nn.Module):
    """The decoder body run over new tokens with an optional past cache; the common part of the three graphs."""

    def __init__(self, model: PreTrainedModel):
        super().__init__()
        self.decoder = model.get_decoder()
        self.config = model.config
        self.layers = int(model.config.num_hidden_layers)

    def body(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, past: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B, T) ids, (B, S + T) mask, 2L past (B, Hkv, S, D) or none -> (B, T, H) hidden, 2L present."""
        from transformers.cache_utils import DynamicCache

        t = input_ids.shape[1]
        cache = DynamicCache(config=self.config)
        for layer in range(len(past) // 2):
            cache.update(past[2 * layer], past[2 * layer + 1], layer)
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)[:, -t:]  # (B, T)
        dtype = self.decoder.get_input_embeddings().weight.dtype
        mask4d = additive_attention_mask(attention_mask, dtype, query_length=t)  # (B, 1, T, S + T)
        s = attention_mask.shape[1] - t
        out = self.decoder(
            input_ids=input_ids,
            attention_mask=mask4d,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
            cache_position=torch.arange(s, s + t, device=input_ids.device),
        )
        present: list[torch.Tensor] = []
        for layer in range(self.layers):
            keys, values = cache.layers[layer].keys, cache.layers[layer].values  # (B, Hkv, S + T, D)
            if keys is None or values is None:  # the decoder fills every layer it runs
                raise RuntimeError(f"the decoder left layer {layer} of the cache empty")
            present += [keys, values]
        return out.last_hidden_state, present


class PrefixModel(CachedDecoder):
    """Shared prefix (guideline + query) -> its KV cache, computed once per request."""

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(1, P) -> 2L present tensors (1, Hkv, P, D)."""
        _, present = self.body(input_ids, torch.ones_like(input_ids), ())
        return tuple(present)


class ScorePrefixModel(CachedDecoder):
    """Prefix cache + left-padded documents -> label logits and the documents' own cache."""

    def __init__(self, model: PreTrainedModel, label_token_ids: Sequence[int]):
        super().__init__(model)
        self.head = LabelHead(model, label_token_ids)
        self.label_token_ids = self.head.token_ids

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *past: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """(B, T), (B, P + T), 2L x (1, Hkv, P, D) -> (B, K) label logits, 2L x (B, Hkv, T, D)."""
        b, t = input_ids.shape
        tiled = [p.expand(b, -1, -1, -1) for p in past]  # (B, Hkv, P, D): a view, no copy in torch
        hidden, present = self.body(input_ids, attention_mask, tiled)
        logits = self.head(hidden[:, -1, :])  # (B, H) -> (B, K)
        own = [p[:, :, -t:, :] for p in present]  # (B, Hkv, T, D)
        return (logits, *own)


class DecodeModel(CachedDecoder):
    """One decoding step (or a few tokens) from a cache -> next-token logits and the grown cache."""

    def __init__(self, model: PreTrainedModel):
        super().__init__(model)
        head = model.get_output_embeddings()
        if head is None:
            raise ValueError(f"{type(model).__name__} has no output embeddings (LM head) to decode with")
        self.lm_head = head
        self.softcap = getattr(model.config, "final_logit_softcapping", None)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *past: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """(B, T), (B, S + T), 2L x (B, Hkv, S, D) -> (B, V) logits of the last position, 2L x (B, Hkv, S + T, D)."""
        hidden, present = self.body(input_ids, attention_mask, past)
        logits = self.lm_head(hidden[:, -1, :])  # (B, V): the full projection, for the last position only
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return (logits.float(), *present)
