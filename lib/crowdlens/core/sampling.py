"""Reproducible samples: every chapter's quick profile and every per-group draw."""

from __future__ import annotations

import pandas as pd


def sample(frame: pd.DataFrame, rows: int, seed: int = 0) -> pd.DataFrame:
    """A reproducible random sample of ``rows`` rows (all rows when ``rows`` is 0 or larger).
    Used in the annotation, data_tour, reddit_communities, training and weibo_crowds chapters."""
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


def balanced_sample(frame: pd.DataFrame, by: str, total: int, seed: int = 0) -> pd.DataFrame:
    """Up to ``total // groups`` rows of each group of ``by`` (all rows of a smaller group).
    Used in the reddit_communities chapter."""
    return per_group_sample(frame, by, max(1, total // max(1, frame[by].nunique())), seed)
