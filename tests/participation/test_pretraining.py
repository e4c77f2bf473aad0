"""crowdlens.participation.pretraining: no test comment reaches the pretraining corpus
(by id, by whole text, by a shared sentence), and masked-LM pretraining learns, is
cached, resumes after a kill and gives a folder the encoder fine-tunes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crowdlens.participation import pretraining as P

TEST = pd.DataFrame({
    "CommentID": ["t1", "t2", "t3"],
    "OriginalText": ["We need everyone at the town hall on Monday to stop the pipeline vote.",
                     "I went to the strike yesterday and it was the biggest crowd I have ever seen here.", None],
    "ActionFocusedText": ["We need everyone at the town hall on Monday to stop the pipeline vote.",
                          "I went to the strike yesterday and it was the biggest crowd I have ever seen here.",
                          "Sign the petition to keep the library open past eight o'clock."],
})


def tables():
    political = pd.DataFrame({
        "kind": ["comment"] * 4,
        "body": ["we need everyone at the   town hall on Monday to stop the pipeline vote.",  # same text, other case
                 "Long thread. Sign the petition to keep the library open past eight o'clock. Thanks all!",  # a test sentence
                 "The council meets on Thursday; bring a sandwich and your questions about the budget.",
                 "ok"],  # too short
    })
    covid = pd.DataFrame({
        "kind": ["comment", "comment", "submission"],
        "id": ["t2", "c2", "c3"],  # the first reuses a test comment's id
        "body": ["an unrelated comment that only shares the id of a test comment", "Stay home and wash your hands, everyone.",
                 None],
        "title": [None, None, "Testing sites open in Austin"],
        "selftext": [None, None, "Drive-through testing starts Monday at the stadium."],
    })
    return {"political": political, "covid": covid}


def test_the_corpus_keeps_out_test_comments_by_id_text_and_sentence():
    corpus = P.domain_corpus(TEST, tables(), min_chars=10)
    assert corpus.texts == ["The council meets on Thursday; bring a sandwich and your questions about the budget.",
                            "Stay home and wash your hands, everyone.",
                            "Testing sites open in Austin\n\nDrive-through testing starts Monday at the stadium."]
    assert corpus.excluded_by_id == 1 and corpus.excluded_by_text == 2
    assert corpus.kept == {"political": 1, "covid": 2}
    sample = P.domain_corpus(TEST, tables(), min_chars=10, max_texts=2, seed=0)
    assert len(sample.texts) + sample.excluded_by_text == 2 and set(sample.texts) <= set(corpus.texts)
    assert sample.fingerprint != corpus.fingerprint
    with pytest.raises(ValueError, match="load_collective_action"):
        P.domain_corpus(pd.DataFrame({"text": ["x"]}), tables())


def test_no_real_test_comment_survives_in_a_corpus_that_contains_them(shared_data):
    from crowdlens.data.registry import load_collective_action, load_reddit_covid

    test = load_collective_action("test")
    covid = load_reddit_covid().sample(3000, random_state=0)
    planted = test.sample(5, random_state=0)
    injected = pd.DataFrame({"kind": "comment", "id": [f"planted{i}" for i in range(5)],
                             "body": [f"Before. {t} After that, more words here." for t in planted["ActionFocusedText"]]})
    corpus = P.domain_corpus(test, {"covid": pd.concat([covid, injected], ignore_index=True)})
    assert corpus.excluded_by_text >= 5
    kept = "\n".join(corpus.texts).lower()
    assert not any(" ".join(t.split()).lower() in kept for t in planted["ActionFocusedText"])
    assert corpus.kept["covid"] > 2000  # the rest of the sample stays


def test_pretraining_learns_is_cached_and_resumes_after_a_kill(tiny_encoder, isolated_cache, monkeypatch):
    import torch

    from crowdlens.core.encoders import EncoderClassifier

    texts = ["join the strike on monday", "sign the petition today", "the bus was late again",
             "we marched to city hall", "my cat sleeps all day", "boycott the company now"] * 8
    corpus = P.DomainCorpus(texts, {"hand-made": len(texts)})
    settings = dict(model=tiny_encoder, epochs=3, max_length=12, batch_size=8, learning_rate=5e-3,
                    mlm_probability=0.3, checkpoint_every=4, progress=False, device="cpu")
    real_clip, calls = torch.nn.utils.clip_grad_norm_, []

    def killed_at_step_ten(*args, **kwargs):
        calls.append(1)
        if len(calls) == 10:
            raise KeyboardInterrupt
        return real_clip(*args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", killed_at_step_ten)
    with pytest.raises(KeyboardInterrupt):
        P.mlm_pretrain(corpus, **settings)
    checkpoint = next(isolated_cache.glob("models/*.checkpoint.pt"))
    assert torch.load(checkpoint, weights_only=False)["step"] == 8  # the last checkpoint before the kill
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", real_clip)
    folder = P.mlm_pretrain(corpus, **settings)
    card = P.pretraining_card(folder)
    assert card["steps"] == 18 and len(card["losses"]) == 18 and not checkpoint.exists()
    assert np.mean(card["losses"][-4:]) < np.mean(card["losses"][:4])  # it learns the corpus
    assert card["corpus_texts"] == len(texts) and card["seconds"] > 0
    stamp = (folder / "config.json").stat().st_mtime_ns
    assert P.mlm_pretrain(corpus, **settings) == folder and (folder / "config.json").stat().st_mtime_ns == stamp
    classifier = EncoderClassifier(str(folder), max_length=12, epochs=1, batch_size=8, validation_share=0.0,
                                   progress=False, device="cpu").fit(texts[:12], ["a", "b"] * 6)
    assert classifier.predict_proba(texts[:3]).shape == (3, 2)
    with pytest.raises(ValueError, match="corpus is empty"):
        P.mlm_pretrain(P.DomainCorpus([]), **settings)
