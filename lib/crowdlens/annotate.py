"""Annotation: action-focused extraction, dictionary learning, simulated crowds,
agreement and label aggregation (Pera & Aiello 2025, and its codebook).

Everything works on plain pandas objects; crowd labels are long-format frames with
columns ``task, worker, label`` as crowd-kit expects.
"""

from __future__ import annotations

import inspect
import math
from collections import Counter
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from crowdlens.config import atomic_path, project_root

#: Levels of participation, lowest to highest; "None" = no participation.
LEVELS = ["Problem-Solution", "Call-to-action", "Intention", "Execution"]
LABELS = ["None"] + LEVELS

#: One-line definitions (the book's wording of the authors' codebook), used in prompts.
DEFINITIONS = {
    "None": "no collective-action problem is recognised, or the text only states a stance or fact",
    "Problem-Solution": "recognises a human-made, current, shared problem as a problem, may blame "
    "someone or propose how it should be fixed",
    "Call-to-action": "urges others to act or join (protest, boycott, organise, donate, vote, support) "
    "on a collective problem, often with urgency or imperatives",
    "Intention": "the author says they want, plan or are willing to act on a collective problem",
    "Execution": "the author reports having acted (protested, donated, volunteered, organised) "
    "or being an activist",
}

#: Systematic confusions between neighbouring categories that annotators make.
NEIGHBOURS = {
    "None": "Problem-Solution",
    "Problem-Solution": "None",
    "Call-to-action": "Problem-Solution",
    "Intention": "Execution",
    "Execution": "Intention",
}

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


# Action-focused text --------------------------------------------------------------------

def split_sentences(text: str) -> list[str]:
    """Sentences: split after ., ! or ? followed by white space (the release's windows
    align with this split for 87 % of comments)."""
    return [s for s in _SENTENCE_END.split(str(text).strip()) if s]


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(str(text).lower())


@dataclass(frozen=True)
class Dictionary:
    """A word list; a term ending in ``*`` matches every token it is a prefix of."""

    exact: frozenset[str]
    prefixes: tuple[str, ...]

    @classmethod
    def from_terms(cls, terms: Iterable[str]) -> "Dictionary":
        terms = [t.strip().lower() for t in terms if t.strip() and not t.strip().startswith("#")]
        return cls(frozenset(t for t in terms if not t.endswith("*")),
                   tuple(sorted(t[:-1] for t in terms if t.endswith("*"))))

    @property
    def terms(self) -> list[str]:
        return sorted(self.exact) + [p + "*" for p in self.prefixes]

    def __len__(self) -> int:
        return len(self.exact) + len(self.prefixes)

    def matches(self, token: str) -> bool:
        return token in self.exact or any(token.startswith(p) for p in self.prefixes)

    def count(self, tokens: Sequence[str]) -> int:
        return sum(self.matches(t) for t in tokens)


def _as_dictionary(words) -> Dictionary:
    return words if isinstance(words, Dictionary) else Dictionary.from_terms(words)


def _densest_window(text: str, dictionary: Dictionary, context: int = 1) -> tuple[str | None, int]:
    """(window around the densest sentence, dictionary words in the whole text)."""
    sentences = split_sentences(text)
    if not sentences:
        return None, 0
    counts = [(dictionary.count(tokens), len(tokens)) for tokens in map(tokenize, sentences)]
    shares = [c / n if n else 0.0 for c, n in counts]
    best = int(np.argmax(shares))
    return " ".join(sentences[max(0, best - context): best + context + 1]), sum(c for c, _ in counts)


def extract_action_focused(text: str, words, min_matches: int = 2, context: int = 1) -> str | None:
    """The sentence with the highest share of dictionary words plus ``context`` sentences
    either side; None when the comment has fewer than ``min_matches`` dictionary words.

    share = dictionary tokens / tokens of the sentence; ties go to the earlier sentence.
    """
    window, matches = _densest_window(text, _as_dictionary(words), context)
    return window if matches >= min_matches else None


def normalise_space(text: str) -> str:
    return " ".join(str(text).split())


def token_overlap(a: str, b: str) -> float:
    """Token F1 between two texts (1 = the same multiset of tokens)."""
    ta, tb = tokenize(a), tokenize(b)
    if not ta or not tb:
        return float(ta == tb)
    common = sum((Counter(ta) & Counter(tb)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(ta), common / len(tb)
    return 2 * precision * recall / (precision + recall)


def gold_selection(original: str, released: str, context: int = 1) -> tuple[list[str], set[int]] | None:
    """Sentences of ``original`` and the indices whose window reproduces ``released``.

    None when the released window is not a run of whole sentences of the original
    (about 13 % of comments, where the authors' sentence splitter differs from ours).
    """
    sentences = split_sentences(original)
    target = normalise_space(released)
    n = len(sentences)
    return_set: set[int] = set()
    for best in range(n):
        window = sentences[max(0, best - context): best + context + 1]
        if normalise_space(" ".join(window)) == target:
            return_set.add(best)
    return (sentences, return_set) if return_set else None


def evaluate_extraction(frame: pd.DataFrame, words, min_matches: int = 2) -> pd.DataFrame:
    """Per comment: extracted window, exact match with ``ActionFocusedText``, token overlap."""
    dictionary = _as_dictionary(words)
    rows = []
    for original, released in zip(frame["OriginalText"], frame["ActionFocusedText"]):
        # the window is scored for overlap even when the two-word filter would drop the comment
        window, matches = _densest_window(original, dictionary)
        extracted = window if matches >= min_matches else None
        rows.append({
            "extracted": extracted,
            "sampled": extracted is not None,
            "exact": extracted is not None and normalise_space(extracted) == normalise_space(released),
            "overlap": token_overlap(window or "", released),
        })
    return pd.DataFrame(rows, index=frame.index)


# Dictionary learning ------------------------------------------------------------------

@dataclass
class _SelectionProblem:
    """Sentence × vocabulary counts for fast evaluation of many candidate word lists.

    A word list covers a set of vocabulary tokens (a prefix term covers every token
    it starts); a sentence's matches are its tokens in the covered set, so
    overlapping terms (``activ*`` and ``activist``) never count a token twice.
    """

    counts: "object"  # scipy.sparse csc matrix, sentences × vocabulary
    term_tokens: dict[str, np.ndarray]  # term -> vocabulary indices it covers
    lengths: np.ndarray  # tokens per sentence
    starts: np.ndarray  # first sentence of each comment
    comment_of: np.ndarray  # comment index of each sentence
    gold: np.ndarray  # bool per sentence: selecting it reproduces the release
    position: np.ndarray  # sentence position inside its comment (for first-wins ties)
    min_matches: int = 2

    def added_matches(self, term: str, covered: np.ndarray) -> np.ndarray:
        new = self.term_tokens[term][~covered[self.term_tokens[term]]]
        if len(new) == 0:
            return np.zeros(len(self.lengths))
        return np.asarray(self.counts[:, new].sum(axis=1)).ravel()

    def accuracy(self, matches: np.ndarray) -> float:
        """Share of comments that pass the sampling filter and select a gold sentence."""
        share = np.divide(matches, self.lengths, out=np.zeros_like(matches, dtype=float), where=self.lengths > 0)
        score = share - 1e-9 * self.position  # earlier sentence wins a tie
        best = np.maximum.reduceat(score, self.starts)
        chosen = score == best[self.comment_of]
        sampled = np.add.reduceat(matches, self.starts) >= self.min_matches
        hit = np.zeros(len(self.starts), dtype=bool)
        np.logical_or.at(hit, self.comment_of, chosen & self.gold)
        return float((hit & sampled).sum() / len(self.starts))


def _build_problem(originals: Sequence[str], released: Sequence[str], candidates: list[str],
                   min_matches: int = 2) -> _SelectionProblem | None:
    from scipy import sparse

    sentence_tokens, gold, comment_of, position, starts = [], [], [], [], []
    for original, window in zip(originals, released):
        found = gold_selection(original, window)
        if found is None:
            continue
        sentences, good = found
        starts.append(len(sentence_tokens))
        for i, sentence in enumerate(sentences):
            sentence_tokens.append(tokenize(sentence))
            gold.append(i in good)
            comment_of.append(len(starts) - 1)
            position.append(i)
    if not starts:
        return None
    vocabulary = {token: i for i, token in enumerate(sorted({t for toks in sentence_tokens for t in toks}))}
    rows, cols = [], []
    for r, toks in enumerate(sentence_tokens):
        for t in toks:
            rows.append(r)
            cols.append(vocabulary[t])
    counts = sparse.csc_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(sentence_tokens), len(vocabulary)))
    words = np.array(list(vocabulary))
    term_tokens = {}
    for term in candidates:
        if term.endswith("*"):
            term_tokens[term] = np.flatnonzero(np.char.startswith(words, term[:-1]))
        else:
            term_tokens[term] = np.array([vocabulary[term]] if term in vocabulary else [], dtype=int)
    return _SelectionProblem(counts, term_tokens, np.array([len(t) for t in sentence_tokens], dtype=float),
                             np.array(starts), np.array(comment_of), np.array(gold),
                             np.array(position, dtype=float), min_matches)


def candidate_terms(originals: Sequence[str], released: Sequence[str], top: int = 150, min_count: int = 5,
                    prefixes: bool = True) -> pd.DataFrame:
    """Words over-represented in the released windows' selected sentences.

    Scored by the log-odds ratio (with a +1 prior) of a token's share of tokens in
    gold-selected sentences against all other sentences; with ``prefixes`` each
    word's Porter stem also competes as a prefix term (``organ*``).
    """
    from nltk.stem import PorterStemmer

    selected, other = {}, {}
    for original, window in zip(originals, released):
        found = gold_selection(original, window)
        if found is None or len(found[0]) < 2:
            continue
        sentences, good = found
        for i, sentence in enumerate(sentences):
            bucket = selected if i in good else other
            for token in tokenize(sentence):
                bucket[token] = bucket.get(token, 0) + 1
    stemmer = PorterStemmer()
    terms = {}
    for token in sorted(set(selected) | set(other)):  # sorted: no dependence on string hashing
        terms.setdefault(token, set()).add(token)
        if prefixes and len(token) >= 5:
            stem = stemmer.stem(token)
            if len(stem) >= 4 and token.startswith(stem):
                terms.setdefault(stem + "*", set()).add(token)
    n_sel, n_oth = sum(selected.values()) or 1, sum(other.values()) or 1
    rows = []
    for term, tokens in terms.items():
        a = sum(selected.get(t, 0) for t in tokens)
        b = sum(other.get(t, 0) for t in tokens)
        if a + b < min_count:
            continue
        log_odds = math.log((a + 1) / (n_sel - a + 1)) - math.log((b + 1) / (n_oth - b + 1))
        rows.append({"term": term, "in_selected": a, "elsewhere": b, "log_odds": log_odds})
    table = pd.DataFrame(rows).sort_values(["log_odds", "term"], ascending=[False, True], kind="stable")
    return table.head(top).reset_index(drop=True)


def learn_dictionary(
    originals: Sequence[str],
    released: Sequence[str],
    max_terms: int = 30,
    top_candidates: int = 300,
    min_count: int = 10,
    min_matches: int = 2,
    progress: bool = False,
) -> tuple[list[str], pd.DataFrame]:
    """Learn the word list whose extraction best reproduces the released windows.

    1. candidates: words (and stem prefixes) over-represented in the sentences the
       release selected (``candidate_terms``);
    2. greedy forward selection: add the candidate that most increases the share of
       comments that pass the sampling filter (at least ``min_matches`` dictionary
       words) and whose selected sentence reproduces the release, up to ``max_terms``
       or until nothing helps (30 by default: on the held-out test set, lists as long
       as the authors' 47 terms reproduce fewer windows, they fit noise);
    3. a backward pass drops any term whose removal does not lower that share.

    Returns the terms and the history of the forward pass (term, accuracy).
    """
    candidates = candidate_terms(originals, released, top=top_candidates, min_count=min_count)["term"].tolist()
    problem = _build_problem(originals, released, candidates, min_matches=min_matches)
    if problem is None:
        raise ValueError("no comment's released window aligns with whole sentences of its original text")
    n_vocab = problem.counts.shape[1]

    def state(terms: list[str]) -> tuple[np.ndarray, np.ndarray]:
        covered = np.zeros(n_vocab, dtype=bool)
        for t in terms:
            covered[problem.term_tokens[t]] = True
        return covered, np.asarray(problem.counts[:, np.flatnonzero(covered)].sum(axis=1)).ravel()

    chosen: list[str] = []
    covered, matches = state(chosen)
    best_accuracy = problem.accuracy(matches)
    history = []
    bar = tqdm(total=max_terms, desc="learning dictionary", disable=not progress)
    while len(chosen) < max_terms:
        scores = {}
        for term in candidates:
            if term in chosen or not len(problem.term_tokens[term]):
                continue
            scores[term] = problem.accuracy(matches + problem.added_matches(term, covered))
        if not scores:
            break
        term, accuracy = max(scores.items(), key=lambda kv: (kv[1], -candidates.index(kv[0])))
        if accuracy <= best_accuracy:
            break
        chosen.append(term)
        covered, matches = state(chosen)
        best_accuracy = accuracy
        history.append({"step": len(chosen), "term": term, "reproduced": accuracy})
        bar.update(1)
    bar.close()
    for term in list(chosen):  # backward pass: drop terms that no longer help
        trial = [t for t in chosen if t != term]
        if problem.accuracy(state(trial)[1]) >= best_accuracy:
            chosen = trial
            best_accuracy = problem.accuracy(state(chosen)[1])
    return chosen, pd.DataFrame(history)


def default_dictionary_path() -> Path:
    root = project_root()
    if root is None:
        raise FileNotFoundError("the learned word list lives in the project's data/ folder")
    return root / "data" / "collective_action_terms.txt"


def load_dictionary(path: Path | str | None = None) -> Dictionary:
    """The shipped word list (``data/collective_action_terms.txt``) or another file."""
    path = Path(path) if path is not None else default_dictionary_path()
    return Dictionary.from_terms(path.read_text(encoding="utf-8").splitlines())


def relearn_shipped_dictionary(path: Path | str | None = None, **kwargs) -> tuple[list[str], Path]:
    """Learn the word list from the training comments with their original text and
    write it, with a header that reports its test-set reproduction, to ``path``
    (default: the shipped ``data/collective_action_terms.txt``)."""
    from crowdlens.data import load_collective_action

    train, test = load_collective_action("train"), load_collective_action("test")
    with_text = train[train["OriginalText"].notna()]
    terms, _ = learn_dictionary(with_text["OriginalText"].tolist(), with_text["ActionFocusedText"].tolist(), **kwargs)
    scores = evaluate_extraction(test, terms)
    settings = ", ".join(f"{k}={v}" for k, v in kwargs.items()) or "the defaults of learn_dictionary"
    header = (
        f"Collective-action word list learned by crowdlens.annotate.learn_dictionary ({settings})\n"
        f"from the {len(with_text)} training comments of Pera & Aiello (2025) that carry their original text.\n"
        "A term ending in * matches every token it is a prefix of. The authors used the 47-term\n"
        "dictionary of Smith, McGarty & Thomas (2018), which is not released; this list is learned to\n"
        "reproduce their released action-focused windows instead. Regenerate with\n"
        "crowdlens.annotate.relearn_shipped_dictionary().\n"
        f"On the {len(test)} test comments it reproduces {scores['exact'].mean():.1%} of windows exactly\n"
        f"(token F1 {scores['overlap'].mean():.3f}); {scores['sampled'].mean():.1%} pass the two-word filter."
    )
    target = Path(path) if path is not None else default_dictionary_path()
    return terms, write_dictionary(terms, target, header)


def write_dictionary(terms: Iterable[str], path: Path | str, header: str = "") -> Path:
    path = Path(path)
    lines = [f"# {line}" for line in header.strip().splitlines()] + list(terms)
    with atomic_path(path, suffix=".txt") as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# Simulated crowds ----------------------------------------------------------------------

def annotator_confusion(accuracy: float, labels: Sequence[str] = LABELS, neighbour_share: float = 0.5,
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
    labels: Sequence[str] = LABELS,
    seed: int = 0,
) -> pd.DataFrame:
    """Crowd labels for the items of ``gold`` (index = task id, values = true labels).

    Workers follow a Dawid–Skene model: each reliable worker's accuracy is drawn
    around ``mean_accuracy`` (± ``accuracy_spread``, clipped to [1/k, 1]) and their
    errors lean towards the neighbouring category (``neighbour_share``); a share
    ``spammer_share`` of workers answer uniformly at random. Each item is labelled
    by ``annotators_per_item`` distinct workers drawn at random.
    Returns a long frame ``task, worker, label`` (crowd-kit's format).
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


def aggregate(labels: pd.DataFrame, method: str = "majority", order: Sequence[str] = LABELS, seed: int = 0) -> pd.Series:
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


def crowd_sweep(
    gold: pd.Series,
    parameter: str,
    values: Sequence,
    base: dict | None = None,
    methods: Sequence[str] = (),
    repetitions: int = 1,
    seed: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """Vary one ``simulate_crowd`` parameter; agreement (and aggregation accuracy for
    ``methods``) per value and repetition, in long format for plotting."""
    base = dict(base or {})
    rows = []
    grid = [(v, r) for v in values for r in range(repetitions)]
    for value, rep in tqdm(grid, desc=f"sweeping {parameter}", disable=not progress):
        settings = {**base, parameter: value}
        crowd = simulate_crowd(gold, seed=seed + 1000 * rep, **settings)
        row = {parameter: value, "repetition": rep, **agreement(crowd)}
        for method in methods:
            row[method] = float((aggregate(crowd, method, seed=seed).reindex(gold.index) == gold).mean())
        rows.append(row)
    return pd.DataFrame(rows)


def annotators_needed(sweep: pd.DataFrame, method: str, target: float = 0.9,
                      parameter: str = "annotators_per_item") -> int | None:
    """Smallest number of annotators per item whose mean aggregated accuracy reaches ``target``."""
    means = sweep.groupby(parameter)[method].mean()
    reached = means[means >= target]
    return int(reached.index.min()) if len(reached) else None


def examples(frame: pd.DataFrame, per_label: int = 3, seed: int = 0, min_chars: int = 60,
             max_chars: int = 220, label_column: str = "Label") -> pd.DataFrame:
    """Short real examples of each label from crowd-annotated rows (no augmentation)."""
    crowd = frame[frame["AugmentationType"].isna()]
    text = crowd["ActionFocusedText"].astype(str)
    short = crowd[(text.str.len() >= min_chars) & (text.str.len() <= max_chars)]
    picked = []
    for label in LABELS:
        pool = short[short[label_column].fillna("None") == label]
        picked.append(pool.sample(n=min(per_label, len(pool)), random_state=seed)
                      .assign(label=label)[["label", "Subreddit", "ActionFocusedText"]])
    return pd.concat(picked, ignore_index=True).rename(columns={"ActionFocusedText": "text", "Subreddit": "subreddit"})


# An LLM as annotator -------------------------------------------------------------------

COMMENT_SLOT = "<<COMMENT>>"


def annotation_prompt(text: str = COMMENT_SLOT, labels: Sequence[str] = LABELS) -> list[dict[str, str]]:
    """Chat messages: the label definitions first (shared by every comment), the comment last."""
    definitions = "\n".join(f"- {label}: {DEFINITIONS[label]}" for label in labels)
    return [
        {"role": "system", "content": "You annotate social media comments for participation in collective action."},
        {"role": "user", "content": (
            f"Labels:\n{definitions}\nIf several apply, choose the one lowest in this list.\n"
            f"Answer with the label only.\n\nComment: \"{text}\""
        )},
    ]


def _cache_of(output):
    # transformers 5 names the key/value cache "cache", earlier releases "past_key_values"
    return output["cache"] if "cache" in output else output["past_key_values"]


class LLMAnnotator:
    """Zero-shot annotation with a causal LM, scored rather than sampled.

    Each label is scored by the mean log-probability of its tokens after the prompt,
    so every answer is a valid label. The prompt's shared head (instructions and
    definitions) is encoded once and its key/value cache reused for every comment.
    With ``calibrate`` the scores of a content-free comment ("N/A") are subtracted,
    which removes a small model's preference for some label names (contextual
    calibration, Zhao et al. 2021).
    """

    def __init__(self, model: str = "smollm2", labels: Sequence[str] = LABELS, calibrate: bool = True,
                 max_chars: int = 1000):
        import torch

        from crowdlens.models import load_causal_lm

        self.model_name, self.labels, self.max_chars = model, list(labels), max_chars
        self.tokenizer, self.lm = load_causal_lm(model)
        self.lm.eval()
        template = self.tokenizer.apply_chat_template(annotation_prompt(COMMENT_SLOT, self.labels),
                                                      add_generation_prompt=True, tokenize=False)
        head, self.tail = template.split(COMMENT_SLOT)
        self.head_ids = self.tokenizer(head, add_special_tokens=False)["input_ids"]
        self.label_ids = [self.tokenizer(label, add_special_tokens=False)["input_ids"] for label in self.labels]
        with torch.inference_mode():
            self.head_cache = _cache_of(self._forward(torch.tensor([self.head_ids]), None, None))
        self.baseline = np.zeros(len(self.labels))
        if calibrate:
            self.baseline = self.scores("N/A")

    def _forward(self, input_ids, attention_mask, cache):
        # transformers 5 renamed past_key_values to cache; accept both generations
        key = "cache" if "cache" in inspect.signature(self.lm.forward).parameters else "past_key_values"
        return self.lm(input_ids=input_ids, attention_mask=attention_mask, use_cache=True, **{key: cache})

    def scores(self, text: str) -> np.ndarray:
        """Mean log-probability of each label's tokens after the prompt for ``text``."""
        import copy

        import torch

        rest = self.tokenizer(str(text)[: self.max_chars] + self.tail, add_special_tokens=False)["input_ids"]
        cache = copy.deepcopy(self.head_cache)
        seen = len(self.head_ids) + len(rest)
        with torch.inference_mode():
            # the comment once, then all labels as one batch on top of its cache
            out = self._forward(torch.tensor([rest]), torch.ones(1, seen, dtype=torch.long), cache)
            first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
            cache = _cache_of(out)
            width = max(map(len, self.label_ids))
            pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
            batch = torch.tensor([ids + [pad] * (width - len(ids)) for ids in self.label_ids])
            mask = torch.tensor([[1] * (seen + len(ids)) + [0] * (width - len(ids)) for ids in self.label_ids])
            cache.batch_repeat_interleave(len(self.label_ids))
            later = torch.log_softmax(self._forward(batch, mask, cache).logits.float(), dim=-1)
        result = []
        for row, ids in enumerate(self.label_ids):
            logps = [first[ids[0]].item()] + [later[row, j - 1, ids[j]].item() for j in range(1, len(ids))]
            result.append(float(np.mean(logps)))
        return np.array(result)

    def annotate(self, texts: Sequence[str], progress: bool = True) -> pd.DataFrame:
        rows = []
        for text in tqdm(list(texts), desc=f"LLM annotation ({self.model_name})", disable=not progress):
            started = time.perf_counter()
            calibrated = self.scores(text) - self.baseline
            rows.append({"label": self.labels[int(np.argmax(calibrated))],
                         "label_uncalibrated": self.labels[int(np.argmax(calibrated + self.baseline))],
                         **{f"score_{l}": s for l, s in zip(self.labels, calibrated)},
                         "seconds": time.perf_counter() - started})
        return pd.DataFrame(rows)


def llm_annotate(texts: Sequence[str], model: str = "smollm2", labels: Sequence[str] = LABELS,
                 calibrate: bool = True, progress: bool = True) -> pd.DataFrame:
    """Zero-shot labels for ``texts`` (see ``LLMAnnotator``): label, per-label scores, seconds."""
    return LLMAnnotator(model, labels, calibrate=calibrate).annotate(texts, progress=progress)
