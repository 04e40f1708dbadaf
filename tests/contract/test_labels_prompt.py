import pytest
from pydantic import ValidationError
from tokenizers import Tokenizer
from transformers import AutoTokenizer

from afrl.labels import LabelSet
from afrl.prompt import PromptEncoder, PromptTemplate
from afrl.tokenizer_files import qwen3_tokenizer_dir

GUIDE = "Grade how well the document answers the product search query, 0 to 4."


@pytest.fixture(scope="module")
def hf_tokenizer():
    return AutoTokenizer.from_pretrained(qwen3_tokenizer_dir())


@pytest.fixture(scope="module")
def template(hf_tokenizer):
    return PromptTemplate.from_chat_template(hf_tokenizer, GUIDE)


def test_label_set_from_real_qwen3_tokenizer(hf_tokenizer):
    labels = LabelSet.from_tokenizer(hf_tokenizer)
    assert labels.values == [0, 1, 2, 3, 4]
    assert labels.token_ids == [15, 16, 17, 18, 19]  # Qwen3 digits are single tokens


def test_multi_token_grade_is_refused(hf_tokenizer):
    with pytest.raises(ValueError, match="single vocabulary token"):
        LabelSet.from_tokenizer(hf_tokenizer, values=[0, 10])


def test_label_set_validation():
    with pytest.raises(ValidationError, match="ascending"):
        LabelSet(values=[1, 0], tokens=["1", "0"], token_ids=[16, 15])
    with pytest.raises(ValidationError, match="distinct"):
        LabelSet(values=[0, 1], tokens=["0", "1"], token_ids=[15, 15])


def test_template_matches_chat_template_thinking_off(hf_tokenizer, template):
    q, d = "samsung galaxy s23 case", "Spigen case for Galaxy S23, black"
    expected = hf_tokenizer.apply_chat_template(
        [{"role": "system", "content": GUIDE}, {"role": "user", "content": f"Query: {q}\nDocument: {d}"}],
        tokenize=False,
        add_generation_prompt=True,
        enable_thinking=False,
    )
    assert template.full_text(q, d) == expected
    assert expected.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert template.prefix_text(q).endswith(f"Query: {q}\n")
    template.check()


@pytest.mark.parametrize(
    "query,document",
    [
        ("kettle 1.7 l", "Philips kettle 1.7L stainless"),
        ("phone case  ", "Document-like {document} text with {query} braces"),
        ("shoes\n", "\n leading newline doc"),
        ("500ml bottle", "x" * 50),
    ],
)
def test_piecewise_tokenization_equals_joint(template, query, document):
    tok = Tokenizer.from_file(str(qwen3_tokenizer_dir() / "tokenizer.json"))
    enc = PromptEncoder(template, tok)
    (pair,) = enc.encode(query, [document])
    joint = tok.encode(template.full_text(query, document), add_special_tokens=False).ids
    assert pair.input_ids == joint
    assert not pair.truncated


def test_truncation_keeps_suffix(template):
    tok = Tokenizer.from_file(str(qwen3_tokenizer_dir() / "tokenizer.json"))
    enc = PromptEncoder(template, tok, max_document_tokens=8)
    (pair,) = enc.encode("q", ["word " * 100])
    assert pair.truncated
    assert len(pair.document_ids) == 8 + len(enc.suffix_ids)
    assert pair.document_ids[-len(enc.suffix_ids) :] == enc.suffix_ids


def test_guideline_hash_checked(template):
    bad = template.model_copy(update={"guideline": GUIDE + " changed"})
    with pytest.raises(ValueError, match="sha256"):
        bad.check()
