"""crowdlens.participation: task labels, baselines, decision rules, the layered model and
the saved classifier behind part.load_classifier."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from crowdlens import participation as part
from crowdlens.core.metrics import PriorShift, weighted_f1
from crowdlens.participation import saved as saved_module


@pytest.fixture
def frame():
    return pd.DataFrame({
        "ActionFocusedText": ["Join the strike now", "I baked bread", "We marched today", "Nice weather",
                              "Sign the petition please", "My cat sleeps", "I will volunteer at the rally",
                              "The bus was late"] * 3,
        "Label": ["Call-to-action", None, "Execution", None, "Call-to-action", None, "Intention", None] * 3,
        "SimplifiedLabel": ["Participation", None, "Participation", None, "Participation", None,
                            "Participation", None] * 3,
    })


def test_task_labels(frame):
    assert list(part.task_labels(frame, "binary")[:2]) == ["Participation", "None"]
    assert list(part.task_labels(frame, "multiclass")[:2]) == ["Call-to-action", "None"]
    assert (part.task_labels(frame, "simplified") == part.task_labels(frame, "binary")).all()
    with pytest.raises(ValueError, match="task must be"):
        part.task_labels(frame, "ternary")


def test_tfidf_and_dictionary_baselines_learn_the_toy_task(frame):
    texts, y = frame["ActionFocusedText"], part.task_labels(frame, "binary")
    tfidf = part.TfidfLogReg().fit(texts, y)
    assert (tfidf.predict(texts) == y).mean() == 1.0
    rule = part.DictionaryRule(words=["strike*", "march*", "petition", "volunt*", "join", "sign*"]).fit(texts, y)
    assert rule.k_ >= 1 and (rule.predict(texts) == y).all()


@pytest.mark.parametrize("model", ["minilm", "e5"])
def test_a_frozen_encoder_head_separates_unseen_participation_texts(model, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    action = ["Join the strike on Monday", "Sign the petition and come to the march", "We rallied at city hall",
              "I will volunteer for the union drive", "Boycott the company with us", "Come protest tomorrow"]
    other = ["I baked bread this morning", "The cat sleeps on the sofa", "This pasta recipe is great",
             "The train was late again", "I watched a film last night", "My phone battery died"]
    head = part.EmbeddingLogReg(model, C=2.0, cache_embeddings=False, device="cpu").fit(action + other, ["P"] * 6 + ["N"] * 6)
    assert list(head.classes_) == ["N", "P"] and head.predict_proba(action[:1]).shape == (1, 2)
    unseen = ["Everyone to the picket line at noon", "Let us occupy the square together",
              "The soup needs more salt", "It rained all afternoon"]
    assert list(head.predict(unseen)) == ["P", "P", "N", "N"]


def test_none_threshold_and_layered_model():
    classes = ["Execution", "None", "Problem-Solution"]
    p = np.array([[0.1, 0.6, 0.3], [0.5, 0.4, 0.1], [0.2, 0.3, 0.5]])
    assert list(part.predict_with_none_threshold(p, classes, 0.35)) == ["None", "None", "Problem-Solution"]
    assert list(part.predict_with_none_threshold(p, classes, 0.9)) == ["Problem-Solution", "Execution", "Problem-Solution"]
    assert list(part.layered(["None", "Participation"], ["Execution", "Intention"])) == ["None", "Intention"]


def test_crossfit_never_uses_an_items_own_label():
    rng = np.random.default_rng(0)
    y = np.where(rng.random(400) < 0.75, "None", "Problem-Solution")
    p_none = np.clip(np.where(y == "None", 0.6, 0.4) + rng.normal(0, 0.15, 400), 0.01, 0.99)
    p = np.stack([p_none, 1 - p_none], axis=1)
    predictions, thresholds = part.crossfit_none_threshold(p, ["None", "Problem-Solution"], y, folds=5)
    assert len(thresholds) == 5 and 0.3 < np.median(thresholds) < 0.7
    assert weighted_f1(y, predictions) > weighted_f1(y, np.full(400, "None"))


def test_evaluate_probabilities_reports_each_decision_without_held_out_rows_no_bbse():
    classes = np.array(["None", "Participation"])
    p = np.array([[0.3, 0.7], [0.8, 0.2], [0.4, 0.6], [0.9, 0.1]] * 10)
    y = np.array(["None", "None", "Participation", "None"] * 10)
    evaluation = part.evaluate_probabilities("m", "binary", p, classes, ["Participation"] * 2 + ["None"] * 2, y,
                                             folds=2, n_boot=50)
    rows = evaluation.rows
    assert [r["decision"] for r in rows] == ["raw", "EM prior", "cross-fitted threshold"]  # no held-out rows: no BBSE
    assert evaluation.collapsed == {}
    assert all(0 <= r["ci_low"] <= r["weighted_f1"] <= r["ci_high"] <= 1 for r in rows)


class FixedEncoder:
    """A stand-in binary encoder: P(None) 0.2 for texts whose length is a multiple of
    three (or for "yes"), else 0.9; the level step always says Intention."""

    labels_ = np.array(["None", "Participation"])

    def __init__(self, every_text_none: bool = False):
        self.every_text_none = every_text_none

    def p_none(self, text):
        if text in ("yes", "no"):
            return 0.2 if text == "yes" else 0.9
        return 0.9 if self.every_text_none or len(text) % 3 else 0.2

    def predict_proba(self, texts, batch_size=None):
        p = np.array([self.p_none(t) for t in texts])
        return np.column_stack([p, 1 - p])

    def predict(self, texts, batch_size=None):
        return np.array(["Intention"] * len(texts), dtype=object)


def test_bbse_reweighting_equals_the_none_threshold():
    probabilities = np.random.default_rng(0).dirichlet([1, 1], size=200)
    classes = ["None", "Participation"]
    shift = PriorShift("BBSE", np.array([0.8, 0.2]), np.array([0.5, 0.5]), ())
    threshold = saved_module._none_threshold_of(shift.weights, classes)
    reweighted = np.asarray(classes)[shift.adjust(probabilities).argmax(1)]
    assert threshold == pytest.approx(0.2) and (
        part.predict_with_none_threshold(probabilities, classes, threshold) == reweighted).all()


def test_saved_classifier_decides_under_the_paper_protocol(shared_data):
    test = saved_module.load_collective_action("test")
    held_out = pd.DataFrame({"text": ["yes"] * 20 + ["no"] * 20, "label": ["Participation"] * 20 + ["None"] * 20})
    card = {"name": "participation", "text_column": "ActionFocusedText"}
    model = saved_module._with_paper_protocol(FixedEncoder(), FixedEncoder(), card, test, held_out)
    decision = model.card["decision"]
    assert decision["rule"] == "BBSE prior" and decision["protocol"] == part.PAPER_PROTOCOL
    share = np.mean([len(t) % 3 == 0 for t in test["ActionFocusedText"].astype(str)])
    assert decision["estimated_test_prior"]["Participation"] == pytest.approx(share, abs=1e-3)
    assert model.none_threshold == pytest.approx(share, abs=1e-3)  # w_P / (w_N + w_P) with a 50/50 training prior
    predicted = model.test_predictions.set_index("CommentID")["y_pred"]
    assert ((predicted != "None") == (model.test_predictions.set_index("CommentID")["p_participation"] > 0.5)).all()
    truth = part.task_labels(test, "multiclass")
    assert model.card["test_metrics"]["multiclass_layered"]["weighted_f1"] == pytest.approx(
        weighted_f1(truth, predicted.to_numpy()), abs=1e-9)
    # every test text looks like None: BBSE and EM drive Participation to zero; the card
    # says so and the rule falls back to the most probable class
    model = saved_module._with_paper_protocol(FixedEncoder(True), FixedEncoder(), card, test, held_out)
    decision = model.card["decision"]
    assert decision["rule"] == "raw" and model.none_threshold == 0.5
    assert set(decision["collapsed"]) == {"BBSE prior", "EM prior"} and "Participation" in decision["collapsed"][
        "BBSE prior"]
    assert (model.test_predictions["y_pred"] == "None").all()
    # posteriors that barely separate the classes: BBSE's estimate (half participating)
    # sends every decision to None, which counts as a collapse; EM collapses; argmax is used
    flat = FixedEncoder()
    flat.p_none = lambda text: 0.45 if text in ("yes",) or len(text) % 3 == 0 else 0.46
    model = saved_module._with_paper_protocol(flat, FixedEncoder(), card, test,
                                              held_out.assign(label=["Participation"] * 36 + ["None"] * 4))
    assert "BBSE prior" in model.card["decision"]["collapsed"]
    assert "decisions give" in model.card["decision"]["collapsed"]["BBSE prior"]
    assert model.card["decision"]["rule"] == "raw" and (model.test_predictions["y_pred"] != "None").mean() >= 0.01


@pytest.mark.slow
def test_load_classifier_trains_once_then_loads(isolated_cache, shared_data, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    classifier = part.load_classifier("participation", epochs=1, train_rows=80, progress=False)
    card = classifier.card
    assert card["train_rows"] == 80 and card["git_commit"] and "binary" in card["test_metrics"]
    saved = list(saved_module.classifiers_cache_dir().glob("participation-*/card.json"))
    assert len(saved) == 1  # a sample's model has its own folder: it never replaces the default one
    assert 0 < card["none_threshold"] < 1 and card["decision"]["protocol"] == part.PAPER_PROTOCOL
    assert card["decision"]["rule"] in part.DECISION_PREFERENCE[:3]  # never the test-label threshold
    assert len(classifier.held_out) == 8 and set(classifier.held_out["label"]) <= {"None", "Participation"}
    p_none = 1 - classifier.test_predictions["p_participation"]
    assert ((classifier.test_predictions["y_pred"] == "None") == (p_none >= card["none_threshold"] - 1e-6)).all()
    confusion = classifier.confusion()
    assert confusion.shape == (5, 5) and np.allclose(confusion.sum(axis=1), 1)
    assert len(classifier.test_predictions) == 809
    texts = ["Join the general strike on Monday!", "I made soup."]
    labels = classifier.predict(texts)
    assert set(labels) <= {"None", "Problem-Solution", "Call-to-action", "Intention", "Execution"}
    again = part.load_classifier("participation", epochs=1, train_rows=80)  # from the cache
    assert again.card == card and list(again.predict(texts)) == list(labels)
    # ONNX Runtime copy (fp32: same numbers): same threshold, same labels; exported once
    fast = again.to_onnx(quantize=False)
    assert fast.none_threshold == again.none_threshold and fast.card == card
    assert np.allclose(fast.predict_proba_binary(texts), again.predict_proba_binary(texts), atol=1e-4)
    assert list(fast.predict(texts)) == list(labels)
    exported = again.path / "onnx-fp32" / "binary" / "model.onnx"
    stamp = exported.stat().st_mtime_ns
    again.to_onnx(quantize=False)
    assert exported.stat().st_mtime_ns == stamp
    with pytest.raises(saved_module.ModelNotAvailableError, match="participation-distilled"):
        part.load_classifier("sentiment")

    # the copy tuned on test labels: the same encoders (not retrained), named for what it uses
    def retrained(*args, **kwargs):
        raise RuntimeError("retrained")

    with monkeypatch.context() as patch:
        patch.setattr(saved_module, "train_default_classifier", retrained)
        tuned = part.load_classifier("participation-test-threshold", epochs=1, train_rows=80)
    assert tuned.card["decision"]["protocol"] == part.THRESHOLD_PROTOCOL
    assert tuned.card["teacher_test_metrics"] == card["test_metrics"] and tuned.path != again.path
    assert list(tuned.predict_proba_binary(texts)[:, 0]) == pytest.approx(list(again.predict_proba_binary(texts)[:, 0]))

    # the distilled copy: built from this teacher (found in the cache, not retrained), saved on its own
    settings = dict(teacher=dict(epochs=1, train_rows=80), transfer_comments=40, epochs=1)
    distilled = part.load_classifier("participation-distilled", progress=False, **settings)
    assert distilled.binary.model_.config.num_hidden_layers == 3
    assert distilled.levels.model_.config.num_hidden_layers == 6  # only the binary encoder is distilled
    assert distilled.card["teacher_test_metrics"] == card["test_metrics"]
    assert distilled.card["layers"] == [0, 2, 4] and distilled.card["train_rows"] == 80
    assert 0 <= distilled.card["test_agreement_with_teacher"] <= 1 and 0 < distilled.none_threshold < 1
    assert distilled.card["decision"]["protocol"] == part.PAPER_PROTOCOL
    assert len(distilled.test_predictions) == 809
    assert set(distilled.predict(texts)) <= set(part.FIVE_CLASSES)
    assert len(list(saved_module.classifiers_cache_dir().glob("participation-*/card.json"))) == 3
    with pytest.raises(ValueError, match="'binary' and/or 'levels'"):
        part.distil_classifier(again, parts=("encoder",))

    def distilled_again(*args, **kwargs):
        raise RuntimeError("distilled again")

    monkeypatch.setattr(saved_module, "distil_classifier", distilled_again)
    assert part.load_classifier("participation-distilled", **settings).card == distilled.card  # from the cache
    # a retrained teacher (other test metrics) makes the saved student stale: it is distilled again
    teacher_card = again.path / "card.json"
    teacher_card.write_text(json.dumps({**card, "test_metrics": {"binary": {"weighted_f1": 0.5}}}))
    with pytest.raises(RuntimeError, match="distilled again"):
        part.load_classifier("participation-distilled", **settings)


def test_average_probabilities_aligns_columns_by_class():
    def evaluated(probabilities, classes):
        return part.Evaluation("m", "binary", probabilities=np.array(probabilities), classes=np.array(classes))

    a = evaluated([[0.8, 0.2], [0.4, 0.6]], ["None", "Participation"])
    b = evaluated([[0.4, 0.6], [0.0, 1.0]], ["Participation", "None"])  # other column order
    mean = part.average_probabilities([a, b])
    assert list(mean.classes) == ["None", "Participation"]
    assert np.allclose(mean.probabilities, [[0.7, 0.3], [0.7, 0.3]])
    assert mean.rows == []  # averaged, not yet scored
    with pytest.raises(ValueError, match="disagree"):
        part.average_probabilities([a, evaluated(np.ones((2, 2)) / 2, ["None", "Intention"])])
    with pytest.raises(ValueError, match="at least one"):
        part.average_probabilities([])


class _Memoriser:
    """Predicts the label it was trained with for a text it has seen, else a uniform
    guess: any item scored with certainty would betray that its own label was used."""

    def fit(self, texts, labels):
        self.memory_ = dict(zip(texts, labels))
        self.classes_ = np.array(sorted(set(labels)))
        return self

    def predict_proba(self, texts):
        uniform = np.full(len(self.classes_), 1 / len(self.classes_))
        return np.array([(self.classes_ == self.memory_[t]).astype(float) if t in self.memory_ else uniform
                         for t in texts])


def test_crossfit_probabilities_are_out_of_fold_and_aligned_by_class():
    texts = [f"comment {i}" for i in range(60)]
    labels = ["None"] * 57 + ["Execution"] * 3  # rare: some folds train without it
    classes = ["Call-to-action", "Execution", "None"]
    p = part.crossfit_probabilities(_Memoriser, texts, labels, classes, folds=5, seed=1)
    assert p.shape == (60, 3)
    assert (p.max(1) < 1).all()  # no item was scored by a model that memorised it
    assert np.allclose(p.sum(1), 1) and (p[:, 0] == 0).all()  # a class no fold trained on gets 0
    fold = part.fold_assignment(60, 5, 1)
    for k in range(5):  # a fold whose training part lacks Execution splits only over None
        rest = [l for l, f in zip(labels, fold) if f != k]
        expected = 0.5 if "Execution" in rest else 0.0
        assert np.allclose(p[fold == k, 1], expected)

    # a duplicated text in another fold is memorised, as it should be: the folds split items, not texts
    twins = part.crossfit_probabilities(_Memoriser, ["a", "a", "b", "c"] * 5, ["None", "None", "Execution", "None"] * 5,
                                        classes, folds=2, seed=0)
    assert np.allclose(twins[::4, 2], 1)
    with pytest.raises(ValueError, match="not among classes"):
        part.crossfit_probabilities(_Memoriser, texts, labels, ["None"], folds=5)
    with pytest.raises(ValueError, match="at least 2 folds"):
        part.crossfit_probabilities(_Memoriser, texts, labels, classes, folds=1)


def test_raw_rows_score_the_most_probable_class():
    y = np.array(["None", "Execution", "None", "None"])
    p = np.array([[0.2, 0.8], [0.9, 0.1], [0.4, 0.6], [0.6, 0.4]])  # columns: Execution, None
    evaluation = part.raw_rows("m", "multiclass", p, ["Execution", "None"], y, n_boot=50)
    rows, predictions = evaluation.rows, evaluation.predictions
    assert list(predictions["raw"]) == ["None", "Execution", "None", "Execution"]
    assert [r["decision"] for r in rows] == ["raw"]
    from sklearn.metrics import f1_score

    assert rows[0]["weighted_f1"] == pytest.approx(f1_score(y, predictions["raw"], average="weighted"))


def test_experiment_records_each_model_and_builds_the_results_table(frame):
    frame = frame.assign(CommentID=[f"c{i}" for i in range(len(frame))])
    train, test = frame.iloc[:16], frame.iloc[16:]
    experiment = part.Experiment(train, test, folds=2, seed=0, n_boot=20, smoke_test_below=5)
    prototype = part.TfidfLogReg(min_df=1)
    binary = experiment.run("TF-IDF", prototype, "binary")
    experiment.run("TF-IDF", prototype, "multiclass")  # the same prototype serves every task
    assert not hasattr(prototype, "pipeline_") and hasattr(binary.estimator, "pipeline_")  # fitted copies only
    levels = experiment.run("TF-IDF", prototype, "levels")
    assert levels.rows == [] and len(experiment.evaluations_) == 2  # the level step is not a result
    experiment.layered("TF-IDF", binary, levels)
    experiment.score_sample("rule (n=6)", "binary", test.iloc[:6], ["None"] * 6)
    experiment.score_sample("rule (n=4)", "binary", test.iloc[:4], ["None"] * 4)  # a smoke test: 4 < 5
    experiment.on_target_folds("target", prototype, "binary", ["None", "Participation"], 2)
    results = experiment.results
    assert list(results.drop_duplicates(["model", "task"])[["model", "task"]].itertuples(index=False, name=None)) == [
        ("TF-IDF", "binary"), ("TF-IDF", "multiclass"), ("TF-IDF", "layered"), ("rule (n=6)", "binary"),
        ("target", "binary")]
    assert set(results["decision"]) == {"raw", "EM prior", "BBSE prior", "cross-fitted threshold"}
    # each row says what it used: the threshold rows and the target-fold model used test labels
    protocol_of = results.set_index(["model", "decision"])["protocol"]
    assert protocol_of[("TF-IDF", "raw")].iloc[0] == part.PAPER_PROTOCOL
    assert set(protocol_of[("TF-IDF", "cross-fitted threshold")]) == {part.THRESHOLD_PROTOCOL}
    assert protocol_of[("target", "raw")] == part.TARGET_FOLDS_PROTOCOL
    # the smoke test is kept apart, flagged, and explained where it is shown
    smoke = experiment.smoke_tests()
    assert list(smoke["model"]) == ["rule (n=4)"] and "rule (n=4)" not in set(results["model"])
    assert experiment.rows_of("rule (n=4)")["smoke_test"].all()
    assert "4 test comments" in experiment.smoke_test_note(experiment.rows_of("rule (n=4)"))
    assert experiment.smoke_test_note(experiment.rows_of("TF-IDF")) == ""
    assert ("TF-IDF", "layered", "raw") in experiment.predictions and len(experiment.prediction_table()) == 8 * 13  # 4 rules x 3 tasks + the target-fold model
    assert not any(key[0].startswith("rule") for key in experiment.predictions)  # sample rows: no predictions
    table = experiment.table(reference={"paper": {"weighted F1 [95% CI]": "0.71"}})
    assert not table.isna().any().any()  # no cell stands for a model never run on a task
    assert "rule (n=4)" not in set(table["model"])
    blocks = list(dict.fromkeys(table["protocol"]))
    assert blocks == [part.PAPER_PROTOCOL, part.THRESHOLD_PROTOCOL, part.TARGET_FOLDS_PROTOCOL, "constant",
                      "as published"]
    paper = table[table["protocol"] == part.PAPER_PROTOCOL]
    assert set(paper["decision"]) <= {"raw", "EM prior", "BBSE prior"} and list(paper["task"]).index("multiclass") > 0
    assert table.set_index("model").loc["paper", "weighted F1 [95% CI]"] == "0.71"
    auc = experiment.binary_roc_auc().set_index("model")
    assert list(auc.index) == ["TF-IDF", "target"]  # the binary models with probabilities
    from sklearn.metrics import roc_auc_score

    truth = part.task_labels(test, "binary") != "None"
    assert auc.loc["TF-IDF", "roc_auc"] == pytest.approx(roc_auc_score(truth, binary.probabilities[:, list(
        binary.classes).index("Participation")]))
    assert auc.loc["target", "protocol"] == part.TARGET_FOLDS_PROTOCOL
    chosen = experiment.chosen(part.PAPER_PROTOCOL)
    assert chosen["protocol"].eq(part.PAPER_PROTOCOL).all()
    # the rule is fixed in advance, not the one that scored best on the test labels
    assert set(chosen.loc[chosen["model"] == "TF-IDF", "decision"]) == {"BBSE prior"}
    assert set(experiment.chosen(part.THRESHOLD_PROTOCOL)["decision"]) == {"cross-fitted threshold"}
    with pytest.raises(ValueError, match="PAPER_PROTOCOL"):
        experiment.chosen("made up")
    with pytest.raises(TypeError):
        experiment.raw("m", "binary", binary.probabilities, binary.classes)  # the protocol must be said
    assert experiment.floor()["binary"] == pytest.approx(weighted_f1(part.task_labels(test, "binary"), ["None"] * 8))
    other = experiment.with_train(frame.iloc[:8])
    assert other.evaluations_ == [] and other.test is test and other.n_boot == 20
    assert other.smoke_test_below == 5


def _binary_held_out(rng, n, p_correct):
    """Held-out training rows of a classifier that is right with probability p_correct."""
    truth = np.where(rng.random(n) < 0.5, "None", "Participation")
    right = rng.random(n) < p_correct
    predicted_participation = np.where(right, truth == "Participation", truth == "None")
    p = np.where(predicted_participation, 0.7, 0.3)
    return truth, np.stack([1 - p, p], axis=1)


def test_bbse_decision_estimates_the_test_prior_from_held_out_training_rows():
    """A classifier trained at 50 % participation, right 80 % of the time, meets a test set
    with 20 % participation: its raw predictions say about 32 %; BBSE, with the confusion
    matrix of held-out training rows and no test label, recovers about 20 %."""
    rng = np.random.default_rng(0)
    classes = np.array(["None", "Participation"])
    y_train, held_proba = _binary_held_out(rng, 4000, 0.8)
    y_test = np.where(rng.random(3000) < 0.2, "Participation", "None")
    right = rng.random(3000) < 0.8
    p = np.where(np.where(right, y_test == "Participation", y_test == "None"), 0.7, 0.3)
    test_proba = np.stack([1 - p, p], axis=1)
    held_out = part.HeldOut(np.arange(len(y_train)), held_proba, classes)
    evaluation = part.evaluate_probabilities("m", "binary", test_proba, classes, y_train, y_test, folds=2,
                                             n_boot=20, held_out=held_out)
    rows = {r["decision"]: r for r in evaluation.rows}
    assert set(rows) == {"raw", "EM prior", "BBSE prior", "cross-fitted threshold"}
    assert rows["BBSE prior"]["protocol"] == part.PAPER_PROTOCOL
    from crowdlens.core import metrics

    bbse = metrics.bbse_prior_shift(evaluation.predictions["raw"], y_train, np.where(held_proba[:, 1] > 0.5,
                                    "Participation", "None"), classes, [0.5, 0.5])
    assert bbse.prior[1] == pytest.approx(0.2, abs=0.03) and not bbse.is_collapsed
    assert np.mean(evaluation.predictions["raw"] == "Participation") == pytest.approx(0.32, abs=0.03)
    # re-weighted to the estimated prior, fewer comments are called participating than raw
    assert (evaluation.predictions["BBSE prior"] == "Participation").sum() < (
        evaluation.predictions["raw"] == "Participation").sum()


def test_a_collapsed_prior_estimate_is_reported_not_scored():
    """Posteriors that all lean to None drive EM's estimate of the participation share to
    zero: the EM row is left out, the evaluation says what collapsed, and the experiment's
    note tells the reader."""
    classes = np.array(["None", "Participation"])
    probabilities = np.tile([0.9, 0.1], (60, 1))
    y_train = np.array(["None", "Participation"] * 30)
    y_test = np.array(["None", "None", "Participation"] * 20)
    evaluation = part.evaluate_probabilities("leaning model", "binary", probabilities, classes, y_train, y_test,
                                             folds=2, n_boot=20)
    assert "EM prior" not in [r["decision"] for r in evaluation.rows]
    assert "EM prior" not in evaluation.predictions
    assert "collapsed" in evaluation.collapsed["EM prior"] and "Participation" in evaluation.collapsed["EM prior"]
    frame = pd.DataFrame({"ActionFocusedText": ["x"] * 60, "Label": [None, "Intention"] * 30})
    experiment = part.Experiment(frame, frame, folds=2, n_boot=20)
    experiment.record(evaluation)
    assert list(experiment.collapsed_estimates()["decision"]) == ["EM prior"]
    assert "leaning model (binary, EM prior)" in experiment.collapse_note()
    assert "EM prior" not in set(experiment.results["decision"])
    assert part.Experiment(frame, frame).collapse_note() == ""


def test_held_out_probabilities_come_out_of_fold_or_from_the_models_own_split():
    texts = ["join the strike", "sign the petition now", "I baked bread", "nice weather today"] * 10
    labels = ["Participation", "Participation", "None", "None"] * 10
    model = part.TfidfLogReg(min_df=1).fit(texts, labels)
    held = part.held_out_probabilities(model, texts, labels, folds=4, seed=0)
    assert list(held.rows) == list(range(40)) and held.probabilities.shape == (40, 2)
    expected = part.crossfit_probabilities(lambda: part.TfidfLogReg(min_df=1), texts, labels, held.classes, 4, 0)
    assert np.allclose(held.probabilities, expected)  # out of fold: not the fitted model's own scores

    class OwnSplit:  # a model that held rows out itself (as EncoderClassifier does)
        classes_ = np.array(["None", "Participation"])
        validation_rows_ = np.array([3, 7])
        validation_proba_ = np.array([[0.2, 0.8], [0.6, 0.4]])

    own = part.held_out_probabilities(OwnSplit(), texts, labels)
    assert list(own.rows) == [3, 7] and np.allclose(own.probabilities, OwnSplit.validation_proba_)
    OwnSplit.validation_rows_ = np.array([], dtype=int)
    assert part.held_out_probabilities(OwnSplit(), texts, labels) is None


def test_an_ensembles_held_out_rows_are_those_every_model_held_out():
    classes = np.array(["None", "Participation"])
    a = part.Evaluation("a", "binary", probabilities=np.array([[0.5, 0.5]]), classes=classes,
                        held_out=part.HeldOut(np.array([1, 2, 3]), np.array([[1.0, 0], [0.8, 0.2], [0.6, 0.4]]),
                                              classes))
    b = part.Evaluation("b", "binary", probabilities=np.array([[0.5, 0.5]]), classes=classes[::-1],
                        held_out=part.HeldOut(np.array([3, 2]), np.array([[0.0, 1.0], [0.6, 0.4]]), classes[::-1]))
    mean = part.average_probabilities([a, b])
    assert list(mean.held_out.rows) == [2, 3]
    assert np.allclose(mean.held_out.probabilities, [[0.6, 0.4], [0.8, 0.2]])  # columns aligned by class


def test_the_shown_decision_rule_is_fixed_in_advance_not_picked_on_test_labels():
    frame = pd.DataFrame({"ActionFocusedText": ["x"] * 4, "Label": [None, "Intention", None, None]})
    experiment = part.Experiment(frame, frame, n_boot=10)
    row = dict(model="m", task="binary", protocol=part.PAPER_PROTOCOL, n=400, ci_low=0.0, ci_high=1.0, macro_f1=0.5)
    experiment.record(part.Evaluation("m", "binary", rows=[
        {**row, "decision": "raw", "weighted_f1": 0.80},  # the best on the test labels
        {**row, "decision": "EM prior", "weighted_f1": 0.70},
        {**row, "decision": "BBSE prior", "weighted_f1": 0.60}]))
    experiment.record(part.Evaluation("n", "binary", rows=[  # no held-out rows: no BBSE row
        {**row, "model": "n", "decision": "raw", "weighted_f1": 0.80},
        {**row, "model": "n", "decision": "EM prior", "weighted_f1": 0.75}]))
    chosen = experiment.chosen(part.PAPER_PROTOCOL).set_index("model")
    assert chosen.loc["m", "decision"] == "BBSE prior" and chosen.loc["m", "weighted_f1"] == 0.60
    assert chosen.loc["n", "decision"] == "EM prior"
    assert part.DECISION_PREFERENCE[:3] == ("BBSE prior", "EM prior", "raw")


def test_training_subsets_are_chosen_on_held_out_crowd_rows():
    """Paraphrases with flipped labels hurt on held-out crowd-annotated rows, so the
    selection keeps the crowd-only subset; no held-out row is ever fitted or augmented."""
    texts = ["join the strike now", "sign the petition today", "we marched downtown", "I will attend the rally",
             "the weather is nice", "my cat sleeps a lot", "the bus was late", "dinner was good"]
    labels = ["Call-to-action", "Call-to-action", "Execution", "Intention", None, None, None, None]
    crowd = pd.DataFrame({"ActionFocusedText": [f"{t} {i}" for i in range(10) for t in texts],
                          "Label": labels * 10, "AugmentationType": None})
    flipped = crowd.assign(Label=[None, None, None, None, "Call-to-action", "Execution", "Intention",
                                  "Call-to-action"] * 10, AugmentationType="Synthetic")
    train = pd.concat([crowd, flipped], ignore_index=True)
    subsets = {"crowd-annotated": train["AugmentationType"].isna(), "all": pd.Series(True, index=train.index)}
    selection = part.select_training_subset(train, subsets, part.TfidfLogReg(min_df=1), held_out_share=0.2)
    assert selection.chosen == "crowd-annotated" and selection.held_out_rows == 16
    table = selection.table.set_index(["training data", "task"])
    assert table.loc[("crowd-annotated", "binary"), "rows"] == 64 and table.loc[("all", "binary"), "rows"] == 144
    assert (table.xs("crowd-annotated")["held-out weighted F1"] > table.xs("all")["held-out weighted F1"]).all()
    with pytest.raises(ValueError, match="held_out_share"):
        part.select_training_subset(train, subsets, part.TfidfLogReg(), held_out_share=0.0)
