"""The compact training vocabulary: remap, shrink, train, scatter back into the real table."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
from transformers import Qwen3ForCausalLM

from training.compact_vocab import CompactVocab
from training.distill import KDSequence
from training.model_factory import QWEN3_EMBEDDING_ROWS, build_tiny_qwen3, load_causal_lm
from training.sft import SFTConfig, train_sft


@pytest.fixture(scope="module")
def splits(ctx, small_world):
    return {name: ctx.encode(getattr(small_world, name)) for name in ("train", "dev", "test")}


@pytest.fixture(scope="module")
def vocab(ctx, splits, small_spec) -> CompactVocab:
    return CompactVocab.for_training(ctx, build_tiny_qwen3(small_spec, seed=0), *splits.values())


def test_remap_round_trips_and_keeps_order(vocab, splits, ctx):
    assert 100 < len(vocab) < 2000  # the world's few hundred tokens, not the 151,936 rows
    full = torch.tensor(splits["test"][0].prompt_ids)
    compact = vocab.ids_to_compact(full)
    assert int(compact.max()) < len(vocab)
    assert torch.equal(vocab.ids_to_full(compact), full)
    ordered = vocab.kept[::7]
    assert torch.equal(vocab.ids_to_compact(ordered), torch.arange(0, len(vocab), 7))  # monotone
    encoded = vocab.encode(splits["dev"])
    for before, after in zip(splits["dev"], encoded, strict=True):
        assert vocab.ids_to_full(torch.tensor(after.prompt_ids)).tolist() == before.prompt_ids
        assert vocab.ids_to_full(torch.tensor(after.completion_ids)).tolist() == before.completion_ids
        assert after.grade == before.grade
    kd = KDSequence(splits["dev"][0].prompt_ids, splits["dev"][0].completion_ids, 2, (0.1, 0.2, 0.4, 0.2, 0.1))
    assert vocab.encode([kd])[0] == KDSequence(encoded[0].prompt_ids, encoded[0].completion_ids, 2, kd.label_probs)
    labels = vocab.labels(ctx.labels)
    assert vocab.ids_to_full(torch.tensor(labels.token_ids)).tolist() == ctx.labels.token_ids


def test_unknown_ids_are_refused(vocab, splits):
    unseen = next(i for i in range(1000, QWEN3_EMBEDDING_ROWS) if i not in set(vocab.kept.tolist()))
    with pytest.raises(ValueError, match="not in the compact vocabulary"):
        vocab.ids_to_compact(torch.tensor([int(vocab.kept[0]), unseen]))
    s = splits["train"][0]
    with pytest.raises(ValueError, match="not in the compact vocabulary"):
        vocab.encode([type(s)(s.prompt_ids + [unseen], s.completion_ids, s.grade)])
    with pytest.raises(ValueError, match="outside"):
        vocab.ids_to_compact(torch.tensor([QWEN3_EMBEDDING_ROWS]))


def test_shrink_refuses_a_vocabulary_without_the_padding_row(small_spec, vocab):
    no_pad = CompactVocab(vocab.kept[vocab.kept != 151643], QWEN3_EMBEDDING_ROWS)
    with pytest.raises(ValueError, match="padding id 151643"):
        no_pad.shrink(build_tiny_qwen3(small_spec, seed=0))


def test_compact_training_equals_full_table_training(ctx, splits, vocab, small_spec):
    """Restricted softmax: unseen rows get no gradient in the full table, so both runs are one model."""
    full = build_tiny_qwen3(small_spec, seed=0)
    compact = copy.deepcopy(full)
    config = SFTConfig(steps=12, batch_size=8, warmup_steps=2, learning_rate=1e-2)
    train = splits["train"]
    full_table = replace(config, compact_vocab=False)  # the loop's own compaction (on by default) off
    full_run = train_sft(full, train, ctx.labels, full_table, ctx.pad_id, vocab=ctx.vocab(train))
    with vocab.compacted(compact):
        assert compact.get_input_embeddings().weight.shape == (len(vocab), small_spec.hidden_size)
        assert compact.get_output_embeddings().weight is compact.get_input_embeddings().weight
        compact_run = train_sft(
            compact,
            vocab.encode(train),
            vocab.labels(ctx.labels),
            config,
            vocab.id(ctx.pad_id),
            vocab=vocab.ids_to_compact(ctx.vocab(train)),
        )
    early, late = sum(compact_run.losses[:3]) / 3, sum(compact_run.losses[-3:]) / 3
    assert late < early - 0.5, compact_run.losses  # it learns
    assert compact_run.losses == pytest.approx(full_run.losses, rel=1e-4)
    for (name, a), b in zip(full.state_dict().items(), compact.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-5), name


def test_saved_checkpoint_has_the_full_vocabulary_and_the_compact_logits(ctx, splits, vocab, small_spec, tmp_path):
    model = build_tiny_qwen3(small_spec, seed=0)
    init = model.get_input_embeddings().weight.detach().clone()
    table = vocab.shrink(model)
    assert model.config.vocab_size == len(vocab)
    assert model.config.pad_token_id == vocab.id(ctx.pad_id)
    assert model.generation_config.eos_token_id == vocab.id(ctx.eos_id)
    train_sft(
        model,
        vocab.encode(splits["train"]),
        vocab.labels(ctx.labels),
        SFTConfig(steps=6, batch_size=8, warmup_steps=2, learning_rate=1e-2),
        vocab.id(ctx.pad_id),
    )  # vocab=None: the loop takes the completion vocabulary of the compact sequences and labels
    rows = splits["test"][:3]
    compact_ids = torch.tensor([s.prompt_ids[-40:] for s in vocab.encode(rows)])  # (3, 40)
    with torch.no_grad():
        compact_logits = model(input_ids=compact_ids).logits  # (3, 40, C)
    trained = model.get_input_embeddings().weight.detach().clone()
    mean_model, zero_model = copy.deepcopy(model), copy.deepcopy(model)
    vocab.expand(mean_model, table, unseen="mean")
    vocab.expand(zero_model, table, unseen="zero")
    vocab.expand(model, table)
    model.save_pretrained(tmp_path)

    saved = load_causal_lm(tmp_path).eval()
    emb = saved.get_input_embeddings()
    assert saved.config.vocab_size == QWEN3_EMBEDDING_ROWS
    assert emb.weight.shape == (QWEN3_EMBEDDING_ROWS, small_spec.hidden_size)
    assert emb.padding_idx == ctx.pad_id
    assert (saved.config.pad_token_id, saved.config.eos_token_id) == (ctx.pad_id, ctx.eos_id)
    assert saved.generation_config.eos_token_id == ctx.eos_id
    with torch.no_grad():
        full_logits = saved(input_ids=vocab.ids_to_full(compact_ids)).logits  # (3, 40, V)
    assert torch.allclose(full_logits[..., vocab.kept], compact_logits, atol=1e-5)

    unseen = torch.ones(QWEN3_EMBEDDING_ROWS, dtype=torch.bool)
    unseen[vocab.kept] = False
    assert torch.equal(emb.weight[vocab.kept], trained)
    assert torch.equal(emb.weight[unseen], init[unseen])  # "init": the rows full-table training leaves
    assert not torch.equal(trained, init[vocab.kept])
    # "mean": rows training left alone (unseen, or only in dev/test) get the mean of the rows it changed
    changed = (trained != init[vocab.kept]).any(dim=-1)
    assert 0 < int(changed.sum()) < len(vocab)  # the padding row and the dev/test-only tokens never move
    mean_rows = mean_model.get_input_embeddings().weight.detach()
    expected = trained[changed].mean(dim=0)
    assert torch.allclose(mean_rows[unseen], expected.expand(int(unseen.sum()), -1))
    assert torch.equal(mean_rows[vocab.kept[changed]], trained[changed])
    untouched = vocab.kept[~changed & (vocab.kept != ctx.pad_id)]
    assert torch.allclose(mean_rows[untouched], expected.expand(len(untouched), -1))
    assert not mean_rows[ctx.pad_id].any()
    zero_rows = zero_model.get_input_embeddings().weight.detach()
    assert not zero_rows[unseen].any() and not zero_rows[untouched].any()
    assert torch.equal(zero_rows[vocab.kept[changed]], trained[changed])
    with pytest.raises(ValueError, match="unseen must be one of"):
        vocab.expand(copy.deepcopy(mean_model), table, unseen="random")


def test_compacted_restores_the_table_when_training_fails(vocab, small_spec):
    model = build_tiny_qwen3(small_spec, seed=0)
    before = model.get_input_embeddings().weight.detach().clone()
    with pytest.raises(RuntimeError, match="boom"), vocab.compacted(model):
        raise RuntimeError("boom")
    assert torch.equal(model.get_input_embeddings().weight, before)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert model.config.vocab_size == QWEN3_EMBEDDING_ROWS


def test_an_untied_head_is_shrunk_and_restored_too(vocab, small_spec, splits):
    config = small_spec.config()
    config.tie_word_embeddings = False
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(config).eval()
    head_before = model.get_output_embeddings().weight.detach().clone()
    full_ids = torch.tensor([splits["test"][0].prompt_ids[-30:]])  # (1, 30)
    with torch.no_grad():
        full_logits = model(input_ids=full_ids).logits  # (1, 30, V)
    with vocab.compacted(model):
        assert model.get_output_embeddings().weight is not model.get_input_embeddings().weight
        assert model.get_output_embeddings().weight.shape[0] == len(vocab)
        with torch.no_grad():
            compact_logits = model(input_ids=vocab.ids_to_compact(full_ids)).logits  # (1, 30, C)
    assert torch.allclose(compact_logits, full_logits[..., vocab.kept], atol=1e-5)
    assert torch.equal(model.get_output_embeddings().weight, head_before)
    assert model.get_output_embeddings().out_features == QWEN3_EMBEDDING_ROWS
