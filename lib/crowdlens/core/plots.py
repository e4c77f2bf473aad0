"""The book's figure helpers: one look across chapters (seaborn), labelled axes, sources."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

PALETTE = "colorblind"


def use_book_style() -> None:
    """Seaborn's whitegrid with the book's palette and a readable figure size.
    Used in the annotation, data_tour, reddit_communities, training and weibo_crowds chapters."""
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
    """Bar chart of how many rows fall in each category of ``x`` (split by ``hue``).
    Used in the annotation and data_tour chapters."""
    ax = ax or plt.subplots()[1]
    kwargs = {"y": x} if horizontal else {"x": x}
    sns.countplot(data=frame, hue=hue, ax=ax, order=order, **kwargs)
    ax.set_xlabel("rows" if horizontal else x)
    ax.set_ylabel(x if horizontal else "rows")
    return _finish(ax, title, source)


def length_distribution(frame: pd.DataFrame, length: str, hue: str | None = None, title: str | None = None,
                        source: str | None = None, log: bool = True, unit: str = "words", ax=None):
    """Distribution of text lengths (log-scaled by default: lengths are heavy-tailed).
    Used in the annotation and data_tour chapters."""
    ax = ax or plt.subplots()[1]
    data = frame[frame[length] > 0] if log else frame
    sns.histplot(data=data, x=length, hue=hue, log_scale=log, element="step", stat="density",
                 common_norm=False, ax=ax)
    ax.set_xlabel(f"length ({unit}{', log scale' if log else ''})")
    return _finish(ax, title, source)


def timeline(counts: pd.DataFrame, hue: str | None = None, title: str | None = None, source: str | None = None,
             events: pd.DataFrame | None = None, ylabel: str = "rows", ax=None):
    """Counts per period (from ``explore.counts_per_period``); ``events`` (date, label) are marked.
    Used in the data_tour chapter."""
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
    """Mean (and 95 % interval over repetitions) of one or more measures against a parameter.
    Used in the annotation chapter."""
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
    """Heat map of a confusion matrix (rows: truth; normalised per row by default).
    Used in the annotation, reddit_communities, training and weibo_crowds chapters."""
    table = pd.crosstab(pd.Categorical(truth, labels), pd.Categorical(predicted, labels), dropna=False)
    table.index.name, table.columns.name = "truth", "predicted"
    shown = table.div(table.sum(axis=1).replace(0, 1), axis=0) if normalize else table
    ax = ax or plt.subplots(figsize=(6, 5))[1]
    sns.heatmap(shown, annot=table, fmt="d", cmap="Blues", vmin=0, vmax=1 if normalize else None, cbar=False, ax=ax)
    return _finish(ax, title, source)


def intervals(table: pd.DataFrame, x: str, y: str, low: str = "ci_low", high: str = "ci_high",
              hue: str | None = None, title: str | None = None, source: str | None = None,
              xlabel: str | None = None, ax=None, order=None):
    """Point estimates with 95 % intervals, one row of the plot per ``y`` category
    (shares by community, odds ratios by term...).
    Used in the reddit_communities, training and weibo_crowds chapters."""
    ax = ax or plt.subplots(figsize=(8, 0.45 * table[y].nunique() + 1.5))[1]
    order = list(order) if order is not None else list(dict.fromkeys(table[y]))
    hues = list(dict.fromkeys(table[hue])) if hue else [None]
    colours = sns.color_palette(PALETTE, len(hues))
    offsets = (pd.Series(range(len(hues))) - (len(hues) - 1) / 2) * (0.6 / max(len(hues), 1))
    for k, level in enumerate(hues):
        part = table if hue is None else table[table[hue] == level]
        position = part[y].map({v: i for i, v in enumerate(order)}) + offsets[k]
        ax.errorbar(part[x], position, xerr=[part[x] - part[low], part[high] - part[x]], fmt="o",
                    color=colours[k], label=level, capsize=2, markersize=4)
    ax.set_yticks(range(len(order)), order)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel or x)
    if hue:
        ax.legend(title=hue, loc="best", fontsize=8)
    return _finish(ax, title, source)


def heatmap(matrix: pd.DataFrame, title: str | None = None, source: str | None = None, fmt: str = ".2f",
            cmap: str = "viridis", ax=None, **kwargs):
    """An annotated heat map of a (small) table: distances, transitions, shares.
    Used in the reddit_communities and weibo_crowds chapters."""
    ax = ax or plt.subplots(figsize=(1.0 * matrix.shape[1] + 2.5, 0.6 * matrix.shape[0] + 1.5))[1]
    sns.heatmap(matrix.astype(float), annot=True, fmt=fmt, cmap=cmap, cbar=False, ax=ax, **kwargs)
    return _finish(ax, title, source)


def daily_series(daily: pd.DataFrame, y: str = "share", hue: str | None = None, events: pd.DataFrame | None = None,
                 window: int = 7, shade: tuple | None = None, title: str | None = None, source: str | None = None,
                 ylabel: str | None = None, ax=None):
    """A daily series smoothed by a centred ``window``-day mean (raw days faint), with
    ``events`` (columns ``date`` and, when ``hue``, the hue column) marked and an
    optional shaded (start, end, label) window. Used in the reddit_communities chapter."""
    ax = ax or plt.subplots()[1]
    groups = list(dict.fromkeys(daily[hue])) if hue else [None]
    colours = dict(zip(groups, sns.color_palette(PALETTE, len(groups))))
    for group in groups:
        part = daily if hue is None else daily[daily[hue] == group]
        part = part.sort_values("day")
        ax.plot(part["day"], part[y], color=colours[group], alpha=0.2, linewidth=0.8)
        ax.plot(part["day"], part[y].rolling(window, center=True, min_periods=1).mean(), color=colours[group],
                label=group, linewidth=1.8)
        if events is not None:
            marks = events if hue is None else events[events[hue] == group]
            for day in marks["date"]:
                ax.axvline(day, color=colours[group], linestyle="--", linewidth=1)
    if shade is not None:
        ax.axvspan(shade[0], shade[1], color="0.85", zorder=0, label=shade[2] if len(shade) > 2 else None)
    ax.set_ylabel(ylabel or y)
    ax.set_xlabel("")
    if hue or shade is not None:
        ax.legend(fontsize=8, loc="upper left")
    ax.figure.autofmt_xdate()
    return _finish(ax, title, source)
