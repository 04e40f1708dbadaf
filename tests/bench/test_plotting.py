"""afrl.plotting: log axes labelled with plain numbers that do not crowd, whatever the span."""

from __future__ import annotations

import pytest

from afrl.plotting import log_axis, pyplot, save


def labels(low: float, high: float) -> list[str]:
    fig, ax = pyplot().subplots()
    ax.set_xlim(low, high)
    log_axis(ax, "x")
    fig.canvas.draw()
    shown = [t.get_text() for t in ax.get_xticklabels() if t.get_text() and low <= t.get_position()[0] <= high]
    minor = [t.get_text() for t in ax.get_xticklabels(minor=True) if t.get_text()]
    pyplot().close(fig)
    assert not minor
    return shown


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (0.17, 13, ["0.2", "0.5", "1", "2", "5", "10"]),  # the 0.6B compare plot: 10^0 and 10^1 alone before
        (60, 12_000, ["100", "200", "500", "1000", "2000", "5000", "10000"]),  # the load plot's latencies
        (0.55, 0.95, ["0.6", "0.7", "0.8", "0.9"]),  # under one 1-2-5 step: every digit
        (1, 1e6, ["1", "10", "100", "1000", "10000", "100000", "1e+06"]),  # too wide for 1-2-5: powers of ten
    ],
)
def test_log_axis_labels(low, high, expected):
    assert labels(low, high) == expected


def test_save_writes_and_closes(tmp_path):
    plt = pyplot()
    fig, ax = plt.subplots()
    ax.plot([1, 2], [3, 4])
    path = save(fig, tmp_path / "p.png")
    assert path.stat().st_size > 1000 and not plt.get_fignums()
