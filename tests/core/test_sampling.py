"""crowdlens.core.sampling on small hand-made frames."""

from __future__ import annotations

import pandas as pd
import pytest

from crowdlens.core import sampling as explore


def test_sample_is_reproducible_and_bounded():
    frame = pd.DataFrame({"x": range(100)})
    assert explore.sample(frame, 0) is frame and len(explore.sample(frame, 500)) == 100
    assert explore.sample(frame, 10, seed=3).index.tolist() == explore.sample(frame, 10, seed=3).index.tolist()
    with pytest.raises(ValueError):
        explore.sample(frame, -1)


def test_per_group_sample_caps_each_group_and_keeps_small_ones():
    frame = pd.DataFrame({"g": ["a"] * 5 + ["b"] * 2 + ["c"], "x": range(8)})
    sampled = explore.per_group_sample(frame, "g", per_group=3, seed=1)
    assert sampled["g"].value_counts().to_dict() == {"a": 3, "b": 2, "c": 1}
    assert sampled["x"].is_unique and set(sampled["x"]) <= set(frame["x"])
    assert sampled.equals(explore.per_group_sample(frame, "g", per_group=3, seed=1))  # reproducible
    with pytest.raises(ValueError, match="per_group"):
        explore.per_group_sample(frame, "g", per_group=0)


def test_balanced_sample_caps_each_group():
    frame = pd.DataFrame({"g": ["a"] * 10 + ["b"] * 2, "x": range(12)})
    sampled = explore.balanced_sample(frame, "g", total=8)
    assert sampled["g"].value_counts().to_dict() == {"a": 4, "b": 2}
