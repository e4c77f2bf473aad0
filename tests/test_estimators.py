"""Every estimator of the book follows scikit-learn's conventions: ``__init__`` only
stores its parameters (so ``sklearn.base.clone`` copies it), and ``fit`` sets what it
learns in attributes ending in ``_``."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from sklearn.base import clone

from crowdlens.core.encoders import EncoderClassifier
from crowdlens.core.estimators import ClassOffsets, ProbabilityAverage, macro_f1_offsets, shift_probabilities
from crowdlens.core.metrics import macro_f1
from crowdlens.crowd_response.distributions import KNNDistribution, PriorDistribution, SoftmaxRegression
from crowdlens.crowd_response.emotions import ChineseTextClassifier, LexiconEmotion
from crowdlens.crowd_response.replies import ReplyModel
from crowdlens.participation.classifiers import CentroidClassifier, DictionaryRule, EmbeddingLogReg, TfidfLogReg
from crowdlens.participation.llm_labels import LLMAnnotator, LMLabelScorer

# each with parameters other than its defaults, so that clone must carry them over
ESTIMATORS = [
    TfidfLogReg(C=1.5, min_df=1, seed=3),
    CentroidClassifier(model="minilm", temperature=0.1, cache_embeddings=False, device="cpu"),
    DictionaryRule(words=["protest", "rally"]),
    EmbeddingLogReg(model="e5", C=2.0, class_weight=None, cache_embeddings=False, seed=1, device="cpu"),
    EncoderClassifier("minilm", max_length=64, epochs=1, checkpoint_dir="checkpoints", progress=False, device="cpu"),
    ChineseTextClassifier(features="chars", C=1.0),
    LexiconEmotion(),
    PriorDistribution(),
    KNNDistribution(k=5),
    SoftmaxRegression(alpha=(0.1, 1.0), epochs=10),
    LMLabelScorer("smollm2", device="cpu"),
    LLMAnnotator("smollm2", calibrate=False, max_chars=200, device="cuda:1"),
    ReplyModel("smollm2", adapter="mixture", target_modules=["q_proj"], steps=3, device="mps", load_in_4bit=True),
]


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_clone_copies_the_parameters_and_nothing_learned(estimator):
    copy = clone(estimator)
    assert type(copy) is type(estimator) and copy is not estimator
    assert copy.get_params() == estimator.get_params()
    signature = {name for name, parameter in inspect.signature(type(estimator).__init__).parameters.items()
                 if name != "self" and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)}
    # __init__ set exactly the parameters, under their own names, and nothing ending in _
    assert set(vars(copy)) == signature
    assert not [name for name in vars(copy) if name.endswith("_")]


def test_fit_sets_the_learned_attributes_and_a_clone_starts_unfitted():
    texts = ["we will protest on friday", "join the rally", "nice weather today", "my cat sleeps"] * 5
    labels = ["Participation", "Participation", "None", "None"] * 5
    fitted = TfidfLogReg(min_df=1).fit(texts, labels)
    assert list(fitted.classes_) == ["None", "Participation"]
    assert list(fitted.predict(["join the rally", "my cat sleeps"])) == ["Participation", "None"]
    fresh = clone(fitted)
    assert not hasattr(fresh, "classes_") and not hasattr(fresh, "pipeline_")


def test_invalid_parameters_are_refused_when_fitting():
    with pytest.raises(ValueError, match="features must be one of"):
        ChineseTextClassifier(features="pinyin").fit(["一", "二"], ["happy", "sad"])
    with pytest.raises(ValueError, match="adapter must be one of"):
        ReplyModel(adapter="prefix").fit(np.array([]))


@pytest.mark.parametrize("estimator", [EncoderClassifier(device="gpu", progress=False), LMLabelScorer(device="gpu"),
                                       LLMAnnotator(device="gpu"), CentroidClassifier(device="gpu")],
                         ids=lambda e: type(e).__name__)
def test_the_device_is_stored_as_given_and_resolved_when_fitting(estimator):
    assert estimator.device == "gpu"  # __init__ checks nothing (scikit-learn's convention)
    assert clone(estimator).device == "gpu"
    with pytest.raises(ValueError, match="choose one of auto, cpu, cuda, cuda:N, mps"):
        estimator.fit(["a text", "another"], ["x", "y"])


class _FixedProbabilities:
    """A fitted stand-in whose probabilities are given: row i of ``table`` for text i."""

    def __init__(self, classes, table):
        self.classes_, self.table = np.asarray(classes), np.asarray(table, float)

    def predict_proba(self, texts):
        return self.table[[int(t) for t in texts]]


def test_probability_average_weights_its_members_and_can_flip_a_decision():
    sure = _FixedProbabilities(["angry", "happy"], [[0.9, 0.1], [0.2, 0.8]])
    unsure = _FixedProbabilities(["angry", "happy"], [[0.3, 0.7], [0.4, 0.6]])
    equal = ProbabilityAverage([sure, unsure]).fit()
    np.testing.assert_allclose(equal.predict_proba(["0", "1"]), [[0.6, 0.4], [0.3, 0.7]])
    np.testing.assert_allclose(equal.weights_, [0.5, 0.5])
    # a weight of 1:3 lets the second member outvote the first on text 0
    leaning = ProbabilityAverage([sure, unsure], weights=[1, 3]).fit()
    assert list(leaning.predict(["0", "1"])) == ["happy", "happy"]
    np.testing.assert_allclose(leaning.predict_proba(["0"]).sum(1), 1.0)
    assert list(ProbabilityAverage([sure, unsure], weights=[1, 0]).fit().predict(["0"])) == ["angry"]


def test_probability_average_refuses_members_that_disagree_on_classes_or_bad_weights():
    a = _FixedProbabilities(["angry", "happy"], [[0.5, 0.5]])
    b = _FixedProbabilities(["happy", "angry"], [[0.5, 0.5]])
    with pytest.raises(ValueError, match="fit them on the same labels"):
        ProbabilityAverage([a, b]).fit()
    with pytest.raises(ValueError, match="non-negative numbers with a positive sum"):
        ProbabilityAverage([a, a], weights=[1, -1]).fit()
    with pytest.raises(ValueError, match="one per member"):
        ProbabilityAverage([a, a], weights=[1]).fit()


def _underconfident_in_a_rare_class(n=3000, seed=0):
    """Three classes; the rare class "c" is always the model's second choice, just below
    the right answer's rival: argmax never predicts it, an offset recovers it."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(["a", "b", "c"], size=n, p=[0.45, 0.45, 0.10])
    p = rng.dirichlet([1, 1, 1], size=n) * 0.05
    for i, label in enumerate(labels):
        if label == "c":
            p[i] += [0.45, 0.0, 0.35] if i % 2 else [0.0, 0.45, 0.35]
        else:
            p[i, "ab".index(label)] += 0.8
    return p / p.sum(1, keepdims=True), labels


def test_class_offsets_recover_a_class_the_argmax_never_predicts():
    probabilities, labels = _underconfident_in_a_rare_class()
    classes = np.array(["a", "b", "c"])
    assert "c" not in set(classes[probabilities.argmax(1)])
    offsets = macro_f1_offsets(probabilities, labels, classes)
    tuned = classes[shift_probabilities(probabilities, offsets).argmax(1)]
    assert "c" in set(tuned) and macro_f1(labels, tuned) > macro_f1(labels, classes[probabilities.argmax(1)]) + 0.2
    np.testing.assert_allclose(shift_probabilities(probabilities, offsets).sum(1), 1.0)
    # the tuned rule carries over to rows it was not tuned on, and the cross-fitted score says so
    model = ClassOffsets(_FixedProbabilities(classes, probabilities)).fit([str(i) for i in range(len(labels))],
                                                                         labels)
    assert model.cv_score_ > model.untuned_score_ + 0.2
    assert list(model.predict(["0", "1"])) == list(tuned[:2])


def test_class_offsets_on_noise_score_no_better_than_untuned_when_cross_fitted():
    rng = np.random.default_rng(1)
    probabilities, labels = rng.dirichlet([1, 1, 1], size=400), rng.choice(["a", "b", "c"], size=400)
    classes = np.array(["a", "b", "c"])
    in_sample = macro_f1(labels, classes[shift_probabilities(
        probabilities, macro_f1_offsets(probabilities, labels, classes)).argmax(1)])
    model = ClassOffsets(_FixedProbabilities(classes, probabilities), folds=4).fit(
        [str(i) for i in range(400)], labels, probabilities=probabilities)
    # tuning on the rows that score it flatters; the cross-fitted score does not
    assert in_sample > model.untuned_score_ and model.cv_score_ < in_sample
    assert model.cv_score_ < 0.45  # chance is 1/3: no real signal to find


def test_class_offsets_clone_keeps_the_wrapped_classifier_unfitted():
    wrapped = ClassOffsets(TfidfLogReg(C=1.5), folds=3, rounds=1, grid=(-1.0, 0.0, 1.0), seed=4)
    copy = clone(wrapped)
    assert copy.get_params(deep=False).keys() == wrapped.get_params(deep=False).keys()
    assert (copy.folds, copy.rounds, copy.grid, copy.seed) == (3, 1, (-1.0, 0.0, 1.0), 4)
    assert copy.classifier.C == 1.5 and not [n for n in vars(copy) if n.endswith("_")]


def test_class_offsets_refuse_bad_input_with_the_fix():
    classifier = _FixedProbabilities(["a", "b"], [[0.6, 0.4], [0.3, 0.7]])
    with pytest.raises(ValueError, match="folds must be at least 2"):
        ClassOffsets(classifier, folds=1).fit(["0", "1"], ["a", "b"])
    with pytest.raises(ValueError, match="not among the classifier's classes"):
        ClassOffsets(classifier).fit(["0", "1"], ["a", "z"])
    with pytest.raises(ValueError, match="one row per label and one column per class"):
        macro_f1_offsets(np.ones((3, 2)) / 2, ["a", "b"], ["a", "b"])
