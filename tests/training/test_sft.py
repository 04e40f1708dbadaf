from dataclasses import replace

import pytest
import torch
from tokenizers import Tokenizer
from transformers import AutoTokenizer

from afrl.labels import LabelSet
from afrl.prompt import PromptEncoder, PromptTemplate
from afrl.tokenizer_files import qwen3_tokenizer_dir
from training.losses import completion_nll
from training.model_factory import TinyQwen3Spec, build_tiny_qwen3
from training.sft import SFTConfig, sft_loss, train_sft
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
