"""crowdlens.crowd_response.distributions: crowd distributions and the models that predict them,
on synthetic cases with known answers, and post metadata on the real posts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crowdlens.crowd_response import distributions as weibo
from crowdlens.data import EMOTIONS


def test_crowd_distributions_average_probabilities_per_post():
    reactions = pd.DataFrame({"post_id": ["a", "a", "b"], "text": ["x", "y", "z"]})
    classes = ["neutral", "happy", "angry", "sad", "fear", "surprise"]
    p = np.zeros((3, 6))
    p[0, 1], p[1, 2], p[2, 0] = 1, 1, 1
    dist = weibo.crowd_distributions(reactions, p, classes, min_reactions=1)
    assert list(dist.columns) == [*EMOTIONS, "n"]
    assert dist.loc["a", "happy"] == 0.5 and dist.loc["a", "angry"] == 0.5 and dist.loc["a", "n"] == 2
    assert list(weibo.crowd_distributions(reactions, p, classes, min_reactions=2).index) == ["a"]


def test_split_posts():
    posts = pd.DataFrame({"created_utc": [5, 1, 4, 2, 3]})
    train, test = weibo.split_posts(posts, "time", test_share=0.4)
    assert list(test) == [True, False, True, False, False] and (train == ~test).all()
    assert weibo.split_posts(posts, "random", 0.4, seed=1)[1].sum() == 2
    with pytest.raises(ValueError, match="random' or 'time"):
        weibo.split_posts(posts, "by author")


def test_distribution_models_beat_the_prior_when_features_tell():
    rng = np.random.default_rng(0)
    group = rng.integers(0, 2, 400)
    X = np.c_[group + rng.normal(0, 0.3, 400), rng.normal(0, 1, (400, 3))]
    means = np.array([[0.6, 0.1, 0.1, 0.1, 0.05, 0.05], [0.1, 0.5, 0.2, 0.1, 0.05, 0.05]])
    Y = np.array([rng.dirichlet(means[g] * 50) for g in group])
    train, test = slice(0, 300), slice(300, 400)
    results = {}
    for name, model in {"prior": weibo.PriorDistribution(), "knn": weibo.KNNDistribution(k=15),
                        "softmax": weibo.SoftmaxRegression()}.items():
        predicted = model.fit(X[train], Y[train]).predict(X[test])
        assert np.allclose(predicted.sum(1), 1)
        results[name] = weibo.evaluate_distributions(name, "random", Y[test], predicted)
    assert results["softmax"]["js"] < 0.5 * results["prior"]["js"]
    assert results["knn"]["js"] < results["prior"]["js"]
    assert results["knn"]["top_emotion_accuracy"] > 0.8 > results["prior"]["top_emotion_accuracy"]
    perfect = weibo.evaluate_distributions("oracle", "random", Y[test], Y[test])
    assert perfect["js"] < 1e-6 and perfect["top_emotion_accuracy"] == 1 and perfect["mean_correlation"] > 0.999


def test_rumor_effects_find_a_planted_difference():
    rng = np.random.default_rng(0)
    rumor = pd.Series(rng.integers(0, 2, 500).astype(bool), index=[f"p{i}" for i in range(500)])
    angry = 0.2 + 0.1 * rumor.to_numpy() + rng.normal(0, 0.03, 500)
    dist = pd.DataFrame({e: (1 - angry) / 5 for e in EMOTIONS}, index=rumor.index)
    dist["angry"], dist["n"] = angry, 20
    table = weibo.rumor_effects(dist, rumor).set_index("emotion")
    assert table.loc["angry", "difference"] == pytest.approx(0.1, abs=0.01) and table.loc["angry", "ci_low"] > 0


def test_post_metadata_is_numeric(shared_data):
    from crowdlens.data import load_ced_posts

    features = weibo.post_metadata(load_ced_posts())
    assert features.notna().all().all() and features["rumor"].sum() == 1538
