"""The collective-action lexicon: action-focused extraction of a comment's densest
window of dictionary words (Pera & Aiello 2025), and the dictionary learned to
reproduce the released windows. Used in the annotation chapter.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from crowdlens.core.config import atomic_path, project_root
from crowdlens.data.registry import load_collective_action

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
        return token in self.exact or token.startswith(self.prefixes)

    def count(self, tokens: Sequence[str]) -> int:
        return sum(self.matches(t) for t in tokens)


def _as_dictionary(words) -> Dictionary:
    return words if isinstance(words, Dictionary) else Dictionary.from_terms(words)


@lru_cache(maxsize=8192)
def _tokenized_sentences(text: str) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    # memoised: the annotation chapter scores the same comments with every prefix of a word list
    sentences = tuple(split_sentences(text))
    return sentences, tuple(tuple(tokenize(s)) for s in sentences)


def _densest_window(text: str, dictionary: Dictionary, context: int = 1) -> tuple[str | None, int]:
    """(window around the densest sentence, dictionary words in the whole text)."""
    sentences, tokenized = _tokenized_sentences(str(text))
    if not sentences:
        return None, 0
    counts = [(dictionary.count(tokens), len(tokens)) for tokens in tokenized]
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
    Used in the annotation chapter.
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
    """Per comment: extracted window, exact match with ``ActionFocusedText``, token overlap.
    Used in the annotation chapter."""
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
    Used in the annotation chapter.
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
    """The shipped word list (``data/collective_action_terms.txt``) or another file. Used in the annotation chapter."""
    path = Path(path) if path is not None else default_dictionary_path()
    return Dictionary.from_terms(path.read_text(encoding="utf-8").splitlines())


def relearn_shipped_dictionary(path: Path | str | None = None, **kwargs) -> tuple[list[str], Path]:
    """Learn the word list from the training comments with their original text and
    write it, with a header that reports its test-set reproduction, to ``path``
    (default: the shipped ``data/collective_action_terms.txt``)."""
    train, test = load_collective_action("train"), load_collective_action("test")
    with_text = train[train["OriginalText"].notna()]
    terms, _ = learn_dictionary(with_text["OriginalText"].tolist(), with_text["ActionFocusedText"].tolist(), **kwargs)
    scores = evaluate_extraction(test, terms)
    settings = ", ".join(f"{k}={v}" for k, v in kwargs.items()) or "the defaults of learn_dictionary"
    header = (
        f"Collective-action word list learned by crowdlens.participation.lexicon.learn_dictionary ({settings})\n"
        f"from the {len(with_text)} training comments of Pera & Aiello (2025) that carry their original text.\n"
        "A term ending in * matches every token it is a prefix of. The authors used the 47-term\n"
        "dictionary of Smith, McGarty & Thomas (2018), which is not released; this list is learned to\n"
        "reproduce their released action-focused windows instead. Regenerate with\n"
        "crowdlens.participation.lexicon.relearn_shipped_dictionary().\n"
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


