"""The author pseudonymisation rule shared by every copy of the data."""

from __future__ import annotations

import hashlib

import pandas as pd

#: Author markers that are not people, kept as they are (never hashed, never counted as users).
NOT_PEOPLE = frozenset({"[deleted]", "AutoModerator"})


def pseudonymise_one(username: str) -> str:
    """First 12 hex characters of ``sha256("crowdlens:" + username)``."""
    if username in NOT_PEOPLE:
        return username
    return hashlib.sha256(f"crowdlens:{username}".encode("utf-8")).hexdigest()[:12]


def pseudonymise(usernames: pd.Series) -> pd.Series:
    """Vectorised over a Series; each distinct name is hashed once, missing stays missing."""
    codes, uniques = pd.factorize(usernames, use_na_sentinel=True)
    hashed = pd.array([pseudonymise_one(str(u)) for u in uniques] + [pd.NA], dtype="string")
    return pd.Series(hashed[codes], index=usernames.index, name=usernames.name)
