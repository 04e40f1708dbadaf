"""Stepwise rewards for AFRL completions: one reward function per step of the output.

An AFRL completion has five steps, one per line (DESIGN section 2):

    step 0  grade       "3"                                  the first token: what serving reads
    step 1  query       "[Query] kettle, Breville, 1.7 l"
    step 2  document    "[Document] kettle, Breville BKE820, 1.5 l"
    step 3  rules       "[Rules] R7 violated: ...; R5 satisfied: ..."
    step 4  conclusion  "[Conclusion] grade=2 because ..."   (and the end-of-turn token)

Each reward function has TRL's signature `(completions, **kw) -> list[float]`
(the keyword columns are the data set's: `grade`, `reference`,
`rule_ids`), so the same functions serve TRL's GRPOTrainer and the plain
loop. `STEP_REWARDS[s]` rewards step `s`; `assign_steps` says which step
each completion token belongs to, so a step's advantage reaches exactly its
tokens (`training.losses.step_token_advantages`).

What each step earns (all pure text checks against the rulebook's labels):
- grade: 1 if the first token is the gold grade, minus |predicted - gold| / (K - 1)
  (ordinal distance); -1 when the first line is not a grade at all.
- query / document: 0.5 if the line is present, tagged and in place, plus
  0.5 x F1 of its comma-separated parts against the reference line.
- rules: 0.25 if the line is present and every citation parses, plus F1 of
  the cited (rule, verdict) pairs against the reference citations, minus 0.5 x
  the share of cited rules that never fired (invented citations).
- conclusion: 0.25 if the line is present, 0.5 if its grade agrees with the
  first token, 0.25 if the whole explanation is valid (format, order, nothing
  stray after the conclusion).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from training.world.explanation import SECTIONS, parse_explanation

GRADE_VALUES = (0, 1, 2, 3, 4)
STEP_NAMES = ("grade", "query", "document", "rules", "conclusion")
N_STEPS = len(STEP_NAMES)

RewardFunc = Callable[..., list[float]]


# parsing helpers -----------------------------------------------------------


def first_grade(completion: str) -> int | None:
    """The grade the first line states, None when it is not exactly one grade value."""
    head = completion.split("\n", 1)[0].strip()
    return int(head) if head.isdigit() and int(head) in GRADE_VALUES else None


def explanation_of(completion: str) -> str:
    """Everything after the grade line."""
    parts = completion.split("\n", 1)
    return parts[1] if len(parts) == 2 else ""


def section_line(completion: str, step: int) -> str | None:
    """The body of line `step` (1..4) when it carries that step's tag, else None."""
    lines = completion.split("\n")
    if step >= len(lines):
        return None
    tag = f"[{SECTIONS[step - 1]}]"
    line = lines[step].strip()
    return line[len(tag) :].strip() if line.startswith(tag) else None


def _parts(text: str | None) -> list[str]:
    return [p.strip().lower() for p in (text or "").split(",") if p.strip()]


def f1(predicted: Sequence, reference: Sequence) -> float:
    """F1 of two multisets (1.0 when both are empty)."""
    if not predicted and not reference:
        return 1.0
    pool = list(reference)
    hits = 0
    for x in predicted:
        if x in pool:
            pool.remove(x)
            hits += 1
    if hits == 0:
        return 0.0
    precision, recall = hits / len(predicted), hits / len(reference)
    return 2 * precision * recall / (precision + recall)


def _citations(body: str | None) -> tuple[list[tuple[str, str]], bool]:
    """(rule id, verdict) pairs of a [Rules] body, and whether every chunk parsed."""
    if body is None:
        return [], False
    parsed = parse_explanation(f"[Rules] {body}")
    if parsed is None:
        return [], False
    pairs = [(c.rule_id, c.verdict) for c in parsed.citations]
    ok = bool(pairs) and not any(p.startswith(("malformed", "unknown", "no rule")) for p in parsed.problems)
    return pairs, ok


# one reward function per step (TRL signature) ------------------------------


def grade_reward(completions: list[str], grade: list[int], **kw) -> list[float]:
    k = len(GRADE_VALUES)
    out = []
    for completion, gold in zip(completions, grade, strict=True):
        predicted = first_grade(completion)
        if predicted is None:
            out.append(-1.0)
        else:
            out.append((1.0 if predicted == gold else 0.0) - abs(predicted - gold) / (k - 1))
    return out


def _section_reward(step: int, completions: list[str], reference: list[str]) -> list[float]:
    out = []
    for completion, ref in zip(completions, reference, strict=True):
        body = section_line(completion, step)
        if body is None:
            out.append(0.0)
            continue
        ref_body = section_line("_\n" + ref, step)  # the reference explanation has no grade line
        out.append(0.5 * bool(body) + 0.5 * f1(_parts(body), _parts(ref_body)))
    return out


def query_reward(completions: list[str], reference: list[str], **kw) -> list[float]:
    return _section_reward(1, completions, reference)


def document_reward(completions: list[str], reference: list[str], **kw) -> list[float]:
    return _section_reward(2, completions, reference)


def rules_reward(completions: list[str], reference: list[str], rule_ids: list[Sequence[str]], **kw) -> list[float]:
    out = []
    for completion, ref, fired in zip(completions, reference, rule_ids, strict=True):
        cited, ok = _citations(section_line(completion, 3))
        if not cited:
            out.append(0.0)
            continue
        gold, _ = _citations(section_line("_\n" + ref, 3))
        invented = sum(r not in fired for r, _ in cited) / len(cited)
        out.append(0.25 * ok + f1(cited, gold) - 0.5 * invented)
    return out


def conclusion_reward(completions: list[str], **kw) -> list[float]:
    out = []
    for completion in completions:
        body = section_line(completion, 4)
        if body is None:
            out.append(0.0)
            continue
        parsed = parse_explanation(explanation_of(completion))
        agrees = parsed is not None and parsed.grade is not None and parsed.grade == first_grade(completion)
        valid = parsed is not None and parsed.valid and first_grade(completion) is not None
        out.append(0.25 + 0.5 * agrees + 0.25 * valid)
    return out


STEP_REWARDS: tuple[RewardFunc, ...] = (grade_reward, query_reward, document_reward, rules_reward, conclusion_reward)


def step_rewards(completions: list[str], **columns) -> list[list[float]]:
    """(N, N_STEPS) rewards: row i, column s = STEP_REWARDS[s] on completion i."""
    per_step = [fn(completions, **columns) for fn in STEP_REWARDS]
    return [list(row) for row in zip(*per_step, strict=True)]


# which step each token belongs to -------------------------------------------


def assign_steps(pieces: Sequence[str], n_steps: int = N_STEPS) -> list[int]:
    """Step index of each completion token, from the tokens' decoded text.

    Token 0 (the grade) is step 0. Every later token belongs to the line its
    first non-newline character sits on (a token made of newlines only ends
    the line it is on), clamped to steps 1..n_steps-1: text after the grade on
    its line counts as step 1, extra lines as the last step.
    """
    steps: list[int] = []
    line = 0
    for i, piece in enumerate(pieces):
        stripped = piece.lstrip("\n")
        if i == 0:
            steps.append(0)
        else:
            start = line + (len(piece) - len(stripped) if stripped else 0)
            steps.append(min(max(start, 1), n_steps - 1))
        line += piece.count("\n")
    return steps
