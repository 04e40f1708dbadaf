"""The llama.cpp row of `afrl bench compare`: prefix reuse evaluates only what a pair adds, and the logits are
those of the whole prompt; the GGUF conversion is cached by checkpoint hash and fails clearly.

llama-cpp-python is not installed in CI (it builds llama.cpp from source), so the path runs here on a fake
`llama_cpp` module that behaves like its `Llama` (a context holding `input_ids[:n_tokens]`, `eval` extending it)
and returns logits that depend on every held token: a pair scored on a wrongly reused cache gets other logits.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import sys
import types

import numpy as np
import pytest

from afrl.prompt import PromptEncoder, PromptTemplate
from afrl.tokenizer_files import qwen3_tokenizer_dir
from bench.compare.inputs import CompareInputs
from bench.compare.llama_cpp_path import GGUF_NAME, SOURCE_FILE, common_prefix_length, convert_gguf, llama_cpp_call
from service.engine import guideline_ids

VOCABULARY = 151_936


def context_logit(held: list[int], label: int) -> float:
    """The fake model's logit of `label` after the context `held`: changes with any held token."""
    return float(sum((i + 1) * t for i, t in enumerate(held)) % 9973) + 0.5 * label


class FakeLlama:
    instances: list[FakeLlama] = []

    def __init__(self, model_path: str, n_ctx: int, **_):
        self.input_ids = np.zeros(n_ctx, dtype=np.intc)
        self.n_tokens = 0
        self.evaluated: list[int] = []  # tokens per eval call
        self.logits = (ctypes.c_float * VOCABULARY)()
        self.ctx = self
        self.closed = False
        FakeLlama.instances.append(self)

    def n_vocab(self) -> int:
        return VOCABULARY

    def eval(self, tokens) -> None:
        assert len(tokens) > 0 and self.n_tokens + len(tokens) <= len(self.input_ids)
        self.input_ids[self.n_tokens : self.n_tokens + len(tokens)] = tokens
        self.n_tokens += len(tokens)
        self.evaluated.append(len(tokens))
        held = self.input_ids[: self.n_tokens].tolist()
        for label in range(5):
            self.logits[LABEL_IDS[label]] = context_logit(held, label)

    def close(self) -> None:
        self.closed = True


LABEL_IDS = [15, 16, 17, 18, 19]  # Qwen3's "0".."4"


@pytest.fixture
def fake_llama_cpp(monkeypatch):
    module = types.ModuleType("llama_cpp")
    module.Llama = FakeLlama
    module.llama_get_logits_ith = lambda ctx, i: ctypes.cast(ctx.logits, ctypes.POINTER(ctypes.c_float))
    monkeypatch.setitem(sys.modules, "llama_cpp", module)
    FakeLlama.instances.clear()
    return module


@pytest.fixture(scope="module")
def inputs() -> CompareInputs:
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    folder = qwen3_tokenizer_dir()
    template = PromptTemplate.from_chat_template(AutoTokenizer.from_pretrained(folder), "Grade the document 0-4.")
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    return CompareInputs(
        query="white samsung galaxy buds2 earbuds",
        documents=["Samsung Galaxy Buds2, White.", "Sony WF-1000XM4 Earbuds.", "Comply Ear Tips, Pack of 6."],
        template=template,
        encoder=PromptEncoder(template, tokenizer),
        label_token_ids=LABEL_IDS,
        label_values=[0, 1, 2, 3, 4],
        pad_id=0,
    )


def test_common_prefix_length():
    assert common_prefix_length([1, 2, 3], [1, 2, 4, 5]) == 2
    assert common_prefix_length([], [1]) == 0
    assert common_prefix_length([1, 2, 3], [1, 2]) == 2
    assert common_prefix_length(np.array([7, 8]), [7, 8, 9]) == 2


def test_pairs_reuse_the_query_prefix_within_a_request_and_only_the_guideline_across(fake_llama_cpp, inputs, tmp_path):
    pairs = inputs.encoder.encode(inputs.query, inputs.documents)
    prefix, guideline = len(pairs[0].prefix_ids), len(guideline_ids(inputs.encoder))
    assert guideline < prefix
    call, close = llama_cpp_call(tmp_path / GGUF_NAME, inputs, threads=2)
    llm = FakeLlama.instances[-1]
    expected = np.array([[context_logit(p.input_ids, label) for label in range(5)] for p in pairs])
    for request in range(2):
        llm.evaluated.clear()
        np.testing.assert_array_equal(call(), expected.astype(np.float32))
        first = len(pairs[0].input_ids) - (0 if request == 0 else guideline)  # the guideline stays cached
        shared = [len(os.path.commonprefix([a.input_ids, b.input_ids])) for a, b in zip(pairs, pairs[1:], strict=False)]
        assert min(shared) >= prefix  # every later pair reuses at least the guideline and the query
        assert llm.evaluated == [first] + [len(p.input_ids) - n for p, n in zip(pairs[1:], shared, strict=True)]
    assert len(llm.input_ids) >= max(len(p.input_ids) for p in pairs)  # the context holds the longest prompt
    close()
    assert llm.closed


def test_a_pair_that_is_a_prefix_of_the_held_context_still_evaluates_its_last_token(fake_llama_cpp, inputs, tmp_path):
    same = dataclasses.replace(inputs, documents=[inputs.documents[0]] * 2)
    call, _ = llama_cpp_call(tmp_path / GGUF_NAME, same, threads=1)
    llm = FakeLlama.instances[-1]
    out = call()
    np.testing.assert_array_equal(out[0], out[1])
    assert llm.evaluated[1] == 1  # the same prompt again: only its last token, for the logits


def test_convert_gguf_is_cached_by_checkpoint_hash_and_names_a_missing_converter(tmp_path):
    folder = tmp_path / "gguf"
    folder.mkdir()
    (folder / GGUF_NAME).write_bytes(b"GGUF")
    (folder / SOURCE_FILE).write_text(json.dumps({"sha256": "abc", "outtype": "q8_0"}))
    assert convert_gguf(tmp_path / "ckpt", "abc", tmp_path / "absent.py", folder) == (folder / GGUF_NAME, 0.0)
    with pytest.raises(FileNotFoundError, match="convert_hf_to_gguf.py"):
        convert_gguf(tmp_path / "ckpt", "other", tmp_path / "absent.py", folder)
    assert (folder / GGUF_NAME).is_file()  # a failed call leaves the cached file as it was


def test_convert_gguf_reports_the_converters_error(tmp_path):
    converter = tmp_path / "convert_hf_to_gguf.py"
    converter.write_text("import sys\nsys.exit('no such model type: qwen9')\n")
    with pytest.raises(RuntimeError, match="no such model type: qwen9"):
        convert_gguf(tmp_path / "ckpt", "abc", converter, tmp_path / "gguf")


def test_the_converter_runs_with_its_own_gguf_package_and_the_result_is_cached(tmp_path, monkeypatch):
    """NO_LOCAL_GGUF, set at all, makes llama.cpp's converter import the installed gguf package instead of the
    gguf-py beside it (an older one lacks the converter's newer architectures): it must not reach the converter."""
    monkeypatch.setenv("NO_LOCAL_GGUF", "1")
    converter = tmp_path / "convert_hf_to_gguf.py"
    converter.write_text(
        "import os, sys\n"
        "if 'NO_LOCAL_GGUF' in os.environ: sys.exit('NO_LOCAL_GGUF reached the converter')\n"
        "assert sys.argv[2:4] == ['--outtype', 'q8_0']\n"
        "open(sys.argv[sys.argv.index('--outfile') + 1], 'wb').write(b'GGUF')\n"
    )
    gguf, seconds = convert_gguf(tmp_path / "ckpt", "abc", converter, tmp_path / "gguf")
    assert gguf.read_bytes() == b"GGUF" and seconds >= 0
    converter.unlink()  # a second call finds the GGUF of the same checkpoint and runs nothing
    assert convert_gguf(tmp_path / "ckpt", "abc", converter, tmp_path / "gguf") == (gguf, 0.0)
