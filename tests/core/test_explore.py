"""crowdlens.core.explore on small hand-made frames with known answers."""

from __future__ import annotations

import pandas as pd
import pytest

from crowdlens.core import explore


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
