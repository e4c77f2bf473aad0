"""Participation classifiers for the training chapter: baselines, decision rules
under prior shift, cross-fitting, and the evaluation that scores them.

Every classifier here has ``fit(texts, labels)``, ``predict_proba(texts)`` and
``classes_``; ``EncoderClassifier`` (``crowdlens.core.encoders``) has the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np
import pandas as pd
from sklearn.base import clone

from crowdlens.core import metrics
from crowdlens.core.config import atomic_path, cache_dir
from crowdlens.core.estimators import ProbabilisticClassifier, argmax_labels
from crowdlens.core.hub import embed
from crowdlens.participation.labels import NONE, PARTICIPATION, task_labels
from crowdlens.participation.lexicon import Dictionary, load_dictionary, tokenize

class TfidfLogReg(ProbabilisticClassifier):
    """Word 1–2-gram TF-IDF + logistic regression (scikit-learn). Used in the training chapter."""

    def __init__(self, C: float = 4.0, class_weight: str | None = "balanced", min_df: int = 2, seed: int = 0):
        self.C, self.class_weight, self.min_df, self.seed = C, class_weight, min_df, seed

    def fit(self, texts, labels):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        self.pipeline_ = make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), min_df=self.min_df, sublinear_tf=True),
            LogisticRegression(C=self.C, class_weight=self.class_weight, max_iter=3000, random_state=self.seed),
        ).fit(list(texts), list(labels))
        self.classes_ = self.pipeline_.classes_
        return self

    def predict_proba(self, texts):
        return self.pipeline_.predict_proba(list(texts))


class _SentenceEmbeddings:
    """The sentence embeddings of texts for a classifier with ``model``,
    ``cache_embeddings`` and ``device`` parameters (cached on disk when asked: the same
    texts serve several tasks)."""

    def _vectors(self, texts):
        return embed(list(texts), self.model, cache=self.cache_embeddings, device=self.device)


class CentroidClassifier(_SentenceEmbeddings, ProbabilisticClassifier):
    """Nearest centroid on L2-normalised sentence embeddings (cosine similarity);
    probabilities are a softmax of similarities with a temperature. Embeddings are
    cached on disk (``cache_embeddings``), as the same texts serve several tasks. Used in the training chapter."""

    def __init__(self, model: str = "minilm", temperature: float = 0.05, cache_embeddings: bool = True,
                 device: str = "auto"):
        self.model, self.temperature, self.cache_embeddings = model, temperature, cache_embeddings
        self.device = device  # where the sentence encoder runs (crowdlens.core.device)

    def fit(self, texts, labels):
        vectors = self._vectors(texts)
        labels = np.asarray(labels)
        self.classes_ = np.array(sorted(set(labels)))
        centroids = np.stack([vectors[labels == c].mean(0) for c in self.classes_])
        self.centroids_ = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)
        return self

    def predict_proba(self, texts):
        vectors = self._vectors(texts)
        similarity = vectors @ self.centroids_.T / self.temperature
        similarity -= similarity.max(1, keepdims=True)
        p = np.exp(similarity)
        return p / p.sum(1, keepdims=True)


class EmbeddingLogReg(_SentenceEmbeddings, ProbabilisticClassifier):
    """Frozen sentence embeddings (``model``: any sentence encoder id; ``minilm`` and
    ``e5`` offline) + class-weighted logistic regression: the encoder is never trained,
    so it costs one pass over the texts. Embeddings are cached like ``CentroidClassifier``'s.
    Used in the training chapter."""

    def __init__(self, model: str = "minilm", C: float = 0.5, class_weight: str | None = "balanced",
                 cache_embeddings: bool = True, seed: int = 0, device: str = "auto"):
        self.model, self.C, self.class_weight = model, C, class_weight
        self.cache_embeddings, self.seed, self.device = cache_embeddings, seed, device

    def fit(self, texts, labels):
        from sklearn.linear_model import LogisticRegression

        self.head_ = LogisticRegression(C=self.C, class_weight=self.class_weight, max_iter=3000,
                                        random_state=self.seed).fit(self._vectors(texts), list(labels))
        self.classes_ = self.head_.classes_
        return self

    def predict_proba(self, texts):
        return self.head_.predict_proba(self._vectors(texts))


class DictionaryRule(ProbabilisticClassifier):
    """Participation when a text has at least ``k`` collective-action words; ``k`` is
    chosen on the training data to maximise weighted F1. Binary only. Used in the training chapter."""

    def __init__(self, words=None):
        self.words = words

    def _counts(self, texts):
        return np.array([self.words_.count(tokenize(t)) for t in texts])

    def fit(self, texts, labels):
        self.words_ = load_dictionary() if self.words is None else (
            self.words if isinstance(self.words, Dictionary) else Dictionary.from_terms(self.words))
        labels = np.asarray(labels)
        counts = self._counts(texts)
        self.classes_ = np.array([NONE, PARTICIPATION])
        self.k_ = max(range(0, 8), key=lambda k: metrics.weighted_f1(labels, np.where(counts >= k, PARTICIPATION, NONE)))
        return self

    def predict_proba(self, texts):
        positive = (self._counts(texts) >= self.k_).astype(float)
        return np.stack([1 - positive, positive], axis=1)


# Prior shift ---------------------------------------------------------------------------

def train_prior(labels: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    counts = pd.Series(labels).value_counts(normalize=True)
    return counts.reindex(list(classes), fill_value=1e-6).to_numpy()


def predict_with_none_threshold(probabilities: np.ndarray, classes: Sequence[str], threshold: float) -> np.ndarray:
    """None when P(None) >= threshold, else the most probable other class."""
    classes = np.asarray(classes)
    none = int(np.flatnonzero(classes == NONE)[0])
    others = probabilities.copy()
    others[:, none] = -1
    return np.where(probabilities[:, none] >= threshold, NONE, classes[others.argmax(1)])


def none_threshold_candidates(probabilities: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """The 1st–99th percentiles of P(None): the thresholds worth trying."""
    none = int(np.flatnonzero(np.asarray(classes) == NONE)[0])
    return np.unique(np.quantile(probabilities[:, none], np.linspace(0.01, 0.99, 99)))


def best_none_threshold(probabilities: np.ndarray, classes: Sequence[str], y_true: Sequence[str],
                        candidates: np.ndarray | None = None) -> float:
    """The threshold on P(None) among ``candidates`` (default: its percentiles) that maximises weighted F1."""
    if candidates is None:
        candidates = none_threshold_candidates(probabilities, classes)
    return float(max(candidates, key=lambda t: metrics.weighted_f1(
        y_true, predict_with_none_threshold(probabilities, classes, t))))


def fold_assignment(n: int, folds: int = 5, seed: int = 0) -> np.ndarray:
    """A fold number in [0, folds) for each of ``n`` items; the same for every
    cross-fitted step that shares ``folds`` and ``seed``."""
    if folds < 2:
        raise ValueError(f"cross-fitting needs at least 2 folds, not {folds}")
    return np.random.default_rng(seed).integers(0, folds, n)


def crossfit_probabilities(make_estimator, texts: Sequence[str], labels: Sequence[str], classes: Sequence[str],
                           folds: int = 5, seed: int = 0, progress: bool = False) -> np.ndarray:
    """Out-of-fold probabilities of a model trained on labelled target items.

    For each fold, ``make_estimator()`` (a fresh, unfitted classifier) is fitted on the
    other folds' texts and labels and scores this fold, so no item is scored by a model
    that saw its label. Columns follow ``classes``; a class missing from a fold's
    training part gets probability 0 there.
    """
    texts, labels, classes = list(texts), np.asarray(labels, dtype=object), list(classes)
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise ValueError(f"labels {unknown} are not among classes {classes}")
    from tqdm.auto import tqdm

    fold = fold_assignment(len(texts), folds, seed)
    probabilities = np.zeros((len(texts), len(classes)))
    for k in tqdm(range(folds), desc="cross-fitted folds", unit="fold", disable=not progress):
        fit, held_out = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        if not len(held_out):
            continue
        estimator = make_estimator().fit([texts[i] for i in fit], list(labels[fit]))
        own = list(estimator.classes_)
        scored = np.asarray(estimator.predict_proba([texts[i] for i in held_out]))
        for j, label in enumerate(own):
            probabilities[held_out, classes.index(label)] = scored[:, j]
    return probabilities


class CrossFittedThreshold(NamedTuple):
    """Predictions decided by a None threshold chosen out of fold, and each fold's threshold."""

    predictions: np.ndarray
    thresholds: np.ndarray


def crossfit_none_threshold(probabilities: np.ndarray, classes: Sequence[str], y_true: Sequence[str],
                            folds: int = 5, seed: int = 0) -> CrossFittedThreshold:
    """Target-domain calibration with labelled test items, cross-fitted.

    For each fold, the threshold on P(None) that maximises weighted F1 on the other
    folds decides that fold's predictions, so no prediction uses its own label.
    It needs a labelled sample from the target distribution — say so wherever it is
    reported.
    """
    y_true = np.asarray(y_true)
    classes = np.asarray(classes)
    fold = fold_assignment(len(y_true), folds, seed)
    predictions = np.empty(len(y_true), dtype=object)
    thresholds = np.zeros(folds)
    candidates = none_threshold_candidates(probabilities, classes)
    for k in range(folds):
        fit = fold != k
        thresholds[k] = best_none_threshold(probabilities[fit], classes, y_true[fit], candidates)
        predictions[~fit] = predict_with_none_threshold(probabilities[~fit], classes, thresholds[k])
    return CrossFittedThreshold(predictions, thresholds)


def layered(binary_predictions: Sequence[str], level_predictions: Sequence[str]) -> np.ndarray:
    """The layered model: None where the binary step says None, else the level classifier's label."""
    binary_predictions = np.asarray(binary_predictions)
    return np.where(binary_predictions == NONE, NONE, np.asarray(level_predictions))


def score(y_true, y_pred, n_boot: int = 1000, seed: int = 0) -> dict:
    """Weighted F1 with its bootstrap 95 % interval, and macro F1."""
    point, low, high = metrics.bootstrap_ci(y_true, y_pred, metrics.weighted_f1, n_boot=n_boot, seed=seed)
    return {"weighted_f1": point, "ci_low": low, "ci_high": high, "macro_f1": metrics.macro_f1(y_true, y_pred)}


#: The paper's protocol: trained on the training set, scored on the test set, no test
#: label used by the model or its decision rule. Headline numbers come from these rows.
PAPER_PROTOCOL = "paper protocol (no test labels)"
#: A None threshold chosen on labelled test comments of the other folds.
THRESHOLD_PROTOCOL = "threshold cross-fitted on test labels"
#: A model trained on labelled test comments of the other folds.
TARGET_FOLDS_PROTOCOL = "trained on labelled test folds"
#: Every protocol, in the order results tables show them (the paper's first).
PROTOCOLS = (PAPER_PROTOCOL, THRESHOLD_PROTOCOL, TARGET_FOLDS_PROTOCOL)
#: Rows scored on fewer test comments than this are smoke tests of the code path (a
#: quick-profile language model on a handful of comments): kept out of results tables
#: and figures, listed apart and labelled as such.
SMOKE_TEST_MAX_ROWS = 50

#: What each decision rule uses besides the training set (the protocol of its numbers).
DECISIONS = {
    "raw": "the most probable class",
    "EM prior": "the class prior re-estimated by EM on the unlabelled test texts",
    "BBSE prior": "the class prior estimated by black-box shift estimation: the model's confusion matrix on "
                  "training rows it did not fit, applied to its predictions on the unlabelled test texts",
    "cross-fitted threshold": "a None threshold chosen on labelled test comments of the other folds",
}
#: The protocol of each decision rule on a model trained on the training set.
DECISION_PROTOCOLS = {"raw": PAPER_PROTOCOL, "EM prior": PAPER_PROTOCOL, "BBSE prior": PAPER_PROTOCOL,
                      "cross-fitted threshold": THRESHOLD_PROTOCOL}
#: Which decision rule a results table and the headline show for a model, fixed before
#: any test label is seen: the first of these that the model has. Re-estimating the test
#: prior is the answer to the shift this data has (the test set's None share is three
#: times the training set's); BBSE first, as it is consistent under label shift given a
#: confusion matrix from held-out training rows, EM when the model held none out, the
#: most probable class when both estimates collapsed. The other protocols have one rule.
DECISION_PREFERENCE = ("BBSE prior", "EM prior", "raw", "cross-fitted threshold")
#: The decision rules that re-estimate the test prior: each estimate is checked for
#: collapse, and a collapsed one is reported instead of scored (``Evaluation.collapsed``).
PRIOR_SHIFT_DECISIONS = ("EM prior", "BBSE prior")


@dataclass(frozen=True)
class HeldOut:
    """A fitted model's probabilities on training rows it did not fit: ``rows`` index
    the training set, columns follow ``classes``. Label-shift estimation (BBSE) reads
    the training distribution's confusion matrix from them, with no test label."""

    rows: np.ndarray
    probabilities: np.ndarray
    classes: np.ndarray


def held_out_probabilities(estimator, texts: Sequence[str], labels: Sequence[str], folds: int = 5,
                           seed: int = 0) -> HeldOut | None:
    """``estimator`` (fitted on all of ``texts``) scored on training rows it never fit.

    A model that holds rows out itself (``validation_rows_``: an ``EncoderClassifier``'s
    early-stopping split) gives its own probabilities on them, at no extra cost; any
    other model gives out-of-fold probabilities of fresh copies fitted on the other
    ``folds`` (cheap models: TF-IDF, centroids, the dictionary rule). None for a model
    that holds out no rows of its own (an encoder with ``validation_share=0``): refitting
    it ``folds`` times would cost more than the estimate is worth.
    """
    if hasattr(estimator, "validation_rows_"):
        rows = np.asarray(estimator.validation_rows_, dtype=int)
        if not len(rows):
            return None
        return HeldOut(rows, np.asarray(estimator.validation_proba_), np.asarray(estimator.classes_))
    classes = np.asarray(estimator.classes_)
    probabilities = crossfit_probabilities(lambda: clone(estimator, safe=False), texts, labels, list(classes),
                                           folds, seed)
    return HeldOut(np.arange(len(probabilities)), probabilities, classes)


def check_protocol(protocol: str) -> str:
    """``protocol`` if it is one of ``PROTOCOLS``, else a ValueError naming them."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}: use one of {', '.join(map(repr, PROTOCOLS))} "
                         "(crowdlens.participation.PAPER_PROTOCOL and its neighbours)")
    return protocol


@dataclass
class Evaluation:
    """One model scored on the test comments for one task.

    ``rows``: one per decision rule (model, task, decision, protocol, test comments
    ``n``, weighted F1 with its 95 % interval, macro F1); ``predictions``: the test predictions by decision rule;
    ``probabilities`` (columns follow ``classes``) and the fitted ``estimator`` where a
    model produced them; ``held_out``, its probabilities on training rows it did not fit;
    ``collapsed``, for each prior-shift decision whose estimate collapsed, the sentence
    that tells the reader (that decision has no row: its numbers are not a result).
    """

    name: str
    task: str
    rows: list[dict] = field(default_factory=list)
    predictions: dict[str, np.ndarray] = field(default_factory=dict)
    probabilities: np.ndarray | None = None
    classes: np.ndarray | None = None
    estimator: Any = None
    held_out: HeldOut | None = None
    collapsed: dict[str, str] = field(default_factory=dict)

    @property
    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)


def _scored(name: str, task: str, predictions: dict[str, np.ndarray], y_test: Sequence[str], n_boot: int,
            seed: int, protocol: str | None = None, **fields) -> Evaluation:
    """Rows for each decision rule; ``protocol`` overrides the rule's own (``DECISION_PROTOCOLS``)."""
    rows = [{"model": name, "task": task, "decision": decision,
             "protocol": check_protocol(protocol or DECISION_PROTOCOLS[decision]), "n": len(y_test),
             **score(y_test, pred, n_boot, seed)}
            for decision, pred in predictions.items()]
    return Evaluation(name, task, rows, predictions, **fields)


def raw_rows(name: str, task: str, probabilities: np.ndarray, classes: Sequence[str], y_test: Sequence[str],
             n_boot: int = 1000, seed: int = 0, protocol: str = PAPER_PROTOCOL) -> Evaluation:
    """Score the most probable class only: for probabilities that already come out of
    fold (``crossfit_probabilities``), where a threshold tuned on other folds would
    reuse labels their models were trained on. ``protocol`` says what the
    probabilities used (``PROTOCOLS``). Used in the training chapter."""
    classes = np.asarray(classes)
    return _scored(name, task, {"raw": argmax_labels(probabilities, classes)}, y_test, n_boot, seed,
                   protocol=protocol, probabilities=np.asarray(probabilities), classes=classes)


def prior_shift_estimates(probabilities: np.ndarray, classes: Sequence[str], y_train: Sequence[str],
                          held_out: HeldOut | None = None) -> dict[str, metrics.PriorShift]:
    """The test prior re-estimated with no test label, by decision rule
    (``PRIOR_SHIFT_DECISIONS``), each checked for collapse: EM on the test
    ``probabilities`` (Saerens et al. 2002) and, given ``held_out`` probabilities on
    training rows, black-box shift estimation (Lipton et al. 2018)."""
    classes = np.asarray(classes)
    prior = train_prior(y_train, classes)
    _, em_prior = metrics.em_prior_adjust(probabilities, prior)
    shifts = {"EM prior": metrics.PriorShift("EM prior", em_prior, prior, metrics.collapsed_classes(em_prior, prior))}
    if held_out is not None:
        own = list(held_out.classes)
        held_proba = np.asarray(held_out.probabilities)[:, [own.index(c) for c in classes]]
        shifts["BBSE prior"] = metrics.bbse_prior_shift(
            argmax_labels(probabilities, classes), np.asarray(y_train, dtype=object)[held_out.rows],
            argmax_labels(held_proba, classes), classes, prior)
    return shifts


def evaluate_probabilities(name: str, task: str, probabilities: np.ndarray, classes: Sequence[str],
                           y_train: Sequence[str], y_test: Sequence[str], folds: int = 5, seed: int = 0,
                           n_boot: int = 1000, held_out: HeldOut | None = None) -> Evaluation:
    """Score one model's test probabilities by each decision rule (``DECISIONS``): raw
    (argmax); the posteriors adjusted to a test prior re-estimated with no test label —
    by EM on the unlabelled test texts (Saerens et al. 2002) and, given ``held_out``
    probabilities on training rows, by black-box shift estimation (Lipton et al. 2018);
    and a cross-fitted None threshold (needs test labels, out of fold). A prior estimate
    that collapses (``metrics.PriorShift``) is reported in ``collapsed`` instead of scored.
    Used in the training chapter."""
    classes = np.asarray(classes)
    predictions, collapsed = {"raw": argmax_labels(probabilities, classes)}, {}
    for decision, shift in prior_shift_estimates(probabilities, classes, y_train, held_out).items():
        if shift.is_collapsed:
            collapsed[decision] = shift.describe(list(classes))
        else:
            predictions[decision] = argmax_labels(shift.adjust(probabilities), classes)
    if NONE in classes:
        predictions["cross-fitted threshold"] = crossfit_none_threshold(
            probabilities, classes, y_test, folds, seed).predictions
    evaluation = _scored(name, task, predictions, y_test, n_boot, seed, probabilities=probabilities,
                         classes=classes, held_out=held_out)
    evaluation.collapsed = collapsed
    return evaluation


def run_model(name: str, estimator, task: str, train: pd.DataFrame, test: pd.DataFrame,
              text_column: str = "ActionFocusedText", folds: int = 5, seed: int = 0,
              n_boot: int = 1000, held_out_folds: int = 5) -> Evaluation:
    """Fit ``estimator`` for ``task`` on ``train``, score it on ``test`` by each decision rule.

    ``task="levels"`` fits on the participation comments only (the second step of the
    layered model) and returns its probabilities and raw predictions without scoring.
    ``held_out_folds``: folds of the training set for the out-of-fold copies that give a
    model without a validation split of its own its held-out rows (BBSE).
    Used in the training chapter (through ``Experiment.run``).
    """
    if task == "levels":
        positive = train["Label"].notna()
        estimator.fit(train.loc[positive, text_column].astype(str).tolist(), train.loc[positive, "Label"].tolist())
        probabilities = estimator.predict_proba(test[text_column].astype(str).tolist())
        classes = np.asarray(estimator.classes_)
        return Evaluation(name, task, [], {"raw": argmax_labels(probabilities, classes)}, probabilities, classes,
                          estimator)
    y_train, y_test = task_labels(train, task), task_labels(test, task)
    train_texts = train[text_column].astype(str).tolist()
    estimator.fit(train_texts, list(y_train))
    probabilities = estimator.predict_proba(test[text_column].astype(str).tolist())
    held_out = held_out_probabilities(estimator, train_texts, list(y_train), held_out_folds, seed)
    evaluation = evaluate_probabilities(name, task, probabilities, estimator.classes_, y_train, y_test, folds, seed,
                                        n_boot, held_out)
    evaluation.estimator = estimator
    return evaluation


def average_probabilities(evaluations: Sequence[Evaluation]) -> Evaluation:
    """The mean of several models' test probabilities, columns aligned by class name: a
    fixed, untuned ensemble (an unscored ``Evaluation`` with ``probabilities`` and
    ``classes``; ``held_out`` is the mean on the training rows every model held out, when
    each has some)."""
    if not evaluations:
        raise ValueError("pass at least one evaluated model (run_model or Experiment.run)")
    classes = np.asarray(evaluations[0].classes)

    def aligned(probabilities, own):
        own = list(own)
        if sorted(own) != sorted(classes):
            raise ValueError(f"models disagree on the classes: {sorted(own)} vs {sorted(classes)}")
        return np.asarray(probabilities)[:, [own.index(c) for c in classes]]

    columns = [aligned(e.probabilities, e.classes) for e in evaluations]
    held_out = None
    if all(e.held_out is not None for e in evaluations):
        common = np.asarray(sorted(set.intersection(*(set(e.held_out.rows.tolist()) for e in evaluations))), dtype=int)
        if len(common):
            held_out = HeldOut(common, np.mean([
                aligned(e.held_out.probabilities, e.held_out.classes)[
                    pd.Index(e.held_out.rows).get_indexer(common)] for e in evaluations], axis=0), classes)
    name = " + ".join(e.name for e in evaluations) + " (mean)"
    return Evaluation(name, evaluations[0].task, probabilities=np.mean(columns, axis=0), classes=classes,
                      held_out=held_out)


def layered_rows(name: str, binary_predictions: dict[str, np.ndarray], level_predictions: np.ndarray,
                 test: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> Evaluation:
    """Score the layered model for each decision rule of its binary step on all five classes."""
    predictions = {d: layered(b, level_predictions) for d, b in binary_predictions.items()}
    return _scored(name, "layered", predictions, task_labels(test, "layered"), n_boot, seed)


class Experiment:
    """The training chapter's evaluation: one training and one test set, and the
    settings every model is scored with (cross-fitting folds, seed, bootstrap draws);
    each model run through it is recorded, and the results table is built from them.

    ``evaluations_`` lists what was recorded, in order; ``all_results`` is their rows,
    ``results`` the same without smoke tests (rows scored on fewer than
    ``smoke_test_below`` test comments, listed by ``smoke_tests()``), ``predictions``
    their test predictions by (model, task, decision).
    Used in the training chapter.
    """

    def __init__(self, train: pd.DataFrame, test: pd.DataFrame, text_column: str = "ActionFocusedText",
                 folds: int = 5, seed: int = 0, n_boot: int = 1000,
                 smoke_test_below: int = SMOKE_TEST_MAX_ROWS, held_out_folds: int = 5):
        self.train, self.test, self.text_column = train, test, text_column
        self.folds, self.seed, self.n_boot = folds, seed, n_boot
        self.smoke_test_below, self.held_out_folds = smoke_test_below, held_out_folds
        self.evaluations_: list[Evaluation] = []

    def with_train(self, train: pd.DataFrame) -> "Experiment":
        """A new, empty experiment with the same test set and settings and another training set."""
        return Experiment(train, self.test, self.text_column, self.folds, self.seed, self.n_boot,
                          self.smoke_test_below, self.held_out_folds)

    def record(self, evaluation: Evaluation) -> Evaluation:
        self.evaluations_.append(evaluation)
        return evaluation

    def labels(self, task: str, frame: pd.DataFrame | None = None) -> np.ndarray:
        """Gold labels of the test set (or of ``frame``) for ``task``."""
        return task_labels(self.test if frame is None else frame, task)

    def test_texts(self) -> list[str]:
        return self.test[self.text_column].astype(str).tolist()

    def run(self, name: str, estimator, task: str) -> Evaluation:
        """Fit a fresh copy (``sklearn.base.clone``) of ``estimator`` and score it
        (``run_model``; the fitted copy is ``evaluation.estimator``); recorded unless
        ``task="levels"``. The same unfitted estimator can serve every task."""
        evaluation = run_model(name, clone(estimator, safe=False), task, self.train, self.test, self.text_column,
                               self.folds, self.seed, self.n_boot, self.held_out_folds)
        return evaluation if task == "levels" else self.record(evaluation)

    def ensemble(self, name: str, evaluations: Sequence[Evaluation]) -> Evaluation:
        """The mean of ``evaluations``' probabilities (no weight tuned), scored by each decision rule."""
        mean = average_probabilities(evaluations)
        task = evaluations[0].task
        return self.record(evaluate_probabilities(name, task, mean.probabilities, mean.classes,
                                                  task_labels(self.train, task), self.labels(task), self.folds,
                                                  self.seed, self.n_boot, mean.held_out))

    def layered(self, name: str, binary: Evaluation, levels: Evaluation) -> Evaluation:
        """The layered model: ``binary``'s decision rules, then ``levels``' raw labels."""
        return self.record(layered_rows(name, binary.predictions, levels.predictions["raw"], self.test, self.n_boot,
                                        self.seed))

    def raw(self, name: str, task: str, probabilities: np.ndarray, classes: Sequence[str], *,
            protocol: str) -> Evaluation:
        """Out-of-fold ``probabilities`` scored by their most probable class (``raw_rows``);
        ``protocol`` (one of ``PROTOCOLS``) says whether they used test labels."""
        return self.record(raw_rows(name, task, probabilities, classes, self.labels(task), self.n_boot, self.seed,
                                    protocol))

    def on_target_folds(self, name: str, estimator, task: str, classes: Sequence[str], folds: int) -> Evaluation:
        """A fresh copy of ``estimator`` per fold of the labelled test comments, trained on
        the other folds (``crossfit_probabilities``), scored raw."""
        probabilities = crossfit_probabilities(lambda: clone(estimator, safe=False), self.test_texts(),
                                               self.labels(task), classes, folds, self.seed)
        return self.raw(name, task, probabilities, classes, protocol=TARGET_FOLDS_PROTOCOL)

    def score_sample(self, name: str, task: str, sample: pd.DataFrame, predictions: Sequence[str]) -> Evaluation:
        """Raw predictions of a model scored on a sample of the test comments only (a
        language model); its rows are recorded, its predictions are not (other rows)."""
        return self.record(Evaluation(name, task, [{"model": name, "task": task, "decision": "raw",
                                                    "protocol": PAPER_PROTOCOL, "n": len(sample), **score(
            self.labels(task, sample), predictions, self.n_boot, self.seed)}]))

    def floor(self) -> dict[str, float]:
        """Weighted F1 of predicting None for every test comment, binary and five classes."""
        return {task: metrics.weighted_f1(self.labels(task), np.full(len(self.test), NONE))
                for task in ("binary", "multiclass")}

    @property
    def all_results(self) -> pd.DataFrame:
        """Every recorded row, with ``smoke_test`` (scored on fewer than ``smoke_test_below`` comments)."""
        rows = pd.DataFrame([row for evaluation in self.evaluations_ for row in evaluation.rows])
        if rows.empty:
            return rows
        return rows.assign(smoke_test=rows["n"] < self.smoke_test_below)

    @property
    def results(self) -> pd.DataFrame:
        """The recorded rows that are results: smoke tests left out (``smoke_tests``)."""
        rows = self.all_results
        return rows if rows.empty else rows[~rows["smoke_test"]].drop(columns="smoke_test").reset_index(drop=True)

    def smoke_tests(self) -> pd.DataFrame:
        """The rows scored on too few test comments to be results (they check the code path)."""
        rows = self.all_results
        return rows if rows.empty else rows[rows["smoke_test"]].reset_index(drop=True)

    def binary_roc_auc(self) -> pd.DataFrame:
        """ROC AUC of P(participation) = 1 - P(None) on the test comments, for each recorded
        binary model with probabilities: how well it ranks, whatever the decision rule.
        Columns: model, protocol (that of its raw row), roc_auc, n."""
        from sklearn.metrics import roc_auc_score

        truth = self.labels("binary") != NONE
        rows = []
        for e in self.evaluations_:
            if e.task != "binary" or e.probabilities is None or NONE not in list(e.classes) or len(set(truth)) < 2:
                continue
            p_participation = 1 - np.asarray(e.probabilities)[:, list(e.classes).index(NONE)]
            protocol = next((r["protocol"] for r in e.rows if r["decision"] == "raw"), PAPER_PROTOCOL)
            rows.append({"model": e.name, "protocol": protocol, "roc_auc": float(roc_auc_score(truth, p_participation)),
                         "n": len(truth)})
        return pd.DataFrame(rows, columns=["model", "protocol", "roc_auc", "n"])

    def collapsed_estimates(self) -> pd.DataFrame:
        """The prior-shift decisions left out of the results because their estimate
        collapsed: model, task, decision, and the sentence that says what collapsed."""
        return pd.DataFrame([{"model": e.name, "task": e.task, "decision": decision, "estimate": sentence}
                             for e in self.evaluations_ for decision, sentence in e.collapsed.items()],
                            columns=["model", "task", "decision", "estimate"])

    def collapse_note(self) -> str:
        """A paragraph for the reader on the collapsed prior estimates ("" when none collapsed)."""
        collapsed = self.collapsed_estimates()
        if collapsed.empty:
            return ""
        cases = "; ".join(f"{r.model} ({r.task}, {r.decision})" for r in collapsed.itertuples())
        return (f"{len(collapsed)} prior estimate(s) collapsed and are not in the results: {cases}. A collapsed "
                f"estimate drives a class present in training to a share below {metrics.COLLAPSE_SHARE:.0%}, so "
                "the adjusted decisions never predict it; its weighted F1 would describe the estimator's "
                "failure, not the model.")

    def smoke_test_note(self, rows: pd.DataFrame) -> str:
        """A sentence for rows that are smoke tests ("" when none is): shown with them."""
        if rows.empty or "smoke_test" not in rows or not rows["smoke_test"].any():
            return ""
        n = int(rows.loc[rows["smoke_test"], "n"].max())
        return (f"Smoke test: scored on {n} test comments (fewer than {self.smoke_test_below}), it checks that "
                "the step runs and is left out of the results table and figures; run the full profile for results.")

    @property
    def predictions(self) -> dict[tuple[str, str, str], np.ndarray]:
        return {(e.name, e.task, decision): p for e in self.evaluations_ for decision, p in e.predictions.items()}

    def rows_of(self, contains: str) -> pd.DataFrame:
        """Every recorded row (smoke tests included, flagged) of the models whose name contains ``contains``."""
        results = self.all_results
        return results[results["model"].str.contains(contains, regex=False)].reset_index(drop=True)

    def chosen(self, protocol: str | None = None) -> pd.DataFrame:
        """Each (protocol, model, task)'s row under the decision rule fixed in advance
        (the first of ``DECISION_PREFERENCE`` that it has): no test label picks the rule,
        as none may under the paper's protocol. Only ``protocol``'s rows when given."""
        results = self.results
        if protocol is not None:
            results = results[results["protocol"] == check_protocol(protocol)]
        rank = {decision: i for i, decision in enumerate(DECISION_PREFERENCE)}
        results = results.assign(_rank=results["decision"].map(rank).fillna(len(rank)))
        return (results.sort_values("_rank", kind="stable")
                .groupby(["protocol", "model", "task"], as_index=False, sort=False).first().drop(columns="_rank"))

    def table(self, reference: dict[str, dict[str, str]] | None = None) -> pd.DataFrame:
        """The results table in long form: one row per (protocol, task, model) that was run,
        its weighted F1 [95 % CI] under the decision rule fixed in advance (``chosen``), that
        rule, and the test comments scored; the paper protocol first, each task's
        always-None floor, then ``reference`` rows (label → columns, e.g. a paper's
        published figure). No cell stands for a model that was never run on a task; smoke
        tests are left out."""
        best = self.chosen()
        order = {p: i for i, p in enumerate(PROTOCOLS)}
        tasks = {t: i for i, t in enumerate(("binary", "multiclass", "layered"))}
        best = best.assign(_p=best["protocol"].map(order), _t=best["task"].map(tasks).fillna(len(tasks)))
        best = best.sort_values(["_p", "_t", "weighted_f1"], ascending=[True, True, False])
        rows = [{"protocol": r.protocol, "task": r.task, "model": r.model,
                 "weighted F1 [95% CI]": f"{r.weighted_f1:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]",
                 "decision": r.decision, "test comments": int(r.n)} for r in best.itertuples()]
        floor = self.floor()
        for task in [t for t in tasks if t in set(best["task"])]:
            rows.append({"protocol": "constant", "task": task, "model": "always None (floor)",
                         "weighted F1 [95% CI]": f"{floor['binary' if task == 'binary' else 'multiclass']:.3f}",
                         "decision": "none", "test comments": len(self.test)})
        for label, columns in (reference or {}).items():
            rows.append({"protocol": "as published", "task": "not stated", "model": label,
                         "weighted F1 [95% CI]": "", "decision": "not stated", "test comments": "",
                         **columns})
        return pd.DataFrame(rows)

    def prediction_table(self) -> pd.DataFrame:
        """Every recorded test prediction in long form (CommentID, row, model, task, decision, prediction, truth)."""
        return pd.concat([
            pd.DataFrame({"CommentID": self.test["CommentID"], "row": np.arange(len(self.test)), "model": m,
                          "task": t, "decision": d, "prediction": p, "truth": self.labels(t)})
            for (m, t, d), p in self.predictions.items()], ignore_index=True)


@dataclass
class SubsetSelection:
    """Training subsets compared on held-out training rows, no test label: ``table``
    has one row per subset and task (training rows, the held-out weighted F1 of the most
    probable class), ``chosen`` the subset with the best mean held-out F1 over tasks."""

    table: pd.DataFrame
    chosen: str
    held_out_rows: int


def select_training_subset(train: pd.DataFrame, subsets: dict[str, Sequence[bool]], estimator,
                           tasks: Sequence[str] = ("binary", "multiclass"), held_out_share: float = 0.15,
                           text_column: str = "ActionFocusedText", seed: int = 0) -> SubsetSelection:
    """Choose among training ``subsets`` (boolean masks over ``train``) with no test label.

    A share ``held_out_share`` of the crowd-annotated training rows (no
    ``AugmentationType``: the kind of comment the test set holds), stratified by label,
    is set aside from every subset; a fresh copy of ``estimator`` is fitted on each subset
    without them and scored on them. Augmented rows are never scored: a subset that adds
    paraphrases would otherwise be graded on its own paraphrases. Used in the training
    chapter."""
    crowd = train.index[train["AugmentationType"].isna().to_numpy()]
    labels = task_labels(train.loc[crowd], "multiclass")
    rng = np.random.default_rng(seed)
    held = []
    for label in np.unique(labels):
        members = crowd[labels == label]
        held.extend(rng.choice(members, int(round(len(members) * held_out_share)), replace=False))
    if not held:
        raise ValueError("no crowd-annotated training rows to hold out: raise held_out_share or train_rows")
    is_held = train.index.isin(held)
    held_texts = train.loc[is_held, text_column].astype(str).tolist()
    rows = []
    for subset, mask in subsets.items():
        fit_rows = train[np.asarray(mask, dtype=bool) & ~is_held]
        for task in tasks:
            model = clone(estimator, safe=False).fit(fit_rows[text_column].astype(str).tolist(),
                                                     task_labels(fit_rows, task))
            rows.append({"training data": subset, "task": task, "rows": len(fit_rows),
                         "held-out weighted F1": metrics.weighted_f1(task_labels(train[is_held], task),
                                                                     model.predict(held_texts))})
    table = pd.DataFrame(rows)
    means = table.groupby("training data", sort=False)["held-out weighted F1"].mean()
    return SubsetSelection(table, str(means.idxmax()), int(is_held.sum()))


def save_predictions(predictions: pd.DataFrame, name: str = "training") -> Path:
    """Write a long table of test predictions to ``$CROWDLENS_CACHE/predictions/<name>.csv``.
    Used in the training chapter."""
    target = cache_dir() / "predictions" / f"{name}.csv"
    with atomic_path(target, suffix=".csv") as tmp:
        predictions.to_csv(tmp, index=False)
    return target


