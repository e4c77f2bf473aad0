"""crowdlens.weibo and crowdlens.replies: the emotion classifiers on real SMP2020 texts,
distribution models and metrics on synthetic cases, reply examples and metrics by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from crowdlens import replies, weibo


def test_chinese_classifier_beats_the_majority_class_on_real_data(shared_data):
    from crowdlens.data import load_smp2020_ewect

    smp = load_smp2020_ewect()
    train = smp[(smp.domain == "virus") & (smp.split == "train")].sample(2500, random_state=0)
    test = smp[(smp.domain == "virus") & (smp.split == "test")].sample(600, random_state=0)
    model = weibo.ChineseTextClassifier().fit(train["text"], train["label"])
    accuracy = (model.predict(test["text"]) == test["label"].to_numpy()).mean()
    majority = test["label"].value_counts(normalize=True).max()
    assert accuracy > majority + 0.05
    assert set(model.classes_) == set(weibo.EMOTIONS)
    with pytest.raises(ValueError, match="features must be"):
        weibo.ChineseTextClassifier(features="pinyin")


def test_lexicon_maps_to_the_six_classes():
    lexicon = weibo.LexiconEmotion().fit()
    p = lexicon.predict_proba(["我今天非常高兴，太开心了", "桌子"])
    assert np.allclose(p.sum(1), 1)
    assert list(lexicon.predict(["我今天非常高兴，太开心了", "桌子"])) == ["happy", "neutral"]


def test_crowd_distributions_average_probabilities_per_post():
    reactions = pd.DataFrame({"post_id": ["a", "a", "b"], "text": ["x", "y", "z"]})
    classes = ["neutral", "happy", "angry", "sad", "fear", "surprise"]
    p = np.zeros((3, 6))
    p[0, 1], p[1, 2], p[2, 0] = 1, 1, 1
    dist = weibo.crowd_distributions(reactions, p, classes, min_reactions=1)
    assert list(dist.columns) == [*weibo.EMOTIONS, "n"]
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
    dist = pd.DataFrame({e: (1 - angry) / 5 for e in weibo.EMOTIONS}, index=rumor.index)
    dist["angry"], dist["n"] = angry, 20
    table = weibo.rumor_effects(dist, rumor).set_index("emotion")
    assert table.loc["angry", "difference"] == pytest.approx(0.1, abs=0.01) and table.loc["angry", "ci_low"] > 0


def test_mentions_are_masked():
    assert replies.mask_mentions("@张三 说得对 //@li_si-2:转发") == "@某用户 说得对 //@某用户:转发"


def test_reply_examples_use_only_earlier_history():
    reactions = pd.DataFrame({
        "post_id": ["p1", "p2", "p3", "p1", "p2", "p3"],
        "reaction_id": list("abcdef"),
        "author": ["u1", "u1", "u1", "u2", "u2", "[deleted]"],
        "text": ["地震了 好怕", "转发微博", "@王五 地震真可怕", "哈哈", "", "x"],
        "created_utc": [1, 2, 3, 1, 2, 1],
    })
    posts = pd.DataFrame({"post_id": ["p1", "p2", "p3"], "text": ["四川地震", "新闻", "地震 救援"]})
    train, test = replies.reply_examples(reactions, posts, min_texted=2, history_k=1)
    assert list(test["author"]) == ["u1"] and test.loc[0, "reply"] == "@某用户 地震真可怕"
    assert test.loc[0, "history"] == ["地震了 好怕"]  # the earlier reply most like the post
    assert list(train["reaction_id"]) == ["a", "b"] and train.loc[0, "history"] == []
    train, _ = replies.reply_examples(reactions, posts, min_texted=2, exclude_posts=["p1"])
    assert list(train["reaction_id"]) == ["b"]
    prompt = replies.reply_prompt("四川地震", ["地震了 好怕"])
    assert prompt.startswith("微博：四川地震") and "- 地震了 好怕" in prompt and prompt.endswith("评论：")


def test_reply_metrics_by_hand():
    assert replies.rouge_l_chars("abcd", "abd") == pytest.approx(2 * 1 * 0.75 / 1.75)
    assert replies.rouge_l_chars("转发微博", "转发微博") == 1 and replies.rouge_l_chars("abc", "xyz") == 0
    assert replies.bleu_chars("今天天气很好", "今天天气很好") == pytest.approx(100)
    assert replies.distinct_n(["aaaa"], 2) == pytest.approx(1 / 3) and replies.distinct_n(["ab", "cd"], 2) == 1
    assert replies.paired_bootstrap([2, 3, 4], [1, 2, 3], n_boot=50) == (1.0, 1.0, 1.0)


def test_clean_reply_keeps_the_first_line_without_replacement_characters():
    assert replies.clean_reply("\ufffd切都好 \n第二行") == "切都好"
    assert replies.clean_reply("  转发\ufffd微博") == "转发微博"
    assert replies.clean_reply("\n后面") == ""


@pytest.mark.slow
@pytest.mark.parametrize("adapter", ["lora", "mixture"])
def test_reply_model_learns_a_users_habit(adapter, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    examples = pd.DataFrame({"post_text": ["今天下雨", "股市大跌", "新电影上映", "地震了"] * 4,
                             "history": [["转发微博"]] * 16, "reply": ["转发微博"] * 16})
    model = replies.ReplyModel(adapter=adapter, steps=25, batch_size=4, learning_rate=3e-3, rank=4,
                               progress=False).fit(examples)
    assert model.losses_[-1] < model.losses_[0] / 3
    assert model.generate(examples.head(2), max_new_tokens=8) == ["转发微博", "转发微博"]
    chosen, picked = model.choose(examples.head(2), [["股市大跌了", "转发微博"], ["转发微博", "哈哈"]])
    assert chosen == ["转发微博", "转发微博"] and list(picked) == [1, 0]
    # the cached-prompt score equals the mean log-probability of one plain forward pass
    row = examples.iloc[0].to_dict() | {"reply": "股市大跌了"}
    ids, labels = model._encode(row)
    with torch.inference_mode():
        logits = model.model_(input_ids=torch.tensor([ids])).logits[0, :-1]
    target = torch.tensor(labels[1:])
    plain = torch.log_softmax(logits.float(), -1)[target != -100].gather(1, target[target != -100][:, None]).mean()
    assert model.reply_logprob(examples.head(1), [["股市大跌了"]])[0][0] == pytest.approx(plain.item(), abs=1e-4)
    gates = model.mean_gates(examples.head(2))
    if adapter == "mixture":
        sums = gates.groupby("layer")[["analyze", "compose"]].sum()
        assert np.allclose(sums, 1, atol=1e-4)
    else:
        assert gates is None


def test_crowd_examples_sample_repliers_with_their_earlier_replies():
    reactions = pd.DataFrame({
        "post_id": ["p1", "p2", "p2", "p2", "p1"],
        "reaction_id": list("abcde"),
        "author": ["u1", "u1", "u2", "[deleted]", "u3"],
        "text": ["地震好可怕", "@赵六 又地震了", "转发", "x", ""],
        "created_utc": [1, 5, 2, 3, 4],
    })
    posts = pd.DataFrame({"post_id": ["p1", "p2"], "text": ["地震", "余震"]})
    crowd = replies.crowd_examples(reactions, posts, ["p2"], per_post=5, history_k=2).set_index("reaction_id")
    assert sorted(crowd.index) == ["b", "c"]  # people with text only
    assert crowd.loc["b", "history"] == ["地震好可怕"] and crowd.loc["c", "history"] == []
    assert crowd.loc["b", "reply"] == "@某用户 又地震了"
    assert list(replies.crowd_examples(reactions, posts, ["p2"], per_post=1)["post_id"]) == ["p2"]


def test_post_metadata_is_numeric(shared_data):
    from crowdlens.data import load_ced_posts

    features = weibo.post_metadata(load_ced_posts())
    assert features.notna().all().all() and features["rumor"].sum() == 1538
