"""Who proposes a guideline edit: a deterministic rule-based proposer (CI, offline) or an LLM behind an endpoint.

A proposer sees the current guideline and the current model's error per
rule (on the slice of dev that picks rules, never the slice that accepts
edits) and returns one `GuidelineEdit`, or None when it has nothing left to
try. It never decides whether the edit stays: `training.evolution.guideline`
trains with and without it and keeps it only if held-out agreement rises.

Three kinds of edit, as an expert would make them:

    reword     one rule's entry on its grade line says what the rule means, not a two-word gist
               ("other brand R5" -> "brand (a named brand must be the document's visible brand...) R5")
    example    a line with a training example the rule alone decided
               ('Example R14: "case for galaxy s21" vs "Spigen Phone Case for Galaxy S21" -> 1.')
    priority   a note that the rule wins over the rule it is most often seen with
               ("Priority: R14 over R4: a case for the Galaxy S21 names the product but only complements it.")

Rewording and the rationale of a priority note need the rulebook the rule ids
mean (`training.world.rules.RULES`); for another dataset's guideline (its own
R-numbers) pass `rulebook=None` and only examples and bare priority notes
("R12 over R1.") are proposed, both read off its training rows.
"""

from __future__ import annotations

import difflib
import functools
import logging
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from afrl.dataset import Example
from training.endpoint import Post, auth_headers, chat_completions_url, json_object, post_json
from training.evolution.loop import pick_targets
from training.world.rules import Rule

log = logging.getLogger(__name__)

KINDS = ("reword", "example", "priority")
RULE_ID = re.compile(r"\bR\d+\b")
MAX_EXAMPLE_TITLE = 90  # characters of a document's title an example line shows


@dataclass(frozen=True)
class GuidelineEdit:
    proposer: str
    kind: str  # reword | example | priority (an LLM may name another)
    rules: tuple[str, ...]  # the rules the edit is about
    description: str
    before: str
    after: str

    @property
    def diff(self) -> str:
        lines = difflib.unified_diff(
            self.before.splitlines(), self.after.splitlines(), "guideline", "edited", lineterm="", n=0
        )
        return "\n".join(lines)


class Proposer(Protocol):
    name: str

    def propose(self, guideline: str, errors: Mapping[str, tuple[float, int]]) -> GuidelineEdit | None:
        """One edit of `guideline` given rule id -> (error, support); None: nothing (more) to propose."""
        ...


def ranked_rules(errors: Mapping[str, tuple[float, int]], min_support: int) -> list[str]:
    """Rules with errors and enough support, worst first (ties: rarer first, then id)."""
    return pick_targets(dict(errors), len(errors), min_support)


def _title(document: str) -> str:
    title = document.split(". ", 1)[0].rstrip(".")
    return title if len(title) <= MAX_EXAMPLE_TITLE else title[: MAX_EXAMPLE_TITLE - 3].rstrip() + "..."


def _sentence(text: str) -> str:
    """A rationale as a clause: lower-case first letter, no final period, no semicolons (they split entries)."""
    text = text.strip().rstrip(".").replace(";", ",")
    return text[:1].lower() + text[1:]


def _entry(guideline: str, rule_id: str) -> re.Match | None:
    """The entry `<words> R5` of a grade line ("2: look-alike R16; other brand R5; ..."), if there is one."""
    return re.search(rf"(?:(?<=: )|(?<=; ))([^;:\n]*?) {rule_id}\b", guideline)


class RuleBasedProposer:
    """Deterministic edits aimed at the worst rule: reword its entry, add an example, add a priority note.

    For the worst rule (by `ranked_rules`) the first kind of `KINDS` not tried
    on it yet and applicable to it; then the next rule. The same errors and
    history give the same edit, so CI runs are reproducible.
    """

    name = "rules"

    def __init__(self, train: Sequence[Example], rulebook: Mapping[str, Rule] | None, min_support: int = 1):
        self.train, self.rulebook, self.min_support = list(train), rulebook, min_support
        self.tried: set[tuple[str, str]] = set()

    def propose(self, guideline: str, errors: Mapping[str, tuple[float, int]]) -> GuidelineEdit | None:
        for rule_id in ranked_rules(errors, self.min_support):
            for kind in KINDS:
                if (kind, rule_id) in self.tried:
                    continue
                self.tried.add((kind, rule_id))
                edit = getattr(self, f"_{kind}")(guideline, rule_id)
                if edit is not None and edit.after != guideline:
                    return edit
        return None

    def _edit(self, kind: str, rule_id: str, description: str, before: str, after: str) -> GuidelineEdit:
        return GuidelineEdit(self.name, kind, (rule_id,), description, before, after)

    def _reword(self, guideline: str, rule_id: str) -> GuidelineEdit | None:
        rule = (self.rulebook or {}).get(rule_id)
        entry = _entry(guideline, rule_id)
        if rule is None or entry is None:
            return None
        words = f"{rule.name} ({_sentence(rule.rationale)})"
        after = guideline[: entry.start(1)] + words + guideline[entry.end(1) :]
        return self._edit("reword", rule_id, f"{rule_id}: '{entry.group(1)}' -> '{words}'", guideline, after)

    def _example(self, guideline: str, rule_id: str) -> GuidelineEdit | None:
        alone = [e for e in self.train if tuple(e.decisive_rule_ids) == (rule_id,)]
        lines = (f'Example {rule_id}: "{e.query}" vs "{_title(e.document)}" -> {e.grade}.' for e in alone)
        fresh = sorted({line for line in lines if line not in guideline}, key=lambda line: (len(line), line))
        if not fresh:
            return None
        return self._edit(
            "example", rule_id, f"add an example {rule_id} decided", guideline, f"{guideline}\n{fresh[0]}"
        )

    def _priority(self, guideline: str, rule_id: str) -> GuidelineEdit | None:
        """`rule_id` over the rule that most often fired beside it without deciding (same scope first)."""
        seen: Counter[str] = Counter()
        for e in self.train:
            if rule_id in e.decisive_rule_ids:
                seen.update(r for r in e.rule_ids if r not in e.decisive_rule_ids)
        if not seen:
            return None
        book = self.rulebook or {}
        rule = book.get(rule_id)
        same_scope = [r for r in seen if rule and r in book and book[r].scope == rule.scope]
        other = max(same_scope or seen, key=lambda r: (seen[r], -int(r[1:])))
        note = f"Priority: {rule_id} over {other}" + (f": {_sentence(rule.rationale)}." if rule else ".")
        if note in guideline:
            return None
        return self._edit("priority", rule_id, f"{rule_id} over {other}", guideline, f"{guideline}\n{note}")


class EndpointProposer:
    """Asks a chat model behind an OpenAI-compatible endpoint for one edit of the guideline.

    The model sees the guideline, the worst rules with their error and a few
    training examples each, and answers JSON `{"kind", "rules", "description",
    "guideline"}` with the whole edited text. A reply that is not such JSON,
    changes nothing, or drops a rule id the guideline had is counted in
    `failures` and proposes nothing, which ends guideline evolution early (the
    log says so): a flaky endpoint never costs the run.
    """

    name = "endpoint"

    def __init__(
        self,
        base_url: str,
        model: str,
        train: Sequence[Example],
        api_key: str | None = None,
        min_support: int = 1,
        rules_shown: int = 3,
        examples_per_rule: int = 2,
        post: Post | None = None,
    ):
        self.url = chat_completions_url(base_url)
        self.model, self.api_key, self.train = model, api_key, list(train)
        self.min_support, self.rules_shown, self.examples_per_rule = min_support, rules_shown, examples_per_rule
        self.post = post or functools.partial(post_json, timeout=120)
        self.failures: Counter[str] = Counter()

    def propose(self, guideline: str, errors: Mapping[str, tuple[float, int]]) -> GuidelineEdit | None:
        worst = ranked_rules(errors, self.min_support)[: self.rules_shown]
        if not worst:
            return None
        try:
            reply = self.post(self.url, self._request(guideline, worst, errors), auth_headers(self.api_key))
            answer = json_object(reply["choices"][0]["message"]["content"])
            after = answer["guideline"]
            if not isinstance(after, str) or not after.strip():
                raise ValueError("no guideline text")
        except Exception as e:  # a flaky endpoint or a malformed reply: no edit this round
            self.failures[type(e).__name__] += 1
            log.warning("guideline proposer: no usable reply (%s: %s)", type(e).__name__, e)
            return None
        after = after.strip()
        lost = sorted(set(RULE_ID.findall(guideline)) - set(RULE_ID.findall(after)), key=lambda r: int(r[1:]))
        if after == guideline.strip() or lost:
            self.failures["dropped rule ids" if lost else "unchanged"] += 1
            return None
        rules = tuple(r for r in answer.get("rules") or worst if isinstance(r, str))
        return GuidelineEdit(
            self.name, str(answer.get("kind", "other")), rules, str(answer.get("description", "")), guideline, after
        )

    def _request(self, guideline: str, worst: list[str], errors: Mapping[str, tuple[float, int]]) -> dict:
        shown = []
        for rule_id in worst:
            decided = [e for e in self.train if rule_id in e.decisive_rule_ids][: self.examples_per_rule]
            cases = "".join(f'\n  - "{e.query}" vs "{_title(e.document)}" -> grade {e.grade}' for e in decided)
            shown.append(f"- {rule_id}: wrong on {errors[rule_id][0]:.0%} of {errors[rule_id][1]} examples{cases}")
        prompt = (
            "A small search-relevance model reads the guideline below as its system prompt and answers a grade.\n"
            "Propose ONE small edit that would help it on the rules it gets wrong most: reword one rule's entry, "
            'add an example for a rule, or add a priority note such as "R14 over R1: a case naming the product '
            'is an accessory". Keep every rule id and everything else as it is.\n\n'
            f"Guideline:\n<<<\n{guideline}\n>>>\n\nRules it gets wrong most (held-out data), with training "
            "examples they decided:\n" + "\n".join(shown) + "\n\n"
            'Answer with JSON only: {"kind": "reword|example|priority", "rules": ["R.."], '
            '"description": "one line", "guideline": "the whole edited guideline"}'
        )
        return {"model": self.model, "temperature": 0.7, "messages": [{"role": "user", "content": prompt}]}
