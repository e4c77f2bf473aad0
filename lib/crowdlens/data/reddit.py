"""What the Reddit tables mean: the text a reader sees, and where a community is.

Shared by every chapter that reads Reddit (the data tour, both participation chapters).
"""

from __future__ import annotations

import pandas as pd

#: Placeholders Reddit writes in place of removed or deleted text.
REMOVED = frozenset({"[removed]", "[deleted]"})


def reddit_text(frame: pd.DataFrame) -> pd.Series:
    """The text a reader sees: title + selftext for submissions, body for comments.

    Removed/deleted placeholders count as empty; missing parts are skipped.
    Used in the data_tour and reddit_communities chapters.
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
    """Postal code of a US state given as 'New York' or as a subreddit location 'newyork'.
    Used in the data_tour and reddit_communities chapters."""
    squashed = {k.replace(" ", "").lower(): v for k, v in US_STATES.items()}
    key = name.replace(" ", "").lower()
    if key not in squashed:
        raise KeyError(f"{name!r} is not a US state")
    return squashed[key]


#: The state of each city subreddit of the COVID corpus.
CITY_STATE = {"Atlanta": "GA", "Austin": "TX", "Baltimore": "MD", "Boston": "MA", "Chicago": "IL", "Dallas": "TX",
              "Denver": "CO", "Houston": "TX", "LosAngeles": "CA", "NYC": "NY", "Philadelphia": "PA",
              "Pittsburgh": "PA", "Portland": "OR", "SanDiego": "CA", "SanFrancisco": "CA", "Seattle": "WA",
              "StLouis": "MO", "WashingtonDC": "DC"}


def covid_state(frame: pd.DataFrame) -> pd.Series:
    """Postal code of the state of each row of the COVID corpus (state or city subreddit).
    Used in the reddit_communities chapter."""
    codes = {loc: CITY_STATE[loc] if loc in CITY_STATE else state_code(loc) for loc in frame["location"].unique()}
    return frame["location"].map(codes)
