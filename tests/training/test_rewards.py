"""Step rewards and token-to-step assignment, against hand-computed values."""

import pytest

from training.rewards import (
    STEP_REWARDS,
    assign_steps,
    conclusion_reward,
    document_reward,
    f1,
    first_grade,
    grade_reward,
    query_reward,
    rules_reward,
    step_rewards,
)

REFERENCE = (
    "[Query] kettle, Breville, 1.7 l\n"
    "[Document] kettle, Breville BKE820, 1.5 l\n"
    "[Rules] R7 violated: 1.5 l, not 1.7 l; R5 satisfied: Breville\n"
    "[Conclusion] grade=2 because substitute: capacity or amount"
)
FIRED = ("R1", "R5", "R7")


def test_grade_reward_is_correctness_minus_ordinal_distance():
    completions = ["2\n...", "3\n...", "0\n...", "x\n...", "7\n..."]
    assert grade_reward(completions, grade=[2] * 5) == [1.0, -0.25, -0.5, -1.0, -1.0]
    assert first_grade("4") == 4 and first_grade(" 3 \n[Query]") == 3 and first_grade("12\n") is None


def test_perfect_completion_earns_every_step():
    perfect = "2\n" + REFERENCE
    cols = {"grade": [2], "reference": [REFERENCE], "rule_ids": [FIRED]}
    assert step_rewards([perfect], **cols) == [[1.0, 1.0, 1.0, 1.25, 1.0]]


def test_section_rewards_hand_computed():
    # query line: 2 of 3 parts right ("kettle", "breville"; "1 l" wrong): P = R = 2/3 -> F1 2/3
    c = (
        "2\n[Query] kettle, Breville, 1 l\n[Document] toaster\n"
        "[Rules] R7 violated: x; R9 satisfied: red\n[Conclusion] grade=3 because no"
    )
    assert query_reward([c], reference=[REFERENCE]) == [pytest.approx(0.5 + 0.5 * 2 / 3)]
    assert document_reward([c], reference=[REFERENCE]) == [pytest.approx(0.5)]  # tagged, no part right
    # cited {(R7, violated), (R9, satisfied)} vs reference {(R7, violated), (R5, satisfied)}: F1 1/2;
    # R9 never fired: 1 of 2 citations invented
    assert rules_reward([c], reference=[REFERENCE], rule_ids=[FIRED]) == [pytest.approx(0.25 + 0.5 - 0.25)]
    # conclusion present, grade 3 disagrees with the first token 2, explanation otherwise valid
    assert conclusion_reward([c]) == [pytest.approx(0.25 + 0.0 + 0.25)]
    # a line with the wrong tag earns nothing for its step
    swapped = "2\n[Document] a\n[Query] b\n[Rules] R1 satisfied: x\n[Conclusion] grade=2 because y"
    assert query_reward([swapped], reference=[REFERENCE]) == [0.0]
    assert conclusion_reward(["2\n[Query] a"]) == [0.0]


def test_reward_functions_have_trl_signature():
    for fn in STEP_REWARDS:
        out = fn(
            ["2\n" + REFERENCE, "junk"],
            grade=[2, 1],
            reference=[REFERENCE] * 2,
            rule_ids=[FIRED] * 2,
            prompts=["p", "p"],
            completion_ids=[[1], [2]],
            trainer_state=None,
        )
        assert isinstance(out, list) and len(out) == 2 and all(isinstance(x, float) for x in out)


def test_f1_of_multisets():
    assert f1([], []) == 1.0 and f1(["a"], []) == 0.0
    assert f1(["a", "b"], ["a", "c"]) == pytest.approx(0.5)


def test_assign_steps_follows_lines():
    pieces = [
        "2",
        "\n",
        "[",
        "Query",
        "]",
        " k",
        "\n[",
        "Document",
        "] d",
        "\n",
        "[Rules] R1",
        "\n",
        "[Con",
        "x",
        "<|im_end|>",
    ]
    assert assign_steps(pieces) == [0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 4, 4, 4]
    # text after the grade on its line counts as step 1; lines after the conclusion count as the last step
    assert assign_steps(["3", " extra", "\n", "a", "\n", "b", "\n", "c", "\n", "d", "\n", "e"]) == [
        0,
        1,
        1,
        1,
        1,
        2,
        2,
        3,
        3,
        4,
        4,
        4,
    ]
