"""crowdlens.explore on small hand-made frames with known answers."""

from __future__ import annotations

import pandas as pd
import pytest

from crowdlens import explore


def test_reddit_text_joins_submissions_and_blanks_removed():
    frame = pd.DataFrame({
        "kind": ["submission", "comment", "comment", "submission"],
        "title": ["Rally on Friday", None, None, "Only a title"],
        "selftext": ["Bring signs", None, None, "[removed]"],
        "body": [None, "I'll be there", "[deleted]", None],
    })
    assert explore.reddit_text(frame).tolist() == ["Rally on Friday\n\nBring signs", "I'll be there", "", "Only a title"]


def test_text_length_units():
    texts = pd.Series(["one two  three", "", None, "武汉加油"])
    assert explore.text_length(texts).tolist() == [3, 0, 0, 1]
    assert explore.text_length(texts, "chars").tolist() == [14, 0, 0, 4]
    with pytest.raises(ValueError, match="words"):
        explore.text_length(texts, "tokens")


def test_counts_per_period_fills_missing_months_with_zero():
    day = 86400
    jan, mar = 1577836800, 1577836800 + 60 * day  # 2020-01-01, 2020-03-01
    frame = pd.DataFrame({"created_utc": [jan, jan + day, mar], "group": ["a", "b", "a"]})
    plain = explore.counts_per_period(frame)
    assert plain["count"].tolist() == [2, 0, 1]
    grouped = explore.counts_per_period(frame, by="group").set_index(["period", "group"])["count"]
    assert grouped[(pd.Timestamp("2020-02-01"), "a")] == 0 and grouped[(pd.Timestamp("2020-01-01"), "b")] == 1
    assert len(grouped) == 6


def test_sample_is_reproducible_and_bounded():
    frame = pd.DataFrame({"x": range(100)})
    assert explore.sample(frame, 0) is frame and len(explore.sample(frame, 500)) == 100
    assert explore.sample(frame, 10, seed=3).index.tolist() == explore.sample(frame, 10, seed=3).index.tolist()
    with pytest.raises(ValueError):
        explore.sample(frame, -1)


def test_state_codes():
    assert explore.state_code("New York") == "NY" and explore.state_code("northdakota") == "ND"
    with pytest.raises(KeyError):
        explore.state_code("Atlantis")


def test_per_group_sample_caps_each_group_and_keeps_small_ones():
    frame = pd.DataFrame({"g": ["a"] * 5 + ["b"] * 2 + ["c"], "x": range(8)})
    sampled = explore.per_group_sample(frame, "g", per_group=3, seed=1)
    assert sampled["g"].value_counts().to_dict() == {"a": 3, "b": 2, "c": 1}
    assert sampled["x"].is_unique and set(sampled["x"]) <= set(frame["x"])
    assert sampled.equals(explore.per_group_sample(frame, "g", per_group=3, seed=1))  # reproducible
    with pytest.raises(ValueError, match="per_group"):
        explore.per_group_sample(frame, "g", per_group=0)
