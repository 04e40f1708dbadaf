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


def past_names(layers: int) -> list[str]:
    return [f"past.{layer}.{kind}" for layer in range(layers) for kind in ("key", "value")]


def present_names(layers: int) -> list[str]:
    return [f"present.{layer}.{kind}" for layer in range(layers) for kind in ("key", "value")]
