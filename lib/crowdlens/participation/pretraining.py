"""Domain-adaptive masked-LM pretraining of the encoder on unlabelled Reddit text.

Pera & Aiello continued RoBERTa's masked-LM training on Reddit comments (5 epochs)
before fine-tuning it (domain-adaptive pretraining, Gururangan et al. 2020). Here the
corpus is the two unlabelled Reddit tables of the data folder (808k texts), and no test
comment may be in it: ``domain_corpus`` drops texts whose id is a test CommentID, whose
whole text is a test comment's, or that share a sentence with one (the test set's
ActionFocusedText is an excerpt of a longer comment, so equal hashes of whole texts
alone would miss a corpus text that contains it). ``mlm_pretrain`` trains once, with a
checkpoint so a killed run resumes, and caches the encoder as a model folder that
``EncoderClassifier`` fine-tunes like any other.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from crowdlens.core.config import atomic_dir
from crowdlens.core.device import adamw, resolve_device, to_device
from crowdlens.core.hub import load_tokenizer, models_cache_dir, resolve_model
from crowdlens.data.reddit import reddit_text
from crowdlens.data.registry import load_reddit_covid, load_reddit_political
from crowdlens.participation.lexicon import split_sentences

#: The test-set columns whose texts (and sentences) the corpus must not contain.
EXCLUDED_COLUMNS = ("OriginalText", "ActionFocusedText")
#: Sentences shorter than this (after normalising) are too common to identify a comment.
MIN_SENTENCE_CHARS = 30
_SPACES = re.compile(r"\s+")


def _normalised(text: str) -> str:
    return _SPACES.sub(" ", str(text)).strip().lower()


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def _sentence_digests(text: str) -> set[str]:
    # the release's sentence split (its ActionFocusedText windows follow it), line by line
    pieces = (_normalised(s) for line in str(text).splitlines() for s in split_sentences(line))
    return {_digest(s) for s in pieces if len(s) >= MIN_SENTENCE_CHARS}


def excluded_digests(comments: pd.DataFrame, columns: Sequence[str] = EXCLUDED_COLUMNS) -> set[str]:
    """Digests of every text of ``comments`` in ``columns`` and of each of their long sentences."""
    digests: set[str] = set()
    for column in columns:
        if column not in comments:
            continue
        for text in comments[column].dropna().astype(str):
            digests.add(_digest(_normalised(text)))
            digests |= _sentence_digests(text)
    return digests


@dataclass(frozen=True)
class DomainCorpus:
    """Unlabelled texts for masked-LM pretraining, and what was kept out.

    ``texts``: the corpus; ``kept``: texts kept per source table; ``excluded_by_id`` and
    ``excluded_by_text``: texts dropped because their id is an excluded comment's, or
    because their text or one of their sentences is (``fingerprint`` identifies the
    corpus in the cache key of a pretrained model).
    """

    texts: list[str]
    kept: dict[str, int] = field(default_factory=dict)
    excluded_by_id: int = 0
    excluded_by_text: int = 0

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for text in self.texts:
            digest.update(text.encode("utf-8"))
            digest.update(b"\0")
        return digest.hexdigest()[:16]


def domain_corpus(exclude: pd.DataFrame, tables: Mapping[str, pd.DataFrame] | None = None, min_chars: int = 20,
                  max_texts: int = 0, seed: int = 0, progress: bool = False) -> DomainCorpus:
    """The Reddit texts of ``tables`` (default: the political 2017-18 and US local
    COVID 2020 tables of the data folder) with every comment of ``exclude`` (the test
    set: ``CommentID`` and ``EXCLUDED_COLUMNS``) kept out, by id, by whole text and by
    shared sentence. Texts shorter than ``min_chars`` are dropped; ``max_texts`` > 0
    draws a random sample of that many candidates first (``seed``), so the text checks
    run on the sample only (the excluded counts are then the sample's)."""
    if "CommentID" not in exclude or not any(c in exclude for c in EXCLUDED_COLUMNS):
        raise ValueError(f"exclude must be the comments to keep out, with CommentID and one of {EXCLUDED_COLUMNS} "
                         "(the test set: crowdlens.data.load_collective_action('test'))")
    if tables is None:
        tables = {"political_2017_2018": load_reddit_political(), "us_local_covid_2020": load_reddit_covid()}
    ids = set(exclude["CommentID"].astype(str))
    candidates, sources, by_id = [], [], 0
    for name, frame in tables.items():
        text = reddit_text(frame)
        long_enough = text.str.len() >= min_chars
        frame, text = frame[long_enough], text[long_enough]
        same_id = frame["id"].astype(str).isin(ids) if "id" in frame else pd.Series(False, index=frame.index)
        by_id += int(same_id.sum())
        candidates += text[~same_id].tolist()
        sources += [name] * int((~same_id).sum())
    chosen = range(len(candidates))
    if max_texts and len(candidates) > max_texts:
        chosen = np.sort(np.random.default_rng(seed).choice(len(candidates), max_texts, replace=False))
    digests = excluded_digests(exclude)
    texts, kept, by_text = [], dict.fromkeys(tables, 0), 0
    for i in tqdm(chosen, desc="keeping test comments out", disable=not progress):
        value = candidates[i]
        if _digest(_normalised(value)) in digests or not _sentence_digests(value).isdisjoint(digests):
            by_text += 1
            continue
        texts.append(value)
        kept[sources[i]] += 1
    return DomainCorpus(texts, kept, by_id, by_text)


def _cache_folder(model: str, corpus: DomainCorpus, settings: dict) -> Path:
    key = hashlib.sha256(json.dumps({"model": model, "corpus": corpus.fingerprint, **settings},
                                    sort_keys=True).encode()).hexdigest()[:12]
    return models_cache_dir() / f"{Path(str(model)).name}-reddit-mlm-{key}"


def mlm_pretrain(corpus: DomainCorpus, model: str = "minilm", epochs: int = 1, max_length: int = 128,
                 batch_size: int = 32, learning_rate: float = 5e-5, mlm_probability: float = 0.15, seed: int = 0,
                 checkpoint_every: int = 500, progress: bool = True, device: str = "auto") -> Path:
    """Continue ``model``'s masked-LM training on ``corpus`` and return the folder of the
    adapted encoder (in the model cache; trained once per model, corpus and settings).

    A sentence encoder (MiniLM, E5) ships without its masked-LM head; the head then
    starts fresh and learns with the encoder. A checkpoint every ``checkpoint_every``
    steps lets a killed run resume where it stopped. The folder's ``crowdlens.json``
    records the corpus (kept and excluded counts), the settings, the losses and the
    seconds the training took.
    """
    import torch
    from transformers import AutoModelForMaskedLM, DataCollatorForLanguageModeling

    if not corpus.texts:
        raise ValueError("the corpus is empty: check the data folder (crowdlens data check) and min_chars")
    settings = dict(epochs=epochs, max_length=max_length, batch_size=batch_size, learning_rate=learning_rate,
                    mlm_probability=mlm_probability, seed=seed)
    target = _cache_folder(model, corpus, settings)
    if (target / "config.json").is_file():
        return target
    device = resolve_device(device)
    torch.manual_seed(seed)
    from transformers.utils import logging as transformers_logging

    tokenizer = load_tokenizer(model)
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # a sentence encoder has no masked-LM head: a new one is expected
    try:
        lm = AutoModelForMaskedLM.from_pretrained(resolve_model(model))
    finally:
        transformers_logging.set_verbosity(verbosity)
    if device != "cpu":
        lm.to(device)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=mlm_probability)
    optimiser = adamw([p for p in lm.parameters() if p.requires_grad], device, lr=learning_rate)
    rng = np.random.default_rng(seed)
    orders = [rng.permutation(len(corpus.texts)) for _ in range(epochs)]
    batches = [order[i:i + batch_size] for order in orders for i in range(0, len(order), batch_size)]
    checkpoint = target.with_name(target.name + ".checkpoint.pt")
    step, losses, seconds = 0, [], 0.0
    if checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=False, map_location=device)
        lm.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        step, losses, seconds = state["step"], state["losses"], state["seconds"]
        torch.set_rng_state(state["torch_rng"])
    started = time.perf_counter() - seconds
    lm.train()
    for index in tqdm(range(step, len(batches)), desc="masked-LM pretraining", initial=step, total=len(batches),
                      disable=not progress):
        texts = [corpus.texts[i] for i in batches[index]]
        encoded = tokenizer(texts, truncation=True, max_length=max_length)
        batch = collator([{"input_ids": ids} for ids in encoded["input_ids"]])
        loss = lm(**to_device(dict(batch), device)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
        optimiser.step()
        optimiser.zero_grad()
        losses.append(float(loss.item()))
        if checkpoint_every and (index + 1) % checkpoint_every == 0 and index + 1 < len(batches):
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            tmp = checkpoint.with_suffix(".tmp")
            torch.save({"model": lm.state_dict(), "optimiser": optimiser.state_dict(), "step": index + 1,
                        "losses": losses, "seconds": time.perf_counter() - started,
                        "torch_rng": torch.get_rng_state()}, tmp)
            tmp.replace(checkpoint)
    lm.eval()
    card = {"base": str(model), "corpus_texts": len(corpus.texts), "kept": corpus.kept,
            "excluded_by_id": corpus.excluded_by_id, "excluded_by_text": corpus.excluded_by_text,
            "corpus_fingerprint": corpus.fingerprint, **settings, "steps": len(batches),
            "seconds": round(time.perf_counter() - started, 1), "losses": losses, "trained_on": device}
    with atomic_dir(target) as staging:
        lm.to("cpu").save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "crowdlens.json").write_text(json.dumps(card, indent=2))
    checkpoint.unlink(missing_ok=True)
    return target


def pretraining_card(folder: Path | str) -> dict:
    """What ``mlm_pretrain`` recorded of a pretrained encoder (corpus, settings, losses, seconds)."""
    return json.loads((Path(folder) / "crowdlens.json").read_text())
