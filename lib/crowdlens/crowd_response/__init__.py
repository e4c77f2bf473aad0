"""Crowd response on Weibo (SocialAlign, Zhang et al. 2025).

The study's public API:

- emotion classifiers for Chinese microblogs (``emotions``);
- the macro level, each post's crowd emotion distribution and models that predict it
  (``distributions``);
- the micro level, the reply a given user would write (``replies``), with the
  mixture of LoRA experts (``mixture_lora``).

Submodules import each other directly, never this package.
"""

from crowdlens.crowd_response import distributions, emotions, mixture_lora, replies  # noqa: F401
from crowdlens.crowd_response.distributions import (  # noqa: F401
    KNNDistribution,
    PriorDistribution,
    SoftmaxRegression,
    crowd_distributions,
    evaluate_distributions,
    split_posts,
    texted_reactions,
)
from crowdlens.crowd_response.emotions import ChineseTextClassifier, LexiconEmotion, evaluate_classifier  # noqa: F401
from crowdlens.crowd_response.replies import ReplyModel, mask_mentions  # noqa: F401
from crowdlens.data.schemas import EMOTIONS  # noqa: F401
