"""Participation classifiers for the training chapter: tasks, baselines, prior-shift
handling and the saved default classifier behind ``models.load_classifier``.

Every classifier here has ``fit(texts, labels)``, ``predict_proba(texts)`` and
``classes_``; ``EncoderClassifier`` (crowdlens.encoders) has the same shape.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from crowdlens import metrics

NONE = "None"
PARTICIPATION = "Participation"
TASKS = ("binary", "multiclass", "layered", "simplified")


def task_labels(frame: pd.DataFrame, task: str) -> np.ndarray:
    """Gold labels of ``frame`` for a task.

    binary: Participation (any level) vs None; simplified: the release's
    ``SimplifiedLabel`` (None where empty); multiclass and layered: the four levels + None.
    """
    if task == "binary":
        return np.where(frame["Label"].notna(), PARTICIPATION, NONE)
    if task == "simplified":
        return frame["SimplifiedLabel"].fillna(NONE).to_numpy(dtype=object)
    if task in ("multiclass", "layered"):
        return frame["Label"].fillna(NONE).to_numpy(dtype=object)
    raise ValueError(f"task must be one of {TASKS}, not {task!r}")


class _ProbaMixin:
    classes_: np.ndarray

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.classes_)[self.predict_proba(texts).argmax(1)]


class TfidfLogReg(_ProbaMixin):
    """Word 1–2-gram TF-IDF + logistic regression (scikit-learn)."""

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


class CentroidClassifier(_ProbaMixin):
    """Nearest centroid on L2-normalised sentence embeddings (cosine similarity);
    probabilities are a softmax of similarities with a temperature. Embeddings are
    cached on disk (``cache_embeddings``), as the same texts serve several tasks."""

    def __init__(self, model: str = "minilm", temperature: float = 0.05, cache_embeddings: bool = True):
        self.model, self.temperature, self.cache_embeddings = model, temperature, cache_embeddings

    def fit(self, texts, labels):
        from crowdlens.models import embed

        vectors = embed(list(texts), self.model, cache=self.cache_embeddings)
        labels = np.asarray(labels)
        self.classes_ = np.array(sorted(set(labels)))
        centroids = np.stack([vectors[labels == c].mean(0) for c in self.classes_])
        self.centroids_ = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)
        return self

    def predict_proba(self, texts):
        from crowdlens.models import embed

        similarity = embed(list(texts), self.model, cache=self.cache_embeddings) @ self.centroids_.T / self.temperature
        similarity -= similarity.max(1, keepdims=True)
        p = np.exp(similarity)
        return p / p.sum(1, keepdims=True)


class DictionaryRule(_ProbaMixin):
    """Participation when a text has at least ``k`` collective-action words; ``k`` is
    chosen on the training data to maximise weighted F1. Binary only."""

    def __init__(self, words=None):
        self.words = words

    def _counts(self, texts):
        from crowdlens.annotate import tokenize

        return np.array([self.words_.count(tokenize(t)) for t in texts])

    def fit(self, texts, labels):
        from crowdlens.annotate import Dictionary, load_dictionary

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


def raw_rows(name: str, task: str, probabilities: np.ndarray, classes: Sequence[str], y_test: Sequence[str],
             n_boot: int = 1000, seed: int = 0) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Score the most probable class only: for probabilities that already come out of
    fold (``crossfit_probabilities``), where a threshold tuned on other folds would
    reuse labels their models were trained on. Returns table rows and predictions."""
    predictions = {"raw": np.asarray(classes)[np.asarray(probabilities).argmax(1)]}
    return [{"model": name, "task": task, "decision": "raw", **score(y_test, predictions["raw"], n_boot, seed)}], predictions


def crossfit_none_threshold(probabilities: np.ndarray, classes: Sequence[str], y_true: Sequence[str],
                            folds: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Target-domain calibration with labelled test items, cross-fitted.

    For each fold, the threshold on P(None) that maximises weighted F1 on the other
    folds decides that fold's predictions, so no prediction uses its own label.
    It needs a labelled sample from the target distribution — say so wherever it is
    reported. Returns (predictions, threshold per fold).
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
    return predictions, thresholds


def layered(binary_predictions: Sequence[str], level_predictions: Sequence[str]) -> np.ndarray:
    """The layered model: None where the binary step says None, else the level classifier's label."""
    binary_predictions = np.asarray(binary_predictions)
    return np.where(binary_predictions == NONE, NONE, np.asarray(level_predictions))


def score(y_true, y_pred, n_boot: int = 1000, seed: int = 0) -> dict:
    """Weighted F1 with its bootstrap 95 % interval, and macro F1."""
    point, low, high = metrics.bootstrap_ci(y_true, y_pred, metrics.weighted_f1, n_boot=n_boot, seed=seed)
    return {"weighted_f1": point, "ci_low": low, "ci_high": high, "macro_f1": metrics.macro_f1(y_true, y_pred)}


def evaluate_probabilities(name: str, task: str, probabilities: np.ndarray, classes: Sequence[str],
                           y_train: Sequence[str], y_test: Sequence[str], folds: int = 5, seed: int = 0,
                           n_boot: int = 1000) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Score one model's test probabilities three ways: raw (argmax), prior-adjusted by
    EM on the unlabelled test texts (Saerens et al. 2002), and with a cross-fitted
    None threshold (needs test labels, out of fold). Returns table rows and predictions."""
    classes = np.asarray(classes)
    raw = classes[probabilities.argmax(1)]
    adjusted, _ = metrics.em_prior_adjust(probabilities, train_prior(y_train, classes))
    predictions = {"raw": raw, "EM prior": classes[adjusted.argmax(1)]}
    if NONE in classes:
        predictions["cross-fitted threshold"] = crossfit_none_threshold(probabilities, classes, y_test, folds, seed)[0]
    rows = [{"model": name, "task": task, "decision": decision, **score(y_test, pred, n_boot, seed)}
            for decision, pred in predictions.items()]
    return rows, predictions


def run_model(name: str, estimator, task: str, train: pd.DataFrame, test: pd.DataFrame,
              text_column: str = "ActionFocusedText", folds: int = 5, seed: int = 0, n_boot: int = 1000):
    """Fit ``estimator`` for ``task`` on ``train``, score it on ``test`` three ways.

    ``task="levels"`` fits on the participation comments only (the second step of the
    layered model) and returns its probabilities without scoring.
    Returns (rows, predictions by decision, test probabilities, fitted estimator).
    """
    if task == "levels":
        positive = train["Label"].notna()
        estimator.fit(train.loc[positive, text_column].astype(str).tolist(), train.loc[positive, "Label"].tolist())
        probabilities = estimator.predict_proba(test[text_column].astype(str).tolist())
        return [], {"raw": np.asarray(estimator.classes_)[probabilities.argmax(1)]}, probabilities, estimator
    y_train, y_test = task_labels(train, task), task_labels(test, task)
    estimator.fit(train[text_column].astype(str).tolist(), list(y_train))
    probabilities = estimator.predict_proba(test[text_column].astype(str).tolist())
    classes = np.asarray(estimator.classes_)
    rows, predictions = evaluate_probabilities(name, task, probabilities, classes, y_train, y_test, folds, seed, n_boot)
    return rows, predictions, probabilities, estimator


def average_probabilities(results: Sequence[tuple]) -> tuple[np.ndarray, np.ndarray]:
    """The mean of several fitted models' test probabilities (``run_model`` results),
    columns aligned by class name: a fixed, untuned ensemble. Returns (probabilities, classes)."""
    if not results:
        raise ValueError("pass at least one run_model result")
    classes = np.asarray(results[0][3].classes_)
    columns = []
    for result in results:
        own = list(result[3].classes_)
        if sorted(own) != sorted(classes):
            raise ValueError(f"models disagree on the classes: {sorted(own)} vs {sorted(classes)}")
        columns.append(np.asarray(result[2])[:, [own.index(c) for c in classes]])
    return np.mean(columns, axis=0), classes


def layered_rows(name: str, binary_predictions: dict[str, np.ndarray], level_predictions: np.ndarray,
                 test: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Score the layered model for each decision rule of its binary step on all five classes."""
    y_test = task_labels(test, "layered")
    predictions = {d: layered(b, level_predictions) for d, b in binary_predictions.items()}
    rows = [{"model": name, "task": "layered", "decision": d, **score(y_test, p, n_boot, seed)}
            for d, p in predictions.items()]
    return rows, predictions


def save_predictions(predictions: pd.DataFrame, name: str = "training") -> Path:
    """Write a long table of test predictions to ``$CROWDLENS_CACHE/predictions/<name>.csv``."""
    from crowdlens.config import atomic_path, cache_dir

    target = cache_dir() / "predictions" / f"{name}.csv"
    with atomic_path(target, suffix=".csv") as tmp:
        predictions.to_csv(tmp, index=False)
    return target


# The saved default classifier ----------------------------------------------------------

CARD_VERSION = 2  # bump when the saved classifier's contents change; older saves are retrained
LEVELS = ("Problem-Solution", "Call-to-action", "Intention", "Execution")
FIVE_CLASSES = (NONE, *LEVELS)


class ParticipationClassifier:
    """The book's participation classifier: a binary encoder (participation or not)
    and a level encoder trained on participation comments, combined as the layered
    model. ``predict`` returns one of the five labels; ``predict_binary`` two.

    ``none_threshold`` on P(None) is chosen on the labelled test comments (the target
    domain); the card's test metrics and ``test_predictions`` are cross-fitted, so no
    test prediction used its own label.
    """

    def __init__(self, binary, levels, card: dict, test_predictions: pd.DataFrame | None = None):
        self.binary, self.levels, self.card = binary, levels, card
        self.none_threshold = card.get("none_threshold", 0.5)
        self.test_predictions = test_predictions
        self.path: Path | None = None

    def predict_proba_binary(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        return self.binary.predict_proba(texts, batch_size)

    def predict_binary(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        p = self.predict_proba_binary(texts, batch_size)
        return predict_with_none_threshold(p, self.binary.labels_, self.none_threshold)

    def predict_with_proba(self, texts: Sequence[str], batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Five-class labels and P(participation), with one pass of the binary encoder."""
        texts = list(texts)
        p = self.predict_proba_binary(texts, batch_size)
        binary = predict_with_none_threshold(p, self.binary.labels_, self.none_threshold)
        p_participation = 1 - p[:, list(self.binary.labels_).index(NONE)]
        result = np.full(len(binary), NONE, dtype=object)
        positive = np.flatnonzero(binary != NONE)
        if len(positive):
            result[positive] = self.levels.predict([texts[i] for i in positive], batch_size)
        return result, p_participation

    def predict(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        return self.predict_with_proba(texts, batch_size)[0]

    def confusion(self, labels: Sequence[str] = FIVE_CLASSES) -> np.ndarray:
        """P(predicted j | true i) on the test comments (cross-fitted predictions)."""
        if self.test_predictions is None:
            raise ValueError("this classifier was saved without test predictions; retrain it with "
                             "models.load_classifier('participation', retrain=True)")
        return confusion_matrix(self.test_predictions["y_true"], self.test_predictions["y_pred"], labels)

    def to_onnx(self, quantize: bool = True, path: str | Path | None = None,
                threads: int | None = None) -> "ParticipationClassifier":
        """The same classifier (threshold, card, test predictions) with both encoders
        run by ONNX Runtime — int8 weights when ``quantize``. The export is written once
        beside the saved model (or to ``path``) and reused while the model is unchanged."""
        from crowdlens.encoders import OnnxEncoderClassifier

        if path is None and self.path is None:
            raise ValueError("this classifier was never saved: pass path= for the ONNX export")
        folder = Path(path) if path is not None else self.path / ("onnx-int8" if quantize else "onnx-fp32")
        parts = {}
        for name in ("binary", "levels"):
            encoder, target = getattr(self, name), folder / name
            exported = None
            if (target / "model.onnx").is_file():
                exported = OnnxEncoderClassifier(target, threads=threads)
                if (exported.card_.get("saved") != getattr(encoder, "card_", {}).get("saved")
                        or exported.card_.get("onnx_export_format") != OnnxEncoderClassifier.export_format):
                    exported = None  # exported from an older training run, or by an older export
            parts[name] = exported or OnnxEncoderClassifier.export(encoder, target, quantize=quantize, threads=threads)
        clone = ParticipationClassifier(parts["binary"], parts["levels"], self.card, self.test_predictions)
        clone.path = self.path
        return clone

    def save(self, path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        self.binary.save(path / "binary", card={"task": "binary"})
        self.levels.save(path / "levels", card={"task": "levels"})
        if self.test_predictions is not None:
            self.test_predictions.to_csv(path / "test_predictions.csv", index=False)
        (path / "card.json").write_text(json.dumps(self.card, indent=2, default=str))
        return path

    @classmethod
    def load(cls, path: Path) -> "ParticipationClassifier":
        from crowdlens.encoders import EncoderClassifier

        card = json.loads((path / "card.json").read_text())
        predictions_file = path / "test_predictions.csv"
        predictions = pd.read_csv(predictions_file, keep_default_na=False) if predictions_file.is_file() else None
        classifier = cls(EncoderClassifier.load(path / "binary"), EncoderClassifier.load(path / "levels"), card,
                         predictions)
        classifier.path = Path(path)  # where Dask workers load it from
        return classifier


def confusion_matrix(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """Row-normalised confusion matrix: entry (i, j) = P(predicted labels[j] | true labels[i]).
    A class absent from ``y_true`` gets the identity row (no information to correct with)."""
    from sklearn.metrics import confusion_matrix as counts_matrix

    counts = counts_matrix(np.asarray(y_true, dtype=object), np.asarray(y_pred, dtype=object),
                           labels=list(labels)).astype(float)
    totals = counts.sum(axis=1, keepdims=True)
    identity = np.eye(len(labels))
    return np.where(totals > 0, counts / np.where(totals > 0, totals, 1), identity)


def train_default_classifier(model: str = "minilm", epochs: int = 3, text_column: str = "ActionFocusedText",
                             seed: int = 0, train_rows: int = 0, max_length: int = 128,
                             progress: bool = True) -> ParticipationClassifier:
    """Train the layered classifier on the released training set, choose its None
    threshold on the test comments, and record cross-fitted test metrics, test
    predictions, data, parameters and git commit in its card."""
    from crowdlens.data import load_collective_action
    from crowdlens.encoders import EncoderClassifier

    from crowdlens.explore import sample

    train, test = load_collective_action("train"), load_collective_action("test")
    train = sample(train, train_rows, seed)  # 0 = every row; a sample only for quick checks
    texts = train[text_column].astype(str).tolist()
    settings = dict(epochs=epochs, seed=seed, max_length=max_length, progress=progress)
    binary = EncoderClassifier(model, **settings).fit(texts, task_labels(train, "binary"))
    positive = train["Label"].notna().to_numpy()
    levels = EncoderClassifier(model, **settings).fit(
        [t for t, p in zip(texts, positive) if p], train.loc[positive, "Label"].tolist())

    card = {"name": "participation", "version": CARD_VERSION, "base_model": model, "epochs": epochs,
            "max_length": max_length, "text_column": text_column, "seed": seed, "train_rows": len(train),
            "data": "Pera & Aiello (2025) collective_action train_set.csv; threshold and metrics on test_set.csv"}
    return _with_test_metrics(binary, levels, card, test, seed)


def _with_test_metrics(binary, levels, card: dict, test: pd.DataFrame, seed: int = 0) -> ParticipationClassifier:
    """The layered classifier of ``binary`` and ``levels``, its None threshold chosen on
    ``test``, and the card completed with cross-fitted test metrics and the git commit."""
    from crowdlens.book import git_commit

    text_column = card["text_column"]
    test_texts = test[text_column].astype(str).tolist()
    y_binary, y_five = task_labels(test, "binary"), task_labels(test, "multiclass")
    p_binary = binary.predict_proba(test_texts)
    binary_cf, _ = crossfit_none_threshold(p_binary, binary.labels_, y_binary, folds=5, seed=seed)
    five_cf = layered(binary_cf, levels.predict(test_texts))
    card = {**card, "none_threshold": best_none_threshold(p_binary, binary.labels_, y_binary),
            "git_commit": git_commit(),
            "test_metrics": {"binary": score(y_binary, binary_cf, n_boot=200),
                             "multiclass_layered": score(y_five, five_cf, n_boot=200),
                             "decision": "cross-fitted None threshold (5 folds of the test comments)"}}
    predictions = pd.DataFrame({"CommentID": test["CommentID"].astype(str), "y_true": y_five, "y_pred": five_cf,
                                "p_participation": 1 - p_binary[:, list(binary.labels_).index(NONE)]})
    return ParticipationClassifier(binary, levels, card, predictions)


def distil_classifier(teacher: ParticipationClassifier, layers: Sequence[int] = (0, 2, 4),
                      transfer_comments: int = 15000, epochs: int = 2, parts: Sequence[str] = ("binary",),
                      seed: int = 0, progress: bool = True) -> ParticipationClassifier:
    """A faster copy of ``teacher``: the encoders named in ``parts`` distilled
    (``EncoderClassifier.distil``) into students that keep ``layers``; the others are
    the teacher's. The default distils the binary encoder only: it reads every comment,
    the level encoder only those it finds participating.

    The transfer texts need no labels — the teacher's logits are the targets: a sample
    of ``transfer_comments`` comments of the US local COVID subreddits plus the
    training texts. Never the test comments, which then choose the student's None
    threshold and measure it (cross-fitted, as for the teacher), nor the political
    communities on which the throughput benchmark checks the two models' agreement.
    The card keeps the teacher's test metrics and the share of test labels they share."""
    from crowdlens.data import load_collective_action, load_reddit_covid
    from crowdlens.explore import reddit_text, sample

    unknown = set(parts) - {"binary", "levels"}
    if unknown or not parts:
        raise ValueError(f"parts names the encoders to distil, 'binary' and/or 'levels'; got {list(parts)}")
    if teacher.test_predictions is None:
        raise ValueError("distil a classifier saved with its test predictions (models.load_classifier)")
    covid = load_reddit_covid()
    covid = reddit_text(covid[covid["kind"] == "comment"])
    covid = covid[covid.str.len() > 0]
    train, test = load_collective_action("train"), load_collective_action("test")
    text_column = teacher.card["text_column"]
    transfer = (sample(covid.to_frame("text"), transfer_comments, seed)["text"].tolist()
                + train[text_column].astype(str).tolist())
    settings = dict(layers=layers, epochs=epochs, seed=seed, progress=progress)
    binary, levels = (getattr(teacher, part).distil(transfer, **settings) if part in parts else getattr(teacher, part)
                      for part in ("binary", "levels"))
    card = {**{k: v for k, v in teacher.card.items() if k not in ("test_metrics", "none_threshold", "git_commit")},
            "name": "participation-distilled", "layers": list(layers), "transfer_comments": transfer_comments,
            "distil_epochs": epochs, "distilled_parts": list(parts),
            "data": teacher.card.get("data", "") + "; distilled on US local COVID Reddit comments and the training texts",
            "teacher_test_metrics": teacher.card.get("test_metrics")}
    student = _with_test_metrics(binary, levels, card, test, seed)
    agreement = (student.test_predictions["y_pred"].to_numpy() == teacher.test_predictions["y_pred"].to_numpy()).mean()
    student.card["test_agreement_with_teacher"] = float(agreement)
    return student
