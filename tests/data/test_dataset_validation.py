"""Bad data stops `afrl eval` before any model loads: exit 1, one line per bad row naming file:line, no traceback.

The model folder is a checkpoint's afrl.json alone: the data is read and checked first, so nothing
else of a checkpoint is needed to see the refusal (and a real one would not be loaded either).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from afrl.dataset import MAX_PROBLEMS_SHOWN, MAX_ROW_BYTES, DatasetError, load_dataset

ROOT = Path(__file__).resolve().parents[2]
GOOD = {"query": "dune paperback", "document": "Dune by Frank Herbert. Paperback.", "grade": 4}


def afrl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "afrl.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    (folder / "afrl.json").write_text(json.dumps({"guideline": "Grade 0-4.", "label_values": [0, 1, 2, 3, 4]}))
    return folder


def write_rows(folder: Path, lines: list[str], name: str = "train.jsonl") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return folder


def good(**changes) -> str:
    row = {**GOOD, **changes}
    return json.dumps({k: v for k, v in row.items() if v is not _DROP})


_DROP = object()

CASES = {
    "missing field": (good(document=_DROP), "train.jsonl:2: missing field 'document'"),
    "grade outside the label set": (good(grade=7), "train.jsonl:2: grade 7 is not in the label set 0..4"),
    "non-string document": (good(document=["a", "b"]), "train.jsonl:2: document must be a string, got a list"),
    "invalid JSON": ('{"query": "dune", "document": "x", "grade": 4', "train.jsonl:2: invalid JSON"),
    "empty query": (good(query="  "), "train.jsonl:2: query is an empty string"),
    "bool as grade": (good(grade=True), "train.jsonl:2: grade must be an integer of the label set 0..4, got true"),
    "float grade": (good(grade=3.0), "train.jsonl:2: grade must be an integer of the label set 0..4, got float 3.0"),
    "row not an object": ("[1, 2, 3]", "train.jsonl:2: a row is a JSON object, got a list"),
    "rule id not citable": (good(rule_ids=["price-rule"]), "train.jsonl:2: rule_ids holds string 'price-rule'"),
    "JSON nested too deeply": ("[" * 100_000, "train.jsonl:2: invalid JSON: nested too deeply"),
    "unpaired surrogate": (good(document="x \ud800"), "train.jsonl:2: document holds an unpaired UTF-16 surrogate"),
    "long_tail not a bool": (good(long_tail="yes"), "train.jsonl:2: long_tail must be true or false"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_row_stops_eval_with_its_file_and_line(case, checkpoint, tmp_path):
    bad, expected = CASES[case]
    data = write_rows(tmp_path / "data", [good(), bad, good(document="another document")])
    r = afrl("eval", str(checkpoint), "--data", str(data))
    assert r.returncode == 1, r.stderr
    assert expected in r.stderr
    assert "1 problem in the data" in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_an_empty_file_is_refused(checkpoint, tmp_path):
    data = write_rows(tmp_path / "data", [])
    r = afrl("eval", str(checkpoint), "--data", str(data))
    assert r.returncode == 1
    assert "train.jsonl: no rows (the file is empty)" in r.stderr and "Traceback" not in r.stderr


def test_a_ten_megabyte_document_is_refused_quickly_with_the_limit(checkpoint, tmp_path):
    data = write_rows(tmp_path / "data", [good(), good(document="word " * (2 * 1024 * 1024)), good(query="q2")])
    started = time.perf_counter()
    r = afrl("eval", str(checkpoint), "--data", str(data))
    assert time.perf_counter() - started < 30
    assert r.returncode == 1
    assert "train.jsonl:2: row is 10,485,8" in r.stderr
    assert f"over the limit of {MAX_ROW_BYTES:,} bytes per row" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_single_file_names_itself(checkpoint, tmp_path):
    file = tmp_path / "pairs.jsonl"
    file.write_text(good() + "\n" + good(grade=5) + "\n")
    r = afrl("eval", str(checkpoint), "--data", str(file))
    assert r.returncode == 1
    assert "pairs.jsonl:2: grade 5 is not in the label set 0..4" in r.stderr and "Traceback" not in r.stderr


def test_every_row_of_every_file_is_checked_and_the_first_20_are_listed(checkpoint, tmp_path):
    rows = [good(grade=9) if i % 2 else good(query=f"q{i}") for i in range(60)]  # 30 bad rows
    data = write_rows(tmp_path / "data", rows)
    write_rows(data, [good(), "not json"], "test.jsonl")
    r = afrl("eval", str(checkpoint), "--data", str(data))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "31 problems in the data" in r.stderr
    listed = [line for line in r.stderr.splitlines() if ".jsonl:" in line]
    assert len(listed) == MAX_PROBLEMS_SHOWN and listed[0].startswith("train.jsonl:2: grade 9")
    assert "... and 11 more" in r.stderr
    with pytest.raises(DatasetError) as e:  # the exception behind it holds every problem
        load_dataset(data)
    assert (
        len(e.value.problems) == 31 and e.value.problems[-1] == "test.jsonl:2: invalid JSON: Expecting value (column 1)"
    )


def test_labels_json_that_disagrees_with_the_model_is_refused(checkpoint, tmp_path):
    data = write_rows(tmp_path / "data", [good(grade=2)])
    (data / "labels.json").write_text(json.dumps({"values": [0, 1, 2]}))
    r = afrl("eval", str(checkpoint), "--data", str(data))
    assert r.returncode == 1
    assert "labels.json: the data's grades are 0..2, the model's label set is 0..4" in r.stderr


def test_a_folder_without_train_jsonl_and_a_missing_path(checkpoint, tmp_path):
    (tmp_path / "empty").mkdir()
    r = afrl("eval", str(checkpoint), "--data", str(tmp_path / "empty"))
    assert r.returncode == 1 and "no train.jsonl" in r.stderr and "Traceback" not in r.stderr
    r = afrl("eval", str(checkpoint), "--data", str(tmp_path / "nowhere"))
    assert r.returncode == 1 and "neither a split" in r.stderr and "Traceback" not in r.stderr


def test_too_few_queries_to_split_off_dev_and_test(tmp_path):
    data = write_rows(tmp_path / "data", [good(), good(document="other")])  # one query
    with pytest.raises(DatasetError, match="1 queries are too few to split off dev and test by query; give dev"):
        load_dataset(data)


def test_labels_json_itself_is_checked(tmp_path):
    data = write_rows(tmp_path / "data", [good()])
    (data / "labels.json").write_text(json.dumps({"values": [0, True, 2]}))
    with pytest.raises(DatasetError, match=r"labels.json: values.1: Input should be a valid integer"):
        load_dataset(data)
    (data / "labels.json").write_text(json.dumps({"values": [2, 1]}))
    with pytest.raises(DatasetError, match="strictly ascending"):
        load_dataset(data)
