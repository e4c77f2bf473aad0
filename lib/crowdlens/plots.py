"""The book's figure helpers: one look across chapters (seaborn), labelled axes, sources."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

PALETTE = "colorblind"


def use_book_style() -> None:
    """Seaborn's whitegrid with the book's palette and a readable figure size."""
    sns.set_theme(style="whitegrid", palette=PALETTE, context="notebook")
    plt.rcParams.update({"figure.figsize": (8, 4.2), "figure.dpi": 100, "axes.titleweight": "bold"})


def _finish(ax, title: str | None, source: str | None):
    if title:
        ax.set_title(title, loc="left")
    if source:
        ax.figure.text(0.01, -0.02, f"Source: {source}", fontsize=8, color="0.4", ha="left", va="top")
    ax.figure.tight_layout()
    return ax


def count_bars(frame: pd.DataFrame, x: str, hue: str | None = None, title: str | None = None,
               source: str | None = None, horizontal: bool = False, ax=None, order=None):
    """Bar chart of how many rows fall in each category of ``x`` (split by ``hue``)."""
    ax = ax or plt.subplots()[1]
    kwargs = {"y": x} if horizontal else {"x": x}
    sns.countplot(data=frame, hue=hue, ax=ax, order=order, **kwargs)
    ax.set_xlabel("rows" if horizontal else x)
    ax.set_ylabel(x if horizontal else "rows")
    return _finish(ax, title, source)


def length_distribution(frame: pd.DataFrame, length: str, hue: str | None = None, title: str | None = None,
                        source: str | None = None, log: bool = True, unit: str = "words", ax=None):
    """Distribution of text lengths (log-scaled by default: lengths are heavy-tailed)."""
    ax = ax or plt.subplots()[1]
    data = frame[frame[length] > 0] if log else frame
    sns.histplot(data=data, x=length, hue=hue, log_scale=log, element="step", stat="density",
                 common_norm=False, ax=ax)
    ax.set_xlabel(f"length ({unit}{', log scale' if log else ''})")
    return _finish(ax, title, source)


def timeline(counts: pd.DataFrame, hue: str | None = None, title: str | None = None, source: str | None = None,
             events: pd.DataFrame | None = None, ylabel: str = "rows", ax=None):
    """Counts per period (from ``explore.counts_per_period``); ``events`` (date, label) are marked."""
    ax = ax or plt.subplots()[1]
    sns.lineplot(data=counts, x="period", y="count", hue=hue, ax=ax, marker="o" if len(counts) < 40 else None)
    if events is not None:
        for _, event in events.iterrows():
            ax.axvline(event["date"], color="0.3", linestyle="--", linewidth=0.8)
            ax.annotate(event["label"], (event["date"], ax.get_ylim()[1]), rotation=90, va="top", ha="right", fontsize=8)
    ax.set_xlabel("")
    ax.set_ylabel(ylabel)
    ax.figure.autofmt_xdate()
    return _finish(ax, title, source)


def sweep(frame: pd.DataFrame, x: str, y: str | list[str], title: str | None = None, source: str | None = None,
          ylabel: str | None = None, ax=None, hline: float | None = None):
    """Mean (and 95 % interval over repetitions) of one or more measures against a parameter."""
    ax = ax or plt.subplots()[1]
    measures = [y] if isinstance(y, str) else list(y)
    long = frame.melt(id_vars=[x], value_vars=measures, var_name="measure", value_name="value")
    sns.lineplot(data=long, x=x, y="value", hue="measure" if len(measures) > 1 else None, marker="o",
                 errorbar=("ci", 95) if frame.groupby(x).size().max() > 1 else None, ax=ax)
    if hline is not None:
        ax.axhline(hline, color="0.4", linestyle=":", linewidth=1)
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel(ylabel or (measures[0].replace("_", " ") if len(measures) == 1 else "value"))
    return _finish(ax, title, source)


def confusion(truth, predicted, labels, title: str | None = None, source: str | None = None,
              normalize: bool = True, ax=None):
    """Heat map of a confusion matrix (rows: truth; normalised per row by default)."""
    table = pd.crosstab(pd.Categorical(truth, labels), pd.Categorical(predicted, labels), dropna=False)
    table.index.name, table.columns.name = "truth", "predicted"
    shown = table.div(table.sum(axis=1).replace(0, 1), axis=0) if normalize else table
    ax = ax or plt.subplots(figsize=(6, 5))[1]
    sns.heatmap(shown, annot=table, fmt="d", cmap="Blues", vmin=0, vmax=1 if normalize else None, cbar=False, ax=ax)
    return _finish(ax, title, source)
