"""The book's saved participation classifier: the layered model (a binary encoder,
then a level encoder on the comments it finds participating), trained once, cached
with a model card, loaded by name with ``load_classifier``; and its distilled copy.
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
from crowdlens.core.metrics import confusion_matrix
from crowdlens.core.sampling import sample
from crowdlens.data.reddit import reddit_text
from crowdlens.data.registry import load_collective_action, load_reddit_covid
from crowdlens.participation.classifiers import (
    best_none_threshold,
    crossfit_none_threshold,
    layered,
    predict_with_none_threshold,
    score,
)
from crowdlens.participation.labels import FIVE_CLASSES, NONE, task_labels

CARD_VERSION = 2  # bump when the saved classifier's contents change; older saves are retrained


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
    def load(cls, path: Path, device: str = "auto") -> "ParticipationClassifier":
        """A saved classifier whose encoders score on ``device`` (``crowdlens.core.device``)."""
        card = json.loads((path / "card.json").read_text())
        predictions_file = path / "test_predictions.csv"
        predictions = pd.read_csv(predictions_file, keep_default_na=False) if predictions_file.is_file() else None
        classifier = cls(EncoderClassifier.load(path / "binary", device=device),
                         EncoderClassifier.load(path / "levels", device=device), card, predictions)
        classifier.path = Path(path)  # where Dask workers load it from
        return classifier


def train_default_classifier(model: str = "minilm", epochs: int = 3, text_column: str = "ActionFocusedText",
                             seed: int = 0, train_rows: int = 0, max_length: int = 128,
                             progress: bool = True, device: str = "auto") -> ParticipationClassifier:
    """Train the layered classifier on the released training set (on ``device``), choose
    its None threshold on the test comments, and record cross-fitted test metrics, test
    predictions, data, parameters, device and git commit in its card."""
    train, test = load_collective_action("train"), load_collective_action("test")
    train = sample(train, train_rows, seed)  # 0 = every row; a sample only for quick checks
    texts = train[text_column].astype(str).tolist()
    settings = dict(epochs=epochs, seed=seed, max_length=max_length, progress=progress, device=device)
    binary = EncoderClassifier(model, **settings).fit(texts, task_labels(train, "binary"))
    positive = train["Label"].notna().to_numpy()
    levels = EncoderClassifier(model, **settings).fit(
        [t for t, p in zip(texts, positive) if p], train.loc[positive, "Label"].tolist())

    card = {"name": "participation", "version": CARD_VERSION, "base_model": model, "epochs": epochs,
            "max_length": max_length, "text_column": text_column, "seed": seed, "train_rows": len(train),
            "trained_on": resolve_device(device),
            "data": "Pera & Aiello (2025) collective_action train_set.csv; threshold and metrics on test_set.csv"}
    return _with_test_metrics(binary, levels, card, test, seed)


def _with_test_metrics(binary, levels, card: dict, test: pd.DataFrame, seed: int = 0) -> ParticipationClassifier:
    """The layered classifier of ``binary`` and ``levels``, its None threshold chosen on
    ``test``, and the card completed with cross-fitted test metrics and the git commit."""
    text_column = card["text_column"]
    test_texts = test[text_column].astype(str).tolist()
    y_binary, y_five = task_labels(test, "binary"), task_labels(test, "multiclass")
    p_binary = binary.predict_proba(test_texts)
    binary_cf, _ = crossfit_none_threshold(p_binary, binary.labels_, y_binary, folds=5, seed=seed)
    # the level encoder reads only the comments the binary step lets through, as in predict()
    levels_cf = np.full(len(test_texts), NONE, dtype=object)
    positive = np.flatnonzero(np.asarray(binary_cf) != NONE)
    if len(positive):
        levels_cf[positive] = levels.predict([test_texts[i] for i in positive])
    five_cf = layered(binary_cf, levels_cf)
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
    unknown = set(parts) - {"binary", "levels"}
    if unknown or not parts:
        raise ValueError(f"parts names the encoders to distil, 'binary' and/or 'levels'; got {list(parts)}")
    if teacher.test_predictions is None:
        raise ValueError("distil a classifier saved with its test predictions (load_classifier)")
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


def classifiers_cache_dir() -> Path:
    return cache_dir() / "classifiers"


SAVED_CLASSIFIERS = ("participation", "participation-distilled")


def load_classifier(name: str = "participation", retrain: bool = False, device: str = "auto", **train_kwargs):
    """A saved classifier of the book by name, trained first when the cache lacks it.

    ``device`` trains it and scores with it (``crowdlens.core.device``: default a CUDA GPU,
    else MPS, else the CPU). A model trained on an accelerator is saved apart from the
    CPU's (its numbers differ in the last digits), so CPU runs never load it.

    ``participation``: the layered participation classifier (binary encoder + level
    encoder, ``crowdlens.participation``), with a model card in ``card``. Training
    arguments (``epochs``, ``train_rows``, ``model``...) other than the defaults are
    saved under their own folder, so a quick sample never replaces the full model.

    ``participation-distilled``: the same classifier with its binary encoder distilled
    to half the layers (``distil_classifier``: about twice as fast to
    score; its card has its own test metrics beside the teacher's). Its arguments are
    those of ``distil_classifier``, plus ``teacher``: a dict of ``participation``
    arguments. It is distilled again when its teacher has been retrained since.
    Used in the reddit_communities chapter.
    """
    if name not in SAVED_CLASSIFIERS:
        raise ModelNotAvailableError(f"no saved classifier '{name}'; available: {', '.join(SAVED_CLASSIFIERS)}")
    teacher_kwargs = dict(train_kwargs.pop("teacher", None) or {}) if name != "participation" else {}
    device = resolve_device(device)
    path = _classifier_folder(name, {**train_kwargs, **({"teacher": teacher_kwargs} if teacher_kwargs else {})},
                              device)
    card_file = path / "card.json"
    if card_file.is_file() and not retrain:
        card = json.loads(card_file.read_text())
        if card.get("version") == CARD_VERSION and (
                name == "participation"
                or _same_teacher(card, _classifier_folder("participation", teacher_kwargs, device))):
            return ParticipationClassifier.load(path, device=device)
    if name == "participation":
        classifier = train_default_classifier(**train_kwargs, device=device)
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
    distilled from (same test metrics; a retrained teacher has others)."""
    teacher_card = teacher_folder / "card.json"
    return teacher_card.is_file() and json.loads(teacher_card.read_text()).get("test_metrics") == card.get(
        "teacher_test_metrics")
