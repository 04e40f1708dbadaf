"""The score graph: transformer body + the K label rows of the LM head, last position only.

    input_ids, attention_mask (B, T) int64, LEFT-padded
      -> position_ids = clamp(cumsum(mask) - 1, 0)            so padding never shifts positions
      -> 4-D additive mask (B, 1, T, T): causal AND key is real  (built here, see below)
      -> decoder body (model.get_decoder())                    (B, T, H), final norm included
      -> hidden[:, -1]                                         (B, H): last real token of every row
      -> @ label_head                                          (B, K) label_logits, float32

Only the K label rows of the output projection are kept, as a buffer
`head.weight` of shape (H, K) (stored transposed, so the graph has no Transpose
before its last MatMul); the graph never holds or computes the (V, H)
vocabulary projection.
Everything goes through `get_decoder()` / `get_output_embeddings()`, so any
Hugging Face causal LM with the usual body/head split works (Qwen3, Llama, ...).

Why the wrapper builds the 4-D mask itself: transformers 4.57 returns a 4-D
mask untouched (`_preprocess_mask_arguments`), which keeps its own masking
code (where a 2-D mask failed under TorchScript export, STACK.md) out of the
traced graph; the exported mask is a few plain ops.

Padded query positions may attend to themselves, so no softmax row is fully
masked: their outputs are discarded anyway, but a fully masked row is a NaN
risk in some attention kernels. Real query positions never see a pad key, so
a row's label logits do not depend on how much padding the batch added.

Export path: `torch.onnx.export(dynamo=True)`; `export/onnx_export.py` says
why and what was measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from transformers import PreTrainedModel


class LabelHead(nn.Module):
    """The K label rows of a causal LM's output projection: (B, H) hidden -> (B, K) float32 logits."""

    weight: torch.Tensor  # (H, K), a buffer
    bias: torch.Tensor | None  # (K,), a buffer

    def __init__(self, model: PreTrainedModel, label_token_ids: Sequence[int]):
        super().__init__()
        ids = [int(i) for i in label_token_ids]
        if len(ids) < 2 or len(set(ids)) != len(ids):
            raise ValueError(f"need at least 2 distinct label token ids, got {ids}")
        head = model.get_output_embeddings()
        if head is None:
            raise ValueError(f"{type(model).__name__} has no output embeddings (LM head) to take label rows from")
        weight = head.weight  # (V, H)
        if max(ids) >= weight.shape[0] or min(ids) < 0:
            raise ValueError(f"label token ids {ids} out of range for an LM head of {weight.shape[0]} rows")
        index = torch.tensor(ids, dtype=torch.long, device=weight.device)
        # A copy, not a view: the exported graph holds only these K rows.
        self.register_buffer("weight", weight.detach().index_select(0, index).t().contiguous())  # (H, K)
        bias = getattr(head, "bias", None)
        self.register_buffer("bias", None if bias is None else bias.detach().index_select(0, index).clone())  # (K,)
        self.softcap = getattr(model.config, "final_logit_softcapping", None)
        self.token_ids = ids

    def forward(self, last: torch.Tensor) -> torch.Tensor:
        logits = last @ self.weight  # (B, K)
        if self.bias is not None:
            logits = logits + self.bias
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits.float()


class LabelScoreModel(nn.Module):
    """Wraps a causal LM so that forward returns the label logits at the last position only."""

    def __init__(self, model: PreTrainedModel, label_token_ids: Sequence[int]):
        super().__init__()
        self.decoder = model.get_decoder()
        self.head = LabelHead(model, label_token_ids)
        self.label_token_ids = self.head.token_ids

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) int64 token ids and (B, T) int64 mask, left-padded -> (B, K) float32 label logits."""
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # (B, T)
        mask4d = additive_attention_mask(attention_mask, self.head.weight.dtype)  # (B, 1, T, T)
        out = self.decoder(
            input_ids=input_ids,
            attention_mask=mask4d,
            position_ids=position_ids,
            use_cache=False,
        )
        return self.head(out.last_hidden_state[:, -1, :])  # (B, H) -> (B, K)


def additive_attention_mask(
    attention_mask: torch.Tensor, dtype: torch.dtype, query_length: int | torch.SymInt | None = None
) -> torch.Tensor:
    """(B, S + T) 0/1 padding mask -> (B, 1, T, S + T) additive mask: 0 where query t may see key k, else min.

    The T queries are the last T positions (T = S + T when `query_length` is
    None: no cache). Query t sits at position S + t and may see key k when
    k <= S + t and k is a real token; every query also sees itself (padded
    rows would otherwise be fully masked).
    """
    total = attention_mask.shape[-1]
    t = total if query_length is None else query_length
    keys = torch.arange(total, device=attention_mask.device)  # (S + T,)
    queries = keys[-t:] if query_length is not None else keys  # (T,): positions S .. S + T - 1
    causal = keys[None, :] <= queries[:, None]  # (T, S + T): [q, k]
    diagonal = keys[None, :] == queries[:, None]  # (T, S + T)
    key_real = attention_mask[:, None, None, :].bool()  # (B, 1, 1, S + T)
    allowed = (causal[None, None] & key_real) | diagonal[None, None]  # (B, 1, T, S + T)
    zero = torch.zeros((), dtype=dtype, device=attention_mask.device)
    blocked = torch.full((), torch.finfo(dtype).min, dtype=dtype, device=attention_mask.device)
    return torch.where(allowed, zero, blocked)
