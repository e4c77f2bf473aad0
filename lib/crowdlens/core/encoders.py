"""Fine-tuned encoder classifiers with a scikit-learn-like interface.

``EncoderClassifier(model="minilm").fit(texts, labels)`` fine-tunes any encoder
that ``AutoModelForSequenceClassification`` loads (the offline MiniLM default, or a
hub id such as ``roberta-base``) with a class-weighted loss, early stopping on a
validation split carved from the training data, and a checkpoint after every epoch
so that a killed run resumes where it stopped. Prediction sorts texts by length and
batches them dynamically under ``torch.inference_mode``.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from crowdlens.core.config import atomic_dir, atomic_path
from crowdlens.core.device import (adamw, autocast, grad_scaler, is_accelerator, mixed_precision, resolve_device,
                                   to_device)
from crowdlens.core.estimators import ProbabilisticClassifier, softmax
from crowdlens.core.hub import load_sequence_classifier
from crowdlens.core.metrics import weighted_f1


def length_sorted_batches(encoded: Sequence[Sequence[int]], batch_size: int, pad_id: int):
    """Yield (row indices, padded ids, attention mask) with similar lengths in a batch,
    so short texts are not padded to the longest one of the whole input."""
    order = np.argsort([len(ids) for ids in encoded], kind="stable")
    for start in range(0, len(order), batch_size):
        idx = order[start: start + batch_size]
        width = max(1, max(len(encoded[i]) for i in idx))
        ids = np.full((len(idx), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(idx), width), dtype=np.int64)
        for row, i in enumerate(idx):
            ids[row, : len(encoded[i])] = encoded[i]
            mask[row, : len(encoded[i])] = 1
        yield idx, ids, mask


def _training_step(model, loss, optimizer, scheduler, losses: list[float], scaler=None) -> None:
    """Backpropagate ``loss`` with gradients clipped at norm 1, step, and record the loss.
    ``scaler`` (float16 on a GPU only) scales the loss so that small gradients survive."""
    import torch

    if scaler is None:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
    scheduler.step()
    optimizer.zero_grad()
    losses.append(loss.item())


class _BatchedClassifier(ProbabilisticClassifier):
    """What both backends share: labels, length-sorted batches, softmax, argmax.
    Subclasses set ``labels_``, ``max_length``, ``tokenizer_`` and define ``_run_batch``;
    ``scoring_batch_size`` is the batch size used when a call passes none."""

    scoring_batch_size = 64

    def _scoring_batch_size(self) -> int:
        return self.scoring_batch_size

    def _prepare_scoring(self) -> None:
        """Called before scoring: a backend places its model here (PyTorch: on its device)."""

    @property
    def classes_(self) -> np.ndarray:
        """The labels in output order, under scikit-learn's name."""
        return np.asarray(self.labels_)

    def _map_batches(self, run, batches):
        return map(run, batches)

    def _logits(self, texts: Sequence[str], batch_size: int | None = None, progress: str | None = None) -> np.ndarray:
        """Logits in input order; ``progress`` names a progress bar to show (None: none)."""
        self._prepare_scoring()
        encoded = self.tokenizer_([str(t) for t in texts], truncation=True, max_length=self.max_length)["input_ids"]
        out = np.zeros((len(encoded), len(self.labels_)), dtype=np.float32)
        batches = length_sorted_batches(encoded, batch_size or self._scoring_batch_size(),
                                        self.tokenizer_.pad_token_id or 0)
        with tqdm(total=len(encoded), desc=progress, unit="text", disable=progress is None) as bar:
            for idx, logits in self._map_batches(lambda batch: (batch[0], self._run_batch(batch[1], batch[2])), batches):
                out[idx] = logits
                bar.update(len(idx))
        return out

    def predict_proba(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        return softmax(self._logits(texts, batch_size))


class EncoderClassifier(_BatchedClassifier):
    """A text classifier fine-tuned from an encoder (``model``: the offline MiniLM default or a hub id)
    with a class-weighted loss, early stopping and a checkpoint per epoch (see the module docstring).
    ``device`` (default ``"auto"``: a CUDA GPU, else MPS, else the CPU; ``crowdlens.core.device``)
    trains and scores it; on an accelerator it computes in mixed precision and scores
    ``accelerator_batch_size`` texts per batch. On the CPU it is float32 throughout.
    Used in the training and weibo_crowds chapters."""

    #: texts per scoring batch on a GPU or MPS (the CPU keeps ``scoring_batch_size``)
    accelerator_batch_size = 256

    def __init__(
        self,
        model: str = "minilm",
        max_length: int = 128,
        epochs: int = 4,
        learning_rate: float = 5e-5,
        batch_size: int = 16,
        class_weight: str | None = "balanced",
        validation_share: float = 0.1,
        patience: int = 1,
        seed: int = 0,
        checkpoint_dir: str | Path | None = None,
        threads: int | None = None,
        lora_rank: int = 0,
        progress: bool = True,
        device: str = "auto",
    ):
        self.model = model
        self.max_length = max_length
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.class_weight = class_weight
        self.validation_share = validation_share
        self.patience = patience
        self.seed = seed
        self.checkpoint_dir = checkpoint_dir
        self.threads = threads
        self.lora_rank = lora_rank
        self.progress = progress
        self.device = device

    # -- training --------------------------------------------------------------------

    def _class_weights(self, y: np.ndarray):
        import torch

        if self.class_weight != "balanced":
            return None
        counts = np.bincount(y, minlength=len(self.labels_)).astype(float)
        weights = len(y) / (len(self.labels_) * np.maximum(counts, 1))
        return torch.tensor(weights, dtype=torch.float32)

    def _batches(self, encodings, order, rng):
        """Batches of similar length (sorted within shuffled pools of 50 batches), in random order:
        less padding per batch, still a different mix every epoch."""
        import torch

        lengths = encodings["attention_mask"].sum(1)
        pool = self.batch_size * 50
        batches = []
        for start in range(0, len(order), pool):
            chunk = order[start: start + pool]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            batches += [chunk[i: i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        for b in rng.permutation(len(batches)):
            idx = batches[b]
            yield idx, {k: torch.tensor(v[idx]) for k, v in encodings.items()}

    def _scoring_batch_size(self) -> int:
        return self.accelerator_batch_size if is_accelerator(self.device_) else self.scoring_batch_size

    def _prepare_scoring(self) -> None:
        """Resolve ``device`` and move the model there (a loaded classifier starts on the CPU)."""
        import torch

        self.device_ = resolve_device(self.device)
        if next(self.model_.parameters()).device != torch.device(self.device_):
            self.model_.to(self.device_)

    def fit(self, texts: Sequence[str], labels: Sequence[str],
            validation: tuple[Sequence[str], Sequence[str]] | None = None) -> "EncoderClassifier":
        """Fine-tune on ``texts`` and ``labels``, keeping the epoch that scores best on a
        validation split: ``validation_share`` of the training rows (stratified), or the
        given ``validation`` (texts, labels), a separate labelled set such as a corpus's
        own dev split. ``validation_rows_`` indexes the training rows held out (none when
        ``validation`` is given); ``validation_proba_`` holds the kept model's
        probabilities on the validation texts either way."""
        import torch
        from transformers import get_linear_schedule_with_warmup

        if self.threads:
            torch.set_num_threads(self.threads)
        self.device_ = device = resolve_device(self.device)
        self.trained_on_ = device
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        texts = [str(t) for t in texts]
        labels = list(labels)
        self.labels_ = sorted(set(labels))
        self.history_ = []
        index = {label: i for i, label in enumerate(self.labels_)}
        n_train = len(texts)
        if validation is not None:
            extra_texts, extra_labels = [str(t) for t in validation[0]], list(validation[1])
            unseen = sorted(set(extra_labels) - set(self.labels_), key=str)
            if unseen or len(extra_texts) != len(extra_labels) or not extra_texts:
                raise ValueError(f"validation must be (texts, labels) of equal, non-zero length with labels seen in "
                                 f"training; labels not in the training set: {unseen}")
            texts, labels = texts + extra_texts, labels + extra_labels
        y = np.array([index[label] for label in labels])

        validation_rows = np.zeros(len(y), dtype=bool)
        if validation is not None:
            validation_rows[n_train:] = True
        elif self.validation_share > 0:  # carved from the training data, stratified by label
            for label in range(len(self.labels_)):
                members = np.flatnonzero(y == label)
                take = int(round(len(members) * self.validation_share))
                validation_rows[rng.choice(members, take, replace=False)] = True
        train_idx, valid_idx = np.flatnonzero(~validation_rows), np.flatnonzero(validation_rows)

        # a causal LM with LoRA adapters (lora_rank) is frozen but for them: on an accelerator its
        # weights load in half precision, so a 7B model fits a 24 GB GPU; what trains stays float32
        half = mixed_precision(device) if self.lora_rank else None
        self.tokenizer_, self.model_ = load_sequence_classifier(
            self.model, num_labels=len(self.labels_),
            id2label=dict(enumerate(self.labels_)), label2id=index, **({"dtype": half} if half else {}),
        )
        if self.tokenizer_.pad_token is None:  # causal LMs (SmolLM2, Llama, Qwen) have no padding token
            self.tokenizer_.pad_token = self.tokenizer_.eos_token
        self.model_.config.pad_token_id = self.tokenizer_.pad_token_id
        if self.lora_rank:
            self._add_lora()
            if half:
                for parameter in self.model_.parameters():
                    if parameter.requires_grad:
                        parameter.data = parameter.data.float()
        if device != "cpu":
            self.model_.to(device)
        encodings = self.tokenizer_(texts, truncation=True, max_length=self.max_length, padding="max_length")
        encodings = {k: np.asarray(v) for k, v in encodings.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        weights = self._class_weights(y[train_idx])
        loss_fn = torch.nn.CrossEntropyLoss(weight=weights if weights is None or device == "cpu" else weights.to(device))
        scaler = grad_scaler(device)
        optimizer = adamw(self.model_.parameters(), device, lr=self.learning_rate)
        steps = self.epochs * int(np.ceil(len(train_idx) / self.batch_size))
        scheduler = get_linear_schedule_with_warmup(optimizer, int(0.1 * steps), steps)

        start_epoch, best_score, best_state, stale = 0, -1.0, None, 0
        resume = self._load_checkpoint(optimizer, scheduler)
        if resume is not None:
            start_epoch, best_score, best_state, stale, self.history_ = resume
            if stale > self.patience:  # that run had stopped early: it is finished
                start_epoch = self.epochs

        for epoch in range(start_epoch, self.epochs):
            self.model_.train()
            order = rng.permutation(train_idx)
            losses = []
            bar = tqdm(total=len(order), desc=f"epoch {epoch + 1}/{self.epochs}", unit="text", disable=not self.progress)
            for idx, batch in self._batches(encodings, order, rng):
                width = int(batch["attention_mask"].sum(1).max())  # trim padding: shorter batches run faster
                batch = to_device({k: v[:, :width] for k, v in batch.items()}, device)
                target = to_device({"y": torch.tensor(y[idx])}, device)["y"]
                with autocast(device):
                    logits = self.model_(**batch).logits
                loss = loss_fn(logits.float(), target)  # float() is a no-op in float32, on the CPU
                _training_step(self.model_, loss, optimizer, scheduler, losses, scaler)
                bar.update(len(idx))
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
            bar.close()
            record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses))}
            if len(valid_idx):
                predicted = self._predict_ids([texts[i] for i in valid_idx])
                record["validation_weighted_f1"] = weighted_f1(y[valid_idx], predicted)
                score = record["validation_weighted_f1"]
            else:
                score = -record["train_loss"]
            self.history_.append(record)
            if score > best_score:
                best_score, stale = score, 0
                best_state = {k: v.detach().clone() for k, v in self.model_.state_dict().items()}
            else:
                stale += 1
            self._save_checkpoint(epoch + 1, optimizer, scheduler, best_score, best_state, stale)
            if stale > self.patience:
                break
        if best_state is not None:
            self.model_.load_state_dict(best_state)
        if self.lora_rank:
            self.model_ = self.model_.merge_and_unload()  # a plain model again: saves and loads like any other
        self.model_.eval()
        # the kept model on the rows it never trained on (they chose its epoch): what a
        # label-shift estimate needs from the training distribution, with no test label
        self.validation_rows_ = valid_idx if validation is None else np.zeros(0, dtype=int)
        self.validation_proba_ = (self.predict_proba([texts[i] for i in valid_idx]) if len(valid_idx)
                                  else np.zeros((0, len(self.labels_))))
        return self

    def distil(self, transfer_texts: Sequence[str], layers: Sequence[int] = (0, 2, 4), epochs: int = 2,
               learning_rate: float = 1e-4, batch_size: int = 32, seed: int = 0,
               progress: bool | None = None) -> "EncoderClassifier":
        """A smaller copy of this fitted classifier that keeps only the encoder ``layers``
        (DistilBERT's initialisation: every other layer of the teacher) and is trained to
        reproduce this model's logits on ``transfer_texts`` (unlabelled; mean-centred
        logits, squared error, so the student also matches the probabilities that a
        threshold on P(None) reads, not only the argmax). Half the layers score about
        twice as fast; its quality is for the caller to measure
        (``participation.distil_classifier`` does, on the test comments)."""
        import copy

        import torch
        from transformers import get_linear_schedule_with_warmup

        if not hasattr(self, "model_"):
            raise ValueError("fit or load the EncoderClassifier before distilling it")
        encoder = getattr(getattr(self.model_, "base_model", None), "encoder", None)
        teacher_layers = getattr(encoder, "layer", None)
        if teacher_layers is None:
            raise ValueError(f"distil keeps layers of BERT- or RoBERTa-style encoders; "
                             f"{type(self.model_).__name__} has no base_model.encoder.layer")
        layers = list(layers)
        if not layers or sorted(set(layers)) != layers or not 0 <= layers[0] <= layers[-1] < len(teacher_layers):
            raise ValueError(f"layers must be increasing indices of the teacher's {len(teacher_layers)} layers, "
                             f"got {layers}")
        texts = [str(t) for t in transfer_texts]
        if not texts:
            raise ValueError("distil needs transfer texts (unlabelled comments of the domain to score)")
        progress = self.progress if progress is None else progress
        targets = self._logits(texts, progress="teacher logits" if progress else None)
        student = copy.copy(self)
        student.model_ = copy.deepcopy(self.model_)
        kept = student.model_.base_model.encoder
        kept.layer = torch.nn.ModuleList([kept.layer[i] for i in layers])
        student.model_.config.num_hidden_layers = len(layers)
        device = student.device_ = student.trained_on_ = resolve_device(self.device)  # where the teacher scored
        student.history_ = list(self.history_) + [{"distilled_from_layers": len(teacher_layers), "kept_layers": layers,
                                                   "transfer_texts": len(texts)}]
        student.card_ = {}  # a new model: not the teacher's saved card or folder (ONNX exports compare them)
        student.__dict__.pop("path_", None)
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        encoded = self.tokenizer_(texts, truncation=True, max_length=self.max_length)["input_ids"]
        batches = list(length_sorted_batches(encoded, batch_size, self.tokenizer_.pad_token_id or 0))
        model = student.model_.eval()  # no dropout: the targets are deterministic, and matching them is the task
        optimizer = adamw(model.parameters(), device, lr=learning_rate)
        scaler = grad_scaler(device)
        steps = epochs * len(batches)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(0.05 * steps), steps)
        for epoch in range(epochs):
            losses = []
            bar = tqdm(total=len(texts), desc=f"distil {epoch + 1}/{epochs}", unit="text", disable=not progress)
            for b in rng.permutation(len(batches)):
                idx, ids, mask = batches[b]
                batch = to_device({"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
                                   "target": torch.from_numpy(targets[idx])}, device)
                target = batch.pop("target")
                with autocast(device):
                    logits = model(**batch).logits.float()
                loss = torch.nn.functional.mse_loss(logits - logits.mean(1, keepdim=True),
                                                    target - target.mean(1, keepdim=True))
                _training_step(model, loss, optimizer, scheduler, losses, scaler)
                bar.update(len(idx))
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
            bar.close()
            student.history_.append({"distil_epoch": epoch + 1, "logit_mse": float(np.mean(losses))})
        return student

    def _add_lora(self):
        """Train LoRA adapters (peft) and the new head instead of every weight: the way to
        fine-tune a causal LM as a classifier on a CPU."""
        from peft import LoraConfig, TaskType, get_peft_model

        config = LoraConfig(task_type=TaskType.SEQ_CLS, r=self.lora_rank, lora_alpha=2 * self.lora_rank,
                            lora_dropout=0.05, target_modules="all-linear")
        self.model_ = get_peft_model(self.model_, config)

    # -- checkpoints -----------------------------------------------------------------

    def _save_checkpoint(self, epoch, optimizer, scheduler, best_score, best_state, stale):
        import torch

        if not self.checkpoint_dir:
            return
        folder = Path(self.checkpoint_dir)
        folder.mkdir(parents=True, exist_ok=True)
        state = {"epoch": epoch, "model": self.model_.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "best_score": best_score, "best_state": best_state,
                 "stale": stale, "history": self.history_, "labels": self.labels_}
        with atomic_path(folder / "checkpoint.pt", suffix=".pt") as tmp:
            torch.save(state, tmp)

    def _load_checkpoint(self, optimizer, scheduler):
        import torch

        path = Path(self.checkpoint_dir) / "checkpoint.pt" if self.checkpoint_dir else None
        if path is None or not path.is_file():
            return None
        state = torch.load(path, weights_only=False, map_location=self.device_)  # resumable on another device
        if state["labels"] != self.labels_:
            return None
        self.model_.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        return state["epoch"], state["best_score"], state["best_state"], state["stale"], state["history"]

    # -- prediction ------------------------------------------------------------------

    def _run_batch(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import torch

        batch = to_device({"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}, self.device_)
        with torch.inference_mode(), autocast(self.device_):
            logits = self.model_(**batch).logits
        return logits.float().cpu().numpy()

    def _predict_ids(self, texts):
        self.model_.eval()
        ids = self._logits(texts).argmax(1)
        self.model_.train()
        return ids

    # -- persistence -----------------------------------------------------------------

    def save(self, path: str | Path, card: dict | None = None) -> Path:
        """Write the model, tokenizer and a model card (``card.json``) atomically."""
        path = Path(path)
        meta = {"labels": self.labels_, "base_model": self.model, "max_length": self.max_length,
                "history": self.history_, "trained_on": getattr(self, "trained_on_", None),
                "saved": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **(card or {})}
        with atomic_dir(path) as staging:
            self.model_.save_pretrained(staging)
            self.tokenizer_.save_pretrained(staging)
            (staging / "card.json").write_text(json.dumps(meta, indent=2, default=str))
        return path

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> "EncoderClassifier":
        """A saved classifier; it loads on the CPU and moves to ``device`` when it first scores."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = Path(path)
        meta = json.loads((path / "card.json").read_text())
        classifier = cls(model=meta["base_model"], max_length=meta["max_length"], device=device)
        classifier.labels_ = meta["labels"]
        classifier.history_ = meta.get("history", [])
        classifier.card_ = meta
        classifier.tokenizer_ = AutoTokenizer.from_pretrained(path)
        classifier.model_ = AutoModelForSequenceClassification.from_pretrained(path).eval()
        classifier.path_ = path
        return classifier

    def to_onnx(self, path: str | Path, quantize: bool = True, threads: int | None = None) -> "OnnxEncoderClassifier":
        """Export to ONNX and return it as an ``OnnxEncoderClassifier`` (see there)."""
        return OnnxEncoderClassifier.export(self, path, quantize=quantize, threads=threads)


class OnnxEncoderClassifier(_BatchedClassifier):
    """A fitted ``EncoderClassifier`` run by ONNX Runtime, for fast CPU scoring.

    ``export`` writes ``model.onnx`` (weights quantised to int8 per channel when
    ``quantize``; ONNX Runtime then uses the CPU's integer dot-product instructions),
    the tokenizer and the card into one folder, atomically; ``load`` reads it back.
    ``predict_proba``/``predict`` behave as the source classifier's (same batching);
    int8 outputs differ slightly from fp32 — the throughput benchmark reports the
    agreement.

    ``threads`` (default: the machine's cores) batches run at once, each on
    one core and in its own ONNX Runtime session: ONNX Runtime releases the GIL, and
    on short, small batches one batch per core beats splitting each matrix product
    over the cores; two threads sharing one session contend for it and often run
    at the speed of ≈ 1.5 cores (``benchmarks/bench_classifier_throughput.py``).

    BERT- and RoBERTa-style classifiers read only the first token's final state, so
    the export computes the last layer for that token alone (keys and values still
    come from every token): the same logits for ≈ 1/6 less work with six layers.
    """

    scoring_batch_size = 4
    #: bumped when the export changes, so saved exports of an older format are redone
    export_format = 2

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort
        from transformers import AutoTokenizer

        self.path, self.threads = path, threads
        self.path_ = Path(path)
        if not (self.path_ / "model.onnx").is_file():
            raise FileNotFoundError(f"no model.onnx in {self.path_}; create it with "
                                    "EncoderClassifier.load(folder).to_onnx(path)")
        self.card_ = json.loads((self.path_ / "card.json").read_text())
        self.labels_ = self.card_["labels"]
        self.max_length = self.card_["max_length"]
        self.tokenizer_ = AutoTokenizer.from_pretrained(self.path_)
        options = ort.SessionOptions()
        self.threads_ = threads or os.cpu_count() or 1
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sessions_ = [ort.InferenceSession(str(self.path_ / "model.onnx"), options,
                                               providers=["CPUExecutionProvider"]) for _ in range(self.threads_)]
        self._thread_session = threading.local()

    @classmethod
    def export(cls, classifier: EncoderClassifier, path: str | Path, quantize: bool = True,
               threads: int | None = None) -> "OnnxEncoderClassifier":
        import copy
        import warnings

        import torch

        if not hasattr(classifier, "model_"):
            raise ValueError("fit or load the EncoderClassifier before exporting it to ONNX")
        path = Path(path)
        model = classifier.model_.eval()
        if next(model.parameters()).device.type != "cpu":  # ONNX Runtime runs it on the CPU: trace it there
            model = copy.deepcopy(model).cpu().float()
        first_token = _first_token_model(model)
        example = classifier.tokenizer_(["an example", "another example text"], padding=True, return_tensors="pt")
        card = {**getattr(classifier, "card_", {}), "labels": classifier.labels_, "max_length": classifier.max_length,
                "base_model": classifier.model, "onnx_quantized": bool(quantize),
                "onnx_export_format": cls.export_format, "onnx_last_layer_first_token_only": first_token is not None,
                "exported_from": str(getattr(classifier, "path_", "")) or None}
        model = first_token or model
        with atomic_dir(path) as staging:
            with warnings.catch_warnings(), torch.inference_mode():
                warnings.simplefilter("ignore")  # tracer warnings about Python control flow in HF code
                torch.onnx.export(model, (example["input_ids"], example["attention_mask"]), str(staging / "fp32.onnx"),
                                  input_names=["input_ids", "attention_mask"], output_names=["logits"],
                                  dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                                                "attention_mask": {0: "batch", 1: "tokens"}, "logits": {0: "batch"}},
                                  opset_version=17, dynamo=False)
            if quantize:
                from onnxruntime.quantization import QuantType, quantize_dynamic

                import logging

                logging.disable(logging.WARNING)  # its advice to pre-process is for static quantisation
                try:
                    quantize_dynamic(str(staging / "fp32.onnx"), str(staging / "model.onnx"),
                                     weight_type=QuantType.QInt8, per_channel=True)
                finally:
                    logging.disable(logging.NOTSET)
                (staging / "fp32.onnx").unlink()
            else:
                (staging / "fp32.onnx").rename(staging / "model.onnx")
            classifier.tokenizer_.save_pretrained(staging)
            (staging / "card.json").write_text(json.dumps(card, indent=2, default=str))
        return cls(path, threads=threads)

    def _map_batches(self, run, batches):
        if self.threads_ == 1:
            return super()._map_batches(run, batches)
        import queue
        from concurrent.futures import ThreadPoolExecutor

        free = queue.SimpleQueue()
        for session in self.sessions_:
            free.put(session)

        def take_a_session():  # each worker thread keeps one session of its own
            self._thread_session.session = free.get()

        with ThreadPoolExecutor(self.threads_, initializer=take_a_session) as pool:
            return list(pool.map(run, batches))

    def _run_batch(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        session = getattr(self._thread_session, "session", self.sessions_[0])
        return session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]


def _first_token_model(model):
    """``model`` (a BERT- or RoBERTa-style sequence classifier) as a module whose last
    encoder layer computes only the first token, the one its head reads; None for
    other architectures, which are exported whole. Same logits, less work."""
    import copy

    import torch

    heads = {"bert": lambda first: model.classifier(model.dropout(model.bert.pooler(first))),
             "roberta": lambda first: model.classifier(first),
             "xlm-roberta": lambda first: model.classifier(first)}
    head = heads.get(model.config.model_type)
    base = getattr(model, "base_model", None)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if head is None or layers is None or len(layers) < 2 or not type(model).__name__.endswith("ForSequenceClassification"):
        return None
    last = layers[-1]
    attention = last.attention.self
    # the base model without its last layer (and pooler); the weights are shared, not copied
    encoder = copy.copy(base.encoder)
    encoder._modules = dict(base.encoder._modules)
    encoder.layer = torch.nn.ModuleList(list(layers)[:-1])
    trimmed = copy.copy(base)
    trimmed._modules = dict(base._modules)
    trimmed.encoder, trimmed.pooler = encoder, None

    class FirstTokenClassifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.trimmed, self.last, self.full = trimmed, last, model

        def forward(self, input_ids, attention_mask):
            states = self.trimmed(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            batch, tokens, _ = states.shape
            heads_, size = attention.num_attention_heads, attention.attention_head_size

            def split(x, width):
                return x.view(batch, width, heads_, size).transpose(1, 2)

            query = split(attention.query(states[:, :1]), 1)
            key, value = split(attention.key(states), tokens), split(attention.value(states), tokens)
            padding = (1.0 - attention_mask[:, None, None, :].to(states.dtype)) * torch.finfo(states.dtype).min
            weights = torch.softmax(query @ key.transpose(-1, -2) / math.sqrt(size) + padding, dim=-1)
            context = (weights @ value).transpose(1, 2).reshape(batch, 1, heads_ * size)
            attended = self.last.attention.output(context, states[:, :1])
            return head(self.last.output(self.last.intermediate(attended), attended))

    return FirstTokenClassifier().eval()


def throughput(classifiers: dict, texts: Sequence[str], batch_size: int | None = None, warmup: int = 32,
               repeats: int = 1):
    """Comments per second of each classifier's ``predict_proba`` on ``texts``, with
    the share of argmax labels and the largest probability difference against the
    first classifier (the reference). Each one scores ``warmup`` texts first, as a
    running service would have; ``batch_size=None`` lets each use its own default.
    With ``repeats`` > 1 the texts are scored that many times, the classifiers taking
    turns (so a slow spell of a shared machine hits them all), and the median rate is
    reported with the slowest and fastest. Returns a DataFrame, one row per classifier. Used in the training chapter."""
    import pandas as pd

    texts = list(texts)
    if not classifiers or not texts:
        raise ValueError("pass at least one classifier and one text")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    for classifier in classifiers.values():
        classifier.predict_proba(texts[:warmup], batch_size)
    rates: dict[str, list[float]] = {name: [] for name in classifiers}
    outputs = {}
    for _ in range(repeats):
        for name, classifier in classifiers.items():
            started = time.perf_counter()
            outputs[name] = classifier.predict_proba(texts, batch_size)
            rates[name].append(len(texts) / (time.perf_counter() - started))
    rows, reference = [], None
    for name, probabilities in outputs.items():
        reference = probabilities if reference is None else reference
        spread = ({"slowest_comments_per_s": min(rates[name]), "fastest_comments_per_s": max(rates[name])}
                  if repeats > 1 else {})
        rows.append({"backend": name, "comments_per_s": float(np.median(rates[name])), **spread,
                     "label_agreement": float((probabilities.argmax(1) == reference.argmax(1)).mean()),
                     "max_probability_difference": float(np.abs(probabilities - reference).max())})
    return pd.DataFrame(rows)
