"""Micro level: generate the reply a given Weibo user would write to a post.

A causal LM (SmolLM2 offline, any hub id online) is adapted with plain LoRA (peft) or the
PAC-style mixture of LoRA experts (``crowdlens.crowd_response.mixture_lora``), with or without the
user's earlier reactions — retrieved by BM25 relevance to the post, as SocialAlign does — as persona context.
Evaluation: character ROUGE-L and BLEU against the real reply, emotion agreement,
distinct-n, and paired bootstrap differences between models.
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from tqdm.auto import tqdm

from crowdlens.core.device import adamw, autocast, grad_scaler, resolve_device, to_device
from crowdlens.core.hub import load_causal_lm
from crowdlens.core.sampling import per_group_sample
from crowdlens.crowd_response.distributions import texted_reactions
from crowdlens.crowd_response.mixture_lora import apply_mixture_lora, mixture_layers
from crowdlens.crowd_response.pac_lora import PAC_TARGET_MODULES, PACSpans, apply_pac_lora, pac_layers, token_spans
from crowdlens.data.pseudonym import NOT_PEOPLE

MENTION = re.compile(r"@[\w\-\u00b7\u4e00-\u9fff]+")


def mask_mentions(text: str) -> str:
    """Replace @mentions (raw user names inside reply texts) by a placeholder: the book
    never shows user names, only pseudonymised authors. Used in the weibo_crowds chapter."""
    return MENTION.sub("@某用户", str(text))


# Examples --------------------------------------------------------------------------------

def people_replies(reactions: pd.DataFrame) -> pd.DataFrame:
    """Texted, dated reactions by people (not the deleted/unknown placeholder authors)."""
    texted = texted_reactions(reactions)
    return texted[texted["created_utc"].notna() & ~texted["author"].isin(NOT_PEOPLE)]


def active_users(reactions: pd.DataFrame, min_texted: int = 5) -> pd.Index:
    """Pseudonymised authors with at least ``min_texted`` texted, dated reactions."""
    counts = people_replies(reactions)["author"].value_counts()
    return counts.index[counts >= min_texted]


#: How a user's earlier replies are ranked for the persona context: BM25 (SocialAlign's
#: retrieval, the default) or TF-IDF cosine; both over characters and character pairs.
HISTORY_RANKINGS = ("bm25", "tfidf")


def _history_terms(text: str) -> list[str]:
    """Characters and character pairs without spaces: Chinese has no word boundaries, and a
    word segmenter would split the short, slangy replies unreliably."""
    chars = [c for c in text if not c.isspace()]
    return chars + [a + b for a, b in zip(chars, chars[1:])]


def history_scorer(documents: Sequence[str], ranking: str = "bm25"):
    """A function from a query text to the relevance of each of ``documents`` to it (one
    array, in the documents' order): BM25 (``bm25s``, k1 = 1.5, b = 0.75) or TF-IDF cosine.
    Used to pick a user's earlier replies most relevant to a post."""
    if ranking not in HISTORY_RANKINGS:
        raise ValueError(f"history_ranking={ranking!r} is not one of {HISTORY_RANKINGS}: pass 'bm25' (SocialAlign's "
                         "retrieval) or 'tfidf'")
    documents = list(documents)
    if not documents:
        return lambda query: np.zeros(0)
    if ranking == "bm25":
        import bm25s

        index = bm25s.BM25()
        index.index([_history_terms(d) for d in documents], show_progress=False)
        return lambda query: np.asarray(index.get_scores(_history_terms(query)), dtype=float)
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectoriser = TfidfVectorizer(analyzer=_history_terms).fit(documents)
    matrix = vectoriser.transform(documents)
    return lambda query: (matrix @ vectoriser.transform([query]).T).toarray().ravel()


def _most_relevant(scores: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` candidates (document positions) with the highest scores, ties in order."""
    return candidates[np.argsort(-scores[candidates], kind="stable")[:k]]


def reply_examples(reactions: pd.DataFrame, posts: pd.DataFrame, min_texted: int = 5, history_k: int = 5,
                   max_users: int = 0, exclude_posts: Sequence[str] = (), seed: int = 0,
                   history_ranking: str = "bm25") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) reply examples for users with ≥ ``min_texted`` texted reactions.

    Each user's latest reaction is a test example; the earlier ones are training
    examples (none on ``exclude_posts``). Every example carries the post text, the real
    reply, and ``history``: up to ``history_k`` of the user's *earlier* replies, the ones
    most relevant to the post (``history_ranking``: BM25 as in SocialAlign, or TF-IDF
    cosine). Mentions are masked. Used in the weibo_crowds chapter.
    """
    users = active_users(reactions, min_texted)
    if max_users and len(users) > max_users:
        users = pd.Index(np.random.default_rng(seed).choice(np.asarray(users), max_users, replace=False))
    data = people_replies(reactions)
    data = data[data["author"].isin(users)]
    data = data.merge(posts[["post_id", "text"]].rename(columns={"text": "post_text"}), on="post_id")
    data = data.assign(reply=data["text"].map(mask_mentions), post_text=data["post_text"].map(mask_mentions))
    data = data.sort_values(["author", "created_utc", "reaction_id"], ignore_index=True)
    relevance = history_scorer(data["reply"], history_ranking)
    position = data.groupby("author", sort=False).cumcount().to_numpy()
    author_rows = data.groupby("author", sort=False).indices
    replies_text = data["reply"].to_numpy()
    histories: list[list[str]] = [[] for _ in range(len(data))]
    # one score vector per post, shared by every reply to it
    for rows in data.groupby("post_id", sort=False).indices.values():
        scores = relevance(data.at[rows[0], "post_text"])
        for row in rows:
            earlier = author_rows[data.at[row, "author"]][:position[row]]
            if len(earlier):
                histories[row] = replies_text[_most_relevant(scores, earlier, history_k)].tolist()
    data["history"] = pd.Series(histories, index=data.index, dtype=object)
    last = data.groupby("author", sort=False)["created_utc"].transform("size").to_numpy() - 1
    is_test = position == last
    columns = ["author", "post_id", "reaction_id", "created_utc", "post_text", "history", "reply"]
    train = data.loc[~is_test & ~data["post_id"].isin(list(exclude_posts)), columns].reset_index(drop=True)
    return train, data.loc[is_test, columns].reset_index(drop=True)


def reply_prompt_parts(post_text: str, history: Sequence[str] | None = None, max_post_chars: int = 100,
                       max_history_chars: int = 30) -> tuple[str, str, str]:
    """The model's input in its three parts: the post, the user's earlier replies ("" without
    a history), the cue. PAC-LoRA's gates read the first two apart."""
    post = f"微博：{str(post_text)[:max_post_chars]}\n"
    user = ("这位用户以前的评论：\n" + "".join(f"- {h[:max_history_chars]}\n" for h in history)) if history else ""
    return post, user, "这位用户的评论："


def reply_prompt(post_text: str, history: Sequence[str] | None = None, max_post_chars: int = 100,
                 max_history_chars: int = 30) -> str:
    """The model's input: the post, optionally the user's earlier replies, then the cue."""
    return "".join(reply_prompt_parts(post_text, history, max_post_chars, max_history_chars))


# Model -----------------------------------------------------------------------------------

#: The adapters ``ReplyModel`` trains: plain LoRA; the mixture of LoRA experts gated per
#: token (``mixture_lora``); PAC-LoRA as SocialAlign builds it, its gates reading the post
#: and the user's history apart (``pac_lora``).
ADAPTERS = ("lora", "mixture", "pac")
#: The projections each adapter adapts unless ``target_modules`` says otherwise.
DEFAULT_TARGETS = {"lora": ("q_proj", "v_proj"), "mixture": ("q_proj", "v_proj"), "pac": PAC_TARGET_MODULES}


class ReplyModel(BaseEstimator):
    """A causal LM fine-tuned to write a user's reply, with one kind of adapter.

    ``adapter``: ``"lora"`` (peft LoRA on the attention projections), ``"mixture"``
    (``n_experts`` LoRA experts with analyze/compose gates read from every token) or
    ``"pac"`` (SocialAlign's PAC-LoRA: the analyze gate reads the post's tokens, the
    compose gate the user's history; on every projection of each block by default).
    ``target_modules`` (default: ``DEFAULT_TARGETS`` of the adapter) names the adapted
    projections. ``use_history`` puts the user's earlier replies in the prompt. The loss
    covers the reply tokens only.

    ``device`` trains and runs it (``crowdlens.core.device``: float32 on the CPU; on an
    accelerator the base weights load in half precision and the adapters train in
    float32 under autocast). ``load_in_4bit`` (CUDA only, bitsandbytes) loads the base
    in 4 bits, so a 7B model's adapters train on a 16-24 GB GPU.

    Used in the weibo_crowds chapter.
    """

    def __init__(self, model: str = "smollm2", adapter: str = "lora", use_history: bool = True, rank: int = 8,
                 n_experts: int = 3, temperature: float = 1.0, target_modules: Sequence[str] | None = None,
                 steps: int = 100, batch_size: int = 4, learning_rate: float = 1e-3, max_length: int = 256,
                 max_reply_chars: int = 40, seed: int = 0, progress: bool = True, device: str = "auto",
                 load_in_4bit: bool = False):
        self.model, self.adapter, self.use_history = model, adapter, use_history
        self.rank, self.n_experts, self.temperature = rank, n_experts, temperature
        self.target_modules = target_modules
        self.steps, self.batch_size, self.learning_rate = steps, batch_size, learning_rate
        self.max_length, self.max_reply_chars, self.seed, self.progress = max_length, max_reply_chars, seed, progress
        self.device, self.load_in_4bit = device, load_in_4bit

    def _prompt(self, row) -> str:
        return reply_prompt(row["post_text"], row["history"] if self.use_history else None)

    def _prompt_ids(self, row) -> tuple[list[int], list[bool], list[bool]]:
        """The prompt's tokens, and which of them are the post's and the user's history's.
        PAC-LoRA tokenises the three parts apart so that the spans are exact; the other
        adapters tokenise the prompt whole (no span is marked)."""
        if self.adapter != "pac":
            ids = self.tokenizer_(self._prompt(row), add_special_tokens=False)["input_ids"]
            return ids, [False] * len(ids), [False] * len(ids)
        post, user, cue = (self.tokenizer_(part, add_special_tokens=False)["input_ids"] if part else []
                           for part in reply_prompt_parts(row["post_text"], row["history"] if self.use_history
                                                          else None))
        rest = len(user) + len(cue)
        return (post + user + cue, [True] * len(post) + [False] * rest,
                [False] * len(post) + [True] * len(user) + [False] * len(cue))

    def _spans(self, post, user):
        """The forward passes inside see these spans (PAC-LoRA); a no-op for the other adapters."""
        import torch

        if self.adapter != "pac":
            return contextlib.nullcontext()
        return token_spans(self.model_, PACSpans(torch.as_tensor(post, dtype=torch.bool),
                                                 torch.as_tensor(user, dtype=torch.bool)))

    def _adapt(self, lm):
        targets = tuple(self.target_modules or DEFAULT_TARGETS[self.adapter])
        if self.adapter == "mixture":
            return apply_mixture_lora(lm, targets, n_experts=self.n_experts, rank=self.rank,
                                      alpha=2 * self.rank, temperature=self.temperature)
        if self.adapter == "pac":
            return apply_pac_lora(lm, targets, n_experts=self.n_experts, rank=self.rank, alpha=2 * self.rank)
        from peft import LoraConfig, get_peft_model

        return get_peft_model(lm, LoraConfig(r=self.rank, lora_alpha=2 * self.rank, lora_dropout=0.0,
                                             target_modules=list(targets), task_type="CAUSAL_LM"))

    def _on_device(self, tensor):
        """``tensor`` where the fitted model runs (on the CPU, ``tensor`` itself)."""
        return to_device({"t": tensor}, self.device_)["t"]

    def _reply_ids(self, reply: str) -> list[int]:
        """A reply's tokens as the model learns and scores them: cut to ``max_reply_chars``, then end of reply."""
        ids = self.tokenizer_(str(reply)[: self.max_reply_chars], add_special_tokens=False)["input_ids"]
        return ids + [self.tokenizer_.eos_token_id]

    def _truncated_prompt(self, row, room: int) -> tuple[list[int], list[bool], list[bool]]:
        """The prompt cut from the left to at most ``room`` tokens (the cue stays), its spans with it."""
        ids, post, user = self._prompt_ids(row)
        cut = max(0, len(ids) - max(1, room))
        return ids[cut:], post[cut:], user[cut:]

    def _encode(self, row):
        reply = self._reply_ids(row["reply"])
        prompt, post, user = self._truncated_prompt(row, self.max_length - len(reply))
        after = [False] * len(reply)
        return prompt + reply, [-100] * len(prompt) + reply, post + after, user + after

    def fit(self, examples: pd.DataFrame) -> "ReplyModel":
        import torch

        if self.adapter not in ADAPTERS:
            raise ValueError(f"adapter must be one of {ADAPTERS}, not {self.adapter!r}")
        if examples.empty:
            raise ValueError("no training examples: lower min_texted or raise max_users")
        self.device_ = device = resolve_device(self.device)
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        self.tokenizer_, lm = load_causal_lm(self.model, device, load_in_4bit=self.load_in_4bit)
        self.model_ = self._adapt(lm)
        parameters = [p for p in self.model_.parameters() if p.requires_grad]
        optimiser = adamw(parameters, device, lr=self.learning_rate, weight_decay=0.0)
        scaler = grad_scaler(device)
        encoded = [self._encode(row) for _, row in examples.iterrows()]
        self.losses_ = []
        self.model_.train()
        pad = self.tokenizer_.pad_token_id
        for _ in tqdm(range(self.steps), desc=f"fine-tuning ({self.adapter}{', history' if self.use_history else ''})",
                      disable=not self.progress):
            batch = [encoded[i] for i in rng.integers(0, len(encoded), self.batch_size)]
            # left padding: every row ends with its reply, so the LM head runs on the last positions only
            ids, labels, mask, post, user = _padded(batch, pad, left=True)
            with autocast(device), self._spans(post, user):
                loss = _reply_loss(self.model_, to_device({"input_ids": ids, "attention_mask": mask}, device),
                                   to_device({"labels": labels}, device)["labels"])
            if scaler is None:
                loss.backward()
                torch.nn.utils.clip_grad_norm_(parameters, 1.0)
                optimiser.step()
            else:  # float16 on a GPU: scale the loss so that small gradients survive, clip the true ones
                scaler.scale(loss).backward()
                scaler.unscale_(optimiser)
                torch.nn.utils.clip_grad_norm_(parameters, 1.0)
                scaler.step(optimiser)
                scaler.update()
            optimiser.zero_grad()
            self.losses_.append(loss.item())
        self.model_.eval()
        return self

    def generate(self, examples: pd.DataFrame, max_new_tokens: int = 32, batch_size: int = 8) -> list[str]:
        """Greedy replies, one per example (left-padded batches; a prompt longer than
        ``max_length`` loses its start, as in training, never its cue)."""
        import torch

        prompts = [self._truncated_prompt(row, self.max_length) for _, row in examples.iterrows()]
        pad = self.tokenizer_.pad_token_id
        replies = []
        with torch.inference_mode():
            for start in tqdm(range(0, len(prompts), batch_size), desc="generating", disable=not self.progress):
                # left padding: every prompt ends at its cue, where generation starts
                chunk = [(x, [-100] * len(x), p, u) for x, p, u in prompts[start:start + batch_size]]
                ids, _, mask, post, user = _padded(chunk, pad, left=True)
                batch = to_device({"input_ids": ids, "attention_mask": mask}, self.device_)
                # plain greedy decoding: an n-gram ban would also ban copying the user's own
                # earlier phrases from the prompt, which is what personalisation should allow
                with self._spans(post, user):
                    out = self.model_.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                               pad_token_id=pad)
                new = out[:, batch["input_ids"].shape[1]:]
                replies += [clean_reply(t) for t in self.tokenizer_.batch_decode(new, skip_special_tokens=True)]
        return replies

    def reply_logprob(self, examples: pd.DataFrame, candidates: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Per example, the mean log-probability per token (end of reply included) of each
        candidate reply under the fitted model, given that example's prompt. The prompt is
        run once per example and its key/value cache reused for every candidate."""
        import copy

        import torch

        if len(candidates) != len(examples):
            raise ValueError(f"one list of candidates per example: got {len(candidates)} lists "
                             f"for {len(examples)} examples")
        keyword = _cache_keyword(self.model_)
        scores = []
        with torch.inference_mode():
            for (_, row), options in tqdm(zip(examples.iterrows(), candidates), total=len(examples),
                                          desc="scoring candidates", disable=not self.progress):
                if not len(options):
                    raise ValueError(f"example {row.name} has no candidate reply")
                encoded = [self._reply_ids(c) for c in options]
                prompt, post, user = self._truncated_prompt(row, self.max_length - max(map(len, encoded)))
                row_scores = []
                # the candidates follow the prompt, outside its spans
                with self._spans([post], [user]):
                    start = self.model_(input_ids=self._on_device(torch.tensor([prompt])), use_cache=True)
                    prompt_cache = getattr(start, "cache", None)
                    prompt_cache = start.past_key_values if prompt_cache is None else prompt_cache
                    first = torch.log_softmax(start.logits[0, -1].float(), -1)
                    for reply in encoded:
                        logprobs = first[reply[:1]]
                        if len(reply) > 1:
                            logits = self.model_(input_ids=self._on_device(torch.tensor([reply[:-1]])),
                                                 use_cache=True, **{keyword: copy.deepcopy(prompt_cache)}).logits[0]
                            following = self._on_device(torch.tensor(reply[1:]))
                            rest = torch.log_softmax(logits.float(), -1).gather(1, following[:, None])[:, 0]
                            logprobs = torch.cat([logprobs, rest])
                        row_scores.append(logprobs.mean().item())
                scores.append(np.array(row_scores))
        return scores

    def choose(self, examples: pd.DataFrame, candidates: Sequence[Sequence[str]]) -> tuple[list[str], np.ndarray]:
        """Copy-aware decoding: per example, the candidate the model finds likeliest per
        token — e.g. its own greedy reply against the user's earlier replies, so a user
        who repeats themselves can be predicted word for word. Returns the chosen replies
        and the index of each choice in its candidate list."""
        scores = self.reply_logprob(examples, candidates)
        picked = np.array([int(np.argmax(s)) for s in scores])
        return [str(options[k]) for options, k in zip(candidates, picked)], picked

    def mean_gates(self, examples: pd.DataFrame) -> pd.DataFrame | None:
        """For a mixture or PAC model: the mean analyze and compose weight of each expert,
        per adapted layer, over the prompts' tokens (mixture) or over the tokens each gate
        reads (PAC: the analyze gate on the post, the compose gate on the history). Columns:
        ``layer`` (the adapted projection's index), ``block`` (its transformer block),
        ``projection`` (its name), ``expert``, ``analyze``, ``compose``. None for plain LoRA."""
        import torch

        if self.adapter == "lora":
            return None
        if self.adapter == "pac":
            return self._pac_mean_gates(examples)
        layers = mixture_layers(self.model_)
        captured: dict[int, list] = {i: [] for i in range(len(layers))}
        hooks = [layer.register_forward_hook(lambda m, args, out, i=i: captured[i].append(
            [g.reshape(-1, m.n_experts).mean(0) for g in m.gates(args[0])])) for i, layer in enumerate(layers)]
        try:
            with torch.inference_mode():
                for _, row in examples.iterrows():
                    encoded = self.tokenizer_(self._prompt(row), return_tensors="pt", add_special_tokens=False)
                    self.model_(**to_device(dict(encoded), self.device_))
        finally:
            for hook in hooks:
                hook.remove()
        rows = []
        for i, values in captured.items():
            analyze = torch.stack([v[0] for v in values]).mean(0)
            compose = torch.stack([v[1] for v in values]).mean(0)
            for e in range(layers[i].n_experts):
                rows.append({"layer": i, "expert": e, "analyze": float(analyze[e]), "compose": float(compose[e])})
        return self._with_places(pd.DataFrame(rows), layers)

    def _with_places(self, gates: pd.DataFrame, layers) -> pd.DataFrame:
        """``gates`` with each adapted layer's transformer block and projection name."""
        names = {id(module): name for name, module in self.model_.named_modules()}
        places = []
        for layer in layers:
            name = names[id(layer)]
            block = re.search(r"\.(\d+)\.", name)
            places.append((int(block.group(1)) if block else -1, name.rsplit(".", 1)[-1]))
        where = pd.DataFrame(places, columns=["block", "projection"]).rename_axis("layer").reset_index()
        return gates.merge(where, on="layer")[["layer", "block", "projection", "expert", "analyze", "compose"]]

    def _pac_mean_gates(self, examples: pd.DataFrame) -> pd.DataFrame:
        import torch

        layers = pac_layers(self.model_)
        for layer in layers:
            layer.kept = []
        try:
            with torch.inference_mode():
                for _, row in examples.iterrows():
                    ids, post, user = self._truncated_prompt(row, self.max_length)
                    with self._spans([post], [user]):
                        self.model_(input_ids=self._on_device(torch.tensor([ids])))
            rows = []
            for i, layer in enumerate(layers):
                analyze, compose, post, user = (torch.cat([k[j].reshape(-1, *k[j].shape[2:]) for k in layer.kept])
                                                for j in range(4))
                on_post, on_user = analyze[post.reshape(-1)], compose[user.reshape(-1)]
                for e in range(layer.n_experts):
                    rows.append({"layer": i, "expert": e,
                                 "analyze": float(on_post[:, e].mean()) if len(on_post) else float("nan"),
                                 "compose": float(on_user[:, e].mean()) if len(on_user) else float("nan")})
        finally:
            for layer in layers:
                layer.kept = None
        return self._with_places(pd.DataFrame(rows), layers)


def _padded(rows, pad: int, left: bool = False):
    """(ids, labels, attention mask, post span, user span) tensors of ``rows`` (each ids,
    labels, post and user lists of one length), padded to the longest on the right, or
    on the ``left``."""
    import torch

    width = max(len(ids) for ids, *_ in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    post, user = (torch.zeros((len(rows), width), dtype=torch.bool) for _ in range(2))
    for row, (x, y, in_post, in_user) in enumerate(rows):
        where = slice(width - len(x), width) if left else slice(0, len(x))
        ids[row, where], labels[row, where], mask[row, where] = torch.tensor(x), torch.tensor(y), 1
        post[row, where], user[row, where] = torch.tensor(in_post), torch.tensor(in_user)
    return ids, labels, mask, post, user


def _reply_loss(model, batch: dict, labels):
    """Mean cross-entropy over the reply tokens of a left-padded batch (rows end with their
    replies), the same as the model's own loss with ``labels``, with the LM head computed
    only on the last positions that predict a reply token (``logits_to_keep``): on
    Gemma-3's 262k-word vocabulary the head is most of a training step's work."""
    import inspect

    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if "logits_to_keep" not in inspect.signature(base.forward).parameters:  # an older architecture
        return model(**batch, labels=labels).loss
    keep = min(int((labels != -100).sum(1).max()) + 1, labels.shape[1])  # +1: the logit before the first
    logits = model(**batch, logits_to_keep=keep).logits[:, :-1]
    target = labels[:, labels.shape[1] - keep + 1:]
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), target.flatten(), ignore_index=-100)


def _cache_keyword(model) -> str:
    """The forward() keyword for a key/value cache: ``cache`` in newer transformers,
    ``past_key_values`` before."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


# Metrics ---------------------------------------------------------------------------------

def clean_reply(decoded: str) -> str:
    """A generated reply as scored: its first line, without U+FFFD.

    Byte-level tokenizers (SmolLM2's) can emit a lone byte of a multi-byte character
    that decodes to U+FFFD ("\ufffd切…"): a decoding artefact, not a character the
    model chose, so it is dropped before any metric sees the reply.
    """
    return decoded.split("\n")[0].replace("\ufffd", "").strip()


def _lcs(a: str, b: str) -> int:
    previous = [0] * (len(b) + 1)
    for ca in a:
        current = [0]
        for j, cb in enumerate(b):
            current.append(previous[j] + 1 if ca == cb else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l_chars(reference: str, candidate: str) -> float:
    """ROUGE-L F1 over characters (whitespace ignored): the usual unit for Chinese."""
    reference, candidate = "".join(str(reference).split()), "".join(str(candidate).split())
    if not reference or not candidate:
        return float(reference == candidate)
    lcs = _lcs(reference, candidate)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(candidate), lcs / len(reference)
    return 2 * precision * recall / (precision + recall)


def bleu_chars(reference: str, candidate: str) -> float:
    """Sentence BLEU (0–100) with sacrebleu's Chinese tokenisation (characters), smoothed."""
    import sacrebleu

    return float(sacrebleu.sentence_bleu(str(candidate), [str(reference)], tokenize="zh",
                                         smooth_method="exp").score)


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Distinct character n-grams / all character n-grams over a set of texts (diversity).
    Used in the weibo_crowds chapter."""
    grams = [t[i:i + n] for t in map(str, texts) for i in range(len(t) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


#: A reply "loops" when one character n-gram of this length recurs this often (the
#: degenerate repetition of small LMs: "没有仇家，没有仇家，没有仇家").
LOOP_NGRAM, LOOP_REPEATS = 4, 3


def has_loop(text: str, n: int = LOOP_NGRAM, repeats: int = LOOP_REPEATS) -> bool:
    """Whether some character n-gram occurs ``repeats`` or more times in ``text``
    (occurrences may overlap)."""
    text = str(text)
    counts = Counter(text[i:i + n] for i in range(len(text) - n + 1))
    return bool(counts) and max(counts.values()) >= repeats


def loop_share(texts: Sequence[str], n: int = LOOP_NGRAM, repeats: int = LOOP_REPEATS) -> float:
    """The share of ``texts`` that loop (``has_loop``). Used in the weibo_crowds chapter."""
    texts = list(texts)
    return float(np.mean([has_loop(t, n, repeats) for t in texts])) if texts else 0.0


def paired_bootstrap(a: Sequence[float], b: Sequence[float], n_boot: int = 1000, seed: int = 0
                     ) -> tuple[float, float, float]:
    """Mean of a − b over paired items with a percentile bootstrap 95 % interval. Used in the weibo_crowds chapter."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    draws = diff[rng.integers(0, len(diff), (n_boot, len(diff)))].mean(axis=1)
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(diff.mean()), float(low), float(high)


def score_replies(examples: pd.DataFrame, generated: Sequence[str], emotion_classifier) -> pd.DataFrame:
    """Per example: ROUGE-L, BLEU, and whether the generated and the real reply get the
    same emotion from ``emotion_classifier``. Used in the weibo_crowds chapter."""
    real_emotion = emotion_classifier.predict(examples["reply"].tolist())
    generated_emotion = emotion_classifier.predict(list(generated))
    return pd.DataFrame({
        "rouge_l": [rouge_l_chars(r, g) for r, g in zip(examples["reply"], generated)],
        "bleu": [bleu_chars(r, g) for r, g in zip(examples["reply"], generated)],
        "emotion_agrees": (np.asarray(real_emotion) == np.asarray(generated_emotion)).astype(float),
    })


def crowd_examples(reactions: pd.DataFrame, posts: pd.DataFrame, post_ids: Sequence[str], per_post: int = 20,
                   history_k: int = 5, seed: int = 0, history_ranking: str = "bm25") -> pd.DataFrame:
    """Reply examples for a sample of the actual repliers of each post in ``post_ids``
    (texted reactions, people only), each with the replier's earlier replies most relevant
    to the post as history (``history_ranking`` as in :func:`reply_examples`) — the input
    for generating a whole crowd's reactions. Used in the weibo_crowds chapter."""
    texted = people_replies(reactions)
    selected = texted[texted["post_id"].isin(list(post_ids))]
    if selected.empty:
        raise ValueError("none of these posts has a texted reaction from a person")
    targets = per_group_sample(selected, "post_id", per_post, seed)
    post_text = posts.set_index("post_id")["text"].map(mask_mentions)
    own = texted[texted["author"].isin(targets["author"])].sort_values("created_utc", ignore_index=True)
    own_text = own["text"].map(mask_mentions).to_numpy()
    relevance = history_scorer(own_text, history_ranking)
    scores = {post: relevance(post_text[post]) for post in dict.fromkeys(targets["post_id"])}
    own_time = own["created_utc"].to_numpy()
    by_author = own.groupby("author").indices
    rows = []
    for _, target in targets.iterrows():
        earlier = by_author[target["author"]]
        earlier = earlier[own_time[earlier] < target["created_utc"]]
        history = own_text[_most_relevant(scores[target["post_id"]], earlier, history_k)].tolist()
        rows.append({"author": target["author"], "post_id": target["post_id"], "reaction_id": target["reaction_id"],
                     "post_text": post_text[target["post_id"]], "history": history,
                     "reply": mask_mentions(target["text"])})
    return pd.DataFrame(rows, columns=["author", "post_id", "reaction_id", "post_text", "history", "reply"])
