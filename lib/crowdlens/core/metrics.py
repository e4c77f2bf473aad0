"""Evaluation: the F1 family, bootstrap intervals, McNemar, prior-shift tools, and
divergences between distributions. Thin wrappers over scikit-learn, statsmodels and
scipy, shaped for the book's tables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_fscore_support


def _f1_by_label(y_true, y_pred, labels: Sequence | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-label F1 (0 where a label is neither true nor predicted) and true support,
    from counts. The same numbers as scikit-learn's ``f1_score(..., zero_division=0)``,
    without its input validation, which costs ~10 ms a call and made a 1,000-sample
    bootstrap take seconds per table row."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true and y_pred need the same 1-d shape, not {y_true.shape} and {y_pred.shape}")
    values, codes = np.unique(np.concatenate([y_true, y_pred]), return_inverse=True)
    true_codes, pred_codes = codes[: len(y_true)], codes[len(y_true):]
    size = len(values)
    support = np.bincount(true_codes, minlength=size)
    predicted = np.bincount(pred_codes, minlength=size)
    hits = np.bincount(true_codes[true_codes == pred_codes], minlength=size)
    if labels is not None:
        # counts in the order of ``labels``; a label absent from both arrays counts 0 (index -1 hits the pad)
        index = {value: i for i, value in enumerate(values.tolist())}
        rows = [index.get(label, -1) for label in np.asarray(labels).tolist()]
        support, predicted, hits = (np.append(counts, 0)[rows] for counts in (support, predicted, hits))
    denominator = support + predicted
    f1 = np.divide(2.0 * hits, denominator, out=np.zeros(len(denominator)), where=denominator > 0)
    return f1, support


def weighted_f1(y_true, y_pred, labels: Sequence | None = None) -> float:
    """F1 per class averaged with class support as weights (the paper's headline);
    equal to scikit-learn's ``f1_score(average="weighted", zero_division=0)``."""
    f1, support = _f1_by_label(y_true, y_pred, labels)
    return float(f1 @ support / support.sum()) if support.sum() else 0.0


def macro_f1(y_true, y_pred, labels: Sequence | None = None) -> float:
    """Unweighted mean of per-class F1: every class counts the same; equal to
    scikit-learn's ``f1_score(average="macro", zero_division=0)``. Used in the weibo_crowds chapter."""
    f1, _ = _f1_by_label(y_true, y_pred, labels)
    return float(f1.mean()) if len(f1) else 0.0


def accuracy(y_true, y_pred) -> float:
    """Share of items whose prediction equals the truth."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean(y_true == y_pred)) if len(y_true) else 0.0


#: Metrics that see labels only through equality, so that ``bootstrap_ci`` may score them
#: on integer codes: string labels cost 20 times more per draw (np.unique on objects).
LABEL_BLIND_METRICS = (accuracy, weighted_f1, macro_f1)


def per_class(y_true, y_pred, labels: Sequence) -> pd.DataFrame:
    """Precision, recall, F1 and support for each label. Used in the training chapter."""
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=list(labels), zero_division=0)
    return pd.DataFrame({"precision": p, "recall": r, "f1": f, "support": s}, index=pd.Index(labels, name="label"))


def bootstrap_ci(
    y_true,
    y_pred,
    metric: Callable[[np.ndarray, np.ndarray], float] = weighted_f1,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(point estimate, lower, upper): percentile bootstrap over test items."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) != len(y_pred) or len(y_true) == 0:
        raise ValueError("y_true and y_pred need the same, non-zero length")
    rng = np.random.default_rng(seed)
    n = len(y_true)
    if metric in LABEL_BLIND_METRICS and y_true.dtype.kind in "OUS":
        # sorted codes keep the labels' order, so the per-class sums run in the same order
        _, codes = np.unique(np.concatenate([y_true, y_pred]), return_inverse=True)
        y_true, y_pred = codes[:n], codes[n:]
    stats = np.array([metric(y_true[idx], y_pred[idx]) for idx in (rng.integers(0, n, n) for _ in range(n_boot))])
    tail = (1 - level) / 2
    return float(metric(y_true, y_pred)), float(np.quantile(stats, tail)), float(np.quantile(stats, 1 - tail))


def mcnemar(y_true, pred_a, pred_b, exact: bool | None = None) -> dict[str, float]:
    """McNemar's test of two classifiers on the same items (statsmodels).

    Counts the items only one of the two gets right; exact binomial test when
    those are fewer than 25 (unless ``exact`` says otherwise).
    Used in the training chapter.
    """
    from statsmodels.stats.contingency_tables import mcnemar as _mcnemar

    right_a = np.asarray(pred_a) == np.asarray(y_true)
    right_b = np.asarray(pred_b) == np.asarray(y_true)
    table = np.array([[np.sum(right_a & right_b), np.sum(right_a & ~right_b)],
                      [np.sum(~right_a & right_b), np.sum(~right_a & ~right_b)]])
    discordant = table[0, 1] + table[1, 0]
    exact = discordant < 25 if exact is None else exact
    result = _mcnemar(table, exact=exact, correction=not exact)
    return {"only_a_right": int(table[0, 1]), "only_b_right": int(table[1, 0]),
            "statistic": float(result.statistic), "p_value": float(result.pvalue)}


# Prior shift -------------------------------------------------------------------------

def em_prior_adjust(probabilities: np.ndarray, train_prior: np.ndarray, max_iter: int = 100,
                    tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Saerens, Latinne & Decaestecker (2002): re-estimate class priors on unlabelled
    data by EM and adjust the posteriors to them.

    ``probabilities`` are a classifier's posteriors on the new data (rows sum to 1),
    trained under ``train_prior``. Returns (adjusted posteriors, estimated new prior).
    """
    probabilities = np.asarray(probabilities, dtype=float)
    train_prior = np.asarray(train_prior, dtype=float)
    prior = train_prior.copy()
    adjusted = probabilities
    for _ in range(max_iter):
        weighted = probabilities * (prior / train_prior)
        adjusted = weighted / weighted.sum(axis=1, keepdims=True)
        new_prior = adjusted.mean(axis=0)
        if np.abs(new_prior - prior).max() < tol:
            prior = new_prior
            break
        prior = new_prior
    return adjusted, prior


def corrected_prevalence(observed: np.ndarray, confusion: np.ndarray, method: str = "inversion",
                         max_iter: int = 1000, tol: float = 1e-10) -> np.ndarray:
    """Misclassification-corrected class shares.

    ``observed``: share of items the classifier assigns to each class;
    ``confusion[i, j]``: P(predicted j | true i), estimated on labelled data.
    ``method="inversion"`` (Rogan–Gladen / matrix inversion) solves observed = Cᵀ true by
    least squares, clips to [0, 1] and renormalises; ``method="em"`` finds the
    maximum-likelihood shares on the simplex by EM, which stays stable when C is
    ill-conditioned (rare classes with few labelled items), where inversion swings to
    the bounds. Both recover the truth when C is exact.
    Used in the weibo_crowds chapter.

    ``observed`` may hold a stack of share vectors (…, k) with one confusion matrix or a
    stack of them (…, k, k): EM then runs on all at once (bootstrap draws), each stopping
    when it converges, so every row equals its one-at-a-time result.
    """
    observed = np.asarray(observed, dtype=float)
    confusion = np.asarray(confusion, dtype=float)
    if method == "inversion":
        if observed.ndim > 1 or confusion.ndim > 2:
            shape = np.broadcast_shapes(observed.shape[:-1], confusion.shape[:-2])
            observed = np.broadcast_to(observed, (*shape, observed.shape[-1]))
            confusion = np.broadcast_to(confusion, (*shape, *confusion.shape[-2:]))
            return np.array([corrected_prevalence(o, c, "inversion") for o, c in
                             zip(observed.reshape(-1, observed.shape[-1]),
                                 confusion.reshape(-1, *confusion.shape[-2:]))]).reshape(observed.shape)
        true, *_ = np.linalg.lstsq(confusion.T, observed, rcond=None)
        true = np.clip(true, 0, None)
        return true / true.sum() if true.sum() > 0 else true
    if method != "em":
        raise ValueError(f"method must be 'inversion' or 'em', not {method!r}")
    shape = np.broadcast_shapes(observed.shape[:-1], confusion.shape[:-2])
    k = observed.shape[-1]
    observed = np.broadcast_to(observed, (*shape, k)).reshape(-1, k)
    confusion = np.broadcast_to(confusion, (*shape, k, k)).reshape(-1, k, k)
    totals = observed.sum(axis=1, keepdims=True)
    observed = np.divide(observed, totals, out=observed.copy(), where=totals > 0)
    true = np.full_like(observed, 1 / k)
    running = np.arange(len(observed))  # rows not yet converged
    for _ in range(max_iter):
        current, matrix, seen = true[running], confusion[running], observed[running]
        predicted = np.einsum("bij,bi->bj", matrix, current)  # P(predicted j) under the current shares
        ratio = np.divide(seen, predicted, out=np.zeros_like(seen), where=predicted > 0)
        new = current * np.einsum("bij,bj->bi", matrix, ratio)
        sums = new.sum(axis=1, keepdims=True)
        new = np.divide(new, sums, out=new, where=sums > 0)
        true[running] = new
        running = running[np.abs(new - current).max(axis=1) >= tol]
        if not len(running):
            break
    return true.reshape(*shape, k)


#: Below this estimated share a class counts as collapsed when its training share was above it.
COLLAPSE_SHARE = 0.01


@dataclass(frozen=True)
class PriorShift:
    """An estimated class prior of new data, with what was assumed and whether it collapsed.

    ``collapsed``: indices of the classes whose estimated share fell below ``min_share``
    although their training share did not — the estimator has driven them (near) to
    zero, and posteriors adjusted to this prior never predict them. Report it; do not
    print its numbers as a result.
    """

    method: str
    prior: np.ndarray
    train_prior: np.ndarray
    collapsed: tuple[int, ...]

    @property
    def is_collapsed(self) -> bool:
        return bool(self.collapsed)

    @property
    def weights(self) -> np.ndarray:
        """Importance weights q(y) / p(y) (Lipton et al. 2018's w)."""
        return self.prior / np.where(self.train_prior > 0, self.train_prior, 1)

    def adjust(self, probabilities: np.ndarray) -> np.ndarray:
        """Posteriors re-weighted from the training prior to this one (Saerens et al. 2002, eq. 2.4)."""
        weighted = np.asarray(probabilities, dtype=float) * self.weights
        totals = weighted.sum(axis=1, keepdims=True)
        return weighted / np.where(totals > 0, totals, 1)

    def describe(self, classes: Sequence[str]) -> str:
        """One sentence for the reader: the estimate, or which classes it collapsed."""
        shares = ", ".join(f"{c} {q:.3f}" for c, q in zip(classes, self.prior))
        if not self.is_collapsed:
            return f"{self.method} estimates the prior {shares}."
        lost = ", ".join(str(classes[i]) for i in self.collapsed)
        return (f"{self.method} collapsed: it drove {lost} to a share below {COLLAPSE_SHARE:.0%} "
                f"({shares}); decisions adjusted to it never predict {lost}, so they are not a result.")


def collapsed_classes(prior: np.ndarray, train_prior: np.ndarray, min_share: float = COLLAPSE_SHARE
                      ) -> tuple[int, ...]:
    """Classes present in training (share >= ``min_share``) whose estimated share fell below it.
    Used in the weibo_crowds chapter."""
    prior, train_prior = np.asarray(prior, dtype=float), np.asarray(train_prior, dtype=float)
    return tuple(int(i) for i in np.flatnonzero((prior < min_share) & (train_prior >= min_share)))


def em_prior_shift(probabilities: np.ndarray, train_prior: np.ndarray, min_share: float = COLLAPSE_SHARE,
                   max_iter: int = 100, tol: float = 1e-6) -> PriorShift:
    """``em_prior_adjust``'s prior estimate, checked for collapse (EM follows the
    classifier's own posteriors and can drive a class to zero when they are miscalibrated)."""
    train_prior = np.asarray(train_prior, dtype=float)
    _, prior = em_prior_adjust(probabilities, train_prior, max_iter, tol)
    return PriorShift("EM prior", prior, train_prior, collapsed_classes(prior, train_prior, min_share))


def bbse_prior_shift(test_predictions: Sequence, held_out_truth: Sequence, held_out_predictions: Sequence,
                     classes: Sequence, train_prior: np.ndarray, method: str = "em",
                     min_share: float = COLLAPSE_SHARE) -> PriorShift:
    """Black-box shift estimation (Lipton, Wang & Smola 2018), with no test label.

    The confusion matrix P(predicted j | true i) comes from rows held out of the
    training set; the test set's predicted-class shares are then explained as that
    matrix applied to an unknown test prior, solved on the simplex (``method="em"``,
    stable when rare classes make the matrix ill-conditioned) or by inversion
    (``corrected_prevalence``). Holds when only the prior shifts (p(x | y) fixed).
    """
    classes = list(classes)
    confusion = confusion_matrix(held_out_truth, held_out_predictions, classes)
    predicted = pd.Series(list(test_predictions)).value_counts(normalize=True).reindex(classes, fill_value=0)
    prior = corrected_prevalence(predicted.to_numpy(), confusion, method=method)
    train_prior = np.asarray(train_prior, dtype=float)
    return PriorShift(f"BBSE ({method})", prior, train_prior, collapsed_classes(prior, train_prior, min_share))


# Distributions -----------------------------------------------------------------------

def _normalise(p, eps: float) -> np.ndarray:
    p = np.asarray(p, dtype=float) + eps
    return p / p.sum(axis=-1, keepdims=True)


def kl_divergence(p, q, eps: float = 1e-9) -> np.ndarray | float:
    """KL(p || q) in nats, row-wise for 2-d inputs; ``eps`` keeps empty classes finite."""
    p, q = _normalise(p, eps), _normalise(q, eps)
    result = np.sum(p * np.log(p / q), axis=-1)
    return float(result) if np.ndim(result) == 0 else result


def js_divergence(p, q, eps: float = 1e-9) -> np.ndarray | float:
    """Jensen–Shannon divergence in bits (0 = identical, 1 = disjoint), row-wise. Used in the weibo_crowds chapter."""
    p, q = _normalise(p, eps), _normalise(q, eps)
    m = (p + q) / 2
    result = (np.sum(p * np.log2(p / m), axis=-1) + np.sum(q * np.log2(q / m), axis=-1)) / 2
    return float(result) if np.ndim(result) == 0 else result


def confusion_matrix(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """Row-normalised confusion matrix: entry (i, j) = P(predicted labels[j] | true labels[i]).
    A class absent from ``y_true`` gets the identity row (no information to correct with).
    Used in the weibo_crowds chapter."""
    from sklearn.metrics import confusion_matrix as counts_matrix

    counts = counts_matrix(np.asarray(y_true, dtype=object), np.asarray(y_pred, dtype=object),
                           labels=list(labels)).astype(float)
    totals = counts.sum(axis=1, keepdims=True)
    identity = np.eye(len(labels))
    return np.where(totals > 0, counts / np.where(totals > 0, totals, 1), identity)
