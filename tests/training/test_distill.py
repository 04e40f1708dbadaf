"""Distillation: teacher outputs -> student sequences, the KD loss by hand, and real student steps."""

import math
from dataclasses import replace

import pytest
import torch

from training.distill import DistillConfig, KDSequence, distill_loss, run_distillation, student_sequences
from training.losses import label_kl
from training.model_factory import build_tiny_qwen3
from training.sft import SFTConfig, completion_hidden, sft_loss, train_sft
from training.sft_data import collate
from training.teachers import CheckpointTeacher, EndpointTeacher, TeacherOutput, endpoint_label_probs


def test_teacher_outputs_become_student_sequences(ctx, small_world):
    ex = small_world.train[0]
    pairs = [(ex.query, ex.document)] * 3
    outputs = [
        TeacherOutput(f"{ex.grade}\n{ex.explanation}", True, (0.2,) * 5),
        TeacherOutput("[Query] no grade first", True, None),
        TeacherOutput(f"{ex.grade}\n[Query] cut", False, None),
    ]
    kept, dropped = student_sequences(pairs, outputs, ctx)
    assert dropped == {"no grade first": 1, "unfinished": 1}
    reference = ctx.encode([ex])[0]
    assert kept[0].prompt_ids == reference.prompt_ids and kept[0].completion_ids == reference.completion_ids
    assert kept[0].label_probs == (0.2,) * 5
    assert len(student_sequences(pairs, outputs, ctx, keep_unfinished=True)[0]) == 2


def test_distill_loss_is_sequence_nll_plus_weighted_label_kl(ctx, sequences, vocab, small_spec):
    model = build_tiny_qwen3(small_spec, seed=0)
    probs = (0.1, 0.2, 0.3, 0.3, 0.1)
    chunk = [
        KDSequence(s.prompt_ids, s.completion_ids, s.grade, probs if i % 2 else None)
        for i, s in enumerate(sequences[:4])
    ]
    batch = collate(chunk, ctx.pad_id)
    config = DistillConfig(kd_weight=0.7, sft=SFTConfig(grade_weight=3.0))
    with torch.no_grad():
        total = distill_loss(config, ctx.labels.token_ids)(model, batch, chunk, vocab, None)
        nll = sft_loss(model, batch, vocab, 3.0)
        hidden = completion_hidden(model, batch)[batch.is_grade][[1, 3]]
        student = hidden @ model.get_output_embeddings().weight[ctx.labels.token_ids].T
        kl = label_kl(student, torch.tensor([probs, probs]))
    assert total.item() == pytest.approx((nll + 0.7 * kl).item(), rel=1e-5)


def test_distill_loss_adds_the_gold_grade_where_a_prompt_has_one(ctx, sequences, vocab, small_spec):
    model = build_tiny_qwen3(small_spec, seed=0)
    chunk = [
        KDSequence(s.prompt_ids, s.completion_ids, s.grade, None, 2 if i < 2 else None)
        for i, s in enumerate(sequences[:4])
    ]  # gold grade index 2 on the first two rows only
    batch = collate(chunk, ctx.pad_id)
    labels = torch.tensor(ctx.labels.token_ids)
    with torch.no_grad():
        without = distill_loss(DistillConfig(gold_weight=0.0), ctx.labels.token_ids)(model, batch, chunk, vocab, None)
        total = distill_loss(DistillConfig(gold_weight=0.5), ctx.labels.token_ids)(model, batch, chunk, vocab, None)
        hidden = completion_hidden(model, batch)[batch.is_grade][:2]
        logits = hidden @ model.get_output_embeddings().weight[labels].T
        ce = torch.nn.functional.cross_entropy(logits, torch.tensor([2, 2]))
    assert total.item() == pytest.approx((without + 0.5 * ce).item(), rel=1e-5)
    # the gold grade travels from the pairs to the sequences as its index in the label set
    ex = sequences[0]
    out = TeacherOutput(f"{ex.grade}\n[Query] x", True, None)
    kept, _ = student_sequences([("q", "d")], [out], ctx, gold=[ctx.labels.values[3]])
    assert kept[0].gold == 3


def test_endpoint_teacher_reads_text_and_first_token_logprobs(ctx):
    top = [{"token": str(g), "logprob": math.log(p)} for g, p in enumerate((0.05, 0.05, 0.1, 0.6, 0.1))]
    top.append({"token": "\n", "logprob": math.log(0.1)})
    calls = []

    def post(url, payload, headers):
        calls.append((url, payload))
        return {
            "choices": [
                {
                    "message": {"content": "3\n[Query] x"},
                    "finish_reason": "stop",
                    "logprobs": {"content": [{"token": "3", "logprob": math.log(0.6), "top_logprobs": top}]},
                }
            ]
        }

    teacher = EndpointTeacher("http://vllm:8000/v1/", "qwen3-32b-afrl", ctx, post=post)
    out = teacher.outputs([("kettle", "Breville kettle")])[0]
    assert calls[0][0] == "http://vllm:8000/v1/chat/completions"
    assert calls[0][1]["messages"][1]["content"] == "Query: kettle\nDocument: Breville kettle"
    assert out.text == "3\n[Query] x" and out.finished
    assert out.label_probs == pytest.approx((0.05 / 0.9, 0.05 / 0.9, 0.1 / 0.9, 0.6 / 0.9, 0.1 / 0.9))
    assert endpoint_label_probs(None, ctx.labels.tokens) is None
    assert endpoint_label_probs({"content": [{"top_logprobs": top[:3]}]}, ctx.labels.tokens) is None


def test_student_learns_from_a_checkpoint_teacher(ctx, small_world, vocab, warm_model, small_spec):
    student = build_tiny_qwen3(small_spec, seed=5)
    before = {n: p.detach().clone() for n, p in student.named_parameters()}
    teacher = CheckpointTeacher(warm_model, ctx, vocab, max_new_tokens=90)
    pairs = [(e.query, e.document) for e in small_world.train[:12]]
    config = DistillConfig(
        student=small_spec,
        sft=SFTConfig(steps=3, batch_size=4, warmup_steps=1, learning_rate=1e-2),
        keep_unfinished=True,
    )
    result = run_distillation(teacher, student, pairs, ctx, config, vocab)
    assert result.sequences == 12 - result.dropped["no grade first"] > 0
    assert all(math.isfinite(x) for x in result.losses)
    for name, p in student.named_parameters():
        if "embed_tokens" not in name:
            assert not torch.equal(p, before[name]), f"{name} did not move"


def test_config_validates_itself():
    with pytest.raises(ValueError, match="both"):
        DistillConfig(teacher_base_url="http://x/v1")
    with pytest.raises(ValueError, match="kd_weight"):
        DistillConfig(kd_weight=-1)


@pytest.mark.parametrize("objective", ["vocab", "labels"])
def test_distillation_trains_the_same_student_on_the_compact_table(ctx, sequences, vocab, small_spec, objective):
    """The KD loss reads label rows by id: `compacted` translates them, and the student comes out the same
    (measured: losses and weights bit-identical, compact or full table)."""
    probs = (0.1, 0.2, 0.3, 0.3, 0.1)
    chunk = [
        KDSequence(s.prompt_ids, s.completion_ids, s.grade, probs if i % 2 else None) for i, s in enumerate(sequences)
    ]
    sft = SFTConfig(steps=6, batch_size=8, warmup_steps=2, learning_rate=1e-2, grade_objective=objective, log_every=1)
    config = DistillConfig(kd_weight=0.7, sft=sft)
    runs = {}
    for compact in (True, False):
        student = build_tiny_qwen3(small_spec, seed=0)
        rows: list[int] = []
        losses = train_sft(
            student,
            chunk,
            ctx.labels,
            replace(sft, compact_vocab=compact),
            ctx.pad_id,
            lambda _line, m=student, r=rows: r.append(m.get_input_embeddings().weight.shape[0]),
            loss_fn=distill_loss(config, ctx.labels.token_ids),
            vocab=vocab,
        ).losses
        runs[compact] = (losses, student, max(rows))
    assert runs[True][2] < 2000 < runs[False][2]  # the first run really trained on the compact table
    assert runs[True][0] == runs[False][0]
    for a, b in zip(runs[True][1].state_dict().values(), runs[False][1].state_dict().values(), strict=True):
        assert torch.equal(a, b)
