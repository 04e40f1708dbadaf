import logging
from dataclasses import replace

import pytest
import torch
from tokenizers import Tokenizer
from transformers import AutoTokenizer

from afrl.labels import LabelSet
from afrl.prompt import PromptEncoder, PromptTemplate
from afrl.tokenizer_files import qwen3_tokenizer_dir
from training import sft as sft_module
from training.losses import completion_nll
from training.model_factory import QWEN3_EMBEDDING_ROWS, TinyQwen3Spec, build_tiny_qwen3
from training.sft import SFTConfig, SFTTrainer, sft_loss, train_sft
from training.sft_data import collate, common_prefix, completion_vocab, encode_examples
from training.world import build_world, guideline_text

PAD = 151643
SMALL = TinyQwen3Spec(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1
)


@pytest.fixture(scope="module")
def setup():
    hf = AutoTokenizer.from_pretrained(qwen3_tokenizer_dir())
    labels = LabelSet.from_tokenizer(hf)
    encoder = PromptEncoder(
        PromptTemplate.from_chat_template(hf, guideline_text()),
        Tokenizer.from_file(str(qwen3_tokenizer_dir() / "tokenizer.json")),
    )
    world = build_world(seed=3, n_queries=40, docs_per_query=4)
    return encode_examples(world.train, encoder, labels), labels


def test_completion_nll_hand_computed():
    hidden = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # (N=2, H=2)
    head = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])  # (V=3, H)
    targets = torch.tensor([1, 2])
    # row 0 logits (0,1,0): -log(e/(e+2)); row 1 logits (0,0,2): -log(e^2/(e^2+2))
    e = torch.tensor(torch.e)
    n0 = -torch.log(e / (e + 2))
    n1 = -torch.log(e**2 / (e**2 + 2))
    full = completion_nll(hidden, head, targets, torch.tensor([3.0, 1.0]))
    assert full.item() == pytest.approx(((3 * n0 + n1) / 4).item(), rel=1e-6)
    # restricted to tokens {1, 2}: row 0 logits (1, 0), row 1 (0, 2)
    sub = completion_nll(hidden, head, targets, torch.ones(2), vocab_subset=torch.tensor([1, 2]))
    expected = (-torch.log(e / (e + 1)) - torch.log(e**2 / (e**2 + 1))) / 2
    assert sub.item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match="missing from vocab_subset"):
        completion_nll(hidden, head, torch.tensor([0, 2]), torch.ones(2), vocab_subset=torch.tensor([1, 2]))


def test_sequences_answer_first(setup):
    sequences, labels = setup
    for s in sequences:
        assert s.completion_ids[0] == labels.token_ids[labels.values.index(s.grade)]
        assert s.completion_ids[-1] == 151645  # <|im_end|> closes the turn


def test_shared_prefix_loss_equals_full_loss(setup):
    sequences, labels = setup
    model = build_tiny_qwen3(SMALL, seed=0).eval()
    chunk = sequences[:5]
    prefix = common_prefix(chunk)
    assert len(prefix) > 50  # the system turn with the guideline
    vocab = completion_vocab(sequences, labels)
    full = sft_loss(model, collate(chunk, PAD), vocab, 4.0)
    shared = sft_loss(model, collate(chunk, PAD, skip_prefix=len(prefix)), vocab, 4.0, torch.tensor(prefix))
    assert shared.item() == pytest.approx(full.item(), rel=1e-5)


def test_a_few_steps_move_every_trainable_parameter(setup):
    sequences, labels = setup
    model = build_tiny_qwen3(SMALL, seed=0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    config = SFTConfig(steps=3, batch_size=4, warmup_steps=1, learning_rate=1e-2)
    train_sft(model, sequences, labels, config, PAD)
    for name, p in model.named_parameters():
        if "embed_tokens" in name:
            used = completion_vocab(sequences, labels)
            assert not torch.equal(p[used], before[name][used]), name
        else:
            assert not torch.equal(p, before[name]), f"{name} did not move"


def test_loss_goes_down(setup):
    sequences, labels = setup
    model = build_tiny_qwen3(SMALL, seed=0)
    config = SFTConfig(steps=40, batch_size=8, warmup_steps=3, learning_rate=1e-2)
    result = train_sft(model, sequences, labels, config, PAD)
    assert sum(result.losses[-5:]) / 5 < 0.7 * sum(result.losses[:5]) / 5


def test_config_validates_itself():
    with pytest.raises(ValueError, match="warmup_steps"):
        SFTConfig(steps=10, warmup_steps=10)
    with pytest.raises(ValueError, match="learning_rate"):
        SFTConfig(learning_rate=5.0)


def test_training_is_deterministic(setup):
    sequences, labels = setup
    runs = []
    for _ in range(2):
        model = build_tiny_qwen3(SMALL, seed=1)
        runs.append(
            train_sft(model, sequences, labels, SFTConfig(steps=4, batch_size=4, warmup_steps=1, seed=1), PAD).losses
        )
    assert runs[0] == runs[1]


def test_gradient_checkpointing_trains_the_same_steps(sequences, small_spec, ctx):
    """Checkpointing recomputes activations; the losses are those of the run that keeps them."""
    config = SFTConfig(steps=3, batch_size=4, warmup_steps=1, learning_rate=1e-2, share_prefix=False)
    plain = train_sft(build_tiny_qwen3(small_spec, seed=0), sequences, ctx.labels, config, ctx.pad_id).losses
    checkpointed = replace(config, gradient_checkpointing=True)
    again = train_sft(build_tiny_qwen3(small_spec, seed=0), sequences, ctx.labels, checkpointed, ctx.pad_id).losses
    assert again == pytest.approx(plain, rel=1e-5)
    with pytest.raises(ValueError, match="share_prefix=False"):
        replace(config, share_prefix=True, gradient_checkpointing=True)
    with pytest.raises(ValueError, match="num_attention_heads"):
        replace(small_spec, hidden_size=33)


def _rows_while_training(model):
    """A progress callback that records the embedding's row count at every progress line."""
    rows: list[int] = []
    return rows, lambda _line: rows.append(model.get_input_embeddings().weight.shape[0])


def _same_weights(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_compact_vocabulary_is_on_by_default_and_trains_the_full_table_model(sequences, ctx, small_spec):
    """Bit-identical (measured: max loss and weight difference 0.0), and the table is full again afterwards."""
    config = SFTConfig(steps=6, batch_size=8, warmup_steps=2, learning_rate=1e-2, log_every=1)
    assert config.compact_vocab
    compact, full = build_tiny_qwen3(small_spec, seed=0), build_tiny_qwen3(small_spec, seed=0)
    rows, progress = _rows_while_training(compact)
    a = train_sft(compact, sequences, ctx.labels, config, ctx.pad_id, progress, vocab=ctx.vocab(sequences))
    full_rows, full_progress = _rows_while_training(full)
    off = replace(config, compact_vocab=False)
    b = train_sft(full, sequences, ctx.labels, off, ctx.pad_id, full_progress, vocab=ctx.vocab(sequences))
    assert 100 < max(rows) < 2000 and set(full_rows) == {QWEN3_EMBEDDING_ROWS}  # it really trained compact
    assert a.losses == b.losses
    assert _same_weights(compact, full)
    assert compact.get_input_embeddings().weight.shape[0] == compact.config.vocab_size == QWEN3_EMBEDDING_ROWS
    assert compact.get_output_embeddings().weight is compact.get_input_embeddings().weight
    assert compact.config.pad_token_id == ctx.pad_id


def test_the_full_table_is_back_when_training_fails(sequences, ctx, small_spec):
    model = build_tiny_qwen3(small_spec, seed=0)
    before = model.get_input_embeddings().weight.detach().clone()

    def boom(_line):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        train_sft(model, sequences, ctx.labels, SFTConfig(steps=3, batch_size=4, warmup_steps=1), ctx.pad_id, boom)
    weight = model.get_input_embeddings().weight
    assert weight.shape == before.shape and model.config.vocab_size == QWEN3_EMBEDDING_ROWS
    assert model.get_output_embeddings().weight is weight
    kept = completion_vocab(sequences, ctx.labels)
    assert not torch.equal(weight[kept], before[kept])  # the one step taken is in the full table


def test_compaction_is_skipped_with_a_log_line_where_it_would_not_be_the_same_run(sequences, ctx, small_spec, caplog):
    config = SFTConfig(steps=2, batch_size=4, warmup_steps=1, log_every=1)
    frozen = build_tiny_qwen3(small_spec, seed=0)
    frozen.get_input_embeddings().weight.requires_grad_(False)  # as under LoRA: the embedding does not train

    def plain_loss(model, batch, chunk, vocab, prefix):  # holds no ids, but cannot say so
        return sft_loss(model, batch, vocab, 4.0, prefix)

    cases = [
        (frozen, config, None, "the embedding does not train"),
        (build_tiny_qwen3(small_spec, seed=0), replace(config, restrict_vocab=False), None, "restrict_vocab=False"),
        (build_tiny_qwen3(small_spec, seed=0), config, plain_loss, "has no compacted(vocab)"),
    ]
    for model, cfg, loss_fn, reason in cases:
        rows, progress = _rows_while_training(model)
        with caplog.at_level(logging.INFO, logger="training.sft"):
            train_sft(model, sequences[:16], ctx.labels, cfg, ctx.pad_id, progress, loss_fn=loss_fn)
        assert set(rows) == {QWEN3_EMBEDDING_ROWS}, reason
        assert any("compact vocabulary: off" in r.message and reason in r.message for r in caplog.records), reason


def test_stages_through_one_trainer_equal_one_run_over_their_concatenated_batches(
    sequences, ctx, small_spec, monkeypatch
):
    """One AdamW and one schedule: two stages (the second with new tokens: the compact table grows) give the
    losses and weights of a single full-table run of all the steps on the same batch order (measured: equal)."""
    monkeypatch.setattr(  # batches in the order given, so the two runs see the same batches
        sft_module, "length_bucketed_batches", lambda s, b, rng: (list(s[i : i + b]) for i in range(0, len(s), b))
    )
    first, second = sequences[:40], sequences[-32:]
    assert {t for s in second for t in s.prompt_ids} - {t for s in first for t in s.prompt_ids + s.completion_ids}
    vocab = ctx.vocab(first + second)
    config = SFTConfig(steps=9, batch_size=8, warmup_steps=3, learning_rate=1e-2)
    one = build_tiny_qwen3(small_spec, seed=0)
    single = train_sft(one, first + second, ctx.labels, replace(config, compact_vocab=False), ctx.pad_id, vocab=vocab)

    staged = build_tiny_qwen3(small_spec, seed=0)
    trainer = SFTTrainer(staged, config, ctx.labels, ctx.pad_id)
    losses = trainer.train(first, 5, vocab=vocab).losses
    optimizer = trainer.optimizer
    assert staged.get_input_embeddings().weight.shape[0] == QWEN3_EMBEDDING_ROWS  # full between stages
    assert {int(state["step"]) for state in optimizer.state.values()} == {5}
    losses += trainer.train(second, 4, vocab=vocab).losses
    assert trainer.optimizer is optimizer and trainer.step == 9
    trainable = [p for p in staged.parameters() if p.requires_grad]
    assert len(optimizer.state) == len(trainable)  # the grown table took over the old one's state
    assert {int(state["step"]) for state in optimizer.state.values()} == {9}  # the step count kept rising
    assert losses == single.losses
    assert _same_weights(staged, one)
    with pytest.raises(ValueError, match="no steps to train"):
        trainer.train(first)  # the schedule is spent

    again = SFTTrainer(build_tiny_qwen3(small_spec, seed=0), config.with_steps(2), ctx.labels, ctx.pad_id)
    again.train(first, 1, vocab=vocab)
    weight = again._weight
    again.train(first[:8], 1, vocab=vocab)  # no new token: the same compact Parameter, its AdamW state with it
    assert again._weight is weight and int(again.optimizer.state[weight]["step"]) == 2


def test_grade_objective_labels_trains_and_bad_values_are_refused(sequences, ctx, small_spec):
    config = SFTConfig(steps=20, batch_size=8, warmup_steps=2, learning_rate=1e-2, grade_objective="labels")
    result = train_sft(build_tiny_qwen3(small_spec, seed=0), sequences, ctx.labels, config, ctx.pad_id)
    assert sum(result.losses[-3:]) / 3 < sum(result.losses[:3]) / 3
    with pytest.raises(ValueError, match="grade_objective must be one of"):
        SFTConfig(grade_objective="label")


def test_bf16_autocast_trains_float32_weights_close_to_the_fp32_run(setup):
    sequences, labels = setup
    config = SFTConfig(steps=30, batch_size=8, warmup_steps=3, learning_rate=1e-2, seed=2)
    fp32 = train_sft(build_tiny_qwen3(SMALL, seed=0), sequences, labels, config, PAD).losses
    model = build_tiny_qwen3(SMALL, seed=0)
    bf16 = train_sft(model, sequences, labels, replace(config, precision="bf16"), PAD).losses
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay float32
    assert bf16 != fp32  # the matmuls really ran in bfloat16
    assert sum(bf16[-5:]) / 5 < 0.7 * sum(bf16[:5]) / 5
    assert abs(sum(bf16[-5:]) - sum(fp32[-5:])) / sum(fp32[-5:]) < 0.1  # and learned like the fp32 run
    with pytest.raises(ValueError, match="precision must be one of"):
        SFTConfig(precision="fp16")
