"""Descriptive helpers shared by the chapters: lengths, time, coverage, counts per period."""

from __future__ import annotations

import numpy as np
import pandas as pd

def text_length(texts: pd.Series, unit: str = "words") -> pd.Series:
    """Length of each text in ``words`` (whitespace tokens) or ``chars`` (for Chinese).
    Used in the annotation and data_tour chapters."""
    texts = texts.astype("string").fillna("")
    if unit == "words":
        return texts.str.split().str.len().fillna(0).astype(int)
    if unit == "chars":
        return texts.str.len().fillna(0).astype(int)
    raise ValueError(f"unit must be 'words' or 'chars', not {unit!r}")


def to_datetime(seconds: pd.Series) -> pd.Series:
    return pd.to_datetime(seconds.astype("Float64"), unit="s", utc=True)


def coverage(name: str, frame: pd.DataFrame, time_column: str | None, lengths: pd.Series, unit: str) -> dict:
    """One row of a dataset overview: rows, time span, median length. Used in the data_tour chapter."""
    row = {"dataset": name, "rows": len(frame), "first": pd.NaT, "last": pd.NaT}
    if time_column is not None:
        times = to_datetime(frame[time_column]).dropna()
        if len(times):
            row["first"], row["last"] = times.min().date(), times.max().date()
    row["median length"] = float(np.median(lengths)) if len(lengths) else np.nan
    row["length unit"] = unit
    return row


def counts_per_period(frame: pd.DataFrame, freq: str = "MS", by: str | None = None,
                      time_column: str = "created_utc") -> pd.DataFrame:
    """Rows per period (``MS`` months, ``D`` days), optionally per group, in long format.

    Periods with no rows inside the overall time span appear with count 0, so a
    gap in the collection shows as a drop to zero rather than a line drawn across it.
    Used in the data_tour chapter.
    """
    times = to_datetime(frame[time_column]).dt.tz_localize(None)
    period = times.dt.to_period(freq[0]).dt.start_time.rename("period")
    groups = [period] + ([frame[by]] if by is not None else [])
    counts = frame.groupby(groups, observed=True).size()
    span = pd.date_range(period.min(), period.max(), freq=freq)
    if by is None:
        return counts.reindex(span, fill_value=0).rename_axis("period").rename("count").reset_index()
    full = pd.MultiIndex.from_product([span, counts.index.levels[1]], names=["period", by])
    return counts.reindex(full, fill_value=0).rename("count").reset_index()
