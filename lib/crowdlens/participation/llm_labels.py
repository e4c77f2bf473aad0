"""Participation labels from a causal language model.

Zero-shot (the annotation chapter): ``LLMAnnotator`` scores each label after a prompt
with the codebook's definitions. Fine-tuned (the training chapter), as the paper did
with Llama 3: supervised fine-tuning (SFT) with LoRA to generate the label (trl's
``SFTTrainer``), then direct preference optimisation (DPO, trl's ``DPOTrainer``) from
the SFT model on pairs where the correct label is chosen and a wrong one rejected.

On a CPU the prompt is short — the comment and the five label names, no codebook —
and labels are *scored*, not sampled: each label's mean token log-probability after
the prompt, so every answer is a valid label. Fine-tuned models are merged and cached
under ``$CROWDLENS_CACHE/models`` by a hash of their data and settings.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import json
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from tqdm import tqdm

from crowdlens.core.config import atomic_dir
from crowdlens.core.device import device_type, is_accelerator, mixed_precision, resolve_device, to_device
from crowdlens.core.estimators import ProbabilisticClassifier
from crowdlens.core.hub import check_four_bit, load_causal_lm, models_cache_dir
from crowdlens.participation.labels import DEFINITIONS, FIVE_CLASSES, LABEL_WORDS, NEIGHBOURS


# Zero-shot: an LLM as annotator -------------------------------------------------------------------

COMMENT_SLOT = "<<COMMENT>>"


def annotation_prompt(text: str = COMMENT_SLOT, labels: Sequence[str] = FIVE_CLASSES) -> list[dict[str, str]]:
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


def _forward_with_cache(lm, input_ids, attention_mask, cache):
    # transformers 5 renamed past_key_values to cache; accept both generations
    key = "cache" if "cache" in inspect.signature(lm.forward).parameters else "past_key_values"
    return lm(input_ids=input_ids, attention_mask=attention_mask, use_cache=True, **{key: cache})


def _label_logprobs(lm, tokenizer, device: str, prompt_ids: list[int], label_ids: list[list[int]],
                    cache=None, cached_length: int = 0) -> np.ndarray:
    """Mean log-probability of each label's tokens after ``prompt_ids`` (which continue
    ``cache``, ``cached_length`` tokens long, when given). The prompt runs once; the
    labels then run as one batch on top of its key/value cache, so scoring k labels
    costs one prompt, not k."""
    import torch

    def on_device(tensor):
        return to_device({"t": tensor}, device)["t"]

    seen = cached_length + len(prompt_ids)
    with torch.inference_mode():
        out = _forward_with_cache(lm, on_device(torch.tensor([prompt_ids])),
                                  on_device(torch.ones(1, seen, dtype=torch.long)), cache)
        first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
        cache = _cache_of(out)
        width = max(map(len, label_ids))
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        batch = on_device(torch.tensor([ids + [pad] * (width - len(ids)) for ids in label_ids]))
        mask = on_device(torch.tensor([[1] * (seen + len(ids)) + [0] * (width - len(ids)) for ids in label_ids]))
        cache.batch_repeat_interleave(len(label_ids))
        later = torch.log_softmax(_forward_with_cache(lm, batch, mask, cache).logits.float(), dim=-1)
    return np.array([np.mean([first[ids[0]].item()] + [later[row, j - 1, ids[j]].item() for j in range(1, len(ids))])
                     for row, ids in enumerate(label_ids)])


class LLMAnnotator(BaseEstimator):
    """Zero-shot annotation with a causal LM, scored rather than sampled.

    Each label is scored by the mean log-probability of its tokens after the prompt,
    so every answer is a valid label. The prompt's shared head (instructions and
    definitions) is encoded once and its key/value cache reused for every comment.
    With ``calibrate`` the scores of a content-free comment ("N/A") are subtracted,
    which removes a small model's preference for some label names (contextual
    calibration, Zhao et al. 2021). ``device`` runs the model (``crowdlens.core.device``;
    half-precision weights on an accelerator, float32 on the CPU).
    """

    def __init__(self, model: str = "smollm2", labels: Sequence[str] = FIVE_CLASSES, calibrate: bool = True,
                 max_chars: int = 1000, device: str = "auto"):
        self.model, self.labels, self.calibrate, self.max_chars = model, labels, calibrate, max_chars
        self.device = device

    def fit(self, texts=None, labels=None) -> "LLMAnnotator":
        """Load the model and encode the prompt's shared head; learns nothing from data
        (zero-shot), but sets the calibration ``baseline_``. ``annotate`` calls it once."""
        import torch

        self.labels_ = list(self.labels)
        self.device_ = resolve_device(self.device)
        self.tokenizer_, self.lm_ = load_causal_lm(self.model, self.device_)
        self.lm_.eval()
        template = self.tokenizer_.apply_chat_template(annotation_prompt(COMMENT_SLOT, self.labels_),
                                                       add_generation_prompt=True, tokenize=False)
        head, self.tail_ = template.split(COMMENT_SLOT)
        self.head_ids_ = self.tokenizer_(head, add_special_tokens=False)["input_ids"]
        self.label_ids_ = [self.tokenizer_(label, add_special_tokens=False)["input_ids"] for label in self.labels_]
        with torch.inference_mode():
            self.head_cache_ = _cache_of(self._forward(self._on_device(torch.tensor([self.head_ids_])), None, None))
        self.baseline_ = np.zeros(len(self.labels_))
        if self.calibrate:
            self.baseline_ = self.scores("N/A")
        return self

    def _on_device(self, tensor):
        """``tensor`` on the model's device (on the CPU, ``tensor`` itself)."""
        return to_device({"t": tensor}, self.device_)["t"]

    def _forward(self, input_ids, attention_mask, cache):
        return _forward_with_cache(self.lm_, input_ids, attention_mask, cache)

    def scores(self, text: str) -> np.ndarray:
        """Mean log-probability of each label's tokens after the prompt for ``text``."""
        rest = self.tokenizer_(str(text)[: self.max_chars] + self.tail_, add_special_tokens=False)["input_ids"]
        return _label_logprobs(self.lm_, self.tokenizer_, self.device_, rest, self.label_ids_,
                               copy.deepcopy(self.head_cache_), len(self.head_ids_))

    def annotate(self, texts: Sequence[str], progress: bool = True) -> pd.DataFrame:
        """One row per text: the label, the uncalibrated label, per-label scores, seconds."""
        if not hasattr(self, "lm_"):
            self.fit()
        rows = []
        for text in tqdm(list(texts), desc=f"LLM annotation ({self.model})", disable=not progress):
            started = time.perf_counter()
            calibrated = self.scores(text) - self.baseline_
            rows.append({"label": self.labels_[int(np.argmax(calibrated))],
                         "label_uncalibrated": self.labels_[int(np.argmax(calibrated + self.baseline_))],
                         **{f"score_{l}": s for l, s in zip(self.labels_, calibrated)},
                         "seconds": time.perf_counter() - started})
        return pd.DataFrame(rows)


def llm_annotate(texts: Sequence[str], model: str = "smollm2", labels: Sequence[str] = FIVE_CLASSES,
                 calibrate: bool = True, progress: bool = True, device: str = "auto") -> pd.DataFrame:
    """Zero-shot labels for ``texts`` (see ``LLMAnnotator``): label, per-label scores, seconds.
    Used in the annotation and training chapters."""
    return LLMAnnotator(model, labels, calibrate=calibrate, device=device).annotate(texts, progress=progress)


# Fine-tuned: SFT and DPO ------------------------------------------------------------

def label_prompt(text: str, max_chars: int = 600) -> str:
    return (f"Comment: {str(text)[:max_chars]}\n"
            "Participation in collective action (none, problem-solution, call-to-action, intention, execution):")


def sft_dataset(texts: Sequence[str], labels: Sequence[str]):
    """Prompt–completion pairs; the loss covers the completion (the label) only."""
    from datasets import Dataset

    return Dataset.from_dict({"prompt": [label_prompt(t) for t in texts],
                              "completion": [f" {LABEL_WORDS[label]}" for label in labels]})


def preference_dataset(texts: Sequence[str], labels: Sequence[str], neighbour_share: float = 0.5, seed: int = 0):
    """DPO pairs: the correct label chosen; rejected, the ladder neighbour with probability
    ``neighbour_share`` (the confusion that matters), else another wrong label at random."""
    from datasets import Dataset

    rng = np.random.default_rng(seed)
    rejected = []
    for label in labels:
        if rng.random() < neighbour_share:
            rejected.append(NEIGHBOURS[label])
        else:
            rejected.append(rng.choice([other for other in LABEL_WORDS if other != label]))
    return Dataset.from_dict({"prompt": [label_prompt(t) for t in texts],
                              "chosen": [f" {LABEL_WORDS[label]}" for label in labels],
                              "rejected": [f" {LABEL_WORDS[label]}" for label in rejected]})


def _cached_dir(kind: str, settings: dict) -> Path:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return models_cache_dir() / f"participation-{kind}-{digest}"


def _load(model: str | Path, device: str = "cpu", load_in_4bit: bool = False):
    tokenizer, lm = load_causal_lm(str(model), device, load_in_4bit=load_in_4bit)
    return tokenizer, lm


def _trainer_device_options(device: str, load_in_4bit: bool = False) -> dict:
    """trl/Trainer settings for ``device``. The CPU's are fixed: float32 and no autocast
    (trl defaults to bf16 autocast, which CPUs without bf16 units emulate ~10-100x slower;
    one 8-comment SFT step took 228 s), no gradient checkpointing (it saves memory a 135M
    model never lacks). An accelerator computes in ``mixed_precision`` and checkpoints
    activations, which an 8B model needs to fit a 24-40 GB GPU."""
    if load_in_4bit:
        check_four_bit(device)
    if not is_accelerator(device):
        return dict(use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False)
    if device_type(device) == "cuda" and device not in ("cuda", "cuda:0"):
        # Trainer always trains on cuda:0 of the GPUs it sees
        raise ValueError(f"SFT/DPO train on the first visible GPU; to train on {device}, run with "
                         f"CUDA_VISIBLE_DEVICES={device.split(':')[1]} and device='cuda'")
    import torch

    dtype = mixed_precision(device)
    return dict(use_cpu=False, bf16=dtype is torch.bfloat16, fp16=dtype is torch.float16,
                gradient_checkpointing=True)


@contextlib.contextmanager
def _quiet(progress: bool):
    """Without progress: no dataset progress bars and no deprecation warnings from
    transformers/trl (they belong in a terminal, not in the printed book)."""
    if progress:
        yield
        return
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def _train(kind: str, model: str | Path, dataset, settings: dict, lora_rank: int, progress: bool,
           device: str = "cpu", load_in_4bit: bool = False) -> Path:
    """Run SFT or DPO with LoRA on ``device`` (resolved), merge the adapters and save the
    model (atomically). With ``load_in_4bit`` (CUDA) the base is 4-bit while the adapters
    train (QLoRA); they are then merged into the base in half precision."""
    import tempfile

    from peft import LoraConfig

    # the device and 4-bit weights join the key only when used, so the CPU's cached models keep theirs
    extra = {**({"device": device_type(device)} if is_accelerator(device) else {}),
             **({"load_in_4bit": True} if load_in_4bit else {})}
    target = _cached_dir(kind, {**settings, "base": str(model), "rows": dataset.num_rows, **extra,
                                "data": hashlib.sha256(json.dumps(dataset.to_dict(), sort_keys=True).encode()).hexdigest()})
    if (target / "config.json").is_file():
        return target
    placement = _trainer_device_options(device, load_in_4bit)
    tokenizer, lm = _load(model, device, load_in_4bit)
    peft_config = LoraConfig(r=lora_rank, lora_alpha=2 * lora_rank, lora_dropout=0.05, target_modules="all-linear",
                             task_type="CAUSAL_LM")
    common = dict(per_device_train_batch_size=settings["batch_size"], num_train_epochs=settings["epochs"],
                  learning_rate=settings["learning_rate"], max_length=settings["max_length"], seed=settings["seed"],
                  logging_steps=1, report_to="none", save_strategy="no", disable_tqdm=not progress, **placement)
    with tempfile.TemporaryDirectory(prefix=f"crowdlens-{kind}-") as scratch, _quiet(progress):
        if kind == "sft":
            from trl import SFTConfig, SFTTrainer

            trainer = SFTTrainer(model=lm, args=_one_gpu(SFTConfig(output_dir=scratch, completion_only_loss=True, **common)),
                                 train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config)
        else:
            from trl import DPOConfig, DPOTrainer

            trainer = DPOTrainer(model=lm, args=_one_gpu(DPOConfig(output_dir=scratch, beta=settings["beta"], **common)),
                                 train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config)
        if not progress:
            from transformers.trainer_callback import PrinterCallback

            trainer.remove_callback(PrinterCallback)  # it prints every log dict; the history is kept anyway
        trainer.train()
        history = [entry for entry in trainer.state.log_history if "loss" in entry]
        if load_in_4bit:
            merged = _merge_into_half_precision(trainer, model, device, Path(scratch) / "adapter")
        else:
            merged = trainer.model.merge_and_unload()
    with atomic_dir(target) as staging:
        merged.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "crowdlens.json").write_text(json.dumps({"kind": kind, **settings, "history": history}, indent=2))
    return target


def _one_gpu(config):
    """``config`` training on one GPU: Trainer wraps the model in DataParallel over every
    visible GPU, which a 4-bit model placed on one of them cannot be."""
    if not config.use_cpu and config.n_gpu > 1:  # n_gpu sets the devices up first, so this value stays
        config._n_gpu = 1
    return config


def _merge_into_half_precision(trainer, model: str | Path, device: str, adapter_dir: Path):
    """QLoRA's last step: the adapters trained on the 4-bit base, merged into the base in
    half precision (merging into 4-bit weights would round them once more). The merge runs
    in CPU memory: the GPU still holds the 4-bit model, and adding B·A to each weight is
    no work worth a GPU."""
    from peft import PeftModel

    trainer.model.save_pretrained(adapter_dir)  # the adapters only
    _, base = _load(model, "cpu")
    return PeftModel.from_pretrained(base.to(mixed_precision(device)), adapter_dir).merge_and_unload()


def sft(texts: Sequence[str], labels: Sequence[str], model: str = "smollm2", lora_rank: int = 8, epochs: int = 1,
        learning_rate: float = 2e-4, batch_size: int = 8, max_length: int = 160, seed: int = 0,
        progress: bool = True, device: str = "auto", load_in_4bit: bool = False) -> Path:
    """LoRA supervised fine-tuning to write the label, on ``device`` (``crowdlens.core.device``;
    float32 on the CPU, mixed precision on a GPU); ``load_in_4bit`` (CUDA only) trains the
    adapters on a 4-bit base, for 8B models on a 24 GB GPU. Returns the merged model's folder.
    Used in the training chapter."""
    settings = dict(epochs=epochs, learning_rate=learning_rate, batch_size=batch_size, max_length=max_length,
                    seed=seed)
    device = resolve_device(device)
    if load_in_4bit:
        check_four_bit(device)  # before the data and the model are prepared
    return _train("sft", model, sft_dataset(texts, labels), settings, lora_rank, progress, device, load_in_4bit)


def dpo(texts: Sequence[str], labels: Sequence[str], model: str | Path, beta: float = 0.1, lora_rank: int = 8,
        epochs: int = 1, learning_rate: float = 5e-5, batch_size: int = 4, max_length: int = 160, seed: int = 0,
        progress: bool = True, device: str = "auto", load_in_4bit: bool = False) -> Path:
    """DPO from ``model`` (the SFT model's folder), the frozen ``model`` as reference, on
    ``device`` (and a 4-bit base with ``load_in_4bit``, as ``sft``); returns the merged
    model's folder. Used in the training chapter."""
    settings = dict(epochs=epochs, learning_rate=learning_rate, batch_size=batch_size, max_length=max_length,
                    seed=seed, beta=beta)
    device = resolve_device(device)
    if load_in_4bit:
        check_four_bit(device)  # before the data and the model are prepared
    return _train("dpo", model, preference_dataset(texts, labels, seed=seed), settings, lora_rank, progress, device, load_in_4bit)


def training_history(model_dir: Path | str) -> list[dict]:
    """The logged training losses of a model fine-tuned here. Used in the training chapter."""
    return json.loads((Path(model_dir) / "crowdlens.json").read_text()).get("history", [])


class LMLabelScorer(ProbabilisticClassifier):
    """Scores the five labels after ``label_prompt`` with a (fine-tuned) causal LM.

    ``predict_proba`` is the softmax of each label's mean token log-probability (each
    comment's prompt runs once, the labels on top of its key/value cache);
    ``classes_`` the label names, like the other classifiers of ``crowdlens.participation``.
    ``device`` runs the model (``crowdlens.core.device``).
    Used in the training chapter.
    """

    def __init__(self, model: str | Path = "smollm2", labels: Sequence[str] = FIVE_CLASSES, device: str = "auto"):
        self.model, self.labels, self.device = model, labels, device

    def fit(self, texts=None, labels=None) -> "LMLabelScorer":
        """Load the (already fine-tuned) model; ``predict_proba`` calls it once."""
        self.device_ = resolve_device(self.device)
        self.tokenizer_, self.lm_ = _load(self.model, self.device_)
        self.lm_.eval()
        self.classes_ = np.asarray(list(self.labels))
        self.label_ids_ = [self.tokenizer_(f" {LABEL_WORDS[label]}", add_special_tokens=False)["input_ids"]
                           for label in self.classes_]
        return self

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """Mean token log-probability of each label after ``label_prompt`` of each text."""
        if not hasattr(self, "lm_"):
            self.fit()
        out = np.zeros((len(texts), len(self.classes_)))
        for i, text in enumerate(texts):
            prompt = self.tokenizer_(label_prompt(text), add_special_tokens=False)["input_ids"]
            out[i] = _label_logprobs(self.lm_, self.tokenizer_, self.device_, prompt, self.label_ids_)
        return out

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        scores = self.scores(list(texts))
        scores = scores - scores.max(axis=1, keepdims=True)
        p = np.exp(scores)
        return p / p.sum(axis=1, keepdims=True)
