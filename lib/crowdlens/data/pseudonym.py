"""The author pseudonymisation rule shared by every copy of the data."""

from __future__ import annotations

import hashlib

import pandas as pd

#: Author markers that are not people, kept as they are (never hashed, never counted as users).
NOT_PEOPLE = frozenset({"[deleted]", "AutoModerator"})

#: A pseudonym is this many leading lowercase hex characters of the digest.
PSEUDONYM_LENGTH = 12
PSEUDONYM_PATTERN = rf"[0-9a-f]{{{PSEUDONYM_LENGTH}}}"
#: The rule in words, for error messages and the schemas' checks.
PSEUDONYM_RULE = (
    f'exactly {PSEUDONYM_LENGTH} lowercase hex characters (the first {PSEUDONYM_LENGTH} of '
    f'sha256("crowdlens:" + username)), or one of the markers {" / ".join(sorted(NOT_PEOPLE))}'
)


def pseudonymise_one(username: str) -> str:
    """First 12 hex characters of ``sha256("crowdlens:" + username)``."""
    if username in NOT_PEOPLE:
        return username
    return hashlib.sha256(f"crowdlens:{username}".encode("utf-8")).hexdigest()[:PSEUDONYM_LENGTH]


def pseudonymise(usernames: pd.Series) -> pd.Series:
    """Vectorised over a Series; each distinct name is hashed once, missing stays missing."""
    codes, uniques = pd.factorize(usernames, use_na_sentinel=True)
    hashed = pd.array([pseudonymise_one(str(u)) for u in uniques] + [pd.NA], dtype="string")
    return pd.Series(hashed[codes], index=usernames.index, name=usernames.name)


def not_pseudonymised(authors: pd.Series) -> pd.Series:
    """True where a present value is neither a pseudonym nor a ``NOT_PEOPLE`` marker.

    Missing values are False: whether they are allowed is the column's nullability.
    """
    authors = authors.astype("string")
    ok = authors.str.fullmatch(PSEUDONYM_PATTERN) | authors.isin(list(NOT_PEOPLE))
    return ~ok.fillna(True).astype(bool)
