"""Descriptive helpers shared by the chapters: readable text, lengths, coverage."""

from __future__ import annotations

import numpy as np
import pandas as pd

REMOVED = frozenset({"[removed]", "[deleted]"})


def reddit_text(frame: pd.DataFrame) -> pd.Series:
    """The text a reader sees: title + selftext for submissions, body for comments.

    Removed/deleted placeholders count as empty; missing parts are skipped.
    """
    def clean(column: str) -> pd.Series:
        if column not in frame:
            return pd.Series("", index=frame.index, dtype="string")
        values = frame[column].astype("string").fillna("")
        return values.mask(values.isin(REMOVED), "")

    title, selftext, body = clean("title"), clean("selftext"), clean("body")
    submission = (title + "\n\n" + selftext).str.strip()
    is_comment = frame["kind"].eq("comment") if "kind" in frame else pd.Series(False, index=frame.index)
    return body.where(is_comment, submission).str.strip()


def text_length(texts: pd.Series, unit: str = "words") -> pd.Series:
    """Length of each text in ``words`` (whitespace tokens) or ``chars`` (for Chinese)."""
    texts = texts.astype("string").fillna("")
    if unit == "words":
        return texts.str.split().str.len().fillna(0).astype(int)
    if unit == "chars":
        return texts.str.len().fillna(0).astype(int)
    raise ValueError(f"unit must be 'words' or 'chars', not {unit!r}")


def to_datetime(seconds: pd.Series) -> pd.Series:
    return pd.to_datetime(seconds.astype("Float64"), unit="s", utc=True)


def sample(frame: pd.DataFrame, rows: int, seed: int = 0) -> pd.DataFrame:
    """A reproducible random sample of ``rows`` rows (all rows when ``rows`` is 0 or larger)."""
    if rows < 0:
        raise ValueError("rows must be >= 0 (0 means all rows)")
    if rows == 0 or rows >= len(frame):
        return frame
    return frame.sample(n=rows, random_state=seed)


def per_group_sample(frame: pd.DataFrame, by: str, per_group: int, seed: int = 0) -> pd.DataFrame:
    """Up to ``per_group`` random rows of each group of ``by`` (all rows of a smaller group)."""
    if per_group < 1:
        raise ValueError("per_group must be >= 1")
    return pd.concat([group.sample(min(len(group), per_group), random_state=seed)
                      for _, group in frame.groupby(by, sort=True)])


def coverage(name: str, frame: pd.DataFrame, time_column: str | None, lengths: pd.Series, unit: str) -> dict:
    """One row of a dataset overview: rows, time span, median length."""
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


US_STATES = {
    "Alabama": "AL", "Alaska": "AK", "Arizona": "AZ", "Arkansas": "AR", "California": "CA", "Colorado": "CO",
    "Connecticut": "CT", "Delaware": "DE", "Florida": "FL", "Georgia": "GA", "Hawaii": "HI", "Idaho": "ID",
    "Illinois": "IL", "Indiana": "IN", "Iowa": "IA", "Kansas": "KS", "Kentucky": "KY", "Louisiana": "LA",
    "Maine": "ME", "Maryland": "MD", "Massachusetts": "MA", "Michigan": "MI", "Minnesota": "MN",
    "Mississippi": "MS", "Missouri": "MO", "Montana": "MT", "Nebraska": "NE", "Nevada": "NV",
    "New Hampshire": "NH", "New Jersey": "NJ", "New Mexico": "NM", "New York": "NY", "North Carolina": "NC",
    "North Dakota": "ND", "Ohio": "OH", "Oklahoma": "OK", "Oregon": "OR", "Pennsylvania": "PA",
    "Rhode Island": "RI", "South Carolina": "SC", "South Dakota": "SD", "Tennessee": "TN", "Texas": "TX",
    "Utah": "UT", "Vermont": "VT", "Virginia": "VA", "Washington": "WA", "West Virginia": "WV",
    "Wisconsin": "WI", "Wyoming": "WY",
}


def state_code(name: str) -> str:
    """Postal code of a US state given as 'New York' or as a subreddit location 'newyork'."""
    squashed = {k.replace(" ", "").lower(): v for k, v in US_STATES.items()}
    key = name.replace(" ", "").lower()
    if key not in squashed:
        raise KeyError(f"{name!r} is not a US state")
    return squashed[key]
