"""crowdlens.data.reddit: the text a reader sees and where a community is."""

from __future__ import annotations

import pandas as pd
import pytest

from crowdlens.data import reddit as explore


def test_reddit_text_joins_submissions_and_blanks_removed():
    frame = pd.DataFrame({
        "kind": ["submission", "comment", "comment", "submission"],
        "title": ["Rally on Friday", None, None, "Only a title"],
        "selftext": ["Bring signs", None, None, "[removed]"],
        "body": [None, "I'll be there", "[deleted]", None],
    })
    assert explore.reddit_text(frame).tolist() == ["Rally on Friday\n\nBring signs", "I'll be there", "", "Only a title"]


def test_state_codes():
    assert explore.state_code("New York") == "NY" and explore.state_code("northdakota") == "ND"
    with pytest.raises(KeyError):
        explore.state_code("Atlantis")
