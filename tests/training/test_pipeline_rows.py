from types import SimpleNamespace

import pytest

from training.pipeline import sft_rows
from training.presets import PRESETS, preset
from training.sft_data import SFTSequence


def _rows(n: int, grade: int) -> list[SFTSequence]:
    return [SFTSequence([i], [grade], grade) for i in range(n)]


def test_long_tail_rows_repeat_and_the_rest_appear_once():
    head, tail = _rows(8, 4), _rows(2, 0)
    setup = SimpleNamespace(sequences=head + tail, pools={"long_tail": tail, "head": head})
    assert sft_rows(setup, 1) == head + tail
    rows = sft_rows(setup, 3)
    assert len(rows) == 8 + 3 * 2
    assert all(rows.count(s) == 3 for s in tail) and all(rows.count(s) == 1 for s in head)


def test_fresh_rows_appear_once_and_their_long_tail_repeats_with_the_training_rows_long_tail():
    head, tail, fresh = _rows(8, 4), _rows(2, 0), _rows(5, 2)
    setup = SimpleNamespace(sequences=head + tail, pools={"long_tail": tail, "head": head})
    rows = sft_rows(setup, 2, fresh, fresh[:1])
    assert rows == head + tail + fresh + tail + fresh[:1]


def test_repeats_are_validated_and_the_default_recipe_uses_them():
    with pytest.raises(ValueError, match="long_tail_repeats must be >= 1"):
        preset("default", long_tail_repeats=0)
    assert PRESETS["default"].long_tail_repeats == 3
    assert PRESETS["default"].sft.precision == "auto"
