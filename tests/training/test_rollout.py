"""Rollouts: the batched, shared-prefix, restricted-vocabulary decoder equals one-at-a-time decoding."""

import torch

from training.evaluate.torch_model import TorchPredictor, label_probs
from training.rollout import generate


def test_batched_greedy_equals_single_and_label_probs_equal_the_score_graph(ctx, small_world, vocab, warm_model):
    examples = small_world.train[:5]
    prompts = [ctx.prompt_ids(e.query, e.document) for e in examples]
    kwargs = dict(
        prefix_len=ctx.prefix_len,
        eos_id=ctx.eos_id,
        max_new_tokens=24,
        vocab=vocab,
        greedy=True,
        label_ids=ctx.labels.token_ids,
    )
    batched = generate(warm_model, prompts, **kwargs)
    for i, p in enumerate(prompts):
        single = generate(warm_model, [p], **kwargs)
        assert single.completion_ids[0] == batched.completion_ids[i]
        assert max(abs(a - b) for a, b in zip(single.logps[0], batched.logps[i], strict=True)) < 1e-4
    predictor = TorchPredictor(warm_model, ctx.encoder, ctx.labels, ctx.pad_id)
    exported = torch.tensor([predictor(e.query, [e.document])[0].probs for e in examples], dtype=torch.float32)
    assert torch.allclose(batched.label_probs, exported, atol=1e-5)
    assert torch.allclose(label_probs(warm_model, ctx, examples), exported, atol=1e-5)


def test_sampling_draws_groups_from_the_restricted_vocabulary(ctx, small_world, vocab, warm_model):
    prompts = [ctx.prompt_ids(e.query, e.document) for e in small_world.train[:2]]
    out = generate(
        warm_model,
        prompts,
        prefix_len=ctx.prefix_len,
        eos_id=ctx.eos_id,
        max_new_tokens=12,
        vocab=vocab,
        num_samples=3,
        generator=torch.Generator().manual_seed(0),
    )
    assert len(out.completion_ids) == 6
    allowed = set(vocab.tolist())
    assert all(t in allowed for row in out.completion_ids for t in row)
    assert all(
        len(ids) == len(lp) and all(x <= 0 for x in lp) for ids, lp in zip(out.completion_ids, out.logps, strict=True)
    )
    assert all(f == (row[-1] == ctx.eos_id) for f, row in zip(out.finished, out.completion_ids, strict=True))
