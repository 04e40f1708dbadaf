"""Sampling and greedy decoding of AFRL completions from a torch causal LM.

One routine serves RL rollouts (G samples per prompt), the teacher's outputs
for distillation and the explanations that evaluation checks. It is cheap on
CPU for the same reasons the SFT loop is:

- the guideline (the system turn every prompt shares) runs once, its KV cache
  is repeated for the rows;
- each prompt's own tokens run once, then their cache is repeated for the G
  samples;
- the next-token distribution may be restricted to a vocabulary subset (the
  tokens AFRL completions use), so one decode step costs (N, H) x (H, S)
  instead of the full (H, 151,936) projection. The RL policy *is* that
  restricted softmax, in sampling and in the loss alike, so the samples are
  on-policy.

Prompts are left-padded after the shared prefix: [prefix][pad..][rest], with
position ids that skip the padding, so every row's last prompt token sits in
the same column and decoding appends one column per step.

Decoding runs on one CPU thread: its ops are tiny ((N, 1, H) x (H, 3H)), and
thread synchronisation costs more than it saves. Measured on the 2-core box
with other jobs running: 32 rollouts x 60 tokens of the 128-wide model took
2.0 s on one thread and 19.9 s on two. Rows that end leave the batch (their
cache rows are dropped), and prompts go 64 at a time: 256 greedy completions
of that model took 12.6 s in chunks of 64, 16.8 s of 128 and 20.6 s of 256
(each row carries its own copy of the guideline's cache).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class Rollouts:
    completion_ids: list[list[int]]  # per row, up to and including eos (when reached)
    logps: list[list[float]]  # log-probability of each sampled token under the sampling distribution
    finished: list[bool]  # eos reached within max_new_tokens
    label_probs: torch.Tensor | None  # (N, K) renormalised label distribution at the first position


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    *,
    prefix_len: int,
    eos_id: int,
    max_new_tokens: int,
    vocab: torch.Tensor | None = None,
    num_samples: int = 1,
    temperature: float = 1.0,
    greedy: bool = False,
    label_ids: Sequence[int] | None = None,
    generator: torch.Generator | None = None,
    batch_size: int = 64,
) -> Rollouts:
    """Completions for `prompts` (rows: prompt 0 x num_samples, prompt 1 x num_samples, ...).

    prefix_len: how many leading tokens every prompt shares (>= 1: the guideline's system turn).
    vocab: (S,) sorted token ids the next token is drawn from (None: the full vocabulary).
    label_ids: when given, also return the label distribution at the first position.
    """
    if prefix_len < 1:
        raise ValueError("prefix_len must be >= 1: left padding needs a shared prefix that every position can see")
    if batch_size < num_samples:
        raise ValueError(f"batch_size {batch_size} is below num_samples {num_samples}")
    per_chunk = max(1, batch_size // num_samples)
    with torch_threads(1 if next(model.parameters()).device.type == "cpu" else None):
        parts = [
            _generate_chunk(
                model,
                prompts[i : i + per_chunk],
                prefix_len,
                eos_id,
                max_new_tokens,
                vocab,
                num_samples,
                temperature,
                greedy,
                label_ids,
                generator,
            )
            for i in range(0, len(prompts), per_chunk)
        ]
    return Rollouts(
        completion_ids=[c for p in parts for c in p.completion_ids],
        logps=[x for p in parts for x in p.logps],
        finished=[f for p in parts for f in p.finished],
        label_probs=torch.cat([p.label_probs for p in parts]) if label_ids is not None else None,
    )


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run the block with `n` intra-op threads (None: leave as is), then restore."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _generate_chunk(
    model, prompts, prefix_len, eos_id, max_new_tokens, vocab, num_samples, temperature, greedy, label_ids, generator
) -> Rollouts:
    decoder = model.get_decoder()
    device = next(model.parameters()).device
    head = model.get_output_embeddings().weight
    head = head if vocab is None else head[vocab.to(device)]  # (S, H)
    prefix = list(prompts[0][:prefix_len])
    if any(list(p[:prefix_len]) != prefix for p in prompts):
        raise ValueError("prompts do not share their first prefix_len tokens")
    rests = [list(p[prefix_len:]) for p in prompts]
    if any(not r for r in rests):
        raise ValueError("every prompt needs at least one token after the shared prefix")
    u, width = len(rests), max(len(r) for r in rests)

    ids = torch.full((u, width), eos_id, dtype=torch.long)
    rest_mask = torch.zeros((u, width), dtype=torch.long)
    for b, r in enumerate(rests):
        ids[b, width - len(r) :] = torch.tensor(r)
        rest_mask[b, width - len(r) :] = 1
    positions = (prefix_len + rest_mask.cumsum(1) - 1).clamp(min=prefix_len)  # (U, R) pads reuse a real position
    mask = torch.cat([torch.ones((u, prefix_len), dtype=torch.long), rest_mask], dim=1)  # (U, P + R)
    ids, mask, positions = ids.to(device), mask.to(device), positions.to(device)

    cache = decoder(input_ids=torch.tensor([prefix], device=device), use_cache=True).past_key_values
    cache.batch_repeat_interleave(u)
    out = decoder(
        input_ids=ids,
        attention_mask=mask,
        past_key_values=cache,
        position_ids=positions,
        cache_position=torch.arange(prefix_len, prefix_len + width, device=device),
        use_cache=True,
    )
    cache, hidden = out.past_key_values, out.last_hidden_state[:, -1]  # (U, H)

    label_probs = None
    if label_ids is not None:
        full_head = model.get_output_embeddings().weight
        label_logits = hidden.float() @ full_head[torch.tensor(list(label_ids), device=device)].float().T  # (U, K)
        label_probs = torch.softmax(label_logits, dim=-1).repeat_interleave(num_samples, dim=0).cpu()

    n = u * num_samples
    if num_samples > 1:
        cache.batch_repeat_interleave(num_samples)
        hidden = hidden.repeat_interleave(num_samples, dim=0)
        mask = mask.repeat_interleave(num_samples, dim=0)
        positions = positions.repeat_interleave(num_samples, dim=0)
    next_pos = positions[:, -1] + 1  # (N,)
    length = prefix_len + width
    rows = torch.arange(n)  # which output row each live row is; finished rows leave the batch
    tokens: list[list[int]] = [[] for _ in range(n)]
    logps: list[list[float]] = [[] for _ in range(n)]
    for t in range(max_new_tokens):
        logits = hidden.float() @ head.float().T  # (A, S) for the A rows still generating
        if greedy:
            local = logits.argmax(dim=-1)
            logp = torch.log_softmax(logits, dim=-1).gather(1, local[:, None])[:, 0]
        else:
            logprobs = torch.log_softmax(logits / temperature, dim=-1)
            local = torch.multinomial(logprobs.exp().cpu(), 1, generator=generator)[:, 0].to(device)
            logp = logprobs.gather(1, local[:, None])[:, 0]
        token = (local if vocab is None else vocab.to(device)[local]).cpu()
        for r, tok, lp in zip(rows.tolist(), token.tolist(), logp.tolist(), strict=True):
            tokens[r].append(tok)
            logps[r].append(lp)
        live = token != eos_id
        if t == max_new_tokens - 1 or not bool(live.any()):
            break
        if not bool(live.all()):  # drop finished rows: the rest decode without them
            keep = live.nonzero()[:, 0]
            cache.batch_select_indices(keep.to(device))
            mask, next_pos, rows, token = mask[keep.to(device)], next_pos[keep.to(device)], rows[keep], token[keep]
        mask = torch.cat([mask, torch.ones((mask.shape[0], 1), dtype=mask.dtype, device=device)], dim=1)
        out = decoder(
            input_ids=token[:, None].to(device),
            attention_mask=mask,
            past_key_values=cache,
            position_ids=next_pos[:, None],
            cache_position=torch.tensor([length], device=device),
            use_cache=True,
        )
        cache, hidden = out.past_key_values, out.last_hidden_state[:, -1]
        next_pos, length = next_pos + 1, length + 1

    finished = [bool(row) and row[-1] == eos_id for row in tokens]
    completion_ids, completion_logps = tokens, logps
    return Rollouts(completion_ids, completion_logps, finished, label_probs)
