"""What the book's estimators share, in scikit-learn's conventions.

Parameters are set in ``__init__`` only and stored under their own names (so
``sklearn.base.clone`` copies an estimator); everything learned is set by ``fit`` in
attributes ending in ``_``. A classifier has ``classes_`` and ``predict_proba``, and
predicts the most probable class.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.base import BaseEstimator

from crowdlens.core.metrics import macro_f1

#: The per-class offsets (added to log-probabilities) that ClassOffsets tries: zero, the
#: untuned decision, is among them, so tuning never lowers the score it tunes.
OFFSET_GRID = tuple(np.round(np.linspace(-2.0, 2.0, 21), 2))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    logits = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def argmax_labels(probabilities: np.ndarray, classes: Sequence) -> np.ndarray:
    """The most probable class of each row of ``probabilities`` (columns follow ``classes``).

    Used in the weibo_crowds chapter."""
    return np.asarray(classes)[np.asarray(probabilities).argmax(1)]


class ProbabilisticClassifier(BaseEstimator):
    """Base of the text classifiers: ``predict`` is the argmax of ``predict_proba``
    (extra arguments, such as a batch size, are passed on)."""

    classes_: np.ndarray

    def predict(self, texts: Sequence[str], *args, **kwargs) -> np.ndarray:
        return argmax_labels(self.predict_proba(texts, *args, **kwargs), self.classes_)


class ProbabilityAverage(ProbabilisticClassifier):
    """A soft-voting ensemble of classifiers that are already fitted: the weighted mean
    of their ``predict_proba``.

    ``fit`` trains nothing (the members keep their own training); it checks that the
    members share one ``classes_`` and normalises ``weights`` (equal when ``None``) into
    ``weights_``. The Weibo chapter averages the fine-tuned encoder with the TF-IDF
    model, the weight chosen on a validation split. Used in the weibo_crowds chapter.
    """

    def __init__(self, members: Sequence, weights: Sequence[float] | None = None):
        self.members = members
        self.weights = weights

    def fit(self, texts=None, labels=None) -> "ProbabilityAverage":
        if not self.members:
            raise ValueError("ProbabilityAverage needs at least one fitted member classifier.")
        classes = [np.asarray(member.classes_) for member in self.members]
        if any(not np.array_equal(c, classes[0]) for c in classes[1:]):
            raise ValueError(
                "The members of a ProbabilityAverage predict different classes "
                f"({[list(c) for c in classes]}); fit them on the same labels."
            )
        weights = np.ones(len(self.members)) if self.weights is None else np.asarray(self.weights, float)
        if weights.shape != (len(self.members),) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(
                f"weights must be {len(self.members)} non-negative numbers with a positive sum, "
                f"one per member; got {self.weights!r}."
            )
        self.classes_ = classes[0]
        self.weights_ = weights / weights.sum()
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return sum(w * member.predict_proba(texts) for w, member in zip(self.weights_, self.members)
                   if w > 0)


def shift_probabilities(probabilities: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``probabilities`` with ``offsets`` added to their logarithms, renormalised: a
    change of the decision rule that keeps each row's order of the other classes."""
    return softmax(_log_probabilities(probabilities) + offsets)


def _log_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """log of ``probabilities``, a zero clipped to 1e-12 so that an offset can still lift it."""
    return np.log(np.clip(np.asarray(probabilities, float), 1e-12, None))


def macro_f1_offsets(probabilities: np.ndarray, labels: Sequence, classes: Sequence,
                     grid: Sequence[float] = OFFSET_GRID, rounds: int = 2) -> np.ndarray:
    """Per-class offsets to the log-probabilities whose argmax has the best macro F1 on
    ``labels``: coordinate ascent from zero, one class at a time over ``grid``, ``rounds``
    passes; a change is kept only when it raises the score (ties keep the offset nearer
    zero). Macro F1 counts a rare class as much as a common one, and an argmax trained
    with class weights on one split is not the macro-F1 decision on another."""
    probabilities, labels = np.asarray(probabilities, float), np.asarray(labels)
    classes = np.asarray(classes)
    if probabilities.ndim != 2 or probabilities.shape != (len(labels), len(classes)):
        raise ValueError(f"probabilities must be one row per label and one column per class: got "
                         f"{probabilities.shape} for {len(labels)} labels and {len(classes)} classes.")
    grid = sorted(set(float(g) for g in grid) | {0.0}, key=abs)
    log_p = _log_probabilities(probabilities)
    offsets = np.zeros(len(classes))

    def score(candidate):
        return macro_f1(labels, argmax_labels(log_p + candidate, classes), labels=classes)

    best = score(offsets)
    for _ in range(rounds):
        changed = False
        for k in range(len(classes)):
            for value in grid:
                candidate = offsets.copy()
                candidate[k] = value
                candidate_score = score(candidate)
                if candidate_score > best + 1e-12:
                    offsets, best, changed = candidate, candidate_score, True
        if not changed:
            break
    return offsets


class ClassOffsets(ProbabilisticClassifier):
    """A fitted classifier whose decision is moved towards macro F1 on a validation set:
    ``fit(texts, labels)`` learns per-class log-probability offsets (``offsets_``, by
    ``macro_f1_offsets``) on those texts, which must be rows the classifier did not train
    on. Because the offsets are tuned on the very rows that would score them, ``fit`` also
    cross-fits: offsets tuned on ``folds - 1`` stratified folds predict the remaining one,
    and ``cv_score_`` is the macro F1 of those pooled predictions, the score to compare with
    untuned models on the same rows (``untuned_score_``). Used in the weibo_crowds chapter.
    """

    def __init__(self, classifier, folds: int = 2, rounds: int = 2, grid: Sequence[float] = OFFSET_GRID,
                 seed: int = 0):
        self.classifier = classifier
        self.folds = folds
        self.rounds = rounds
        self.grid = grid
        self.seed = seed

    def fit(self, texts: Sequence[str], labels: Sequence, probabilities: np.ndarray | None = None
            ) -> "ClassOffsets":
        """``probabilities``: the classifier's own on ``texts``, when already computed."""
        from sklearn.model_selection import StratifiedKFold

        if self.folds < 2:
            raise ValueError(f"folds must be at least 2 (got {self.folds}): the cross-fitted score "
                             "needs rows the offsets were not tuned on.")
        labels = np.asarray(labels)
        classes = np.asarray(self.classifier.classes_)
        unknown = sorted(set(labels.tolist()) - set(classes.tolist()))
        if unknown:
            raise ValueError(f"labels {unknown} are not among the classifier's classes {list(classes)}; "
                             "tune the offsets on rows labelled like its training set.")
        if probabilities is None:
            probabilities = self.classifier.predict_proba(texts)
        probabilities = np.asarray(probabilities, float)
        cross_fitted = np.empty(len(labels), dtype=classes.dtype)
        splits = StratifiedKFold(self.folds, shuffle=True, random_state=self.seed).split(probabilities, labels)
        for tune, held_out in splits:
            offsets = macro_f1_offsets(probabilities[tune], labels[tune], classes, self.grid, self.rounds)
            cross_fitted[held_out] = argmax_labels(_log_probabilities(probabilities[held_out]) + offsets,
                                                   classes)
        self.classes_ = classes
        self.offsets_ = macro_f1_offsets(probabilities, labels, classes, self.grid, self.rounds)
        self.cv_score_ = macro_f1(labels, cross_fitted, labels=classes)
        self.untuned_score_ = macro_f1(labels, argmax_labels(probabilities, classes), labels=classes)
        return self

    def transform_probabilities(self, probabilities: np.ndarray) -> np.ndarray:
        """The classifier's ``probabilities`` (computed elsewhere) under the learned offsets."""
        return shift_probabilities(probabilities, self.offsets_)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.transform_probabilities(self.classifier.predict_proba(texts))
