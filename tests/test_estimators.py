"""Every estimator of the book follows scikit-learn's conventions: ``__init__`` only
stores its parameters (so ``sklearn.base.clone`` copies it), and ``fit`` sets what it
learns in attributes ending in ``_``."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from sklearn.base import clone

from crowdlens.core.encoders import EncoderClassifier
from crowdlens.core.estimators import ProbabilityAverage
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
