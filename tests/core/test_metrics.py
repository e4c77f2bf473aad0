"""crowdlens.metrics against hand-computed cases and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from crowdlens.core import metrics as M


def test_f1_family_matches_hand_computation_and_sklearn():
    y_true = ["a", "a", "a", "b", "b", "c"]
    y_pred = ["a", "a", "b", "b", "c", "c"]
    # a: P=1, R=2/3, F=0.8; b: P=1/2, R=1/2, F=0.5; c: P=1/2, R=1, F=2/3
    assert M.macro_f1(y_true, y_pred) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert M.weighted_f1(y_true, y_pred) == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6)
    assert M.weighted_f1(y_true, y_pred) == pytest.approx(f1_score(y_true, y_pred, average="weighted"))
    table = M.per_class(y_true, y_pred, ["a", "b", "c"])
    assert table.loc["a", "recall"] == pytest.approx(2 / 3) and table.loc["c", "support"] == 1


@pytest.mark.parametrize("case", range(40))
def test_f1_counts_agree_with_sklearn_on_random_labels(case):
    # the counting F1 replaces sklearn's in the bootstraps; it must give sklearn's numbers,
    # with and without an explicit label list (absent labels, a subset, another order)
    rng = np.random.default_rng(case)
    alphabet = np.array(["None", "PS", "CA", "IN", "EX"])
    n = int(rng.integers(1, 60))
    y_true = alphabet[rng.integers(0, int(rng.integers(1, 6)), n)]
    y_pred = alphabet[rng.integers(0, int(rng.integers(1, 6)), n)]
    label_sets = [None, ["EX", "None", "zz"], list(rng.permutation(alphabet)[: int(rng.integers(1, 6))])]
    for labels in label_sets:
        for ours, average in [(M.weighted_f1, "weighted"), (M.macro_f1, "macro")]:
            expected = f1_score(y_true, y_pred, labels=labels, average=average, zero_division=0)
            assert ours(y_true, y_pred, labels) == pytest.approx(expected), (labels, average)
    codes = rng.integers(0, 3, n)
    assert M.weighted_f1(codes, codes[::-1]) == pytest.approx(f1_score(codes, codes[::-1], average="weighted"))


def test_f1_refuses_arrays_of_different_length():
    with pytest.raises(ValueError, match="same 1-d shape"):
        M.weighted_f1(["a", "b"], ["a"])


def test_always_none_floor():
    y_true = ["None"] * 3 + ["PS"]
    assert M.weighted_f1(y_true, ["None"] * 4) == pytest.approx(0.75 * (2 * 0.75 / 1.75))


def test_bootstrap_interval_brackets_the_estimate_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, 2000)
    pred = np.where(rng.random(2000) < 0.8, truth, 1 - truth)
    point, low, high = M.bootstrap_ci(truth[:200], pred[:200], M.weighted_f1, n_boot=300)
    assert low <= point <= high
    _, low_big, high_big = M.bootstrap_ci(truth, pred, M.weighted_f1, n_boot=300)
    assert high_big - low_big < high - low
    with pytest.raises(ValueError):
        M.bootstrap_ci([], [])


def test_bootstrap_of_string_labels_equals_the_per_draw_metric():
    # string labels are scored on integer codes for speed: same draws, same numbers
    rng = np.random.default_rng(1)
    labels = np.array(["None", "Intention", "Execution", "Call-to-action"], dtype=object)
    truth = labels[rng.integers(0, 4, 300)]
    pred = np.where(rng.random(300) < 0.6, truth, labels[rng.integers(0, 4, 300)])
    for metric in (M.weighted_f1, M.macro_f1, M.accuracy):
        point, low, high = M.bootstrap_ci(truth, pred, metric, n_boot=50, seed=3)
        draws = np.random.default_rng(3)
        stats = [metric(truth[i], pred[i]) for i in (draws.integers(0, 300, 300) for _ in range(50))]
        assert point == metric(truth, pred)
        assert (low, high) == (np.quantile(stats, 0.025), np.quantile(stats, 0.975))
    # a metric that reads the label strings gets them as they are
    none_recall = lambda t, p: float(np.mean(p[t == "None"] == "None"))
    assert M.bootstrap_ci(truth, pred, none_recall, n_boot=5)[0] == none_recall(truth, pred)
    assert M.accuracy(["a", "b"], ["a", "c"]) == 0.5


def test_mcnemar_counts_discordant_pairs():
    truth = np.zeros(40, dtype=int)
    a = np.zeros(40, dtype=int)
    b = np.zeros(40, dtype=int)
    b[:10] = 1  # b wrong on 10 items a gets right
    result = M.mcnemar(truth, a, b)
    assert result["only_a_right"] == 10 and result["only_b_right"] == 0
    assert result["p_value"] == pytest.approx(2 * 0.5 ** 10)  # exact two-sided binomial
    same = M.mcnemar(truth, a, a)
    assert same["p_value"] == pytest.approx(1.0)


def test_em_recovers_a_shifted_prior():
    rng = np.random.default_rng(1)
    # a calibrated classifier for 2 classes trained at prior (0.5, 0.5); the new data has (0.9, 0.1)
    labels = (rng.random(20000) < 0.1).astype(int)
    score = rng.normal(loc=labels * 2.0, scale=1.0)
    likelihood = np.stack([np.exp(-(score - 0) ** 2 / 2), np.exp(-(score - 2) ** 2 / 2)], axis=1)
    posteriors = likelihood / likelihood.sum(axis=1, keepdims=True)  # exact under a 50/50 prior
    adjusted, prior = M.em_prior_adjust(posteriors, np.array([0.5, 0.5]))
    assert prior == pytest.approx([0.9, 0.1], abs=0.02)
    assert (adjusted.argmax(1) == labels).mean() > (posteriors.argmax(1) == labels).mean()


def test_corrected_prevalence_inverts_a_known_confusion():
    confusion = np.array([[0.9, 0.1], [0.2, 0.8]])  # P(pred | true)
    true = np.array([0.7, 0.3])
    observed = confusion.T @ true  # what the classifier reports: 0.69, 0.31
    assert M.corrected_prevalence(observed, confusion) == pytest.approx(true)
    assert M.corrected_prevalence([1.0, 0.0], confusion).min() >= 0
    assert M.corrected_prevalence(observed, confusion, method="em") == pytest.approx(true, abs=1e-6)
    with pytest.raises(ValueError, match="inversion' or 'em"):
        M.corrected_prevalence(observed, confusion, method="bayes")


def test_em_correction_stays_stable_where_inversion_swings():
    # three classes, the last two hard to tell apart (as rare classes with few labelled items)
    confusion = np.array([[0.90, 0.05, 0.05], [0.10, 0.46, 0.44], [0.10, 0.44, 0.46]])
    true = np.array([0.90, 0.06, 0.04])
    observed = confusion.T @ true + np.array([0.0, 0.01, -0.01])  # a little sampling noise
    inversion = M.corrected_prevalence(observed, confusion)
    em = M.corrected_prevalence(observed, confusion, method="em")
    assert np.abs(em - true).max() < np.abs(inversion - true).max()
    assert np.isclose(em.sum(), 1) and (em >= 0).all()


def test_corrected_prevalence_on_a_stack_equals_one_at_a_time():
    # bootstrap draws: one share vector and one confusion matrix per draw, some hard to converge
    rng = np.random.default_rng(0)
    confusions = rng.dirichlet(np.ones(4) * 0.5, size=(30, 4)) + np.eye(4) * 0.5
    confusions /= confusions.sum(axis=2, keepdims=True)
    observed = rng.dirichlet(np.ones(4), size=30)
    observed[3] = 0  # nothing observed: zeros, as one at a time
    for method in ("em", "inversion"):
        stacked = M.corrected_prevalence(observed, confusions, method=method)
        single = np.array([M.corrected_prevalence(o, c, method=method) for o, c in zip(observed, confusions)])
        assert stacked.shape == (30, 4)
        np.testing.assert_allclose(stacked, single, atol=1e-12)
    # one matrix for many share vectors broadcasts
    shared = M.corrected_prevalence(observed[:5], confusions[0], method="em")
    np.testing.assert_allclose(shared[2], M.corrected_prevalence(observed[2], confusions[0], method="em"))


def test_divergences():
    p, q = np.array([0.5, 0.5]), np.array([1.0, 0.0])
    assert M.js_divergence(p, p) == pytest.approx(0.0, abs=1e-9)
    assert M.js_divergence([1, 0], [0, 1]) == pytest.approx(1.0, abs=1e-6)
    assert M.kl_divergence(p, [0.25, 0.75]) == pytest.approx(0.5 * np.log(2) + 0.5 * np.log(0.5 / 0.75))
    rows = M.js_divergence(np.array([p, q]), np.array([p, p]))
    assert rows.shape == (2,) and rows[0] == pytest.approx(0, abs=1e-9) and rows[1] > 0


def test_confusion_matrix_rows_are_conditional_on_the_truth():
    y_true = ["None", "None", "None", "Execution", "Execution"]
    y_pred = ["None", "None", "Execution", "Execution", "None"]
    m = M.confusion_matrix(y_true, y_pred, ["None", "Execution", "Intention"])
    assert np.allclose(m[0], [2 / 3, 1 / 3, 0]) and np.allclose(m[1], [0.5, 0.5, 0])
    assert np.allclose(m[2], [0, 0, 1])  # no true Intention: identity row


def test_bbse_recovers_a_shifted_prior_without_test_labels():
    rng = np.random.default_rng(0)
    classes = ["None", "Execution"]
    # a classifier that is right 80 % of the time whatever the class (p(x | y) does not change)
    def predict(truth):
        flip = rng.random(len(truth)) < 0.2
        return np.where(flip, np.where(truth == "None", "Execution", "None"), truth)

    held_out = rng.choice(classes, 4000, p=[0.3, 0.7])  # the training prior
    test = rng.choice(classes, 4000, p=[0.75, 0.25])  # the shifted test prior
    shift = M.bbse_prior_shift(predict(test), held_out, predict(held_out), classes, np.array([0.3, 0.7]))
    assert np.allclose(shift.prior, [0.75, 0.25], atol=0.03) and not shift.is_collapsed
    assert np.allclose(shift.weights, shift.prior / np.array([0.3, 0.7]))
    adjusted = shift.adjust(np.array([[0.5, 0.5]]))
    assert adjusted[0, 0] > 0.5 and np.isclose(adjusted.sum(), 1)  # None became more probable
    assert "estimates the prior None 0.7" in shift.describe(classes)


def test_a_collapsed_prior_estimate_is_detected_and_reported_not_printed_as_a_result():
    classes = ["None", "Problem-Solution", "Execution"]
    train_prior = np.array([0.3, 0.4, 0.3])
    # posteriors that overstate participation: EM follows them and drives None to zero
    p = np.tile([0.05, 0.55, 0.40], (200, 1))
    shift = M.em_prior_shift(p, train_prior)
    assert shift.is_collapsed and shift.collapsed == (0,)
    message = shift.describe(classes)
    assert "collapsed" in message and "None" in message and "not a result" in message
    assert M.collapsed_classes([0.5, 0.5, 0.0], [0.5, 0.5, 0.0]) == ()  # absent in training: not a collapse
