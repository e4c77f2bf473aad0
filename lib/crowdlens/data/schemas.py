"""Fixed schemas of every table, as ``../shared/data/README.md`` describes them.

Each table is a pandera ``DataFrameSchema``; ``coerce=True`` makes a table
read from the shared parquet and one rebuilt by ``crowdlens data fetch`` end
up with identical dtypes.
"""

from __future__ import annotations

import pandera.pandas as pa

from crowdlens.data.pseudonym import PSEUDONYM_RULE, not_pseudonymised

#: The data's label vocabularies, defined once here at the bottom of the package;
#: the studies re-export them (``crowdlens.participation.LEVELS``,
#: ``crowdlens.crowd_response.EMOTIONS``). Participation levels lowest to highest.
PARTICIPATION_LEVELS = ("Problem-Solution", "Call-to-action", "Intention", "Execution")
AUGMENTATION_TYPES = ("RedditExtension", "Synthetic")
EMOTIONS = ("happy", "angry", "sad", "fear", "surprise", "neutral")


def _text(nullable: bool = True, **kwargs) -> pa.Column:
    return pa.Column("string", nullable=nullable, **kwargs)


def _in(values, nullable: bool = True) -> pa.Column:
    # Written out rather than Check.isin: pandera counts <NA> as a failure of isin.
    allowed = list(values)
    check = pa.Check(lambda s: s.isna() | s.isin(allowed), name=f"isin({allowed})")
    return pa.Column("string", nullable=nullable, checks=check)


#: The name of the check every author column carries (``Table.validate`` recognises it).
PSEUDONYM_CHECK = "pseudonym"


def _author(nullable: bool = False) -> pa.Column:
    # The book publishes whatever a table holds: an author column takes pseudonyms only.
    # One verdict for the whole column (not element-wise) so that pandera's error never
    # lists the offending values, which would print the raw usernames it refuses.
    check = pa.Check(lambda s: not not_pseudonymised(s).any(), name=PSEUDONYM_CHECK,
                     error=f"every author must be {PSEUDONYM_RULE}")
    return pa.Column("string", nullable=nullable, checks=check)


def _int(nullable: bool = False) -> pa.Column:
    return pa.Column("Int64", nullable=nullable)


COLLECTIVE_ACTION = pa.DataFrameSchema(
    {
        "CommentID": _text(),
        "Subreddit": _text(),
        "OriginalText": _text(),
        "ActionFocusedText": _text(nullable=False),
        # empty Label = no participation ("None")
        "Label": _in(PARTICIPATION_LEVELS),
        "AugmentationType": _in(AUGMENTATION_TYPES),
        "SimplifiedLabel": _in(["Participation"]),
    },
    coerce=True,
    strict=True,
    name="collective_action",
)

REDDIT_POLITICAL = pa.DataFrameSchema(
    {
        "subreddit": _text(nullable=False),
        "kind": _in(["comment", "submission"], nullable=False),
        "author": _author(nullable=False),
        "created_utc": _int(),
        "score": _int(),
        "num_comments": pa.Column("Float64", nullable=True),
        "title": _text(),
        "selftext": _text(),
        "body": _text(),
    },
    coerce=True,
    strict=True,
    name="reddit_political",
)

REDDIT_COVID = pa.DataFrameSchema(
    {
        "id": _text(nullable=False),
        "subreddit": _text(),
        "location": _text(nullable=False),
        "scope": _in(["state", "city"], nullable=False),
        "kind": _in(["comment", "submission"], nullable=False),
        "author": _author(nullable=False),
        "created_utc": _int(),
        "title": _text(),
        "selftext": _text(),
        "body": _text(),
        "link_flair_text": _text(),
    },
    coerce=True,
    strict=True,
    name="reddit_covid",
)

COVID_POLICY_DATES = pa.DataFrameSchema(
    {
        "state": _text(nullable=False),
        "date": pa.Column("string", nullable=False, checks=pa.Check.str_matches(r"^\d\d/\d\d/\d\d$")),
        "change": _text(nullable=False),
    },
    coerce=True,
    strict=True,
    name="covid_policy_dates",
)

CED_POSTS = pa.DataFrameSchema(
    {
        "post_id": pa.Column("string", nullable=False, unique=True),
        "label": _in(["rumor", "non-rumor"], nullable=False),
        "author": _author(nullable=False),
        "created_utc": _int(),
        "text": _text(nullable=False),
        "reposts": _int(),
        "comments": _int(),
        "likes": _int(),
        "pics": _int(),
        "has_url": pa.Column("boolean", nullable=False),
        "author_verified": pa.Column("boolean", nullable=True),
        "author_gender": _text(),
        "author_followers": pa.Column("Float64", nullable=True),
        "author_friends": pa.Column("Float64", nullable=True),
        "author_messages": pa.Column("Float64", nullable=True),
        "author_location": _text(),
    },
    coerce=True,
    strict=True,
    name="ced_posts",
)

CED_REACTIONS = pa.DataFrameSchema(
    {
        "post_id": _text(nullable=False),
        "reaction_id": _text(nullable=False),
        "parent_id": _text(),
        "author": _author(nullable=False),
        "text": _text(nullable=False),  # '' for a bare repost
        "created_utc": _int(nullable=True),
    },
    coerce=True,
    strict=True,
    name="ced_reactions",
)

SMP2020_EWECT = pa.DataFrameSchema(
    {
        "id": pa.Column("string", nullable=False, unique=True),
        "domain": _in(["usual", "virus"], nullable=False),
        "split": _in(["train", "eval", "test"], nullable=False),
        "text": _text(nullable=False),
        "label": _in(EMOTIONS, nullable=False),
    },
    coerce=True,
    strict=True,
    name="smp2020_ewect",
)
