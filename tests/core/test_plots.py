"""crowdlens.plots draws exactly the data it is given."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pandas as pd

from crowdlens.core import plots


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


def test_interval_heatmap_and_daily_series_plots():
    import numpy as np

    table = pd.DataFrame({"level": ["a", "b", "a", "b"], "share": [0.2, 0.5, 0.3, 0.4], "ci_low": [0.1, 0.4, 0.2, 0.3],
                          "ci_high": [0.3, 0.6, 0.4, 0.5], "kind": ["raw", "raw", "corrected", "corrected"]})
    ax = plots.intervals(table, x="share", y="level", hue="kind")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    assert len(ax.get_legend().get_texts()) == 2
    ax = plots.heatmap(pd.DataFrame([[0.0, 1.0], [1.0, 0.0]], index=["x", "y"], columns=["x", "y"]))
    assert sorted(t.get_text() for t in ax.texts) == ["0.00", "0.00", "1.00", "1.00"]
    days = pd.date_range("2020-03-01", periods=10)
    daily = pd.DataFrame({"day": days, "share": np.linspace(0, 1, 10), "state": "CA"})
    events = pd.DataFrame({"date": [days[4]], "state": ["CA"]})
    ax = plots.daily_series(daily, hue="state", events=events, shade=(days[7], days[9], "protests"))
    smoothed = ax.lines[1].get_ydata()
    assert np.isclose(smoothed[5], np.linspace(0, 1, 10)[2:9].mean())  # centred 7-day mean
    assert any(line.get_xdata()[0] == days[4] for line in ax.lines[2:])
