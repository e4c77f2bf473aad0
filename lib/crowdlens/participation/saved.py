"""The book's saved participation classifier: the layered model (a binary encoder,
then a level encoder on the comments it finds participating), trained once, cached
with a model card, loaded by name with ``load_classifier``; its copy whose None
threshold was tuned on the labelled test comments; and its distilled copy.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from crowdlens.core.config import atomic_dir, cache_dir, git_commit
from crowdlens.core.device import device_type, is_accelerator, resolve_device
from crowdlens.core.encoders import EncoderClassifier, OnnxEncoderClassifier
from crowdlens.core.hub import ModelNotAvailableError
from crowdlens.core.metrics import COLLAPSE_SHARE, confusion_matrix
from crowdlens.core.sampling import sample
from crowdlens.data.reddit import reddit_text
from crowdlens.data.registry import load_collective_action, load_reddit_covid
from crowdlens.participation.classifiers import (
    DECISION_PREFERENCE,
    DECISIONS,
    PAPER_PROTOCOL,
    THRESHOLD_PROTOCOL,
    HeldOut,
    best_none_threshold,
    crossfit_none_threshold,
    layered,
    predict_with_none_threshold,
    prior_shift_estimates,
    score,
)
from crowdlens.participation.labels import FIVE_CLASSES, NONE, task_labels

CARD_VERSION = 4  # bump when the saved classifier's contents change; older saves are retrained


class ParticipationClassifier:
    """The book's participation classifier: a binary encoder (participation or not)
    and a level encoder trained on participation comments, combined as the layered
    model. ``predict`` returns one of the five labels; ``predict_binary`` two.

    ``none_threshold`` on P(None) is its decision rule. The default (``participation``)
    follows the paper protocol: no test label is used — the rule is the first of
    ``DECISION_PREFERENCE`` whose prior estimate did not collapse (BBSE from the
    training rows the encoder held out, applied to its predictions on the unlabelled test
    comments), and the card's test metrics score every test comment with it.
    ``participation-test-threshold`` chooses the threshold on the labelled test comments
    instead; its test metrics are cross-fitted. ``card["decision"]`` says which.
    ``held_out``: the training rows the binary encoder never fitted (text, label).
    """

    def __init__(self, binary, levels, card: dict, test_predictions: pd.DataFrame | None = None,
                 held_out: pd.DataFrame | None = None):
        self.binary, self.levels, self.card = binary, levels, card
        self.none_threshold = card.get("none_threshold", 0.5)
        self.test_predictions = test_predictions
        self.held_out = held_out
        self.path: Path | None = None

    @property
    def device(self) -> str:
        """The device its encoders score on (a ``resolve_device`` name, ``"cpu"`` for ONNX)."""
        return getattr(self.binary, "device", "cpu")

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
                             "load_classifier('participation', retrain=True)")
        return confusion_matrix(self.test_predictions["y_true"], self.test_predictions["y_pred"], labels)

    def to_onnx(self, quantize: bool = True, path: str | Path | None = None,
                threads: int | None = None) -> "ParticipationClassifier":
        """The same classifier (threshold, card, test predictions) with both encoders
        run by ONNX Runtime — int8 weights when ``quantize``. The export is written once
        beside the saved model (or to ``path``) and reused while the model is unchanged."""
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
        clone = ParticipationClassifier(parts["binary"], parts["levels"], self.card, self.test_predictions,
                                        self.held_out)
        clone.path = self.path
        return clone

    def save(self, path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        self.binary.save(path / "binary", card={"task": "binary"})
        self.levels.save(path / "levels", card={"task": "levels"})
        for table, frame in (("test_predictions", self.test_predictions), ("held_out", self.held_out)):
            if frame is not None:
                frame.to_csv(path / f"{table}.csv", index=False)
        (path / "card.json").write_text(json.dumps(self.card, indent=2, default=str))
        return path

    @classmethod
    def load(cls, path: Path, device: str = "auto") -> "ParticipationClassifier":
        """A saved classifier whose encoders score on ``device`` (``crowdlens.core.device``)."""
        card = json.loads((path / "card.json").read_text())
        tables = {table: pd.read_csv(path / f"{table}.csv", keep_default_na=False)
                  if (path / f"{table}.csv").is_file() else None for table in ("test_predictions", "held_out")}
        classifier = cls(EncoderClassifier.load(path / "binary", device=device),
                         EncoderClassifier.load(path / "levels", device=device), card, **tables)
        classifier.path = Path(path)  # where Dask workers load it from
        return classifier


def train_default_classifier(model: str = "minilm", epochs: int = 3, text_column: str = "ActionFocusedText",
                             seed: int = 0, train_rows: int = 0, max_length: int = 128,
                             progress: bool = True, device: str = "auto") -> ParticipationClassifier:
    """Train the layered classifier on the released training set (on ``device``), choose
    its decision rule under the paper protocol (no test label), and record test metrics,
    test predictions, data, parameters, device and git commit in its card."""
    train, test = load_collective_action("train"), load_collective_action("test")
    train = sample(train, train_rows, seed)  # 0 = every row; a sample only for quick checks
    texts = train[text_column].astype(str).tolist()
    settings = dict(epochs=epochs, seed=seed, max_length=max_length, progress=progress, device=device)
    y_binary = task_labels(train, "binary")
    binary = EncoderClassifier(model, **settings).fit(texts, y_binary)
    positive = train["Label"].notna().to_numpy()
    levels = EncoderClassifier(model, **settings).fit(
        [t for t, p in zip(texts, positive) if p], train.loc[positive, "Label"].tolist())
    rows = np.asarray(binary.validation_rows_, dtype=int)
    held_out = pd.DataFrame({"text": [texts[i] for i in rows], "label": np.asarray(y_binary, dtype=object)[rows]})

    card = {"name": "participation", "version": CARD_VERSION, "base_model": model, "epochs": epochs,
            "max_length": max_length, "text_column": text_column, "seed": seed, "train_rows": len(train),
            "trained_on": resolve_device(device),
            "data": "Pera & Aiello (2025) collective_action train_set.csv; metrics on test_set.csv"}
    return _with_paper_protocol(binary, levels, card, test, held_out)


def _none_threshold_of(weights: np.ndarray, classes: Sequence[str]) -> float:
    """The P(None) threshold equivalent to re-weighting binary posteriors by ``weights``
    (q(y) / p(y)): None when w_None·P(None) ≥ w_other·(1 − P(None))."""
    none = list(classes).index(NONE)
    w_none, w_other = float(weights[none]), float(weights[1 - none])
    return w_other / (w_none + w_other)


def _starved_class(predictions: np.ndarray, prior: np.ndarray, classes: Sequence[str]
                   ) -> tuple[str, float, float] | None:
    """A class the estimate gives a real share (≥ ``COLLAPSE_SHARE``) but the decisions
    (almost) never predict: (class, estimated share, predicted share), else None."""
    predicted = pd.Series(predictions).value_counts(normalize=True)
    for label, estimated in zip(classes, prior):
        share = float(predicted.get(label, 0.0))
        if estimated >= COLLAPSE_SHARE and share < COLLAPSE_SHARE:
            return str(label), float(estimated), share
    return None


def _layered_test_predictions(binary, levels, test_texts: list[str], binary_predictions: np.ndarray) -> np.ndarray:
    """Five-class test predictions: the level encoder reads only the comments the binary
    step lets through, as in ``predict``."""
    levels_predictions = np.full(len(test_texts), NONE, dtype=object)
    positive = np.flatnonzero(np.asarray(binary_predictions) != NONE)
    if len(positive):
        levels_predictions[positive] = levels.predict([test_texts[i] for i in positive])
    return layered(binary_predictions, levels_predictions)


def _test_predictions_table(test: pd.DataFrame, y_five, five, p_binary, classes) -> pd.DataFrame:
    return pd.DataFrame({"CommentID": test["CommentID"].astype(str), "y_true": y_five, "y_pred": five,
                         "p_participation": 1 - p_binary[:, list(classes).index(NONE)]})


def _with_paper_protocol(binary, levels, card: dict, test: pd.DataFrame,
                         held_out: pd.DataFrame) -> ParticipationClassifier:
    """The layered classifier of ``binary`` and ``levels`` with the paper protocol's
    decision rule: the first of ``DECISION_PREFERENCE`` whose test prior estimate (from
    the unlabelled test texts and, for BBSE, the ``held_out`` training rows) did not
    collapse, else the most probable class. No test label is used; the card's metrics
    score all test comments with that rule, and name any estimate that collapsed."""
    text_column = card["text_column"]
    test_texts = test[text_column].astype(str).tolist()
    if held_out.empty:
        raise ValueError("the paper protocol's decision rule needs training rows the encoder held out: train it "
                         "with validation_share > 0 (EncoderClassifier's default, 0.1)")
    classes = binary.labels_
    p_binary = binary.predict_proba(test_texts)
    held = HeldOut(np.arange(len(held_out)), binary.predict_proba(held_out["text"].tolist()), np.asarray(classes))
    # the training prior (EM's start, BBSE's denominator) is the held-out rows': the split
    # is stratified, so it is the training set's
    shifts = prior_shift_estimates(p_binary, classes, held_out["label"].tolist(), held)
    decision, threshold, prior, collapsed = "raw", 0.5, None, {}
    binary_predictions = predict_with_none_threshold(p_binary, classes, threshold)
    for rule in DECISION_PREFERENCE:
        if rule not in shifts:
            break  # "raw" and what follows it need no estimate
        shift = shifts[rule]
        if shift.is_collapsed:
            collapsed[rule] = shift.describe(list(classes))
            continue
        candidate = _none_threshold_of(shift.weights, classes)
        candidate_predictions = predict_with_none_threshold(p_binary, classes, candidate)
        starved = _starved_class(candidate_predictions, shift.prior, classes)
        if starved is not None:
            # a sound prior estimate applied to posteriors that barely separate the classes
            # can still move every decision to one side
            collapsed[rule] = (f"{rule}: it estimates {starved[1]:.1%} of the test comments as {starved[0]}, "
                               f"but its decisions give {starved[0]} to {starved[2]:.1%}; the next rule is used.")
            continue
        decision, threshold, binary_predictions = rule, candidate, candidate_predictions
        prior = dict(zip(map(str, classes), np.round(shift.prior, 4).tolist()))
        break
    five = _layered_test_predictions(binary, levels, test_texts, binary_predictions)
    y_binary, y_five = task_labels(test, "binary"), task_labels(test, "multiclass")
    card = {**card, "none_threshold": threshold, "git_commit": git_commit(),
            "decision": {"rule": decision, "protocol": PAPER_PROTOCOL, "uses": DECISIONS[decision],
                         "estimated_test_prior": prior, "collapsed": collapsed},
            "test_metrics": {"binary": score(y_binary, binary_predictions, n_boot=200),
                             "multiclass_layered": score(y_five, five, n_boot=200),
                             "decision": f"{decision} ({PAPER_PROTOCOL})"}}
    return ParticipationClassifier(binary, levels, card, _test_predictions_table(test, y_five, five, p_binary, classes),
                                   held_out)


def with_test_threshold(classifier: ParticipationClassifier, seed: int = 0) -> ParticipationClassifier:
    """``classifier``'s encoders with the None threshold that maximises weighted F1 on the
    labelled test comments (protocol "threshold cross-fitted on test labels"): the card's
    test metrics and test predictions are cross-fitted over 5 folds of the test comments,
    so no prediction used its own label, but the threshold itself is tuned on them."""
    card = classifier.card
    test = load_collective_action("test")
    test_texts = test[card["text_column"]].astype(str).tolist()
    classes = classifier.binary.labels_
    y_binary, y_five = task_labels(test, "binary"), task_labels(test, "multiclass")
    p_binary = classifier.binary.predict_proba(test_texts)
    binary_cf, _ = crossfit_none_threshold(p_binary, classes, y_binary, folds=5, seed=seed)
    five_cf = _layered_test_predictions(classifier.binary, classifier.levels, test_texts, binary_cf)
    card = {**{k: v for k, v in card.items() if k not in ("test_metrics", "decision")},
            "name": "participation-test-threshold",
            "none_threshold": best_none_threshold(p_binary, classes, y_binary), "git_commit": git_commit(),
            "decision": {"rule": "cross-fitted threshold", "protocol": THRESHOLD_PROTOCOL,
                         "uses": DECISIONS["cross-fitted threshold"]},
            "teacher_test_metrics": card.get("test_metrics"),
            "test_metrics": {"binary": score(y_binary, binary_cf, n_boot=200),
                             "multiclass_layered": score(y_five, five_cf, n_boot=200),
                             "decision": f"cross-fitted None threshold, 5 folds ({THRESHOLD_PROTOCOL})"}}
    return ParticipationClassifier(classifier.binary, classifier.levels, card,
                                   _test_predictions_table(test, y_five, five_cf, p_binary, classes),
                                   classifier.held_out)


def distil_classifier(teacher: ParticipationClassifier, layers: Sequence[int] = (0, 2, 4),
                      transfer_comments: int = 15000, epochs: int = 2, parts: Sequence[str] = ("binary",),
                      seed: int = 0, progress: bool = True) -> ParticipationClassifier:
    """A faster copy of ``teacher``: the encoders named in ``parts`` distilled
    (``EncoderClassifier.distil``) into students that keep ``layers``; the others are
    the teacher's. The default distils the binary encoder only: it reads every comment,
    the level encoder only those it finds participating.

    The transfer texts need no labels — the teacher's logits are the targets: a sample
    of ``transfer_comments`` comments of the US local COVID subreddits plus the
    training texts. Never the test comments, which then measure it, nor the political
    communities on which the throughput benchmark checks the two models' agreement. Its
    decision rule is chosen as the teacher's (paper protocol: BBSE from the teacher's
    held-out training rows, whose labels neither model fitted).
    The card keeps the teacher's test metrics and the share of test labels they share."""
    unknown = set(parts) - {"binary", "levels"}
    if unknown or not parts:
        raise ValueError(f"parts names the encoders to distil, 'binary' and/or 'levels'; got {list(parts)}")
    if teacher.test_predictions is None or teacher.held_out is None:
        raise ValueError("distil a classifier saved with its test predictions and held-out rows: "
                         "load_classifier('participation')")
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
    own_to_student = ("test_metrics", "none_threshold", "git_commit", "decision")  # the student's own, below
    card = {**{k: v for k, v in teacher.card.items() if k not in own_to_student},
            "name": "participation-distilled", "layers": list(layers), "transfer_comments": transfer_comments,
            "distil_epochs": epochs, "distilled_parts": list(parts),
            "data": teacher.card.get("data", "") + "; distilled on US local COVID Reddit comments and the training texts",
            "teacher_test_metrics": teacher.card.get("test_metrics")}
    student = _with_paper_protocol(binary, levels, card, test, teacher.held_out)
    agreement = (student.test_predictions["y_pred"].to_numpy() == teacher.test_predictions["y_pred"].to_numpy()).mean()
    student.card["test_agreement_with_teacher"] = float(agreement)
    return student


def classifiers_cache_dir() -> Path:
    return cache_dir() / "classifiers"


SAVED_CLASSIFIERS = ("participation", "participation-test-threshold", "participation-distilled")


def load_classifier(name: str = "participation", retrain: bool = False, device: str = "auto", **train_kwargs):
    """A saved classifier of the book by name, trained first when the cache lacks it.

    ``device`` trains it and scores with it (``crowdlens.core.device``: default a CUDA GPU,
    else MPS, else the CPU). A model trained on an accelerator is saved apart from the
    CPU's (its numbers differ in the last digits), so CPU runs never load it.

    ``participation``: the layered participation classifier (binary encoder + level
    encoder, ``crowdlens.participation``) under the paper protocol — no test label in its
    decision rule (``card["decision"]``) — with a model card in ``card``. Training
    arguments (``epochs``, ``train_rows``, ``model``...) other than the defaults are
    saved under their own folder, so a quick sample never replaces the full model.

    ``participation-test-threshold``: the same encoders with the None threshold tuned on
    the labelled test comments (``with_test_threshold``; its metrics cross-fitted). Its
    arguments are those of ``participation``; it is rebuilt when that one is retrained.

    ``participation-distilled``: the same classifier with its binary encoder distilled
    to half the layers (``distil_classifier``: about twice as fast to
    score; its card has its own test metrics beside the teacher's). Its arguments are
    those of ``distil_classifier``, plus ``teacher``: a dict of ``participation``
    arguments. It is distilled again when its teacher has been retrained since.
    Used in the reddit_communities chapter.
    """
    if name not in SAVED_CLASSIFIERS:
        raise ModelNotAvailableError(f"no saved classifier '{name}'; available: {', '.join(SAVED_CLASSIFIERS)}")
    teacher_kwargs = {}
    if name == "participation-distilled":
        teacher_kwargs = dict(train_kwargs.pop("teacher", None) or {})
    elif name == "participation-test-threshold":  # the same arguments as its base
        teacher_kwargs = dict(train_kwargs)
    device = resolve_device(device)
    distilled_from = {"teacher": teacher_kwargs} if name == "participation-distilled" and teacher_kwargs else {}
    path = _classifier_folder(name, {**train_kwargs, **distilled_from}, device)
    card_file = path / "card.json"
    if card_file.is_file() and not retrain:
        card = json.loads(card_file.read_text())
        if card.get("version") == CARD_VERSION and (
                name == "participation"
                or _same_teacher(card, _classifier_folder("participation", teacher_kwargs, device))):
            return ParticipationClassifier.load(path, device=device)
    if name == "participation":
        classifier = train_default_classifier(**train_kwargs, device=device)
    elif name == "participation-test-threshold":
        base = load_classifier("participation", device=device, **teacher_kwargs)
        classifier = with_test_threshold(base, seed=base.card.get("seed", 0))
    else:
        if "progress" in train_kwargs:
            teacher_kwargs.setdefault("progress", train_kwargs["progress"])
        classifier = distil_classifier(load_classifier("participation", device=device, **teacher_kwargs),
                                       **train_kwargs)
    with atomic_dir(path) as staging:
        classifier.save(staging)
    return ParticipationClassifier.load(path, device=device)


def _classifier_folder(name: str, train_kwargs: dict, device: str = "cpu") -> Path:
    """Where a saved classifier lives: its name, plus a hash of non-default arguments,
    so a quick sample never replaces the full model; the kind of accelerator it was
    trained on counts as such an argument (the CPU's folders keep their names)."""
    key = {k: v for k, v in sorted(train_kwargs.items()) if k != "progress"}
    if is_accelerator(device):
        key["device"] = device_type(device)
    folder = name if not key else f"{name}-" + hashlib.sha256(json.dumps(key, default=str).encode()).hexdigest()[:10]
    return classifiers_cache_dir() / folder


def _same_teacher(card: dict, teacher_folder: Path) -> bool:
    """Whether the teacher saved in ``teacher_folder`` is the one ``card``'s model was
    derived from (same test metrics; a retrained teacher has others)."""
    teacher_card = teacher_folder / "card.json"
    return teacher_card.is_file() and json.loads(teacher_card.read_text()).get("test_metrics") == card.get(
        "teacher_test_metrics")
