"""Guideline evolution: deterministic proposals, edits kept only when they help, every edit logged."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from afrl.sidecar import read_sidecar
from training.evolution import (
    EndpointProposer,
    EvolutionConfig,
    GuidelineEvolution,
    RuleBasedProposer,
    Trial,
    decide,
    make_proposer,
    run_guideline_evolution,
    split_dev,
)
from training.evolution.proposers import RULE_ID
from training.method import _guideline_evolution
from training.presets import preset
from training.report import SFTSummary
from training.setup import TrainingSetup, generated_world
from training.world import RULES, build_world, guideline_text

ERRORS = {"R14": (0.6, 20), "R5": (0.3, 30), "R20": (0.5, 10), "R1": (0.1, 80), "R15": (0.9, 1)}


@pytest.fixture(scope="module")
def ci_world():
    """The ci preset's world: enough train rows for every kind of edit on the rules below."""
    return build_world(seed=0, n_queries=300, docs_per_query=6)


def _proposer(ci_world, rulebook=RULES):
    return RuleBasedProposer(ci_world.train, rulebook, min_support=3)


def test_rule_based_proposer_is_deterministic_and_changes_the_guideline(ci_world):
    first = _proposer(ci_world).propose(guideline_text(), ERRORS)
    again = _proposer(ci_world).propose(guideline_text(), ERRORS)
    assert first == again and first is not None
    assert first.after != guideline_text() and first.before == guideline_text()
    assert first.rules == ("R14",)  # the worst rule with support (R15 has 1 example, under min_support)
    assert first.kind == "reword" and "accessory is not the product" in first.after
    assert first.diff.startswith("--- guideline") and "+1: accessory is not the product" in first.diff


def test_rule_based_proposer_walks_kinds_then_rules_and_keeps_every_rule_id(ci_world):
    proposer, guideline, seen = _proposer(ci_world), guideline_text(), []
    for _ in range(5):
        edit = proposer.propose(guideline, ERRORS)
        assert edit is not None and edit.before == guideline
        seen.append((edit.kind, edit.rules[0]))
        guideline = edit.after
        assert set(RULE_ID.findall(guideline_text())) <= set(RULE_ID.findall(guideline))
    assert seen[:3] == [("reword", "R14"), ("example", "R14"), ("priority", "R14")]
    assert seen[3][1] == "R20"  # the next worst rule once R14's edits are spent
    assert "Priority: R14 over R4: a case for the Galaxy S21" in guideline  # R4: same scope, fired beside it


def test_another_datasets_rule_ids_get_no_world_wording(ci_world):
    edit = _proposer(ci_world, rulebook=None).propose(guideline_text(), ERRORS)
    assert edit is not None and edit.kind == "example"  # rewording needs the rulebook the ids mean
    assert edit.after.splitlines()[-1].startswith('Example R14: "')


def test_decide_uses_the_paired_standard_error():
    control = [True] * 50 + [False] * 50
    edit = [True] * 54 + [False] * 46  # four examples flipped to right, none to wrong
    d = decide(edit, control, z=2.0)
    assert d.difference == pytest.approx(0.04) and d.control == 0.5 and d.edit == 0.54
    assert d.standard_error == pytest.approx((0.04 * 0.96 * 100 / 99 / 100) ** 0.5)
    assert d.accepted  # 0.04 > 2 x 0.0197
    assert not decide(edit, control, z=2.0, min_gain=0.05).accepted
    assert not decide(control, control, z=0.0).accepted  # no gain is no reason to change
    with pytest.raises(ValueError, match="same non-empty slice"):
        decide([True], [True, False], z=2.0)


class FakeTrials:
    """A fake evaluator: agreement is a function of the guideline text; adopt records what became current."""

    def __init__(self, agreement, n=200):
        self.agreement, self.n = agreement, n
        self.current = guideline_text()
        self.trained: list[str] = []

    def rule_errors(self):
        return dict(ERRORS)

    def trial(self, guideline, seed):
        self.trained.append(guideline)
        right = round(self.agreement(guideline) * self.n)
        return Trial(guideline, [True] * right + [False] * (self.n - right), state=guideline)

    def adopt(self, trial):
        self.current = trial.state


def _run(ci_world, agreement, **config):
    trials = FakeTrials(agreement)
    cfg = EvolutionConfig(**{"guideline_rounds": 2, "min_support": 3, **config})
    record = run_guideline_evolution(cfg, guideline_text(), _proposer(ci_world), trials, (100, trials.n))
    return record, trials


def test_an_edit_that_hurts_is_rolled_back(ci_world):
    record, trials = _run(ci_world, lambda g: 0.5 if g == guideline_text() else 0.4)
    assert [r.accepted for r in record.rounds] == [False, False]
    assert record.final_guideline == guideline_text() and trials.current == guideline_text()
    assert all(r.edit_agreement == 0.4 and r.control_agreement == 0.5 for r in record.rounds)
    # round 2 starts again from the unchanged guideline, with the proposer's next edit
    assert record.rounds[1].before == guideline_text() and record.rounds[1].kind == "example"


def test_an_edit_that_helps_is_kept_and_the_next_builds_on_it(ci_world):
    lines = guideline_text().count("\n")
    record, trials = _run(ci_world, lambda g: 0.3 + 0.1 * (g.count("\n") - lines))  # every added line helps
    first, second = record.rounds
    assert not first.accepted  # a reword adds no line: no gain, rolled back
    assert second.accepted and second.margin is not None and second.difference > second.margin
    assert record.final_guideline == second.after == trials.current
    assert record.accepted == 1


def test_the_log_records_every_edit_and_round_trips(ci_world, tmp_path):
    record, trials = _run(ci_world, lambda g: 0.5, guideline_rounds=3)
    assert len(record.rounds) == 3 and len(trials.trained) == 6  # edit and control per round
    path = record.write(tmp_path / "guideline_evolution.json")
    body = json.loads(path.read_text())
    assert body["initial_guideline"] == guideline_text() and body["proposer"] == "rules"
    for row in body["rounds"]:
        assert row["proposer"] == "rules" and row["kind"] in ("reword", "example", "priority")
        assert row["before"] != row["after"] and row["diff"].startswith("--- guideline")
        assert row["control_agreement"] == 0.5 and row["edit_agreement"] == 0.5 and row["accepted"] is False
    assert GuidelineEvolution(**{k: v for k, v in body.items() if k != "rounds"}).final_guideline == guideline_text()


def test_too_long_an_edit_is_logged_not_trained(ci_world):
    record, trials = _run(ci_world, lambda g: 0.9, guideline_rounds=1, guideline_max_chars=len(guideline_text()))
    assert record.rounds[0].note.startswith("not tried") and not trials.trained


def test_nothing_left_to_propose_stops_the_loop(ci_world):
    trials = FakeTrials(lambda g: 0.5)
    trials.rule_errors = lambda: {}  # the model gets nothing wrong
    cfg = EvolutionConfig(guideline_rounds=3)
    record = run_guideline_evolution(cfg, guideline_text(), _proposer(ci_world), trials, (1, 1))
    assert [r.note for r in record.rounds] == ["no edit proposed"] and not trials.trained


def test_dev_is_split_by_query(ci_world):
    choosing, accepting = split_dev(ci_world.dev, 0.5)
    assert choosing and accepting and len(choosing) + len(accepting) == len(ci_world.dev)
    assert not {e.query_id for e in choosing} & {e.query_id for e in accepting}
    with pytest.raises(ValueError, match="at least 2 queries"):
        split_dev(ci_world.dev[:1], 0.5)


def test_config_validates_the_guideline_fields():
    with pytest.raises(ValueError, match="guideline_proposer"):
        EvolutionConfig(guideline_proposer="oracle")
    with pytest.raises(ValueError, match="needs llm_base_url"):
        EvolutionConfig(guideline_proposer="endpoint")
    with pytest.raises(ValueError, match="guideline_accept_share"):
        EvolutionConfig(guideline_accept_share=1.0)
    config = EvolutionConfig(guideline_proposer="endpoint", llm_base_url="http://x/v1", llm_model="m")
    assert isinstance(make_proposer(config, [], RULES), EndpointProposer)
    assert isinstance(make_proposer(EvolutionConfig(), [], RULES), RuleBasedProposer)


def test_endpoint_proposer_asks_an_openai_compatible_endpoint(ci_world, chat_endpoint):
    note = "Priority: R14 over R1: a case naming the product is an accessory."
    edited = guideline_text() + "\n" + note
    answer = {"kind": "priority", "rules": ["R14"], "description": "R14 over R1", "guideline": edited}
    url, seen = chat_endpoint(lambda body: "```json\n" + json.dumps(answer) + "\n```")
    proposer = EndpointProposer(url, "teacher-32b", ci_world.train, api_key="k", min_support=3)
    edit = proposer.propose(guideline_text(), ERRORS)
    path, body, auth = seen[0]
    assert path == "/v1/chat/completions" and body["model"] == "teacher-32b" and auth == "Bearer k"
    prompt = body["messages"][0]["content"]
    assert guideline_text() in prompt and "R14: wrong on 60% of 20 examples" in prompt
    assert edit is not None and edit.proposer == "endpoint" and edit.kind == "priority"
    assert edit.after == edited and edit.rules == ("R14",) and note in edit.diff


def test_endpoint_replies_that_drop_rules_or_are_not_json_propose_nothing(ci_world, chat_endpoint):
    replies = iter(["not json at all", json.dumps({"guideline": "Grade it."}), json.dumps({"guideline": " "})])
    url, _ = chat_endpoint(lambda body: next(replies))
    proposer = EndpointProposer(url, "m", ci_world.train, min_support=3)
    assert [proposer.propose(guideline_text(), ERRORS) for _ in range(3)] == [None, None, None]
    assert proposer.failures["dropped rule ids"] == 1 and sum(proposer.failures.values()) == 3


def test_a_kept_edit_is_the_guideline_the_model_trains_and_ships_with(ctx, warm_model, tmp_path):
    """The method's step with the real SFT arms, the margin forced open: the edit is kept and carried on."""
    data = generated_world(3, 40, 4)  # the session's small world
    setup = TrainingSetup.build(data, ctx)
    method = preset("ci").method
    always = replace(method.evolution, guideline_rounds=1, guideline_steps=2, guideline_z=0.0, guideline_min_gain=-1.0)
    sft = SFTSummary(losses=[])
    evolved, model, record = _guideline_evolution(
        replace(method, evolution=replace(always, min_support=1)), setup, warm_model, sft, tmp_path, None
    )
    assert record is not None and record.rounds[0].accepted
    assert evolved.ctx.guideline == record.final_guideline == record.rounds[0].after != data.guideline
    assert record.final_guideline in evolved.ctx.encoder.template.prefix  # what every prompt now starts with
    assert model is not warm_model and sft.stages[-1].name == "guideline r1 edit" and len(sft.losses) == 2
    assert read_sidecar(evolved.save(model, tmp_path / "ckpt", {})).guideline == record.final_guideline
    logged = json.loads((tmp_path / "guideline_evolution.json").read_text())
    assert logged["final_guideline"] == record.final_guideline and len(logged["rounds"]) == 1
    assert setup.ctx.guideline == data.guideline  # the setup it started from is left as it was
