"""The macro level of crowd response (the Weibo chapter): each post's emotion
distribution over its crowd of reactions, and models that predict it from the post
(prior, kNN, softmax regression on text or LM features), scored by divergences.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from sklearn.base import BaseEstimator

from crowdlens.core import metrics
from crowdlens.core.device import resolve_device, to_device
from crowdlens.core.hub import load_causal_lm
from crowdlens.data.schemas import EMOTIONS


# Macro: crowd emotion distributions ------------------------------------------------------

def texted_reactions(reactions: pd.DataFrame) -> pd.DataFrame:
    """Reactions that carry text (a bare repost has none). Used in the weibo_crowds chapter."""
    return reactions[reactions["text"].astype(str).str.strip().ne("")]


def crowd_distributions(reactions: pd.DataFrame, probabilities: np.ndarray, classes: Sequence[str],
                        min_reactions: int = 5) -> pd.DataFrame:
    """Per post: the emotion distribution of its texted reactions — the mean of the
    classifier's probabilities (expected shares, less brittle than counting argmax labels)
    — and ``n``, the number of texted reactions. Posts with fewer than ``min_reactions``
    are dropped. Used in the weibo_crowds chapter."""
    frame = pd.DataFrame(probabilities, columns=list(classes), index=reactions.index)[list(EMOTIONS)]
    frame["post_id"] = reactions["post_id"].to_numpy()
    grouped = frame.groupby("post_id")
    result = grouped[list(EMOTIONS)].mean()
    result["n"] = grouped.size()
    return result[result["n"] >= min_reactions]


def split_posts(posts: pd.DataFrame, how: str = "random", test_share: float = 0.2, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (train, test) masks: a random split, or ``"time"`` — the latest
    ``test_share`` of posts by creation time are the test set. Used in the weibo_crowds chapter."""
    n = len(posts)
    test = np.zeros(n, dtype=bool)
    if how == "random":
        test[np.random.default_rng(seed).permutation(n)[: int(round(test_share * n))]] = True
    elif how == "time":
        order = np.argsort(posts["created_utc"].to_numpy(), kind="stable")
        test[order[n - int(round(test_share * n)):]] = True
    else:
        raise ValueError(f"how must be 'random' or 'time', not {how!r}")
    return ~test, test


class PriorDistribution(BaseEstimator):
    """Predicts the training posts' mean distribution for every post. Used in the weibo_crowds chapter."""

    def fit(self, X, Y) -> "PriorDistribution":
        self.prior_ = np.asarray(Y, dtype=float).mean(axis=0)
        return self

    def predict(self, X) -> np.ndarray:
        return np.tile(self.prior_, (X.shape[0], 1))


class KNNDistribution(BaseEstimator):
    """Mean distribution of the ``k`` most similar training posts (cosine similarity of
    feature rows), weighted by similarity. Used in the weibo_crowds chapter."""

    def __init__(self, k: int = 20):
        self.k = k

    def fit(self, X, Y) -> "KNNDistribution":
        from sklearn.preprocessing import normalize

        self.X_, self.Y_ = normalize(X), np.asarray(Y, dtype=float)
        return self

    def predict(self, X) -> np.ndarray:
        from sklearn.preprocessing import normalize

        similarity = normalize(X) @ self.X_.T
        similarity = similarity.toarray() if hasattr(similarity, "toarray") else np.asarray(similarity)
        k = min(self.k, similarity.shape[1])
        top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        weights = np.clip(np.take_along_axis(similarity, top, axis=1), 1e-6, None)
        return np.einsum("nk,nkc->nc", weights, self.Y_[top]) / weights.sum(axis=1, keepdims=True)


class SoftmaxRegression(BaseEstimator):
    """A linear softmax model trained on soft targets with the KL loss (the multinomial
    regression of a distribution; on LM features it is the LM's distribution head).

    Features are standardised; L2 penalty ``alpha``. Given several alphas, the one with
    the lowest Jensen–Shannon divergence on a held-out fifth of the training rows is
    chosen (``alpha_``) and the model refitted on all of them.
    Used in the weibo_crowds chapter.
    """

    def __init__(self, alpha: float | Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1), epochs: int = 300,
                 learning_rate: float = 0.05, seed: int = 0):
        self.alpha, self.epochs, self.learning_rate, self.seed = alpha, epochs, learning_rate, seed

    def _tensor(self, X):
        import torch

        if hasattr(X, "toarray"):
            X = X.toarray()
        X = np.asarray(X, dtype=np.float32)
        return torch.from_numpy((X - self.mean_) / self.scale_)

    def fit(self, X, Y) -> "SoftmaxRegression":
        alphas = [self.alpha] if np.isscalar(self.alpha) else list(self.alpha)
        if len(alphas) > 1:
            Y = np.asarray(Y, dtype=float)
            held = np.random.default_rng(self.seed).random(len(Y)) < 0.2
            scores = {a: float(np.mean(metrics.js_divergence(Y[held], self._fit(X[~held], Y[~held], a).predict(X[held]))))
                      for a in alphas}
            self.validation_js_ = scores
            alphas = [min(scores, key=scores.get)]
        return self._fit(X, Y, alphas[0])

    def _fit(self, X, Y, alpha: float) -> "SoftmaxRegression":
        import torch

        self.alpha_ = alpha
        torch.manual_seed(self.seed)
        dense = X.toarray() if hasattr(X, "toarray") else np.asarray(X, dtype=np.float32)
        self.mean_ = dense.mean(axis=0)
        self.scale_ = dense.std(axis=0) + 1e-6
        inputs, targets = self._tensor(X), torch.as_tensor(np.asarray(Y, dtype=np.float32))
        targets = targets / targets.sum(1, keepdim=True)
        self.layer_ = torch.nn.Linear(inputs.shape[1], targets.shape[1])
        with torch.no_grad():  # start at the prior
            self.layer_.weight.zero_()
            self.layer_.bias.copy_(torch.log(targets.mean(0) + 1e-6))
        optimiser = torch.optim.Adam(self.layer_.parameters(), lr=self.learning_rate)
        for _ in range(self.epochs):
            optimiser.zero_grad()
            log_q = torch.log_softmax(self.layer_(inputs), dim=1)
            loss = torch.nn.functional.kl_div(log_q, targets, reduction="batchmean") \
                + alpha * self.layer_.weight.pow(2).sum()
            loss.backward()
            optimiser.step()
        return self

    def predict(self, X) -> np.ndarray:
        import torch

        with torch.no_grad():
            return torch.softmax(self.layer_(self._tensor(X)), dim=1).numpy()


def text_features(train_texts: Sequence[str], test_texts: Sequence[str], dimensions: int = 256, seed: int = 0):
    """Character 1–3-gram TF-IDF of post texts, reduced by truncated SVD (fitted on the
    training posts only). Used in the weibo_crowds chapter."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectoriser = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), min_df=2, sublinear_tf=True)
    train = vectoriser.fit_transform([str(t) for t in train_texts])
    svd = TruncatedSVD(n_components=min(dimensions, train.shape[1] - 1, train.shape[0] - 1), random_state=seed)
    return svd.fit_transform(train), svd.transform(vectoriser.transform([str(t) for t in test_texts]))


def lm_features(texts: Sequence[str], model: str = "smollm2", max_length: int = 128, batch_size: int = 16,
                progress: bool = False, device: str = "auto") -> np.ndarray:
    """Mean-pooled last hidden states of a (frozen) causal LM, one row per text, computed
    on ``device`` (``crowdlens.core.device``; half-precision weights on an accelerator).
    Used in the weibo_crowds chapter."""
    import torch
    from tqdm.auto import tqdm

    device = resolve_device(device)
    tokenizer, lm = load_causal_lm(model, device)
    lm.eval()
    decoder = lm.get_decoder()
    texts = [str(t) for t in texts]
    out = []
    with torch.inference_mode():
        for start in tqdm(range(0, len(texts), batch_size), desc="LM features", disable=not progress):
            batch = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True, truncation=True,
                              max_length=max_length)
            batch = to_device(dict(batch), device)
            # pooled in float32: a half-precision sum over many tokens rounds (a no-op on the CPU)
            # the decoder alone: its last hidden state is the LM's, without the vocabulary head
            hidden = decoder(**batch).last_hidden_state.float()
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out.append(((hidden * mask).sum(1) / mask.sum(1)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, lm.config.hidden_size))


def evaluate_distributions(name: str, split: str, truth: np.ndarray, predicted: np.ndarray) -> dict:
    """Mean JS (bits) and KL (nats) divergence, top-emotion accuracy, and the mean
    per-emotion Pearson correlation between predicted and real shares across posts. Used in the weibo_crowds chapter."""
    truth, predicted = np.asarray(truth, dtype=float), np.asarray(predicted, dtype=float)
    correlations = [np.corrcoef(truth[:, j], predicted[:, j])[0, 1] if predicted[:, j].std() > 0 else np.nan
                    for j in range(truth.shape[1])]
    return {"model": name, "split": split, "js": float(np.mean(metrics.js_divergence(truth, predicted))),
            "kl": float(np.mean(metrics.kl_divergence(truth, predicted))),
            "top_emotion_accuracy": float((truth.argmax(1) == predicted.argmax(1)).mean()),
            "mean_correlation": float(np.nanmean(correlations)) if not np.all(np.isnan(correlations)) else np.nan,
            "posts": len(truth)}


def rumor_effects(distributions: pd.DataFrame, rumor: pd.Series) -> pd.DataFrame:
    """Difference in each emotion's share between rumour and non-rumour posts (OLS with
    HC3 errors, weighted by texted reactions), with 95 % intervals. Used in the weibo_crowds chapter."""
    import statsmodels.api as sm

    rows = []
    X = sm.add_constant(rumor.reindex(distributions.index).astype(float).rename("rumor"))
    for emotion in EMOTIONS:
        fit = sm.WLS(distributions[emotion], X, weights=distributions["n"]).fit(cov_type="HC3")
        low, high = fit.conf_int().loc["rumor"]
        rows.append({"emotion": emotion, "non_rumor_share": fit.params["const"], "difference": fit.params["rumor"],
                     "ci_low": low, "ci_high": high, "p_value": fit.pvalues["rumor"]})
    return pd.DataFrame(rows)


def post_metadata(posts: pd.DataFrame) -> pd.DataFrame:
    """Numeric post and author features: rumour flag, author reach (log followers,
    friends, messages), verified, pictures, link, text length. Used in the weibo_crowds chapter."""
    return pd.DataFrame({
        "rumor": posts["label"].eq("rumor").astype(float),
        "log_followers": np.log1p(posts["author_followers"].astype(float).fillna(0)),
        "log_friends": np.log1p(posts["author_friends"].astype(float).fillna(0)),
        "log_messages": np.log1p(posts["author_messages"].astype(float).fillna(0)),
        "verified": posts["author_verified"].astype(float).fillna(0),
        "pics": posts["pics"].astype(float).fillna(0).clip(upper=9),
        "has_url": posts["has_url"].astype(float).fillna(0),
        "log_length": np.log1p(posts["text"].astype(str).str.len()),
    }, index=posts.index)
