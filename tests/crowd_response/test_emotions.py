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


def test_a_student_learns_a_teachers_soft_labels_on_unlabelled_reactions(shared_data):
    from crowdlens.data import load_ced_reactions, load_smp2020_ewect

    smp = load_smp2020_ewect()
    train = smp[(smp.domain == "virus") & (smp.split == "train")].sample(2000, random_state=0)
    # the teacher: a different model (characters only), so the student must learn from it
    teacher = weibo.ChineseTextClassifier("chars", seed=0).fit(train["text"], train["label"])
    reactions = load_ced_reactions()["text"].dropna()
    reactions = reactions[reactions.str.len() > 0].sample(3000, random_state=0).tolist()
    distilled = weibo.distil_labeller(teacher, reactions, teacher_rows=2000, seed=0)
    assert distilled.teacher_rows == 2000 and distilled.held_out == 200
    assert distilled.agreement > 0.8  # it agrees with the teacher on reactions it never saw
    assert set(distilled.student.classes_) <= set(teacher.classes_)
    unseen = reactions[2500:2700]  # labelled by the teacher or not: the two agree
    assert np.mean(distilled.student.predict(unseen) == teacher.predict(unseen)) > 0.8
    with pytest.raises(ValueError, match="teacher_rows must be at least 10"):
        weibo.distil_labeller(teacher, reactions, teacher_rows=5)
