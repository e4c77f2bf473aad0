"""Characterising communities by participation in collective action.

Scoring at scale — action-focused extraction (``crowdlens.annotate``) then the saved
participation classifier, cached by text hash, over streamed parquet batches or a
Dask cluster — and the estimators the Reddit chapter reports: bootstrap and
misclassification-corrected shares, keyword and topic profiles to compare with,
regressions, interrupted time series and user trajectories.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from crowdlens.core import metrics
from crowdlens.core.metrics import confusion_matrix
from crowdlens.core.config import cache_dir
from crowdlens.core.device import device_type, is_accelerator, resolve_device
from crowdlens.core.encoders import OnnxEncoderClassifier
from crowdlens.core.hub import embed, resolve_model
from crowdlens.core.sampling import sample
from crowdlens.data.pseudonym import NOT_PEOPLE
from crowdlens.data.reddit import covid_state, reddit_text  # noqa: F401  (covid_state: part of this API)
from crowdlens.data.registry import load_table, table_path
from crowdlens.participation.labels import FIVE_CLASSES, LEVEL_RANK, LEVELS, NONE  # noqa: F401
from crowdlens.participation.lexicon import Dictionary, extract_action_focused, load_dictionary, tokenize
from crowdlens.participation.saved import ParticipationClassifier

#: What became of each text: no readable text; fewer dictionary words than the
#: extraction needs (None by rule, as the paper samples comments); scored by the model.
STATUSES = ("empty", "few_terms", "model")
SCORE_COLUMNS = ["text_hash", "status", "label", "p_participation"]
#: Columns of the Reddit tables the scorer reads to build the text.
TEXT_COLUMNS = ["kind", "title", "selftext", "body"]


def text_hashes(texts: Iterable[str]) -> list[str]:
    return [hashlib.sha1(str(t).encode("utf-8")).hexdigest()[:16] for t in texts]


# Cache -------------------------------------------------------------------------------

class ScoreCache:
    """Scores by text hash in one SQLite file; safe to share between processes (WAL)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(self.path, timeout=120)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("CREATE TABLE IF NOT EXISTS scores (text_hash TEXT PRIMARY KEY, status TEXT, "
                                 "label TEXT, p_participation REAL)")
        self._connection.commit()

    def get(self, hashes: Sequence[str]) -> pd.DataFrame:
        found = []
        unique = list(dict.fromkeys(hashes))
        for start in range(0, len(unique), 900):  # SQLite's limit on bound parameters
            chunk = unique[start:start + 900]
            found += self._connection.execute(
                f"SELECT * FROM scores WHERE text_hash IN ({','.join('?' * len(chunk))})", chunk).fetchall()
        frame = pd.DataFrame(found, columns=SCORE_COLUMNS).set_index("text_hash")
        return frame.astype({"p_participation": float})  # SQLite NULL → NaN

    def put(self, scores: pd.DataFrame) -> None:
        rows = scores[SCORE_COLUMNS].astype(object).where(scores[SCORE_COLUMNS].notna(), None)
        with self._connection:  # one transaction: all rows or none
            self._connection.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?)",
                                         rows.itertuples(index=False, name=None))

    def __len__(self) -> int:
        return self._connection.execute("SELECT COUNT(*) FROM scores").fetchone()[0]

    def close(self) -> None:
        self._connection.close()


# Scoring -----------------------------------------------------------------------------

class ParticipationScorer:
    """Texts → participation scores (``SCORE_COLUMNS``), one row per text.

    A text with no readable content is ``empty``; one with fewer than ``min_matches``
    dictionary words is None by rule (``few_terms``), as the paper only samples such
    comments; the rest are classified on their action-focused window. With a cache
    (``cache=True`` for the user cache, or a path) only unseen texts are scored.
    ``classifier.to_onnx()`` scores ≈ 3× faster on a CPU (ONNX Runtime, int8 weights;
    ``benchmarks/bench_classifier_throughput.py``), with slightly different scores.
    The classifier scores on its own device (``load_classifier(device=...)``); the scorer
    runs no model itself.

    Used in the reddit_communities chapter.
    """

    def __init__(self, classifier, words: Dictionary | Sequence[str] | None = None, min_matches: int = 2,
                 cache: bool | Path | str | None = True, batch_size: int | None = None, progress: bool = True):
        self.classifier = classifier
        self.dictionary = load_dictionary() if words is None else (
            words if isinstance(words, Dictionary) else Dictionary.from_terms(words))
        self.min_matches = min_matches
        self.batch_size = batch_size
        self.progress = progress
        self.cache = None
        if cache:
            path = self.default_cache_path() if cache is True else Path(cache)
            self.cache = ScoreCache(path)
        self.scored_by_model_ = 0

    def fingerprint(self) -> str:
        """What the scores depend on: the classifier's card, the word list, ``min_matches``,
        and the backend when it is not PyTorch (an ONNX copy, ``classifier.to_onnx()``, shares
        the card but its int8 scores differ a little, so they are cached apart)."""
        parts = [getattr(self.classifier, "card", repr(self.classifier)), self.dictionary.terms, self.min_matches]
        binary = getattr(self.classifier, "binary", None)
        if isinstance(binary, OnnxEncoderClassifier):
            parts.append({"backend": "onnxruntime", "quantized": binary.card_.get("onnx_quantized"),
                          "export_format": binary.card_.get("onnx_export_format")})
        elif binary is not None and is_accelerator(resolve_device(getattr(binary, "device", "cpu"))):
            # a GPU's scores differ from the CPU's in the last digits: cached apart (CPU keys unchanged)
            parts.append({"device": device_type(resolve_device(binary.device))})
        blob = json.dumps(parts, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def default_cache_path(self) -> Path:
        return cache_dir() / "scores" / f"participation-{self.fingerprint()}.sqlite"

    def _score_new(self, texts: list[str], hashes: list[str]) -> pd.DataFrame:
        status = np.full(len(texts), "model", dtype=object)
        windows: list[str | None] = []
        for i, text in enumerate(texts):
            if not text.strip():
                status[i] = "empty"
                windows.append(None)
                continue
            window = extract_action_focused(text, self.dictionary, self.min_matches)
            if window is None:
                status[i] = "few_terms"
            windows.append(window)
        labels = np.full(len(texts), NONE, dtype=object)
        p = np.full(len(texts), np.nan)
        todo = np.flatnonzero(status == "model")
        step = 1024
        with tqdm(total=len(todo), desc="classifying", unit="text", disable=not self.progress or len(todo) == 0,
                  leave=False) as bar:
            for start in range(0, len(todo), step):
                index = todo[start:start + step]
                labels[index], p[index] = self.classifier.predict_with_proba([windows[i] for i in index],
                                                                             self.batch_size)
                bar.update(len(index))
        self.scored_by_model_ += len(todo)
        return pd.DataFrame({"text_hash": hashes, "status": status, "label": labels, "p_participation": p})

    def score(self, texts: Sequence[str]) -> pd.DataFrame:
        texts = ["" if t is None or (isinstance(t, float) and np.isnan(t)) else str(t) for t in texts]
        hashes = text_hashes(texts)
        known = self.cache.get(hashes) if self.cache is not None else pd.DataFrame(columns=SCORE_COLUMNS[1:])
        first = dict(zip(hashes, texts))  # one text per hash
        missing = [h for h in first if h not in known.index]
        if missing:
            new = self._score_new([first[h] for h in missing], missing)
            if self.cache is not None:
                self.cache.put(new)
            known = pd.concat([known, new.set_index("text_hash")]) if len(known) else new.set_index("text_hash")
        result = known.reindex(hashes).reset_index().rename(columns={"index": "text_hash"})
        return result[SCORE_COLUMNS].astype({"status": object, "label": object, "p_participation": float})


def score_frame(frame: pd.DataFrame, scorer: ParticipationScorer, keep: Sequence[str] = (),
                chunk_rows: int = 20_000, progress: bool = True) -> pd.DataFrame:
    """Score a Reddit table in chunks; returns ``keep`` columns + ``SCORE_COLUMNS``."""
    parts = []
    with tqdm(total=len(frame), desc="scoring", unit="row", disable=not progress) as bar:
        for start in range(0, len(frame), chunk_rows):
            chunk = frame.iloc[start:start + chunk_rows]
            parts.append(_scored_chunk(chunk, scorer, keep))
            bar.update(len(chunk))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[*keep, *SCORE_COLUMNS])


def _scored_chunk(chunk: pd.DataFrame, scorer: ParticipationScorer, keep: Sequence[str]) -> pd.DataFrame:
    missing = [c for c in keep if c not in chunk.columns]
    if missing:
        raise KeyError(f"columns {missing} are not in this table; it has {list(chunk.columns)}")
    scores = scorer.score(reddit_text(chunk).tolist())
    return pd.concat([chunk[list(keep)].reset_index(drop=True), scores], axis=1)


def score_parquet(path: Path | str, scorer: ParticipationScorer, keep: Sequence[str] = (),
                  batch_rows: int = 20_000, limit: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Stream a Reddit parquet file in record batches (only the needed columns are read),
    so memory is bounded by the batch and the kept columns, not by the text."""
    import pyarrow.parquet as pq

    source = pq.ParquetFile(path)
    available = set(source.schema_arrow.names)
    columns = [c for c in dict.fromkeys([*keep, *TEXT_COLUMNS]) if c in available]
    total = source.metadata.num_rows if limit is None else min(limit, source.metadata.num_rows)
    parts, done = [], 0
    with tqdm(total=total, desc=f"scoring {Path(path).stem}", unit="row", disable=not progress) as bar:
        for batch in source.iter_batches(batch_size=batch_rows, columns=columns):
            chunk = batch.to_pandas()
            if limit is not None:
                chunk = chunk.iloc[:max(0, limit - done)]
            if chunk.empty:
                break
            parts.append(_scored_chunk(chunk, scorer, keep))
            done += len(chunk)
            bar.update(len(chunk))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[*keep, *SCORE_COLUMNS])


# Dask ---------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _worker_scorer(classifier_path: str, terms: tuple[str, ...], min_matches: int, cache_path: str | None,
                   threads: int, device: str = "cpu") -> ParticipationScorer:
    """One scorer per worker process, loaded once (workers keep it between partitions)
    and scoring on ``device``, the device the caller's classifier scores on."""
    import torch

    torch.set_num_threads(threads)
    classifier = ParticipationClassifier.load(Path(classifier_path), device=device)
    return ParticipationScorer(classifier, list(terms), min_matches, cache=cache_path or None, progress=False)


def _score_partition(partition: pd.DataFrame, classifier_path: str, terms: tuple[str, ...], min_matches: int,
                     cache_path: str | None, threads: int, keep: tuple[str, ...], device: str = "cpu") -> pd.DataFrame:
    scorer = _worker_scorer(classifier_path, terms, min_matches, cache_path, threads, device)
    return _scored_chunk(partition, scorer, keep)


@contextmanager
def dask_client(scheduler: str | None = None, n_workers: int = 2) -> Iterator:
    """A client of ``scheduler`` (any ``tcp://host:port``), or of a local cluster of
    ``n_workers`` processes with one thread each, closed afterwards."""
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=40) as cluster, Client(cluster) as client:
        yield client


def score_dask(path: Path | str, scorer: ParticipationScorer, keep: Sequence[str] = (), npartitions: int = 8,
               scheduler: str | None = None, n_workers: int = 2, limit: int | None = None) -> pd.DataFrame:
    """The same scores as ``score_parquet``, computed by Dask workers partition by
    partition; workers load the saved classifier from ``scorer.classifier.path`` and
    share ``scorer``'s cache file, so a corpus too large for one machine is scored by
    many. Rows come back in file order."""
    import dask.dataframe as dd

    classifier_path = getattr(scorer.classifier, "path", None)
    if classifier_path is None:
        raise ValueError("score_dask needs a saved classifier: use models.load_classifier(...) or "
                         "ParticipationClassifier.load(path), whose workers can load it by path")
    columns = list(dict.fromkeys([*keep, *TEXT_COLUMNS]))
    frame = dd.read_parquet(str(path), columns=[c for c in columns if c in _parquet_columns(path)])
    if limit is not None:
        frame = dd.from_pandas(frame.head(limit, npartitions=-1), npartitions=npartitions)
    else:
        frame = frame.repartition(npartitions=npartitions)
    meta = pd.DataFrame({**{c: frame[c].dtype for c in keep},
                         "text_hash": pd.Series(dtype=object), "status": pd.Series(dtype=object),
                         "label": pd.Series(dtype=object), "p_participation": pd.Series(dtype=float)})
    meta = meta.astype({c: frame[c].dtype for c in keep})
    cache_path = str(scorer.cache.path) if scorer.cache is not None else None
    threads = max(1, (os.cpu_count() or 2) // max(1, n_workers))
    with dask_client(scheduler, n_workers):
        result = frame.map_partitions(_score_partition, str(classifier_path), tuple(scorer.dictionary.terms),
                                      scorer.min_matches, cache_path, threads, tuple(keep),
                                      getattr(scorer.classifier, "device", "cpu"), meta=meta).compute()
    return result.reset_index(drop=True)


def _parquet_columns(path) -> set[str]:
    import pyarrow.parquet as pq

    return set(pq.ParquetFile(path).schema_arrow.names)


def score_corpus(name: str, scorer: ParticipationScorer, keep: Sequence[str], sample_rows: int = 0, seed: int = 0,
                 use_dask: bool = False, scheduler: str | None = None, npartitions: int = 8,
                 progress: bool = True) -> pd.DataFrame:
    """Score a registry table: a random sample of ``sample_rows`` (0 = every row, streamed
    from the parquet file, or by Dask workers when ``use_dask``). Used in the reddit_communities chapter."""
    if sample_rows:
        frame = sample(load_table(name), sample_rows, seed)
        return score_frame(frame, scorer, keep, progress=progress)
    if use_dask:
        return score_dask(table_path(name), scorer, keep, npartitions=npartitions, scheduler=scheduler or None)
    return score_parquet(table_path(name), scorer, keep, progress=progress)


def status_counts(scored: pd.DataFrame, by: Sequence[str] | str) -> pd.DataFrame:
    """How many texts were empty, None by rule, or scored by the model, per group.
    Used in the reddit_communities chapter."""
    table = pd.crosstab([scored[c] for c in ([by] if isinstance(by, str) else by)], scored["status"])
    table = table.reindex(columns=list(STATUSES), fill_value=0)
    table["total"] = table.sum(axis=1)
    return table


# Shares -------------------------------------------------------------------------------

def _groups(scored: pd.DataFrame, by: Sequence[str] | str | None):
    by = [by] if isinstance(by, str) else list(by or [])
    return by, (scored.groupby(by, observed=True, sort=True) if by else [((), scored)])


def level_shares(scored: pd.DataFrame, by: Sequence[str] | str | None = None, label: str = "label",
                 levels: Sequence[str] = FIVE_CLASSES, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Share of each label per group with a bootstrap 95 % interval (texts resampled
    within the group). Long format: group columns, level, n, count, share, ci_low, ci_high.
    Used in the reddit_communities chapter."""
    rng = np.random.default_rng(seed)
    by, groups = _groups(scored, by)
    rows = []
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        counts = group[label].value_counts().reindex(levels, fill_value=0).to_numpy()
        n = counts.sum()
        share = counts / n if n else np.zeros(len(levels))
        draws = rng.multinomial(n, share, size=n_boot) / max(n, 1)
        low, high = np.percentile(draws, [2.5, 97.5], axis=0)
        for i, level in enumerate(levels):
            rows.append({**dict(zip(by, key)), "level": level, "n": int(n), "count": int(counts[i]),
                         "share": share[i], "ci_low": low[i], "ci_high": high[i]})
    return pd.DataFrame(rows)


def corrected_shares(scored: pd.DataFrame, y_true: Sequence[str], y_pred: Sequence[str],
                     by: Sequence[str] | str | None = None, levels: Sequence[str] = FIVE_CLASSES,
                     n_boot: int = 1000, seed: int = 0, method: str = "em") -> pd.DataFrame:
    """Raw and misclassification-corrected label shares per group.

    The correction (``metrics.corrected_prevalence``: observed = Cᵀ true, with
    C[i, j] = P(predicted j | true i) from the labelled test comments ``y_true``,
    ``y_pred``; ``method`` "em", the maximum-likelihood estimator on the simplex, or
    "inversion") applies to the model-scored texts; texts that are None by rule
    (``few_terms``, ``empty``) stay None. The 95 % interval resamples both the group's
    texts and the test comments, so it carries the classifier's estimation error too.
    Used in the reddit_communities chapter.
    """
    rng = np.random.default_rng(seed)
    y_true, y_pred = np.asarray(y_true, dtype=object), np.asarray(y_pred, dtype=object)
    confusion = confusion_matrix(y_true, y_pred, levels)
    none = list(levels).index(NONE)
    by, groups = _groups(scored, by)

    def corrected(counts, matrices):
        # shares per row of (model-scored counts per level, rule-None count), corrected with
        # that row's matrix; EM runs on every bootstrap draw at once
        model_counts, rule_counts = counts[:, :-1], counts[:, -1]
        sizes = model_counts.sum(axis=1, keepdims=True)
        inside = metrics.corrected_prevalence(model_counts / np.maximum(sizes, 1), matrices, method)
        result = np.where(sizes > 0, inside, 0.0) * sizes
        result[:, none] += rule_counts
        totals = counts.sum(axis=1, keepdims=True)
        return np.divide(result, totals, out=np.zeros_like(result), where=totals > 0)

    test_draws = [rng.integers(0, len(y_true), len(y_true)) for _ in range(n_boot)]
    matrices = np.array([confusion_matrix(y_true[i], y_pred[i], levels) for i in test_draws])
    rows = []
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        model = group["status"].eq("model")
        model_counts = group.loc[model, "label"].value_counts().reindex(levels, fill_value=0).to_numpy()
        rule_count = int((~model).sum())
        n = int(model_counts.sum() + rule_count)
        raw_counts = model_counts.copy()
        raw_counts[none] += rule_count
        point = corrected(np.append(model_counts, rule_count)[None], confusion[None])[0]
        cells = np.append(model_counts, rule_count) / max(n, 1)
        draws = corrected(rng.multinomial(n, cells, size=n_boot), matrices)
        low, high = np.percentile(draws, [2.5, 97.5], axis=0)
        for i, level in enumerate(levels):
            rows.append({**dict(zip(by, key)), "level": level, "n": n, "raw": raw_counts[i] / max(n, 1),
                         "corrected": point[i], "ci_low": low[i], "ci_high": high[i]})
    return pd.DataFrame(rows)


# Alternatives: keywords and topics --------------------------------------------------------

def keyword_profile(texts: Sequence[str], groups: Sequence[str], words: Dictionary | Sequence[str] | None = None
                    ) -> pd.DataFrame:
    """Dictionary-term matches per 1,000 texts, one row per group, one column per term.
    Used in the reddit_communities chapter."""
    dictionary = load_dictionary() if words is None else (
        words if isinstance(words, Dictionary) else Dictionary.from_terms(words))
    terms = dictionary.terms
    single = {t: Dictionary.from_terms([t]) for t in terms}
    tokens = [tokenize(str(t)) for t in texts]
    counts = pd.DataFrame({t: [d.count(tok) for tok in tokens] for t, d in single.items()})
    counts["group"] = list(groups)
    return counts.groupby("group").mean() * 1000


def topic_profile(texts: Sequence[str], groups: Sequence[str], n_topics: int = 20, model: str = "minilm",
                  embeddings: np.ndarray | None = None, seed: int = 0, progress: bool = False, device: str = "auto"):
    """BERTopic topics of ``texts`` (offline MiniLM embeddings on ``device``; PCA + k-means
    in place of UMAP + HDBSCAN so that every text gets a topic and runs are deterministic).

    Returns (fitted BERTopic, group × topic share table, topic info table).
    Used in the reddit_communities chapter.
    """
    from bertopic import BERTopic
    from sentence_transformers import SentenceTransformer
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.feature_extraction.text import CountVectorizer

    texts = [str(t) for t in texts]
    device = resolve_device(device)
    if embeddings is None:
        embeddings = embed(texts, model=model, progress=progress, device=device)
    topic_model = BERTopic(
        embedding_model=SentenceTransformer(resolve_model(model), device=device),
        umap_model=PCA(n_components=10, random_state=seed),
        hdbscan_model=KMeans(n_clusters=n_topics, random_state=seed, n_init=4),
        vectorizer_model=CountVectorizer(stop_words="english"),  # fitted on one document per topic
        calculate_probabilities=False, verbose=False)
    topics, _ = topic_model.fit_transform(texts, embeddings)
    table = pd.crosstab(pd.Series(list(groups), name="group"), pd.Series(topics, name="topic"), normalize="index")
    info = topic_model.get_topic_info()[["Topic", "Count", "Name"]]
    return topic_model, table, info


def profile_distances(profile: pd.DataFrame) -> pd.DataFrame:
    """Jensen–Shannon divergence (bits) between the rows of a group × feature table.
    Used in the reddit_communities chapter."""
    values = profile.to_numpy(dtype=float)
    values = values / np.where(values.sum(1, keepdims=True) > 0, values.sum(1, keepdims=True), 1)
    n = len(values)
    result = np.array([[metrics.js_divergence(values[i], values[j]) if i != j else 0.0 for j in range(n)]
                       for i in range(n)])
    return pd.DataFrame(result, index=profile.index, columns=profile.index)


def compare_distances(distances: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Spearman correlation between methods' community-distance matrices (upper triangles):
    1 = the methods order community pairs the same way. Used in the reddit_communities chapter."""
    from scipy.stats import spearmanr

    names = list(distances)
    order = distances[names[0]].index
    upper = np.triu_indices(len(order), 1)
    vectors = {k: d.loc[order, order].to_numpy()[upper] for k, d in distances.items()}
    table = pd.DataFrame(1.0, index=names, columns=names)
    for a in names:
        for b in names:
            if a != b:
                table.loc[a, b] = spearmanr(vectors[a], vectors[b]).statistic
    return table


# Models of participation ------------------------------------------------------------------

def odds_ratios(result) -> pd.DataFrame:
    """A fitted statsmodels logit as a table of odds ratios with 95 % intervals.
    Used in the reddit_communities chapter."""
    ci = result.conf_int()
    table = pd.DataFrame({"odds_ratio": np.exp(result.params), "ci_low": np.exp(ci[0]),
                          "ci_high": np.exp(ci[1]), "p_value": result.pvalues})
    return table.drop(index="Intercept", errors="ignore")


def _levelled(scored: pd.DataFrame) -> pd.DataFrame:
    """The texts labelled with a participation level; a ValueError naming the fix if none."""
    data = scored[scored["label"].isin(LEVELS)]
    if data.empty:
        raise ValueError("no scored text has a participation level (the classifier predicts None for every one): "
                         "train it longer or on more rows (classifier_epochs, classifier_train_rows) or score more "
                         "texts (sample_rows)")
    return data


def reference_community(scored: pd.DataFrame) -> str:
    """The community with the most texts at a participation level: the logit's reference
    (a sample may leave a small community with none). Used in the reddit_communities chapter."""
    return str(_levelled(scored)["subreddit"].astype(str).value_counts().idxmax())


def action_logit(scored: pd.DataFrame, formula: str = "action ~ C(subreddit) + C(kind) + log_score + C(month)"):
    """Logit of a call, intention or execution (``action`` = 1) against Problem-Solution
    among texts the classifier labels with a participation level. Used in the reddit_communities chapter."""
    import statsmodels.formula.api as smf

    data = _levelled(scored).copy()
    data["action"] = (data["label"] != "Problem-Solution").astype(int)
    data["log_score"] = np.log1p(data["score"].clip(lower=0).astype(float))
    data["month"] = pd.to_datetime(data["created_utc"], unit="s", utc=True).dt.strftime("%Y-%m")
    return smf.logit(formula, data=data).fit(disp=False, maxiter=200)


# Time series ----------------------------------------------------------------------------

def daily_participation(scored: pd.DataFrame, by: Sequence[str] | str = (), time: str = "created_utc"
                        ) -> pd.DataFrame:
    """Texts and participation share (any level) per day and group. Used in the reddit_communities chapter."""
    by = [by] if isinstance(by, str) else list(by)
    data = scored.assign(day=pd.to_datetime(scored[time], unit="s", utc=True).dt.tz_localize(None).dt.floor("D"),
                         participation=scored["label"].ne(NONE).astype(int))
    daily = data.groupby([*by, "day"], observed=True).agg(n=("participation", "size"),
                                                          participating=("participation", "sum")).reset_index()
    daily["share"] = daily["participating"] / daily["n"]
    return daily


def align_to_events(daily: pd.DataFrame, events: pd.DataFrame, by: str) -> pd.DataFrame:
    """Pool daily series of several groups on event time: ``day`` becomes days since
    the group's event (``events``: columns ``by`` and ``date``) added to 2000-01-01, so
    ``interrupted_time_series(aligned, "2000-01-01")`` fits the pooled event study.
    Used in the reddit_communities chapter."""
    origin = pd.Timestamp("2000-01-01")
    merged = daily.merge(events[[by, "date"]], on=by, how="inner")
    merged["day"] = origin + (merged["day"] - merged["date"])
    pooled = merged.groupby("day").agg(n=("n", "sum"), participating=("participating", "sum")).reset_index()
    pooled["share"] = pooled["participating"] / pooled["n"]
    return pooled


def interrupted_time_series(daily: pd.DataFrame, event_day, maxlags: int = 7) -> dict:
    """Segmented regression of the daily share on time, a level change at ``event_day``
    and a slope change after it (weighted by texts per day; HAC standard errors)::

        share = b0 + b1·t + b2·post + b3·t·post

    Used in the reddit_communities chapter.
    """
    import statsmodels.formula.api as smf

    event_day = pd.Timestamp(event_day)
    data = daily.assign(t=(daily["day"] - event_day).dt.days)
    data["post"] = (data["t"] >= 0).astype(int)
    if data["post"].nunique() < 2:
        raise ValueError(f"the series has no days on both sides of {event_day.date()}")
    fit = smf.wls("share ~ t + post + t:post", data=data, weights=data["n"]).fit(
        cov_type="HAC", cov_kwds={"maxlags": maxlags})
    ci = fit.conf_int()
    return {"level_change": fit.params["post"], "level_ci_low": ci.loc["post", 0], "level_ci_high": ci.loc["post", 1],
            "level_p": fit.pvalues["post"], "slope_change": fit.params["t:post"],
            "slope_ci_low": ci.loc["t:post", 0], "slope_ci_high": ci.loc["t:post", 1],
            "pre_share": float(np.average(data.loc[data.post == 0, "share"], weights=data.loc[data.post == 0, "n"])),
            "days": len(data), "texts": int(data["n"].sum())}


# User trajectories ---------------------------------------------------------------------

def author_months(scored: pd.DataFrame, author: str = "author", time: str = "created_utc") -> pd.DataFrame:
    """Each author's highest participation level per active month (None when no text of
    the month shows participation); deleted accounts and bots are dropped. Used in the reddit_communities chapter."""
    data = scored[~scored[author].isin(NOT_PEOPLE) & scored[author].notna()]
    data = data.assign(month=pd.to_datetime(data[time], unit="s", utc=True).dt.tz_localize(None).dt.to_period("M"),
                       rank=data["label"].map(LEVEL_RANK))
    best = data.groupby([author, "month"], observed=True)["rank"].max().reset_index()
    best["state"] = np.asarray(FIVE_CLASSES, dtype=object)[best["rank"].to_numpy()]
    return best.drop(columns="rank").sort_values([author, "month"], ignore_index=True)


def transitions(states: pd.DataFrame, author: str = "author", consecutive: bool = True) -> pd.DataFrame:
    """From-state → to-state pairs between an author's successive active months
    (only calendar-consecutive months when ``consecutive``). Used in the reddit_communities chapter."""
    ordered = states.sort_values([author, "month"])
    nxt = ordered.groupby(author, observed=True).shift(-1)
    pairs = pd.DataFrame({"from": ordered["state"], "to": nxt["state"],
                          "gap": (nxt["month"] - ordered["month"]).map(lambda d: d.n if pd.notna(d) else np.nan)})
    pairs = pairs.dropna(subset=["to"])
    return pairs[pairs["gap"] == 1] if consecutive else pairs


def transition_matrix(pairs: pd.DataFrame, states: Sequence[str] = FIVE_CLASSES, normalise: bool = True
                      ) -> pd.DataFrame:
    """From-state × to-state table of ``pairs`` over ``states``: counts, or each row's shares when ``normalise``.
    Used in the reddit_communities chapter."""
    counts = pd.crosstab(pairs["from"], pairs["to"]).reindex(index=states, columns=states, fill_value=0)
    if not normalise:
        return counts
    return counts.div(counts.sum(axis=1).replace(0, np.nan), axis=0)


def upward_share(pairs: pd.DataFrame) -> float:
    """Among transitions between two different participation levels, the share that
    climb the ladder (Problem-Solution → Call-to-action → Intention → Execution).
    Used in the reddit_communities chapter."""
    moves = pairs[pairs["from"].isin(LEVELS) & pairs["to"].isin(LEVELS) & (pairs["from"] != pairs["to"])]
    if moves.empty:
        return float("nan")
    return float((moves["to"].map(LEVEL_RANK) > moves["from"].map(LEVEL_RANK)).mean())


def upward_share_null(states: pd.DataFrame, n_perm: int = 200, seed: int = 0, author: str = "author"
                      ) -> np.ndarray:
    """``upward_share`` when each author's months are shuffled: the share expected if
    the order of an author's levels carried no direction. Used in the reddit_communities chapter."""
    rng = np.random.default_rng(seed)
    states = states.sort_values([author, "month"], ignore_index=True)
    shuffled = states.copy()
    values = []
    codes = shuffled.groupby(author, observed=True).ngroup().to_numpy()
    for _ in range(n_perm):
        order = np.lexsort((rng.random(len(codes)), codes))
        shuffled["state"] = states["state"].to_numpy()[order]
        values.append(upward_share(transitions(shuffled, author)))
    return np.asarray(values)
