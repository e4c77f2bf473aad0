"""Crowds of annotators: simulated workers (Dawid–Skene confusions), agreement
(Krippendorff's α, Fleiss' κ) and label aggregation (crowd-kit), as in the annotation
chapter.

Crowd labels are long-format frames with columns ``task, worker, label`` as crowd-kit
expects.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from crowdlens.participation.labels import FIVE_CLASSES, NEIGHBOURS


# Simulated crowds ----------------------------------------------------------------------

def annotator_confusion(accuracy: float, labels: Sequence[str] = FIVE_CLASSES, neighbour_share: float = 0.5,
                        neighbours: dict[str, str] | None = None) -> pd.DataFrame:
    """A Dawid–Skene confusion matrix (rows: true label, columns: given label).

    The annotator is right with probability ``accuracy``; of the remaining mass a
    share ``neighbour_share`` goes to the label's systematic neighbour (e.g.
    Intention→Execution) and the rest spreads evenly over the other labels.
    """
    neighbours = NEIGHBOURS if neighbours is None else neighbours
    k = len(labels)
    matrix = pd.DataFrame(0.0, index=list(labels), columns=list(labels))
    for true in labels:
        error = 1.0 - accuracy
        matrix.loc[true, true] = accuracy
        near = neighbours.get(true)
        spread_to = [l for l in labels if l != true and l != near]
        if near in labels:
            matrix.loc[true, near] += error * neighbour_share
            rest = error * (1 - neighbour_share)
        else:
            rest = error
            spread_to = [l for l in labels if l != true]
        for other in spread_to:
            matrix.loc[true, other] += rest / max(1, len(spread_to))
        if k == 1:
            matrix.loc[true, true] = 1.0
    return matrix


def simulate_crowd(
    gold: pd.Series,
    annotators_per_item: int = 5,
    mean_accuracy: float = 0.75,
    spammer_share: float = 0.1,
    neighbour_share: float = 0.5,
    accuracy_spread: float = 0.1,
    n_workers: int = 40,
    labels: Sequence[str] = FIVE_CLASSES,
    seed: int = 0,
) -> pd.DataFrame:
    """Crowd labels for the items of ``gold`` (index = task id, values = true labels).

    Workers follow a Dawid–Skene model: each reliable worker's accuracy is drawn
    around ``mean_accuracy`` (± ``accuracy_spread``, clipped to [1/k, 1]) and their
    errors lean towards the neighbouring category (``neighbour_share``); a share
    ``spammer_share`` of workers answer uniformly at random. Each item is labelled
    by ``annotators_per_item`` distinct workers drawn at random.
    Returns a long frame ``task, worker, label`` (crowd-kit's format).
    Used in the annotation chapter.
    """
    if annotators_per_item > n_workers:
        raise ValueError("annotators_per_item cannot exceed n_workers")
    if not 0 <= spammer_share <= 1 or not 0 <= mean_accuracy <= 1:
        raise ValueError("spammer_share and mean_accuracy are probabilities in [0, 1]")
    rng = np.random.default_rng(seed)
    labels = list(labels)
    k = len(labels)
    unknown = set(gold.unique()) - set(labels)
    if unknown:
        raise ValueError(f"gold labels {sorted(unknown)} are not among {labels}")
    n_spammers = int(round(spammer_share * n_workers))
    spammer = np.zeros(n_workers, dtype=bool)
    spammer[rng.choice(n_workers, n_spammers, replace=False)] = True
    accuracies = np.clip(rng.normal(mean_accuracy, accuracy_spread, n_workers), 1.0 / k, 1.0)
    confusions = []
    for w in range(n_workers):
        if spammer[w]:
            confusions.append(np.full((k, k), 1.0 / k))
        else:
            confusions.append(annotator_confusion(accuracies[w], labels, neighbour_share).to_numpy())
    index_of = {label: i for i, label in enumerate(labels)}
    records = []
    for task, true in gold.items():
        for w in rng.choice(n_workers, annotators_per_item, replace=False):
            given = rng.choice(k, p=confusions[w][index_of[true]])
            records.append((task, f"w{w:03d}", labels[given]))
    frame = pd.DataFrame.from_records(records, columns=["task", "worker", "label"])
    frame.attrs["spammers"] = [f"w{w:03d}" for w in np.flatnonzero(spammer)]
    return frame


# Agreement and aggregation -------------------------------------------------------------

def agreement(labels: pd.DataFrame) -> dict[str, float]:
    """Krippendorff's α (nominal), Fleiss' κ and raw pairwise agreement of crowd labels.

    ``labels`` is long format (task, worker, label). Fleiss' κ assumes the same number
    of ratings per item; items are counted as they come (statsmodels).
    Used in the annotation chapter.
    """
    import krippendorff
    from statsmodels.stats.inter_rater import fleiss_kappa

    if labels.groupby("task").size().max() < 2:
        # agreement needs items rated twice; one annotator per item has none to measure
        return {"krippendorff_alpha": float("nan"), "fleiss_kappa": float("nan"), "pairwise_agreement": float("nan")}
    categories = sorted(labels["label"].unique())
    code = {c: i for i, c in enumerate(categories)}
    wide = labels.assign(code=labels["label"].map(code)).pivot_table(
        index="worker", columns="task", values="code", aggfunc="first"
    )
    if len(categories) == 1:
        alpha = 1.0  # every rating identical: perfect agreement
    else:
        alpha = float(krippendorff.alpha(reliability_data=wide.to_numpy(dtype=float), level_of_measurement="nominal"))
    table = pd.crosstab(labels["task"], labels["label"]).to_numpy()
    per_item = table.sum(axis=1)
    pairs = per_item * (per_item - 1)
    observed = float(((table * (table - 1)).sum(axis=1)[pairs > 0] / pairs[pairs > 0]).mean())
    kappa = float(fleiss_kappa(table, method="fleiss")) if len(categories) > 1 else 1.0
    return {"krippendorff_alpha": alpha, "fleiss_kappa": kappa, "pairwise_agreement": observed}


AGGREGATORS = ("majority", "dawid_skene", "mace", "glad")


def aggregate(labels: pd.DataFrame, method: str = "majority", order: Sequence[str] = FIVE_CLASSES, seed: int = 0) -> pd.Series:
    """One label per task from crowd labels, with crowd-kit.

    ``majority``: majority vote; a tie goes to the higher participation level, as the
    codebook tells annotators to do when in doubt. ``dawid_skene``, ``mace``, ``glad``:
    the latent-class models of crowd-kit (confusion matrices; spammer detection;
    item difficulty × worker ability).
    """
    from crowdkit.aggregation import GLAD, MACE, DawidSkene, MajorityVote

    if method not in AGGREGATORS:
        raise ValueError(f"method must be one of {AGGREGATORS}, not {method!r}")
    rank = {label: i for i, label in enumerate(order)}
    if method == "majority":
        probabilities = MajorityVote().fit_predict_proba(labels[["task", "worker", "label"]])
        # vote shares are multiples of 1/n: a nudge far below 1/n only breaks ties
        nudge = pd.Series({label: rank.get(label, -1) * 1e-6 for label in probabilities.columns})
        result = (probabilities + nudge).idxmax(axis=1)
    elif method == "dawid_skene":
        result = DawidSkene(n_iter=100).fit_predict(labels)
    elif method == "mace":
        result = MACE(n_restarts=1, n_iter=50, random_state=seed).fit_predict(labels)
    else:
        result = GLAD(n_iter=20, m_step_max_iter=10, silent=True).fit_predict(labels)
    return result.rename("label")


def aggregation_accuracy(labels: pd.DataFrame, gold: pd.Series, methods: Sequence[str] = AGGREGATORS) -> dict[str, float]:
    """Share of tasks whose aggregated label equals the gold label, per method."""
    return {m: float((aggregate(labels, m).reindex(gold.index) == gold).mean()) for m in methods}


def _sweep_point(gold: pd.Series, parameter: str, value, rep: int, base: dict, methods: Sequence[str],
                 seed: int) -> dict:
    """One crowd of ``crowd_sweep``: simulated with its own seed, so a point's result does
    not depend on which process runs it or in which order."""
    crowd = simulate_crowd(gold, seed=seed + 1000 * rep, **{**base, parameter: value})
    row = {parameter: value, "repetition": rep, **agreement(crowd)}
    for method in methods:
        row[method] = float((aggregate(crowd, method, seed=seed).reindex(gold.index) == gold).mean())
    return row


def crowd_sweep(
    gold: pd.Series,
    parameter: str,
    values: Sequence,
    base: dict | None = None,
    methods: Sequence[str] = (),
    repetitions: int = 1,
    seed: int = 0,
    progress: bool = True,
    n_jobs: int | None = None,
) -> pd.DataFrame:
    """Vary one ``simulate_crowd`` parameter; agreement (and aggregation accuracy for
    ``methods``) per value and repetition, in long format for plotting. ``n_jobs``
    processes simulate and aggregate the crowds (joblib: None is one, -1 every core;
    the latent-class models run on one core each, so GLAD and MACE sweeps gain most);
    the result is the same for any ``n_jobs``. Used in the annotation chapter."""
    from joblib import Parallel, delayed

    base = dict(base or {})
    grid = [(v, r) for v in values for r in range(repetitions)]
    points = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(_sweep_point)(gold, parameter, value, rep, base, list(methods), seed) for value, rep in grid)
    rows = list(tqdm(points, total=len(grid), desc=f"sweeping {parameter}", disable=not progress))
    return pd.DataFrame(rows)


def annotators_needed(sweep: pd.DataFrame, method: str, target: float = 0.9,
                      parameter: str = "annotators_per_item") -> int | None:
    """Smallest number of annotators per item whose mean aggregated accuracy reaches ``target``.
    Used in the annotation chapter."""
    means = sweep.groupby(parameter)[method].mean()
    reached = means[means >= target]
    return int(reached.index.min()) if len(reached) else None


def examples(frame: pd.DataFrame, per_label: int = 3, seed: int = 0, min_chars: int = 60,
             max_chars: int = 220, label_column: str = "Label") -> pd.DataFrame:
    """Short real examples of each label from crowd-annotated rows (no augmentation). Used in the annotation chapter."""
    crowd = frame[frame["AugmentationType"].isna()]
    text = crowd["ActionFocusedText"].astype(str)
    short = crowd[(text.str.len() >= min_chars) & (text.str.len() <= max_chars)]
    picked = []
    for label in FIVE_CLASSES:
        pool = short[short[label_column].fillna("None") == label]
        picked.append(pool.sample(n=min(per_label, len(pool)), random_state=seed)
                      .assign(label=label)[["label", "Subreddit", "ActionFocusedText"]])
    return pd.concat(picked, ignore_index=True).rename(columns={"ActionFocusedText": "text", "Subreddit": "subreddit"})


