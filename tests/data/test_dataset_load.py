"""Reading datasets: defaults of optional fields, splitting by query, the report, the world's round trip, bookstore."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from afrl.dataset import (
    Dataset,
    DatasetLabels,
    Example,
    load_dataset,
    read_jsonl,
    split_by_query,
    write_dataset,
)
from training.world import build_world, guideline_text
from training.world.explanation import parse_explanation

ROOT = Path(__file__).resolve().parents[2]
BOOKSTORE = Path(__file__).parent / "bookstore"


def write(folder: Path, name: str, rows: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def rows_of(n_queries: int, docs: int = 3) -> list[dict]:
    return [
        {"query": f"query {q}", "document": f"doc {q}-{d}", "grade": (q + d) % 5}
        for q in range(n_queries)
        for d in range(docs)
    ]


def test_optional_fields_take_their_defaults(tmp_path):
    file = write(tmp_path, "rows.jsonl", [{"query": "dune", "document": "Dune, paperback", "grade": 4}]) / "rows.jsonl"
    (ex,) = read_jsonl(file)
    assert ex == Example("dune", "dune", "Dune, paperback", 4, (), (), "", False)
    assert not ex.has_explanation and not ex.has_rule_ids


def test_a_byte_order_mark_and_blank_lines_are_no_rows(tmp_path):
    file = tmp_path / "rows.jsonl"
    file.write_bytes(b"\xef\xbb\xbf" + json.dumps(rows_of(1, 1)[0]).encode() + b"\n\n   \n")
    assert [e.query for e in read_jsonl(file)] == ["query 0"]


def test_rule_ids_in_a_file_are_the_deciding_rules(tmp_path):
    rows = [
        {
            "query_id": 7,
            "query": "q",
            "document": "a",
            "grade": 2,
            "rule_ids": ["R3"],
            "explanation": "x",
            "long_tail": True,
        },
        {"query": "q", "document": "b", "grade": 3, "rule_ids": ["R7"], "fired_rule_ids": ["R7", "R1"]},
        # the world's columns before afrl.dataset: rule_ids were every fired rule
        {"query": "q", "document": "c", "grade": 2, "rule_ids": ["R5", "R3"], "decisive_rule_ids": ["R3"]},
    ]
    a, b, c = read_jsonl(write(tmp_path, "rows.jsonl", rows) / "rows.jsonl")
    assert (a.query_id, a.decisive_rule_ids, a.rule_ids, a.long_tail, a.has_explanation) == (
        "7",
        ("R3",),
        ("R3",),
        True,
        True,
    )
    assert (b.decisive_rule_ids, b.rule_ids) == (("R7",), ("R7", "R1"))
    assert (c.decisive_rule_ids, c.rule_ids) == (("R3",), ("R5", "R3"))


def test_missing_splits_are_split_off_by_query_deterministically(tmp_path):
    rows = rows_of(40)
    ds = load_dataset(write(tmp_path / "a", "train.jsonl", rows))
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    again = load_dataset(write(tmp_path / "b", "train.jsonl", shuffled))
    ids = {s: {e.query_id for e in ds.split(s)} for s in ("train", "dev", "test")}
    assert len(ids["dev"]) == len(ids["test"]) == 4 and len(ids["train"]) == 32
    assert not (ids["train"] & ids["dev"] or ids["train"] & ids["test"] or ids["dev"] & ids["test"])
    assert all(len([e for e in ds.all_rows() if e.query_id == q]) == 3 for q in ids["dev"])  # whole queries
    for s in ("train", "dev", "test"):  # the split depends on the query ids, not on the row order
        assert ids[s] == {e.query_id for e in again.split(s)}
    assert ds.report.split_off == {"dev": "split off train.jsonl by query", "test": "split off train.jsonl by query"}
    assert any("dev: 12 rows, 4 queries, split off train.jsonl by query" in line for line in ds.report.summary_lines())


def test_given_splits_are_kept_and_only_the_missing_one_is_split_off(tmp_path):
    folder = write(tmp_path, "train.jsonl", rows_of(20))
    write(folder, "test.jsonl", [{"query": "held out", "document": "d", "grade": 1}])
    ds = load_dataset(folder)
    assert [e.query for e in ds.test] == ["held out"]
    assert set(ds.report.split_off) == {"dev"} and ds.report.files == {"train.jsonl": 60, "test.jsonl": 1}
    assert ds.report.splits == {"train": 54, "dev": 6, "test": 1}


def test_split_by_query_keeps_row_order_within_a_split():
    exs = [Example(f"q{i % 10}", f"query {i % 10}", f"doc {i}", 0) for i in range(50)]
    parts = split_by_query(exs, {"dev": 0.2})
    assert set(parts) == {"train", "dev"} and len({e.query_id for e in parts["dev"]}) == 2
    assert parts["train"] == [e for e in exs if e in parts["train"]]


def test_the_report_counts_duplicates_missing_explanations_and_grades(tmp_path):
    rows = rows_of(10)
    rows.append({**rows[0], "grade": 3})  # the same pair again, another grade
    rows.append(dict(rows[1]))
    rows[2] = {**rows[2], "explanation": "[Query] q", "rule_ids": ["R2"], "extra": 1}
    folder = write(tmp_path, "train.jsonl", rows)
    (folder / "guideline.md").write_text("\n  Grade the pair.\n\n")
    report = load_dataset(folder).report
    assert report.duplicates["rows"] == 2 and report.duplicates["conflicting_grades"] == 1
    assert report.duplicates["first"][0] == "train.jsonl:31 repeats train.jsonl:1"
    assert report.rows_without_explanation == 31 and report.rows_without_rule_ids == 31
    assert report.ignored_fields == {"extra": 1} and report.guideline == "guideline.md"
    assert sum(sum(g.values()) for g in report.grades.values()) == 32
    assert set(report.grades["train"]) == {0, 1, 2, 3, 4}
    json.dumps(report.to_dict())  # JSON-ready for eval.json
    assert load_dataset(folder).guideline == "Grade the pair."


def test_a_label_set_of_the_data_and_of_the_model(tmp_path):
    folder = write(tmp_path, "train.jsonl", [{**r, "grade": r["grade"] % 3} for r in rows_of(10)])
    (folder / "labels.json").write_text(json.dumps({"values": [0, 1, 2], "meanings": {"2": "good", "0": "bad"}}))
    ds = load_dataset(folder)
    assert ds.labels == DatasetLabels(values=[0, 1, 2], meanings={2: "good", 0: "bad"})
    assert ds.report.labels == "0..2" and load_dataset(folder, labels=[0, 1, 2]).labels.meanings[2] == "good"
    (folder / "labels.json").unlink()
    assert load_dataset(folder, labels=[0, 1, 2]).labels.values == [0, 1, 2]


def test_written_datasets_read_back_as_they_were(tmp_path):
    world = build_world(seed=5, n_queries=30, docs_per_query=4)
    write_dataset(tmp_path, {"train": world.train, "dev": world.dev, "test": world.test}, guideline_text())
    ds = load_dataset(tmp_path)
    assert (ds.train, ds.dev, ds.test) == (world.train, world.dev, world.test)
    assert ds.guideline == guideline_text() and not ds.report.split_off


def test_train_data_cli_writes_the_world_in_the_dataset_format_and_it_reads_back(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "afrl.cli", "train", "data", "--out", str(tmp_path), "--queries", "40", "--seed", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "dev.jsonl",
        "guideline.md",
        "labels.json",
        "test.jsonl",
        "train.jsonl",
    ]
    first = json.loads((tmp_path / "train.jsonl").read_text().splitlines()[0])
    world = build_world(seed=2, n_queries=40)
    assert first["rule_ids"] == list(world.train[0].decisive_rule_ids)  # a file's rule_ids are the deciding rules
    ds = load_dataset(tmp_path)
    assert (ds.train, ds.dev, ds.test) == (world.train, world.dev, world.test)
    assert ds.guideline == guideline_text()
    assert ds.labels.values == [0, 1, 2, 3, 4] and ds.labels.meanings[0] == "irrelevant"
    assert ds.report.rows_without_rule_ids == 0 and ds.report.duplicates["rows"] == 0


# the hand-written bookstore dataset ------------------------------------------


@pytest.fixture(scope="module")
def bookstore() -> Dataset:
    return load_dataset(BOOKSTORE)


def test_bookstore_loads_with_dev_split_off(bookstore):
    r = bookstore.report
    assert r.files == {"train.jsonl": 160, "test.jsonl": 40} and r.rows == 200
    assert set(r.split_off) == {"dev"} and r.splits["dev"] > 0
    assert r.guideline == "guideline.md" and r.duplicates["rows"] == 0
    assert 50 < r.rows_without_explanation < 150  # some rows explained, many not
    assert all(min(grades.values()) > 0 for grades in (r.grades["train"], r.grades["test"]))  # every grade present


def test_bookstore_labels_follow_its_guideline(bookstore):
    """Explanations parse, conclude with the row's grade and cite a deciding rule; every rule is the guideline's."""
    guideline_rules = {
        m.group(1): int(m.group(2)) for m in re.finditer(r"^(R\d+) (\d):", bookstore.guideline or "", re.M)
    }
    assert sorted(guideline_rules, key=lambda r: int(r[1:])) == [f"R{i}" for i in range(1, 17)]
    rows = bookstore.all_rows()
    for ex in rows:
        assert set(ex.rule_ids) <= set(guideline_rules), ex
        if ex.has_explanation:
            parsed = parse_explanation(ex.explanation)
            assert parsed is not None and parsed.valid, (ex.query, ex.document, parsed)
            assert parsed.grade == ex.grade and parsed.cited_rule_ids[0] in ex.decisive_rule_ids
            assert set(parsed.cited_rule_ids) <= set(ex.rule_ids)
        # the lowest grade among the deciding rules is the grade, unless an overriding rule (R12, R13) decided
        effects = [guideline_rules[r] for r in ex.decisive_rule_ids]
        if effects and not {"R12", "R13"} & set(ex.decisive_rule_ids):
            assert min(effects) == ex.grade, ex
    assert sum(e.long_tail for e in rows) > 20 and sum(e.query_id == e.query for e in rows) == 40
