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
    """The most probable class of each row of ``probabilities`` (columns follow ``classes``)."""
    return np.asarray(classes)[np.asarray(probabilities).argmax(1)]


class ProbabilisticClassifier(BaseEstimator):
    """Base of the text classifiers: ``predict`` is the argmax of ``predict_proba``
    (extra arguments, such as a batch size, are passed on)."""

    classes_: np.ndarray

    def predict(self, texts: Sequence[str], *args, **kwargs) -> np.ndarray:
        return argmax_labels(self.predict_proba(texts, *args, **kwargs), self.classes_)
