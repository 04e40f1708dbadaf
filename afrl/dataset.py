"""Relevance datasets: the one reader, validator and writer of the data every command reads (DESIGN section 10).

    ds = load_dataset("data/")           # train.jsonl [dev.jsonl test.jsonl] guideline.md [labels.json], or one .jsonl
    ds.train, ds.dev, ds.test            # lists of Example, split by query
    ds.report.summary_lines()            # rows per file and split, grades, duplicates, what was split off or is missing
    write_dataset("out/", {"train": rows, "dev": ..., "test": ...}, guideline, labels)

One JSON object a line: `query`, `document` (non-empty strings) and `grade`
(an integer of the label set) are required; `explanation`, `rule_ids` (the
rules that decided), `long_tail` and `query_id` (default: the query text) are
optional. The generated world also writes `fired_rule_ids` (every rule that
fired), and files written before this module have the world's old
`decisive_rule_ids` column; both are read.

A bad row is never dropped: every row of every file is checked, then one
`DatasetError` lists the bad rows as `train.jsonl:17: ...` lines (the first
20, and a count of the rest). Splits missing from a folder are split off
train deterministically by query (sha256 of the query id), and the report
says so. Standard library and pydantic only: serving and `afrl eval` import
this without torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictInt, ValidationError, model_validator

from afrl.labels import DEFAULT_GRADES, GRADE_MEANINGS

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
GUIDELINE_FILE = "guideline.md"
LABELS_FILE = "labels.json"
DEFAULT_SPLIT_FRACTIONS: Mapping[str, float] = {"dev": 0.1, "test": 0.1}
# A row is a query and a search result's text; a longer line is a pasted file, and reading it whole
# could exhaust memory, so it is measured and skipped, never loaded.
MAX_ROW_BYTES = 1 << 20
MAX_PROBLEMS_SHOWN = 20
# The explanation format cites rules as R<number> (DESIGN section 2); other ids could never be cited.
RULE_ID = re.compile(r"R\d+")
_FIELDS = ("query_id", "query", "document", "grade", "explanation", "rule_ids", "fired_rule_ids", "long_tail")
_LEGACY_FIELDS = ("decisive_rule_ids",)


@dataclass(frozen=True)
class Example:
    """One judged (query, document) pair; the row type of every training and eval module."""

    query_id: str
    query: str
    document: str
    grade: int
    rule_ids: tuple[str, ...] = ()  # every rule that fired (a file without fired_rule_ids: the deciding ones)
    decisive_rule_ids: tuple[str, ...] = ()  # the rules that decided: a file row's `rule_ids`
    explanation: str = ""  # the reference explanation after the grade; "" = the grade alone is learned
    long_tail: bool = False  # a rare, rule-heavy case

    @property
    def has_explanation(self) -> bool:
        return bool(self.explanation)

    @property
    def has_rule_ids(self) -> bool:
        """Whether the row says which rules decided (per-rule accuracy and the rule reward need it)."""
        return bool(self.decisive_rule_ids)


class DatasetError(ValueError):
    """The data cannot be used as it is; `problems` holds one line per bad row or file."""

    def __init__(self, source: str, problems: Sequence[str]):
        self.problems = list(problems)
        shown = self.problems[:MAX_PROBLEMS_SHOWN]
        rest = len(self.problems) - len(shown)
        head = f"{source}: {len(self.problems)} problem{'s' if len(self.problems) != 1 else ''} in the data"
        tail = [f"... and {rest} more"] if rest else []
        super().__init__("\n".join([head + " (nothing was loaded; fix them and run again):", *shown, *tail]))


def describe_grades(values: Sequence[int]) -> str:
    """'0..4' for a contiguous set of grades, '{0, 2, 5}' otherwise."""
    v = sorted(values)
    if v and v == list(range(v[0], v[-1] + 1)):
        return f"{v[0]}..{v[-1]}"
    return "{" + ", ".join(map(str, v)) + "}"


class DatasetLabels(BaseModel):
    """The label set a dataset's grades come from: `labels.json` is `{"values": [...], "meanings": {...}}`."""

    model_config = ConfigDict(extra="forbid")

    values: list[StrictInt]
    meanings: dict[int, str] = {}

    @model_validator(mode="after")
    def _check(self) -> DatasetLabels:
        if len(self.values) < 2:
            raise ValueError(f"a label set needs at least 2 grades, got {self.values}")
        if sorted(set(self.values)) != self.values:
            raise ValueError(f"grade values must be strictly ascending, got {self.values}")
        if unknown := sorted(set(self.meanings) - set(self.values)):
            raise ValueError(f"meanings name grades {unknown} that are not in values {self.values}")
        return self

    def describe(self) -> str:
        return describe_grades(self.values)

    @classmethod
    def default(cls, values: Sequence[int] = DEFAULT_GRADES) -> DatasetLabels:
        meanings = dict(GRADE_MEANINGS) if tuple(values) == DEFAULT_GRADES else {}
        return cls(values=list(values), meanings=meanings)


@dataclass
class DatasetReport:
    """What was read, and what training and evaluation should know about it (JSON via `to_dict`)."""

    source: str
    labels: str  # the label set, e.g. "0..4"
    guideline: str | None  # the guideline file read, or None
    files: dict[str, int]  # file -> rows read
    splits: dict[str, int]  # split -> rows
    queries: dict[str, int]  # split -> distinct query ids
    split_off: dict[str, str]  # split -> how it was made, for splits no file gave
    grades: dict[str, dict[int, int]]  # split -> grade -> rows (every grade of the label set)
    duplicates: dict[str, Any]
    queries_in_several_splits: int
    rows_without_explanation: int
    rows_without_rule_ids: int
    long_tail_rows: int
    ignored_fields: dict[str, int] = field(default_factory=dict)  # unknown field -> rows that had it

    @property
    def rows(self) -> int:
        return sum(self.splits.values())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary_lines(self) -> list[str]:
        n = self.rows
        lines = [
            f"data {self.source}: "
            + ", ".join(f"{f} {k} rows" for f, k in self.files.items())
            + f"; grades {self.labels}; guideline: {self.guideline or 'none'}"
        ]
        for split in (s for s in SPLITS if self.splits[s] or s in self.split_off):
            made = f", {self.split_off[split]}" if split in self.split_off else ""
            grades = " ".join(f"{g}:{k}" for g, k in self.grades[split].items())
            lines.append(f"  {split}: {self.splits[split]} rows, {self.queries[split]} queries{made}; grades {grades}")
        d = self.duplicates
        if d["rows"]:
            lines.append(
                f"  duplicates: {d['rows']} rows repeat an earlier (query, document) pair "
                f"({d['conflicting_grades']} with another grade, {d['across_splits']} across splits), "
                f"e.g. {'; '.join(d['first'][:3])}"
            )
        if self.queries_in_several_splits:
            lines.append(f"  {self.queries_in_several_splits} query ids appear in more than one split")
        if self.rows_without_explanation:
            lines.append(
                f"  {self.rows_without_explanation} of {n} rows have no explanation: the grade alone is learned"
            )
        if self.rows_without_rule_ids:
            lines.append(
                f"  {self.rows_without_rule_ids} of {n} rows have no rule_ids: per-rule accuracy and the rule "
                "reward leave them out"
            )
        if self.ignored_fields:
            lines.append("  ignored fields: " + ", ".join(f"{k} ({v} rows)" for k, v in self.ignored_fields.items()))
        return lines


class Splits:
    """train / dev / test rows, split by query: what a `Dataset` and the generated world both are."""

    train: list[Example]
    dev: list[Example]
    test: list[Example]

    def split(self, name: str) -> list[Example]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; choose from {', '.join(SPLITS)}")
        return getattr(self, name)

    def long_tail(self, split: str) -> list[Example]:
        """The rows of `split` marked long_tail."""
        return [e for e in self.split(split) if e.long_tail]

    def all_rows(self) -> list[Example]:
        return self.train + self.dev + self.test


@dataclass(frozen=True)
class Dataset(Splits):
    train: list[Example]
    dev: list[Example]
    test: list[Example]
    labels: DatasetLabels
    guideline: str | None  # guideline.md's text (stripped), or None when there is none
    report: DatasetReport
    source: Path


# reading -------------------------------------------------------------------


def load_dataset(
    path: str | Path,
    labels: Sequence[int] | None = None,
    fractions: Mapping[str, float] = DEFAULT_SPLIT_FRACTIONS,
    split_missing: bool = True,
) -> Dataset:
    """A dataset folder or a single .jsonl file, every row checked against the label set.

    `labels`: the grade values of the model the data is for (its manifest or afrl.json); without it,
    labels.json, else 0..4. A single file is the train split; its guideline.md and labels.json are the
    ones beside it. `fractions` say how much of train's queries a missing dev or test split takes;
    `split_missing=False` leaves missing splits empty (a file evaluated whole).
    """
    path = Path(path)
    if path.is_dir():
        folder, given = path, {s: path / f"{s}.jsonl" for s in SPLITS if (path / f"{s}.jsonl").is_file()}
        if "train" not in given:
            raise DatasetError(
                str(path),
                [
                    "no train.jsonl (a dataset folder holds train.jsonl, and optionally "
                    "dev.jsonl and test.jsonl, guideline.md, labels.json)"
                ],
            )
    elif path.is_file():
        if path.suffix != ".jsonl":
            raise DatasetError(
                str(path), [f"{path.name}: a dataset is a folder or a .jsonl file (one JSON object a line)"]
            )
        folder, given = path.parent, {"train": path}
    else:
        raise FileNotFoundError(f"no dataset at {path}: expected a folder with train.jsonl or a .jsonl file")

    problems: list[str] = []
    label_set = _resolve_labels(folder / LABELS_FILE, labels, problems)
    guideline = _read_guideline(folder / GUIDELINE_FILE, problems)
    read: dict[str, list[Example]] = {}
    where: dict[int, str] = {}  # id(example) -> "file:line", for the duplicates report
    ignored: Counter[str] = Counter()
    for split, file in given.items():
        rows, lines = _read_file(file, set(label_set.values), problems, ignored)
        read[split] = rows
        where.update({id(ex): f"{file.name}:{n}" for ex, n in zip(rows, lines, strict=True)})
    missing = [s for s in SPLITS if s not in read]
    splits = {s: read.get(s, []) for s in SPLITS}
    missing = missing if split_missing else []
    if missing and not problems:
        try:
            splits.update(split_by_query(read["train"], {s: fractions[s] for s in missing}))
        except ValueError as e:
            problems.append(f"{given['train'].name}: {e}; give {' and '.join(f'{s}.jsonl' for s in missing)}")
    if problems:
        raise DatasetError(str(path), problems)
    split_off = {s: f"split off {given['train'].name} by query" for s in missing}
    if split_off:
        log.info("%s: %s", path, "; ".join(f"{s} {how}" for s, how in split_off.items()))
    report = _report(path, given, read, splits, split_off, label_set, guideline, where, ignored)
    return Dataset(splits["train"], splits["dev"], splits["test"], label_set, guideline, report, path)


def read_jsonl(path: str | Path, labels: Sequence[int] = DEFAULT_GRADES) -> list[Example]:
    """The rows of one JSONL file, checked like `load_dataset` checks them (no splitting)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    problems: list[str] = []
    rows, _ = _read_file(path, set(labels), problems, Counter())
    if problems:
        raise DatasetError(str(path), problems)
    return rows


def read_guideline(path: str | Path) -> str:
    """A guideline file's text (surrounding whitespace stripped); refuses an empty one."""
    problems: list[str] = []
    text = _read_guideline(Path(path), problems, required=True)
    if problems or text is None:
        raise DatasetError(str(path), problems)
    return text


def split_by_query(examples: Sequence[Example], fractions: Mapping[str, float]) -> dict[str, list[Example]]:
    """Deterministic split by query id: {"train": rest, **{name: share of the queries}}, rows in input order.

    Queries are ordered by the sha256 of their id, so the split depends on the ids alone (not on row
    order or a seed); each named split takes max(1, round(fraction x queries)), train keeps at least one.
    """
    ids = list(dict.fromkeys(e.query_id for e in examples))
    order = sorted(ids, key=lambda q: hashlib.sha256(q.encode("utf-8")).hexdigest())
    sizes = {name: max(1, round(frac * len(ids))) for name, frac in fractions.items()}
    if sum(sizes.values()) >= len(ids):
        raise ValueError(f"{len(ids)} queries are too few to split off {' and '.join(sizes)} by query")
    assigned: dict[str, str] = {}
    start = 0
    for name, size in sizes.items():
        assigned.update({q: name for q in order[start : start + size]})
        start += size
    out: dict[str, list[Example]] = {"train": [], **{name: [] for name in sizes}}
    for e in examples:
        out[assigned.get(e.query_id, "train")].append(e)
    return out


def _resolve_labels(file: Path, labels: Sequence[int] | None, problems: list[str]) -> DatasetLabels:
    declared = None
    if file.is_file():
        try:
            declared = DatasetLabels.model_validate_json(file.read_bytes())
        except ValidationError as e:
            err = e.errors()[0]
            at = ".".join(map(str, err["loc"])) or "file"
            problems.append(
                f'{file.name}: {at}: {err["msg"]} (expected {{"values": [0, 1, 2, 3, 4], "meanings": {{...}}}})'
            )
    if labels is None:
        return declared or DatasetLabels.default()
    wanted = DatasetLabels.default(sorted(labels))
    if declared is not None and declared.values != wanted.values:
        problems.append(
            f"{file.name}: the data's grades are {declared.describe()}, the model's label set is {wanted.describe()}"
        )
    return declared if declared is not None and declared.values == wanted.values else wanted


def _read_guideline(file: Path, problems: list[str], required: bool = False) -> str | None:
    if not file.is_file():
        if required:
            problems.append(f"{file}: no such guideline file")
        return None
    try:
        text = file.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError as e:
        problems.append(f"{file.name}: not UTF-8 text ({e.reason} at byte {e.start})")
        return None
    if not text:
        problems.append(f"{file.name}: the guideline is empty")
        return None
    return text


def _lines(file: Path) -> Iterator[tuple[int, bytes | None, int]]:
    """(line number, the line's bytes or None when over MAX_ROW_BYTES, its size), reading at most that much at once."""
    with file.open("rb") as f:
        number = 0
        while chunk := f.readline(MAX_ROW_BYTES + 1):
            number += 1
            if len(chunk) <= MAX_ROW_BYTES or chunk.endswith(b"\n"):
                yield number, chunk, len(chunk)
                continue
            size = len(chunk)
            while chunk and not chunk.endswith(b"\n"):
                chunk = f.readline(MAX_ROW_BYTES)
                size += len(chunk)
            yield number, None, size


def _read_file(
    file: Path, values: set[int], problems: list[str], ignored: Counter[str]
) -> tuple[list[Example], list[int]]:
    """Valid rows and their line numbers; one line in `problems` per bad row."""
    rows: list[Example] = []
    numbers: list[int] = []
    label_text = describe_grades(sorted(values))
    for number, raw, size in _lines(file):
        at = f"{file.name}:{number}"
        if raw is None:
            problems.append(
                f"{at}: row is {size:,} bytes, over the limit of {MAX_ROW_BYTES:,} bytes per row "
                "(a document is a search result's text, not a whole file)"
            )
            continue
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8")  # an editor's byte-order mark is no error
        except UnicodeDecodeError as e:
            problems.append(f"{at}: not UTF-8 ({e.reason} at byte {e.start})")
            continue
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            problems.append(f"{at}: invalid JSON: {e.msg} (column {e.colno})")
            continue
        except RecursionError:
            problems.append(f"{at}: invalid JSON: nested too deeply")
            continue
        if not isinstance(obj, dict):
            problems.append(f"{at}: a row is a JSON object, got {_kind(obj)}")
            continue
        example, errors = _example(obj, values, label_text)
        if errors:
            problems.append(f"{at}: " + "; ".join(errors))
            continue
        assert example is not None
        ignored.update(k for k in obj if k not in _FIELDS and k not in _LEGACY_FIELDS)
        rows.append(example)
        numbers.append(number)
    if not rows and not any(p.startswith(f"{file.name}:") for p in problems):
        problems.append(f"{file.name}: no rows (the file is empty)")
    return rows, numbers


def _example(obj: dict[str, Any], values: set[int], label_text: str) -> tuple[Example | None, list[str]]:
    errors: list[str] = []
    query = _text(obj, "query", errors)
    document = _text(obj, "document", errors)
    grade = obj.get("grade")
    if "grade" not in obj:
        errors.append("missing field 'grade'")
    elif isinstance(grade, bool) or not isinstance(grade, int):
        errors.append(f"grade must be an integer of the label set {label_text}, got {_kind(grade)}")
    elif grade not in values:
        errors.append(f"grade {grade} is not in the label set {label_text}")
    explanation = obj.get("explanation")
    if explanation is not None and not isinstance(explanation, str):
        errors.append(f"explanation must be a string, got {_kind(explanation)}")
    long_tail = obj.get("long_tail")
    if long_tail is not None and not isinstance(long_tail, bool):
        errors.append(f"long_tail must be true or false, got {_kind(long_tail)}")
    query_id = obj.get("query_id")
    if query_id is not None and (isinstance(query_id, bool) or not isinstance(query_id, str | int) or query_id == ""):
        errors.append(f"query_id must be a non-empty string or an integer, got {_kind(query_id)}")
    if "decisive_rule_ids" in obj:  # the world's columns before this module: rule_ids were the fired ones
        decisive = _rule_ids(obj, "decisive_rule_ids", errors)
        fired = _rule_ids(obj, "rule_ids", errors) or decisive
    else:
        decisive = _rule_ids(obj, "rule_ids", errors)
        fired = _rule_ids(obj, "fired_rule_ids", errors) or decisive
    if errors:
        return None, errors
    return Example(
        query_id=str(query_id) if query_id is not None else str(query),
        query=str(query),
        document=str(document),
        grade=int(grade),  # type: ignore[arg-type]  # checked above
        rule_ids=fired,
        decisive_rule_ids=decisive,
        explanation=explanation or "",
        long_tail=bool(long_tail),
    ), []


def _text(obj: dict[str, Any], name: str, errors: list[str]) -> str | None:
    value = obj.get(name)
    if name not in obj:
        errors.append(f"missing field '{name}'")
    elif not isinstance(value, str):
        errors.append(f"{name} must be a string, got {_kind(value)}")
    elif not value.strip():
        errors.append(f"{name} is an empty string")
    elif not _encodable(value):
        errors.append(f"{name} holds an unpaired UTF-16 surrogate escape (\\ud800-\\udfff), which no tokenizer reads")
    else:
        return value
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _rule_ids(obj: dict[str, Any], name: str, errors: list[str]) -> tuple[str, ...]:
    value = obj.get(name)
    if value is None:
        return ()
    if not isinstance(value, list):
        errors.append(f'{name} must be a list of rule ids like ["R7"], got {_kind(value)}')
        return ()
    bad = [v for v in value if not isinstance(v, str) or not RULE_ID.fullmatch(v)]
    if bad:
        errors.append(f"{name} holds {_kind(bad[0])}: rule ids are R<number> (R7), as explanations cite them")
        return ()
    return tuple(value)


def _kind(value: Any) -> str:
    """A short description of a JSON value for error lines: `string '3'`, `true (a boolean)`, `a list`."""
    if isinstance(value, bool):
        return f"{json.dumps(value)} (a boolean)"
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"string {value[:30]!r}" + ("..." if len(value) > 30 else "")
    if isinstance(value, int | float):
        return f"{type(value).__name__} {value!r}"
    return "a list" if isinstance(value, list) else "an object"


def _report(
    path: Path,
    given: Mapping[str, Path],
    read: Mapping[str, list[Example]],
    splits: Mapping[str, list[Example]],
    split_off: dict[str, str],
    labels: DatasetLabels,
    guideline: str | None,
    where: Mapping[int, str],
    ignored: Counter[str],
) -> DatasetReport:
    rows = [(s, e) for s in SPLITS for e in splits[s]]
    splits_of_query = Counter(q for _, q in {(s, e.query_id) for s, e in rows})
    return DatasetReport(
        source=str(path),
        labels=labels.describe(),
        guideline=GUIDELINE_FILE if guideline is not None else None,
        files={given[s].name: len(read[s]) for s in given},
        splits={s: len(splits[s]) for s in SPLITS},
        queries={s: len({e.query_id for e in splits[s]}) for s in SPLITS},
        split_off=split_off,
        grades={s: {g: sum(e.grade == g for e in splits[s]) for g in labels.values} for s in SPLITS},
        duplicates=_duplicates(rows, where),
        queries_in_several_splits=sum(n > 1 for n in splits_of_query.values()),
        rows_without_explanation=sum(not e.has_explanation for _, e in rows),
        rows_without_rule_ids=sum(not e.has_rule_ids for _, e in rows),
        long_tail_rows=sum(e.long_tail for _, e in rows),
        ignored_fields=dict(ignored),
    )


def _duplicates(rows: Sequence[tuple[str, Example]], where: Mapping[int, str]) -> dict[str, Any]:
    """Rows whose (query, document) pair an earlier row already had, with the first few locations."""
    first: dict[tuple[str, str], tuple[str, Example]] = {}
    repeats: list[tuple[str, Example, str, Example]] = []
    for split, e in rows:
        earlier = first.setdefault((e.query, e.document), (split, e))
        if earlier[1] is not e:
            repeats.append((split, e, *earlier))
    return {
        "rows": len(repeats),
        "conflicting_grades": sum(e.grade != e0.grade for _, e, _, e0 in repeats),
        "across_splits": sum(s != s0 for s, _, s0, _ in repeats),
        "first": [f"{where[id(e)]} repeats {where[id(e0)]}" for _, e, _, e0 in repeats[:5]],
    }


# writing -------------------------------------------------------------------


def example_row(example: Example) -> dict[str, Any]:
    """The JSONL row of an example: `rule_ids` are the deciding rules, `fired_rule_ids` all that fired."""
    row: dict[str, Any] = {
        "query_id": example.query_id,
        "query": example.query,
        "document": example.document,
        "grade": example.grade,
        "explanation": example.explanation,
        "rule_ids": list(example.decisive_rule_ids),
    }
    if example.rule_ids != example.decisive_rule_ids:
        row["fired_rule_ids"] = list(example.rule_ids)
    row["long_tail"] = example.long_tail
    return row


def write_jsonl(examples: Sequence[Example] | Iterator[Example], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for example in examples:
            f.write(json.dumps(example_row(example), ensure_ascii=False) + "\n")
    return path


def write_dataset(
    out: str | Path,
    splits: Mapping[str, Sequence[Example]],
    guideline: str,
    labels: DatasetLabels | None = None,
) -> dict[str, Path]:
    """A dataset folder `load_dataset` reads back as it was: one .jsonl per split, guideline.md, labels.json."""
    out = Path(out)
    if unknown := sorted(set(splits) - set(SPLITS)):
        raise ValueError(f"unknown splits {unknown}; a dataset has {', '.join(SPLITS)}")
    written = {split: write_jsonl(rows, out / f"{split}.jsonl") for split, rows in splits.items()}
    (out / GUIDELINE_FILE).write_text(guideline.strip() + "\n", encoding="utf-8")
    (out / LABELS_FILE).write_text((labels or DatasetLabels.default()).model_dump_json(indent=2) + "\n")
    written["guideline"] = out / GUIDELINE_FILE
    written["labels"] = out / LABELS_FILE
    return written
