"""crowdlens.plots draws exactly the data it is given."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pandas as pd

from crowdlens import plots


def test_plots_draw_what_they_are_given():
    plots.use_book_style()
    frame = pd.DataFrame({"label": ["a", "a", "b"], "split": ["x", "y", "x"], "n": [1, 10, 100]})
    ax = plots.count_bars(frame, x="label", title="t", source="s")
    assert sorted(p.get_height() for p in ax.patches if p.get_height() > 0) == [1, 2]
    ax = plots.length_distribution(frame, "n")
    assert ax.get_xscale() == "log"
    counts = pd.DataFrame({"period": pd.date_range("2020-01-01", periods=3), "count": [1, 2, 3]})
    ax = plots.timeline(counts, events=pd.DataFrame({"date": [pd.Timestamp("2020-01-02")], "label": ["NY"]}))
    assert [t.get_text() for t in ax.texts] == ["NY"]
