"""crowdlens.crowd_response.emotions: the emotion classifiers on real SMP2020 texts and the lexicon."""

from __future__ import annotations

import numpy as np
import pytest

from crowdlens.crowd_response import emotions as weibo
from crowdlens.data import EMOTIONS


def test_chinese_classifier_beats_the_majority_class_on_real_data(shared_data):
    from crowdlens.data import load_smp2020_ewect

    smp = load_smp2020_ewect()
    train = smp[(smp.domain == "virus") & (smp.split == "train")].sample(2500, random_state=0)
    test = smp[(smp.domain == "virus") & (smp.split == "test")].sample(600, random_state=0)
    model = weibo.ChineseTextClassifier().fit(train["text"], train["label"])
    accuracy = (model.predict(test["text"]) == test["label"].to_numpy()).mean()
    majority = test["label"].value_counts(normalize=True).max()
    assert accuracy > majority + 0.05
    assert set(model.classes_) == set(EMOTIONS)
    with pytest.raises(ValueError, match="features must be"):
        weibo.ChineseTextClassifier(features="pinyin").fit(["一", "二"], ["happy", "sad"])


def test_lexicon_maps_to_the_six_classes():
    lexicon = weibo.LexiconEmotion().fit()
    p = lexicon.predict_proba(["我今天非常高兴，太开心了", "桌子"])
    assert np.allclose(p.sum(1), 1)
    assert list(lexicon.predict(["我今天非常高兴，太开心了", "桌子"])) == ["happy", "neutral"]
