"""crowdlens.crowd_response.replies: reply examples, metrics by hand, and a reply model that
learns a planted habit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from crowdlens.crowd_response import replies


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


def test_history_scorer_ranks_by_bm25_with_length_normalisation():
    documents = ["地震", "地震 今天天气很好很好很好我们出去玩吧", "天气", ""]
    bm25 = replies.history_scorer(documents)("地震")
    assert bm25[0] > bm25[1] > 0 and bm25[2] == bm25[3] == 0  # a short on-topic reply first
    tfidf = replies.history_scorer(documents, "tfidf")("地震")
    assert np.argmax(tfidf) == 0 and tfidf[2] == 0
    assert len(replies.history_scorer([])("地震")) == 0
    with pytest.raises(ValueError, match="'bm25'"):
        replies.history_scorer(documents, "bm52")


def test_reply_examples_keep_the_top_k_earlier_replies_by_relevance():
    texts = ["今天吃饭", "地震了", "好困", "转发", "地震 救援加油", "早安", "余震 地震"]
    reactions = pd.DataFrame({"post_id": [f"p{i}" for i in range(7)], "reaction_id": list("abcdefg"),
                              "author": ["u1"] * 7, "text": texts, "created_utc": range(7)})
    posts = pd.DataFrame({"post_id": [f"p{i}" for i in range(7)], "text": ["饭"] * 6 + ["地震救援"]})
    _, test = replies.reply_examples(reactions, posts, min_texted=2, history_k=2)
    assert test.loc[0, "history"] == ["地震 救援加油", "地震了"]
    _, test = replies.reply_examples(reactions, posts, min_texted=2, history_k=5, history_ranking="tfidf")
    assert len(test.loc[0, "history"]) == 5 and test.loc[0, "history"][0] == "地震 救援加油"


def test_reply_metrics_by_hand():
    assert replies.rouge_l_chars("abcd", "abd") == pytest.approx(2 * 1 * 0.75 / 1.75)
    assert replies.rouge_l_chars("转发微博", "转发微博") == 1 and replies.rouge_l_chars("abc", "xyz") == 0
    assert replies.bleu_chars("今天天气很好", "今天天气很好") == pytest.approx(100)
    assert replies.distinct_n(["aaaa"], 2) == pytest.approx(1 / 3) and replies.distinct_n(["ab", "cd"], 2) == 1
    assert replies.paired_bootstrap([2, 3, 4], [1, 2, 3], n_boot=50) == (1.0, 1.0, 1.0)


def test_a_reply_loops_when_a_4gram_recurs_three_times():
    assert replies.has_loop("，没有仇家，没有仇家，没有仇家，没有")
    assert replies.has_loop("用户用户用户用户用户")  # overlapping: 用户用户 three times
    assert not replies.has_loop("没有仇家，没有仇家")  # twice is not a loop
    assert not replies.has_loop("今天天气很好，出去走走") and not replies.has_loop("")
    assert replies.loop_share(["哈哈哈哈哈哈", "好", "转发微博", "abcdabcdabcd"]) == 0.5
    assert replies.loop_share([]) == 0.0


def test_clean_reply_keeps_the_first_line_without_replacement_characters():
    assert replies.clean_reply("\ufffd切都好 \n第二行") == "切都好"
    assert replies.clean_reply("  转发\ufffd微博") == "转发微博"
    assert replies.clean_reply("\n后面") == ""


@pytest.mark.slow
@pytest.mark.parametrize("adapter", ["lora", "mixture", "pac"])
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
    ids, labels, post, user = model._encode(row)
    with torch.inference_mode(), model._spans([post], [user]):
        logits = model.model_(input_ids=torch.tensor([ids])).logits[0, :-1]
    target = torch.tensor(labels[1:])
    plain = torch.log_softmax(logits.float(), -1)[target != -100].gather(1, target[target != -100][:, None]).mean()
    assert model.reply_logprob(examples.head(1), [["股市大跌了"]])[0][0] == pytest.approx(plain.item(), abs=1e-4)
    gates = model.mean_gates(examples.head(2))
    if adapter in ("mixture", "pac"):
        sums = gates.groupby("layer")[["analyze", "compose"]].sum()
        assert np.allclose(sums, 1, atol=1e-4)
    else:
        assert gates is None


@pytest.mark.slow
def test_the_reply_loss_on_the_last_positions_equals_the_models_own_loss(tiny_causal_lm):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_causal_lm)
    # two examples of different lengths whose replies (3 and 2 tokens) end them
    rows = [([5, 6, 7, 8, 9, 10, 11, 12], [-100] * 5 + [10, 11, 12], [False] * 8, [False] * 8),
            ([20, 21, 22, 23, 24], [-100] * 3 + [23, 24], [False] * 5, [False] * 5)]
    ids, labels, mask, _, _ = replies._padded(rows, pad=0)  # right padding, the model's own loss
    expected = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    ids, labels, mask, _, _ = replies._padded(rows, pad=0, left=True)
    loss = replies._reply_loss(model, {"input_ids": ids, "attention_mask": mask}, labels)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


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
