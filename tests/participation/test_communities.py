"""crowdlens.communities: scoring with a cache, the Dask path, and the estimators on
synthetic cases with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crowdlens.participation import communities as com
from crowdlens.participation import FIVE_CLASSES, NONE

WORDS = ["strike*", "protest*", "join", "we", "must", "organi*", "march*"]


class CountingRule:
    """A deterministic stand-in classifier that records how many texts it was asked about."""

    card = {"name": "counting-rule"}

    def __init__(self):
        self.seen = 0

    def predict_with_proba(self, texts, batch_size=64):
        self.seen += len(texts)
        labels = np.array(["Call-to-action" if "join" in t.lower() else "Problem-Solution" for t in texts], dtype=object)
        return labels, np.full(len(texts), 0.9)


def test_scorer_statuses_and_cache_only_scores_new_texts(tmp_path):
    texts = ["We must join the strike. Now.", "", "[removed]", "Nice cat.", "We must organise a march!",
             "We must join the strike. Now."]
    frame = pd.DataFrame({"kind": "comment", "body": texts, "subreddit": list("aabbcc")})
    rule = CountingRule()
    scorer = com.ParticipationScorer(rule, WORDS, cache=tmp_path / "scores.sqlite", progress=False)
    scored = com.score_frame(frame, scorer, keep=["subreddit"], progress=False)
    assert list(scored["status"]) == ["model", "empty", "empty", "few_terms", "model", "model"]
    assert list(scored["label"]) == ["Call-to-action", NONE, NONE, NONE, "Problem-Solution", "Call-to-action"]
    assert rule.seen == 2  # the repeated text is scored once
    assert list(scored["subreddit"]) == list("aabbcc")
    # a new scorer on the same cache file scores nothing again, and only the new text next time
    again = com.ParticipationScorer(rule, WORDS, cache=tmp_path / "scores.sqlite", progress=False)
    pd.testing.assert_frame_equal(com.score_frame(frame, again, keep=["subreddit"], progress=False), scored)
    assert rule.seen == 2
    again.score(["They protest and we join them."])
    assert rule.seen == 3 and len(again.cache) == 5  # "[removed]" reads as empty, like ""


def test_score_parquet_streams_batches_like_score_frame(tmp_path):
    frame = pd.DataFrame({"kind": ["comment", "submission"] * 50, "title": [None, "We must protest"] * 50,
                          "selftext": ["", "join us"] * 50, "body": [f"we must join strike {i}" for i in range(100)],
                          "score": range(100)})
    path = tmp_path / "corpus.parquet"
    frame.to_parquet(path)
    scorer = com.ParticipationScorer(CountingRule(), WORDS, cache=None, progress=False)
    streamed = com.score_parquet(path, scorer, keep=["score"], batch_rows=7, progress=False)
    whole = com.score_frame(frame, scorer, keep=["score"], progress=False)
    pd.testing.assert_frame_equal(streamed, whole)
    assert len(com.score_parquet(path, scorer, keep=["score"], batch_rows=7, limit=10, progress=False)) == 10


def test_scorer_fingerprint_changes_with_the_word_list():
    a = com.ParticipationScorer(CountingRule(), WORDS, cache=None)
    b = com.ParticipationScorer(CountingRule(), WORDS[:-1], cache=None)
    assert a.fingerprint() != b.fingerprint()


def test_scorer_fingerprint_keeps_onnx_scores_apart_from_pytorch_ones():
    from crowdlens.core.encoders import OnnxEncoderClassifier

    class Layered(CountingRule):
        def __init__(self, binary):
            super().__init__()
            self.binary = binary

    onnx = OnnxEncoderClassifier.__new__(OnnxEncoderClassifier)  # only its card matters here
    onnx.card_ = {"onnx_quantized": True, "onnx_export_format": OnnxEncoderClassifier.export_format}
    pytorch = com.ParticipationScorer(Layered(binary=object()), WORDS, cache=None)
    int8 = com.ParticipationScorer(Layered(binary=onnx), WORDS, cache=None)
    assert pytorch.fingerprint() != int8.fingerprint()
    # the PyTorch fingerprint is the card's alone, as before: existing score caches stay valid
    assert pytorch.fingerprint() == com.ParticipationScorer(CountingRule(), WORDS, cache=None).fingerprint()


def test_level_shares_hand_computed():
    scored = pd.DataFrame({"g": ["a"] * 4 + ["b"] * 2,
                           "label": [NONE, NONE, "Execution", "Problem-Solution", NONE, NONE]})
    shares = com.level_shares(scored, by="g", n_boot=200).set_index(["g", "level"])
    assert shares.loc[("a", NONE), "share"] == 0.5 and shares.loc[("a", "Execution"), "share"] == 0.25
    assert shares.loc[("b", NONE), "share"] == 1.0 and shares.loc[("b", NONE), "n"] == 2
    assert (shares["ci_low"] <= shares["share"]).all() and (shares["share"] <= shares["ci_high"]).all()


def _simulate(true_labels, confusion, rng):
    levels = np.asarray(FIVE_CLASSES, dtype=object)
    index = {label: i for i, label in enumerate(levels)}
    return np.array([levels[rng.choice(5, p=confusion[index[t]])] for t in true_labels], dtype=object)


def test_corrected_shares_recover_known_prevalence():
    rng = np.random.default_rng(1)
    confusion = np.array([[0.80, 0.15, 0.03, 0.01, 0.01],
                          [0.20, 0.70, 0.06, 0.02, 0.02],
                          [0.10, 0.20, 0.60, 0.05, 0.05],
                          [0.05, 0.10, 0.10, 0.65, 0.10],
                          [0.05, 0.10, 0.05, 0.10, 0.70]])
    labels = np.asarray(FIVE_CLASSES, dtype=object)
    test_truth = rng.choice(labels, size=3000, p=[0.4, 0.3, 0.1, 0.1, 0.1])
    test_pred = _simulate(test_truth, confusion, rng)
    truth = np.array([0.3, 0.2, 0.2, 0.2, 0.1])
    community = rng.choice(labels, size=6000, p=truth)
    scored = pd.DataFrame({"label": _simulate(community, confusion, rng), "status": "model"})
    # texts that are None by rule stay None
    scored = pd.concat([scored, pd.DataFrame({"label": [NONE] * 2000, "status": "few_terms"})], ignore_index=True)
    expected = (truth * 6000 + np.eye(5)[0] * 2000) / 8000
    table = com.corrected_shares(scored, test_truth, test_pred, n_boot=200).set_index("level").loc[list(labels)]
    corrected_error = np.abs(table["corrected"].to_numpy() - expected).max()
    raw_error = np.abs(table["raw"].to_numpy() - expected).max()
    assert corrected_error < 0.02 and raw_error > 0.03 and corrected_error < raw_error / 2  # the correction mattered
    assert ((table["ci_low"] <= expected + 0.01) & (expected - 0.01 <= table["ci_high"])).all()
    assert np.isclose(table["corrected"].sum(), 1)


def test_interrupted_time_series_finds_a_planted_jump():
    rng = np.random.default_rng(0)
    days = pd.date_range("2020-03-01", periods=40, freq="D")
    t = np.arange(40) - 20
    share = 0.10 + 0.001 * t + 0.08 * (t >= 0) + rng.normal(0, 0.005, 40)
    daily = pd.DataFrame({"day": days, "share": share, "n": 500})
    result = com.interrupted_time_series(daily, days[20])
    assert abs(result["level_change"] - 0.08) < 0.015 and result["level_ci_low"] > 0
    assert abs(result["slope_change"]) < 0.002
    with pytest.raises(ValueError, match="both sides"):
        com.interrupted_time_series(daily, "2021-01-01")


def test_align_to_events_pools_on_event_time():
    daily = pd.DataFrame({"state": ["A", "A", "B", "B"], "day": pd.to_datetime(["2020-03-01", "2020-03-02"] * 2),
                          "n": [10, 10, 20, 20], "participating": [1, 2, 4, 6]})
    events = pd.DataFrame({"state": ["A", "B"], "date": pd.to_datetime(["2020-03-02", "2020-03-01"])})
    pooled = com.align_to_events(daily, events, "state").set_index("day")
    origin = pd.Timestamp("2000-01-01")
    assert pooled.loc[origin, "n"] == 30 and pooled.loc[origin, "participating"] == 6  # A day 2 + B day 1
    assert pooled.loc[origin + pd.Timedelta(days=1), "share"] == 6 / 20


def test_covid_state_maps_states_and_cities(shared_data):
    from crowdlens.data import load_reddit_covid

    frame = load_reddit_covid()
    codes = com.covid_state(frame)
    assert codes.notna().all() and codes.nunique() == 51  # 50 states + Washington DC
    assert set(codes[frame["location"].isin(["NYC", "newyork"])]) == {"NY"}


def test_daily_participation_counts():
    scored = pd.DataFrame({"created_utc": [0, 10, 86_400, 86_401], "label": [NONE, "Execution", NONE, NONE],
                           "state": "x"})
    daily = com.daily_participation(scored, by="state")
    assert list(daily["n"]) == [2, 2] and list(daily["share"]) == [0.5, 0.0]


def test_trajectories_hand_made():
    month = 31 * 86_400
    scored = pd.DataFrame({
        "author": ["a", "a", "a", "a", "b", "b", "[deleted]", "[deleted]"],
        "created_utc": [0, 10, month, 3 * month, 0, month, 0, month],
        "label": ["Problem-Solution", NONE, "Call-to-action", "Execution", "Intention", "Problem-Solution",
                  "Problem-Solution", "Execution"],
    })
    states = com.author_months(scored)
    assert list(states["state"]) == ["Problem-Solution", "Call-to-action", "Execution", "Intention",
                                     "Problem-Solution"]
    pairs = com.transitions(states)
    assert list(zip(pairs["from"], pairs["to"])) == [("Problem-Solution", "Call-to-action"),
                                                      ("Intention", "Problem-Solution")]
    assert len(com.transitions(states, consecutive=False)) == 3
    matrix = com.transition_matrix(pairs)
    assert matrix.loc["Problem-Solution", "Call-to-action"] == 1.0 and matrix.loc[NONE].isna().all()
    assert com.upward_share(pairs) == 0.5
    null = com.upward_share_null(states, n_perm=50)
    assert null.shape == (50,) and set(np.unique(null[~np.isnan(null)])) <= {0.0, 0.5, 1.0}


def test_profile_distances_and_their_comparison():
    profile = pd.DataFrame([[1, 0], [1, 0], [0, 1]], index=["x", "y", "z"], columns=["p", "q"])
    d = com.profile_distances(profile)
    assert d.loc["x", "y"] == pytest.approx(0, abs=1e-6) and d.loc["x", "z"] == pytest.approx(1, abs=1e-6)
    other = pd.DataFrame([[1, 0], [0.5, 0.5], [0, 1]], index=["x", "y", "z"], columns=["p", "q"])
    table = com.compare_distances({"a": d, "b": com.profile_distances(other)})
    assert table.loc["a", "a"] == 1 and -1 <= table.loc["a", "b"] <= 1


def test_keyword_profile_rates_per_thousand():
    profile = com.keyword_profile(["we strike", "strikers strike", "nothing"], ["g", "g", "h"], ["strike*", "we"])
    assert profile.loc["g", "strike*"] == 1500 and profile.loc["g", "we"] == 500 and profile.loc["h"].sum() == 0


def test_action_logit_recovers_a_community_effect():
    rng = np.random.default_rng(0)
    n = 2000
    subreddit = rng.choice(["calm", "active"], n)
    action = rng.random(n) < np.where(subreddit == "active", 0.6, 0.3)
    scored = pd.DataFrame({"subreddit": subreddit, "kind": rng.choice(["comment", "submission"], n),
                           "score": rng.integers(0, 50, n), "created_utc": rng.integers(1.5e9, 1.5e9 + 5e6, n),
                           "label": np.where(action, "Call-to-action", "Problem-Solution")})
    table = com.odds_ratios(com.action_logit(scored, "action ~ C(subreddit, Treatment('calm')) + C(kind)"))
    effect = table.loc["C(subreddit, Treatment('calm'))[T.active]"]
    assert effect["ci_low"] > 2 and effect["odds_ratio"] == pytest.approx(3.5, rel=0.3)
    # the reference is the community with the most level-labelled texts; none is an error
    busy = scored.assign(label=np.where(scored["subreddit"] == "calm", "None", scored["label"]))
    assert com.reference_community(busy) == "active"
    with pytest.raises(ValueError, match="classifier_epochs"):
        com.action_logit(scored.assign(label="None"))


@pytest.mark.slow
def test_topic_profile_separates_distinct_groups():
    texts = ([f"The union voted to strike over wages at plant {i}" for i in range(30)]
             + [f"My cat sleeps on the sofa all afternoon, day {i}" for i in range(30)])
    groups = ["labour"] * 30 + ["pets"] * 30
    _, table, info = com.topic_profile(texts, groups, n_topics=2)
    assert table.shape == (2, 2) and len(info) == 2
    assert (table.max(axis=1) == 1).all() and table.loc["labour"].idxmax() != table.loc["pets"].idxmax()


@pytest.mark.slow
def test_dask_local_cluster_matches_streaming(isolated_cache, shared_data, monkeypatch):
    from crowdlens import participation as models
    from crowdlens.data import table_path

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    classifier = models.load_classifier("participation", epochs=1, train_rows=60, progress=False)
    path = table_path("reddit_political")
    scorer = com.ParticipationScorer(classifier, cache=True, progress=False)
    keep = ["subreddit", "kind", "author", "created_utc"]
    streamed = com.score_parquet(path, scorer, keep=keep, batch_rows=500, limit=1500, progress=False)
    assert (streamed["status"] == "model").sum() > 20
    fresh = com.ParticipationScorer(classifier, cache=isolated_cache / "dask.sqlite", progress=False)
    distributed = com.score_dask(path, fresh, keep=keep, npartitions=3, n_workers=2, limit=1500)
    assert list(distributed.columns) == list(streamed.columns)
    pd.testing.assert_frame_equal(distributed.drop(columns="p_participation"), streamed.drop(columns="p_participation"),
                                  check_dtype=False)  # dask may pick another string dtype for the same values
    assert np.allclose(distributed["p_participation"], streamed["p_participation"], equal_nan=True, atol=1e-4)
    assert len(fresh.cache) == streamed["text_hash"].nunique()  # workers wrote to the shared cache
    with pytest.raises(ValueError, match="saved classifier"):
        com.score_dask(path, com.ParticipationScorer(CountingRule(), cache=None), keep=keep)
