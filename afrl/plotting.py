"""Matplotlib for every plot the project writes: headless, one look, one way to save.

    plt = pyplot()                 # matplotlib.pyplot on the Agg backend: no display needed
    fig, ax = plt.subplots(...)
    ...
    log_axis(ax, "x")              # log scale labelled 0.2, 0.5, 1, 2, 5, 10, ...: plain numbers, never crowded
    save(fig, out / "plot.png")    # tight layout, DPI, figure closed

matplotlib is imported on the first call, not with this module: importing it costs nothing and
needs neither matplotlib nor torch (the `load`, `bench` and `train` extras install matplotlib).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

DPI = 110
MAX_LOG_LABELS = 9  # beyond this many 1-2-5 labels on a log axis, label the powers of ten only


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (set before pyplot is imported, so it never looks for a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def log_axis(ax: Any, which: str = "x") -> None:
    """Put `ax`'s x or y axis on a log scale, labelled with plain numbers at 1, 2 and 5 of each decade.

    Call it once the data (and any explicit limits) are set: the labels are chosen from the limits.
    matplotlib's default labels the powers of ten alone (10^0, 10^1) on spans of a few decades and
    adds labelled minor ticks (2x10^-1, 3x10^-1, ...) on short ones, which crowd each other; here
    there is one set of labels and the minor ticks stay unlabelled. A span with more than
    MAX_LOG_LABELS of them is labelled at the powers of ten; one with fewer than two, at every
    digit (0.6, 0.7, 0.8, ...).
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    low, high = sorted(ax.get_xlim() if which == "x" else ax.get_ylim())
    subs: tuple[float, ...] = (1.0, 2.0, 5.0)
    shown = _log_ticks(low, high, subs)
    if shown > MAX_LOG_LABELS:
        subs = (1.0,)
    elif shown < 2:
        subs = tuple(float(d) for d in range(1, 10))
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def _log_ticks(low: float, high: float, subs: tuple[float, ...]) -> int:
    """How many of s x 10^k (s in `subs`) lie in [low, high]."""
    if low <= 0:
        return MAX_LOG_LABELS + 1  # not a log range yet: label sparsely
    decades = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
    return sum(low <= s * 10.0**k <= high for k in decades for s in subs)


def save(fig: Any, path: Path) -> Path:
    """Lay out, write at DPI and close `fig` (a figure left open holds its memory until the process ends)."""
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    pyplot().close(fig)
    return Path(path)
