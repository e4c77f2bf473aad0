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
